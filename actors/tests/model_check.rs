//! Property test: random get/pend/commit/cancel sequences over a few blocks agree
//! with a small in-memory reference model of DESIGN §4, on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use optimystic_actors::block::StorageRepo;
use optimystic_actors::model::*;
use optimystic_actors::storage::StorageKind;
use proptest::prelude::*;
use serde_json::{json, Value};

const BLOCKS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Change {
    Insert,
    Append(u8),
    Delete,
}

#[derive(Debug, Clone)]
enum Op {
    Get(Vec<usize>, Option<Rev>),
    Pend(u8, Vec<(usize, Change)>, Option<Rev>, PendPolicy),
    Commit(u8, Vec<usize>, Rev),
    Cancel(u8, Vec<usize>),
    PendCommit(u8, Vec<(usize, Change)>, Option<Rev>, PendPolicy, Rev),
}

fn blocks() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence(vec![0, 1, 2], 1..=3)
}

fn op() -> impl Strategy<Value = Op> {
    let change = prop_oneof![
        2 => Just(Change::Insert),
        4 => any::<u8>().prop_map(Change::Append),
        1 => Just(Change::Delete),
    ];
    let policy = prop_oneof![
        Just(PendPolicy::Continue),
        Just(PendPolicy::Fail),
        Just(PendPolicy::Return)
    ];
    prop_oneof![
        2 => (blocks(), proptest::option::of(0u64..8)).prop_map(|(b, r)| Op::Get(b, r)),
        4 => (0u8..6, proptest::collection::vec((0usize..3, change.clone()), 1..3), proptest::option::of(0u64..8), policy.clone())
            .prop_map(|(t, c, r, p)| Op::Pend(t, c, r, p)),
        4 => (0u8..6, blocks(), 1u64..8).prop_map(|(t, b, r)| Op::Commit(t, b, r)),
        1 => (0u8..6, blocks()).prop_map(|(t, b)| Op::Cancel(t, b)),
        3 => (0u8..6, proptest::collection::vec((0usize..3, change), 1..3), proptest::option::of(0u64..8), policy, 1u64..8)
            .prop_map(|(t, c, r, p, rev)| Op::PendCommit(t, c, r, p, rev)),
    ]
}

fn transforms(changes: &[(usize, Change)]) -> Transforms {
    let mut t = Transforms::default();
    let mut seen = BTreeSet::new();
    for (b, c) in changes {
        let name = BLOCKS[*b];
        if !seen.insert(*b) {
            continue;
        }
        match c {
            Change::Insert => {
                t.inserts
                    .get_or_insert_with(BTreeMap::new)
                    .insert(bid(name), block(name, json!([])));
            }
            Change::Append(v) => {
                let op = BlockOperation {
                    entity: "items".into(),
                    index: 0,
                    delete_count: 0,
                    inserted: json!([v]),
                };
                t.updates
                    .get_or_insert_with(BTreeMap::new)
                    .insert(bid(name), vec![op]);
            }
            Change::Delete => t.deletes.get_or_insert_with(Vec::new).push(bid(name)),
        }
    }
    t
}

/// A pend's refusal, in its order of precedence: behind, then an error, then
/// blocked by other pending transactions under a policy other than `c`.
fn pend_refusal(
    missing: BTreeSet<(String, Rev)>,
    error: bool,
    pending: BTreeSet<(String, String)>,
    policy: PendPolicy,
) -> Option<Outcome> {
    if !missing.is_empty() {
        return Some(Outcome::Stale(missing, BTreeSet::new()));
    }
    if error {
        return Some(Outcome::Error);
    }
    if !pending.is_empty() && policy != PendPolicy::Continue {
        return Some(Outcome::Stale(BTreeSet::new(), pending));
    }
    None
}

/// One block's pend check in the model.
enum PendCheck {
    Missing(BTreeSet<(String, Rev)>),
    Error,
    Repeat,
    Ok(Option<Block>),
}

/// Whether `trx` committed another revision of the block with other records.
fn reused(mb: &ModelBlock, trx: &TrxId, t: &Transform, blk: &Option<Block>) -> bool {
    mb.committed
        .values()
        .any(|c| &c.0 == trx && (&c.1 != t || &c.2 != blk))
}

/// The reference: DESIGN §4 written as plainly as possible.
#[derive(Default, Clone)]
struct ModelBlock {
    committed: BTreeMap<Rev, (TrxId, Transform, Option<Block>)>,
    pending: BTreeMap<TrxId, Transform>,
}

/// (block JSON, revision read, pending trx ids)
type ReadRow = (Option<Value>, Option<Rev>, Vec<String>);

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Stale(BTreeSet<(String, Rev)>, BTreeSet<(String, String)>),
    Error,
    Read(BTreeMap<String, ReadRow>),
    /// A pendCommit whose pend would go ahead but whose commit is stale.
    CommitStale(BTreeSet<(String, Rev)>),
}

#[derive(Default)]
struct Model {
    blocks: BTreeMap<BlockId, ModelBlock>,
}

impl Model {
    fn latest(&self, b: &BlockId) -> Option<(Rev, Option<Block>)> {
        self.blocks
            .get(b)?
            .committed
            .iter()
            .next_back()
            .map(|(r, (_, _, blk))| (*r, blk.clone()))
    }

    fn missing(&self, b: &BlockId, from: Rev) -> BTreeSet<(String, Rev)> {
        self.blocks.get(b).map_or_else(BTreeSet::new, |m| {
            m.committed
                .range(from..)
                .map(|(r, (t, _, _))| (t.to_string(), *r))
                .collect()
        })
    }

    /// A pend's checks on block `b`: the other transactions pending there, and
    /// whether it is behind, fails, repeats an identical pend or goes ahead (with
    /// the block it would materialize).
    fn check_pend(&self, req: &PendRequest, b: &BlockId) -> (Vec<(String, String)>, PendCheck) {
        let t = req.transforms.for_block(b);
        let mb = self.blocks.get(b).cloned().unwrap_or_default();
        let others = mb
            .pending
            .keys()
            .filter(|k| **k != req.trx_id)
            .map(|k| (b.to_string(), k.to_string()))
            .collect();
        let latest = self.latest(b);
        let checks_rev = req.rev.is_some() || t.insert.is_some();
        if checks_rev
            && latest
                .as_ref()
                .is_some_and(|(r, _)| *r >= req.rev.unwrap_or(0))
        {
            return (
                others,
                PendCheck::Missing(self.missing(b, req.rev.unwrap_or(0))),
            );
        }
        let check = match mb.pending.get(&req.trx_id) {
            Some(existing) if *existing == t => PendCheck::Repeat,
            Some(_) => PendCheck::Error,
            None => match apply_transform(b, latest.and_then(|l| l.1).as_ref(), &t) {
                Err(_) => PendCheck::Error,
                Ok(blk) => PendCheck::Ok(blk),
            },
        };
        (others, check)
    }

    fn pend(&mut self, req: &PendRequest) -> Outcome {
        let mut missing = BTreeSet::new();
        let mut pending = BTreeSet::new();
        let mut error = false;
        let mut writes = vec![];
        for b in req.transforms.block_ids() {
            let (others, check) = self.check_pend(req, &b);
            pending.extend(others);
            match check {
                PendCheck::Missing(m) => missing.extend(m),
                PendCheck::Error => error = true,
                PendCheck::Repeat => {}
                PendCheck::Ok(_) => writes.push((b.clone(), req.transforms.for_block(&b))),
            }
        }
        if let Some(refused) = pend_refusal(missing, error, pending, req.policy) {
            return refused;
        }
        for (b, t) in writes {
            self.blocks
                .entry(b)
                .or_default()
                .pending
                .insert(req.trx_id.clone(), t);
        }
        Outcome::Ok
    }

    fn commit(&mut self, trx: &TrxId, ids: &BTreeSet<BlockId>, rev: Rev) -> Outcome {
        let mut missing = BTreeSet::new();
        let mut error = false;
        let mut writes = vec![];
        for b in ids {
            let mb = self.blocks.get(b).cloned().unwrap_or_default();
            let latest = self.latest(b);
            if let Some((lr, _)) = &latest {
                if *lr >= rev {
                    if mb.committed.get(&rev).map(|c| &c.0) != Some(trx) {
                        missing.extend(self.missing(b, rev));
                    }
                    continue;
                }
            }
            let Some(t) = mb.pending.get(trx) else {
                error = true;
                continue;
            };
            match apply_transform(b, latest.and_then(|l| l.1).as_ref(), t) {
                // A transaction commits a block once (the same records again are a
                // harmless repeat).
                Ok(blk) if reused(&mb, trx, t, &blk) => error = true,
                Ok(blk) => writes.push((b.clone(), t.clone(), blk)),
                Err(_) => error = true,
            }
        }
        if !missing.is_empty() {
            return Outcome::Stale(missing, BTreeSet::new());
        }
        if error {
            return Outcome::Error;
        }
        for (b, t, blk) in writes {
            let mb = self.blocks.entry(b).or_default();
            mb.pending.remove(trx);
            mb.committed.insert(rev, (trx.clone(), t, blk));
        }
        Outcome::Ok
    }

    /// pendCommit: per block, nothing to do when (trx, rev) is already committed;
    /// otherwise the pend's checks, then the commit's stale check. The pend's
    /// staleness wins, then errors, then the policy, then the commit's staleness;
    /// anything short of success writes nothing.
    fn pend_commit(&mut self, req: &PendRequest, rev: Rev) -> Outcome {
        let trx = &req.trx_id;
        let (mut missing, mut commit_missing) = (BTreeSet::new(), BTreeSet::new());
        let mut pending = BTreeSet::new();
        let mut error = false;
        let mut writes = vec![];
        for b in req.transforms.block_ids() {
            let t = req.transforms.for_block(&b);
            let mb = self.blocks.get(&b).cloned().unwrap_or_default();
            let latest = self.latest(&b);
            let past = latest.as_ref().is_some_and(|(r, _)| *r >= rev);
            if past && mb.committed.get(&rev).map(|c| &c.0) == Some(trx) {
                continue;
            }
            let (others, check) = self.check_pend(req, &b);
            let blocked = !others.is_empty() && req.policy != PendPolicy::Continue;
            pending.extend(others);
            let blk = match check {
                PendCheck::Missing(m) => {
                    missing.extend(m);
                    continue;
                }
                PendCheck::Error => {
                    error = true;
                    continue;
                }
                PendCheck::Ok(blk) => blk,
                // Already pending: committing it applies it now.
                PendCheck::Repeat => {
                    let t = req.transforms.for_block(&b);
                    let latest = self.latest(&b).and_then(|l| l.1);
                    let Ok(blk) = apply_transform(&b, latest.as_ref(), &t) else {
                        error = true;
                        continue;
                    };
                    blk
                }
            };
            if blocked {
                continue;
            }
            if past {
                commit_missing.extend(self.missing(&b, rev));
                continue;
            }
            if reused(&mb, trx, &t, &blk) {
                error = true;
                continue;
            }
            writes.push((b, t, blk));
        }
        if let Some(refused) = pend_refusal(missing, error, pending, req.policy) {
            return refused;
        }
        if !commit_missing.is_empty() {
            return Outcome::CommitStale(commit_missing);
        }
        for (b, t, blk) in writes {
            let mb = self.blocks.entry(b).or_default();
            mb.pending.remove(trx);
            mb.committed.insert(rev, (trx.clone(), t, blk));
        }
        Outcome::Ok
    }

    fn cancel(&mut self, trx: &TrxId, ids: &[BlockId]) -> Outcome {
        for b in ids {
            if let Some(mb) = self.blocks.get_mut(b) {
                mb.pending.remove(trx);
            }
        }
        Outcome::Ok
    }

    fn get(&self, ids: &[BlockId], rev: Option<Rev>) -> Outcome {
        let mut out = BTreeMap::new();
        for b in ids {
            let mb = self.blocks.get(b).cloned().unwrap_or_default();
            let at = mb
                .committed
                .range(..=rev.unwrap_or(Rev::MAX))
                .next_back()
                .map(|(r, (_, _, blk))| {
                    (
                        blk.as_ref().map(|x| serde_json::to_value(x).unwrap()),
                        Some(*r),
                    )
                })
                .unwrap_or((None, None));
            out.insert(
                b.to_string(),
                (
                    at.0,
                    at.1,
                    mb.pending.keys().map(|k| k.to_string()).collect(),
                ),
            );
        }
        Outcome::Read(out)
    }
}

async fn run_repo(repo: &StorageRepo, op: &Op) -> Outcome {
    let ids = |v: &[usize]| v.iter().map(|i| bid(BLOCKS[*i])).collect::<Vec<_>>();
    match op {
        Op::Get(b, rev) => {
            let g = BlockGets {
                block_ids: ids(b),
                context: rev.map(|r| TrxContext {
                    committed: vec![],
                    rev: r,
                    trx_id: None,
                }),
                consistency: None,
            };
            match repo.get(g).await {
                Ok(r) => Outcome::Read(
                    r.into_iter()
                        .map(|(k, v)| {
                            let pend = v
                                .state
                                .pendings
                                .unwrap_or_default()
                                .into_iter()
                                .map(String::from)
                                .collect();
                            let blk = v.block.map(|x| serde_json::to_value(x).unwrap());
                            (k.to_string(), (blk, v.state.latest.map(|l| l.rev), pend))
                        })
                        .collect(),
                ),
                Err(_) => Outcome::Error,
            }
        }
        Op::Pend(t, changes, rev, policy) => {
            let req = pend_req(&format!("t{t}"), *rev, transforms(changes), *policy);
            match repo.pend(req).await {
                Ok(PendResult::Success(_)) => Outcome::Ok,
                Ok(PendResult::Stale(s)) => stale_outcome(s),
                Err(_) => Outcome::Error,
            }
        }
        Op::Commit(t, b, rev) => {
            let req = CommitRequest {
                trx_id: tid(&format!("t{t}")),
                block_ids: ids(b),
                rev: *rev,
                header_id: None,
                tail_id: None,
            };
            match repo.commit(req).await {
                Ok(CommitResult::Success) => Outcome::Ok,
                Ok(CommitResult::Stale(s)) => stale_outcome(s),
                Err(_) => Outcome::Error,
            }
        }
        Op::PendCommit(t, changes, pend_rev, policy, rev) => {
            let pend = pend_req(&format!("t{t}"), *pend_rev, transforms(changes), *policy);
            let commit = CommitRequest {
                trx_id: pend.trx_id.clone(),
                block_ids: pend.transforms.block_ids().into_iter().collect(),
                rev: *rev,
                header_id: None,
                tail_id: None,
            };
            match repo.pend_commit(PendCommitRequest { pend, commit }).await {
                Ok(PendCommitResult {
                    pend: PendResult::Stale(s),
                    ..
                }) => stale_outcome(s),
                Ok(PendCommitResult {
                    commit: Some(CommitResult::Success),
                    ..
                }) => Outcome::Ok,
                Ok(PendCommitResult {
                    commit: Some(CommitResult::Stale(s)),
                    ..
                }) => match stale_outcome(s) {
                    Outcome::Stale(missing, _) => Outcome::CommitStale(missing),
                    other => other,
                },
                Ok(PendCommitResult { commit: None, .. }) | Err(_) => Outcome::Error,
            }
        }
        Op::Cancel(t, b) => match repo
            .cancel(TrxBlocks {
                trx_id: tid(&format!("t{t}")),
                block_ids: ids(b),
            })
            .await
        {
            Ok(()) => Outcome::Ok,
            Err(_) => Outcome::Error,
        },
    }
}

fn stale_outcome(s: StaleFailure) -> Outcome {
    Outcome::Stale(
        s.missing
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.trx_id.to_string(), m.rev.unwrap_or(0)))
            .collect(),
        s.pending
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.block_id.to_string(), p.trx_id.to_string()))
            .collect(),
    )
}

fn run_model(model: &mut Model, op: &Op) -> Outcome {
    let ids = |v: &[usize]| v.iter().map(|i| bid(BLOCKS[*i])).collect::<Vec<_>>();
    match op {
        Op::Get(b, rev) => model.get(&ids(b), *rev),
        Op::Pend(t, changes, rev, policy) => model.pend(&pend_req(
            &format!("t{t}"),
            *rev,
            transforms(changes),
            *policy,
        )),
        Op::Commit(t, b, rev) => {
            model.commit(&tid(&format!("t{t}")), &ids(b).into_iter().collect(), *rev)
        }
        Op::Cancel(t, b) => model.cancel(&tid(&format!("t{t}")), &ids(b)),
        Op::PendCommit(t, changes, pend_rev, policy, rev) => model.pend_commit(
            &pend_req(&format!("t{t}"), *pend_rev, transforms(changes), *policy),
            *rev,
        ),
    }
}

fn check(kind: StorageKind, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    actix_rt::System::new().block_on(async {
        let repo = repo(kind, dir.path());
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let got = run_repo(&repo, op).await;
            let want = run_model(&mut model, op);
            prop_assert_eq!(&got, &want, "{} step {}: {:?}", kind, i, op);
        }
        repo.registry().shutdown();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn repo_agrees_with_model_embedded(ops in proptest::collection::vec(op(), 1..40)) {
        check(StorageKind::Embedded, &ops)?;
    }

    #[test]
    fn repo_agrees_with_model_file(ops in proptest::collection::vec(op(), 1..40)) {
        check(StorageKind::File, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn repo_agrees_with_model_memory(ops in proptest::collection::vec(op(), 1..60)) {
        check(StorageKind::Memory, &ops)?;
    }
}
