//! Applying a decided record on this member's copy (docs/CONSENSUS.md, "The
//! decided effect"): bring each block to the decided base first, then run every
//! operation as its verdict says, and report the effect the commit vote signs.
//!
//! A copy that holds another write than the base fences instead (it will never
//! apply this record); a copy that is behind and cannot be brought to the base
//! now waits and tries again, its blocks still reserved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::directory::MemberDirectory;
use super::ClusterError;
use crate::cluster::catchup::{BaseCheck, PeerAddrs};
use crate::cluster::decision::{blocked, implied_success, refusal, Decision, EffectKind, Verdict};
use crate::cluster::operation_blocks;
use crate::cluster::record::ClusterRecord;
use crate::model::{
    BlockId, ConfigChange, ErrorCode, Failure, OpOutcome, OpResult, PendCommitRequest, PendPolicy,
    PendRequest, RegionView, RepoOperation,
};

/// What applying a decision came to on this member.
pub(super) enum Applied {
    /// Done: the outcome of each operation and what each did, to sign.
    Done {
        /// One per operation.
        outcomes: Vec<OpOutcome>,
        /// Their kinds.
        effect: Vec<EffectKind>,
    },
    /// This copy holds another write than the decided base: never apply (fence).
    Fence(String),
    /// This copy is behind the base of this block and no holder brought it there
    /// yet.
    Behind(#[allow(dead_code)] BlockId),
    /// Storage could not take it now (a configuration change): tried again.
    Unwritten,
}

impl MemberDirectory {
    /// Applies `record`'s decision on this copy.
    /// `again`: this member may have applied it before (it was resumed from disk,
    /// or is retrying); only then is its storage searched for the effect.
    pub(super) async fn apply(
        self: &Arc<Self>,
        record: &ClusterRecord,
        d: &Decision,
        again: bool,
    ) -> Applied {
        if let Some(change) = &record.message.change {
            return self.apply_change(record, change).await;
        }
        let ops = &record.message.operations;
        // Parsed only for the peers a catch-up or fetch asks.
        let peers_of = |ids: &[String]| -> Vec<PeerAddrs> {
            ids.iter()
                .filter_map(|id| Self::addrs_of_peer(record, id))
                .collect()
        };
        // Operations this copy applied already (it voted, then lost the lazily
        // written Committed state, and learns the decision again): their effect is
        // in storage, whatever happened to the blocks since; never run again.
        // A pend whose transaction was cancelled here since is not run either
        // (it would leave pending what the cluster cancelled); it is reported
        // as not applied, so this copy never counts toward a majority holding
        // it.
        let cancelled: Vec<bool> = ops
            .iter()
            .zip(&d.verdicts)
            .map(|(op, v)| *v == Verdict::Apply && self.cancelled_since(op))
            .collect();
        let done: Vec<bool> = ops
            .iter()
            .zip(&d.verdicts)
            .zip(&cancelled)
            .map(|((op, v), c)| *c || (again && *v == Verdict::Apply && self.already_applied(op)))
            .collect();
        // The base of every block an applied or read-only operation touches.
        let mut bases: BTreeMap<BlockId, BaseCheck> = BTreeMap::new();
        for ((op, v), done) in ops.iter().zip(&d.verdicts).zip(&done) {
            if !matches!(v, Verdict::Apply | Verdict::Stale)
                || matches!(op, RepoOperation::Cancel(_))
                || *done
            {
                continue;
            }
            for b in operation_blocks(op) {
                if bases.contains_key(&b) {
                    continue;
                }
                let base = d.bases.get(&b).cloned().flatten();
                // The members that reported the base first, then the record's
                // other members: a holder may be gone for good (retired,
                // replaced), and another member may hold the base by now.
                let holders = || {
                    let first = d.holders.get(&b).map_or(&[][..], Vec::as_slice);
                    let rest: Vec<String> = record
                        .peers
                        .keys()
                        .filter(|id| !first.contains(*id))
                        .cloned()
                        .collect();
                    let mut all = peers_of(first);
                    all.extend(peers_of(&rest));
                    all
                };
                let check = match self.catch_up.get() {
                    Some(c) => c.reach_base(&b, &base, holders).await,
                    None => local_check(self, &b, &base),
                };
                bases.insert(b, check);
            }
        }
        // A copy that holds another write than a majority does: repaired in the
        // background once the majority's write is final (see CatchUp::repair).
        let conflicts: Vec<BlockId> = bases
            .iter()
            .filter(|(_, c)| **c == BaseCheck::Conflict)
            .map(|(b, _)| b.clone())
            .collect();
        if !conflicts.is_empty() {
            self.fresh.forget(&conflicts);
            if let Some(cu) = self.catch_up.get().cloned() {
                actix_rt::spawn(async move {
                    cu.repair(&conflicts).await;
                });
            }
        }
        for ((op, v), done) in ops.iter().zip(&d.verdicts).zip(&done) {
            if *v != Verdict::Apply || matches!(op, RepoOperation::Cancel(_)) || *done {
                continue;
            }
            for b in operation_blocks(op) {
                match bases.get(&b) {
                    Some(BaseCheck::Conflict) => {
                        return Applied::Fence(format!(
                        "fenced: this copy of block {b} holds another write than the decided base"
                    ))
                    }
                    Some(BaseCheck::Behind) => return Applied::Behind(b),
                    _ => {}
                }
            }
        }
        // Transforms of agreed commits whose pend this copy missed, from a member
        // that holds them.
        let mut fetched: BTreeMap<usize, BTreeMap<BlockId, crate::model::Transform>> =
            BTreeMap::new();
        let raw = self.repo.registry().raw().clone();
        for (i, (op, v)) in ops.iter().zip(&d.verdicts).enumerate() {
            let (RepoOperation::Commit(c), Verdict::Apply, false) = (op, v, done[i]) else {
                continue;
            };
            for b in &c.block_ids {
                if raw.get_pending(b, &c.trx_id).ok().flatten().is_some() {
                    continue;
                }
                let ids = d
                    .pendings
                    .get(b)
                    .and_then(|p| p.get(&c.trx_id))
                    .map_or(&[][..], Vec::as_slice);
                let t = match self.catch_up.get() {
                    Some(cu) => cu.fetch_pending(b, &c.trx_id, &peers_of(ids)).await,
                    None => None,
                };
                match t {
                    Some(t) => {
                        fetched.entry(i).or_default().insert(b.clone(), t);
                    }
                    None => return Applied::Behind(b.clone()),
                }
            }
        }
        let at_base = |op: &RepoOperation| {
            operation_blocks(op)
                .iter()
                .all(|b| bases.get(b) == Some(&BaseCheck::Equal))
        };
        let sets: Vec<BTreeSet<BlockId>> = ops.iter().map(operation_blocks).collect();
        let mut seen = BTreeSet::new();
        let disjoint = sets.iter().flatten().all(|b| seen.insert(b));
        let run = |(i, (op, v)): (usize, (&RepoOperation, &Verdict))| {
            let ready = at_base(op);
            let (op, v) = (op.clone(), v.clone());
            let transforms = fetched.get(&i).cloned().unwrap_or_default();
            let (done, cancelled) = (done[i], cancelled[i]);
            async move {
                if cancelled {
                    return Err(Failure::new(
                        ErrorCode::NotPending,
                        "this transaction was cancelled on this member before this pend reached it",
                    ));
                }
                if done {
                    return implied_success(d, &op).ok_or_else(|| {
                        Failure::new(ErrorCode::Invalid, "a read is not agreed by the cluster")
                    });
                }
                self.run_one(op, v, d, ready, transforms).await
            }
        };
        let outcomes: Vec<OpOutcome> = if disjoint {
            futures::future::join_all(ops.iter().zip(&d.verdicts).enumerate().map(run)).await
        } else {
            let mut out = Vec::with_capacity(ops.len());
            for pair in ops.iter().zip(&d.verdicts).enumerate() {
                out.push(run(pair).await);
            }
            out
        };
        Applied::Done {
            effect: outcomes.iter().map(EffectKind::of).collect(),
            outcomes,
        }
    }

    /// One operation as its verdict says. `ready`: this copy is at the base of
    /// every block the operation touches.
    async fn run_one(
        &self,
        op: RepoOperation,
        v: Verdict,
        d: &Decision,
        ready: bool,
        transforms: BTreeMap<BlockId, crate::model::Transform>,
    ) -> OpOutcome {
        let repo = &self.repo;
        let outcome = match (v, op) {
            (Verdict::Apply, RepoOperation::Pend(p)) => {
                repo.pend_agreed(p).await.map(OpResult::Pend)
            }
            (Verdict::Apply, RepoOperation::Commit(c)) if transforms.is_empty() => {
                repo.commit(c).await.map(OpResult::Commit)
            }
            (Verdict::Apply, RepoOperation::Commit(c)) => {
                repo.commit_with(c, transforms).await.map(OpResult::Commit)
            }
            (Verdict::Apply, RepoOperation::PendCommit(pc)) => repo
                .pend_commit(continuing(pc))
                .await
                .map(OpResult::PendCommit),
            (Verdict::Apply, RepoOperation::Cancel(c)) => {
                repo.cancel(c.trx_ref).await.map(|()| OpResult::Cancel)
            }
            // Read-only by construction on the base: a taken revision writes
            // nothing (and tells "already committed" from stale).
            (Verdict::Stale, op) if ready => match op {
                RepoOperation::Pend(p) => repo
                    .pend(PendRequest {
                        policy: PendPolicy::Continue,
                        ..p
                    })
                    .await
                    .map(OpResult::Pend),
                RepoOperation::PendCommit(pc) => repo
                    .pend_commit(continuing(pc))
                    .await
                    .map(OpResult::PendCommit),
                op => op.run(repo).await,
            },
            (Verdict::Stale, op) => {
                return Ok(refusal(&op, "stale: a newer revision is committed"))
            }
            (Verdict::Blocked, op) => return Ok(blocked_here(self, &op, d)),
            (Verdict::NotPending, op) => {
                return Err(Failure::new(
                    ErrorCode::NotPending,
                    format!(
                        "no member of the cluster holds the transaction of this {} pending",
                        op.name()
                    ),
                ))
            }
            (Verdict::Diverged(b), op) => {
                return Ok(refusal(
                    &op,
                    &format!("replicas of block {b} disagree; they are being repaired, retry"),
                ))
            }
            (_, RepoOperation::Get(g)) => repo.get(g).await.map(OpResult::Get),
        };
        outcome.map_err(|e| e.to_failure())
    }
}

impl MemberDirectory {
    /// Takes a change this member fenced, from a record proving that a joint
    /// majority applied it (docs/CONSENSUS.md, "A member that missed a change"):
    /// its outcome is commit, so this member's fence changed nothing, and holding
    /// `from` would only leave it out of step with the others. The change's rules
    /// hold as for any application: this member must hold `from` (or be joining).
    pub(super) async fn apply_proven_change(
        &self,
        record: &ClusterRecord,
        change: &ConfigChange,
    ) -> Result<(), ClusterError> {
        match self.apply_change(record, change).await {
            Applied::Done { .. } => {
                tracing::info!(hash = %record.message_hash, "applied a change this member had fenced, on proof a joint majority applied it");
                Ok(())
            }
            Applied::Fence(_) => {
                let t = self.configs.table();
                Err(ClusterError::WrongCluster(
                    change
                        .regions
                        .iter()
                        .map(|r| RegionView {
                            region: *r,
                            config: t.get(*r).cloned(),
                        })
                        .collect(),
                ))
            }
            Applied::Unwritten | Applied::Behind(_) => Err(ClusterError::Unavailable(
                "cannot persist the configuration change now".into(),
            )),
        }
    }

    /// Applies a configuration change: the regions move to the new configuration
    /// (durably), unless this member holds another one of them now (it then fences).
    async fn apply_change(&self, record: &ClusterRecord, change: &ConfigChange) -> Applied {
        let done = self.configs.table().still_to_take(change).is_empty();
        if !done {
            if self.configs.table().check_decided_change(change).is_err() {
                return Applied::Fence(
                    "fenced: this member holds another configuration of the change's regions"
                        .into(),
                );
            }
            for (id, p) in &record.peers {
                self.configs.note_peer(id, p.clone());
            }
            let written = match self.configs.apply(change) {
                Ok(w) => w.await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot persist a configuration change; retrying");
                return Applied::Unwritten;
            }
            tracing::info!(
                regions = change.regions.len(),
                epoch = change.to.epoch,
                members = ?change.to.members,
                "configuration changed"
            );
        }
        self.configs.changes().note(record);
        if let Some(peer) = change.retires() {
            let written = match self.configs.retire(peer) {
                Ok(Some(w)) => w.await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot persist a retired peer; retrying");
                return Applied::Unwritten;
            }
            tracing::info!(%peer, "peer retired by an agreed change");
        }
        Applied::Done {
            outcomes: Vec::new(),
            effect: Vec::new(),
        }
    }

    /// Whether `op` is a pend whose transaction this member cancelled on every
    /// one of its blocks.
    fn cancelled_since(&self, op: &RepoOperation) -> bool {
        match op {
            RepoOperation::Pend(p) => self
                .cancelled
                .covers(&p.trx_id, p.transforms.block_ids().iter()),
            _ => false,
        }
    }

    /// Whether `op`'s effect is in this copy's storage already: a pend pending or
    /// committed under its transaction on every block, a commit's revision held
    /// under its transaction.
    fn already_applied(&self, op: &RepoOperation) -> bool {
        let raw = self.repo.registry().raw();
        let committed = |c: &crate::model::CommitRequest| {
            c.block_ids
                .iter()
                .all(|b| raw.get_revision(b, c.rev).ok().flatten().as_ref() == Some(&c.trx_id))
        };
        match op {
            RepoOperation::Pend(p) => p.transforms.block_ids().iter().all(|b| {
                let mine = Some(p.transforms.for_block(b));
                raw.get_pending(b, &p.trx_id).ok().flatten() == mine
                    || raw.get_transaction(b, &p.trx_id).ok().flatten() == mine
            }),
            RepoOperation::Commit(c) => committed(c),
            RepoOperation::PendCommit(pc) => committed(&pc.commit),
            RepoOperation::Cancel(_) | RepoOperation::Get(_) => false,
        }
    }
}

/// The base check without a network (a node that never started one).
fn local_check(
    dir: &MemberDirectory,
    block: &BlockId,
    base: &Option<crate::model::TrxRev>,
) -> BaseCheck {
    let local = dir
        .repo
        .registry()
        .raw()
        .get_meta(block)
        .ok()
        .flatten()
        .and_then(|m| m.latest);
    match (&local, base) {
        (l, b) if l == b => BaseCheck::Equal,
        (Some(l), Some(b)) if l.rev < b.rev => BaseCheck::Behind,
        (None, Some(_)) => BaseCheck::Behind,
        _ => BaseCheck::Conflict,
    }
}

/// A pendCommit whose policy the cluster already decided.
fn continuing(pc: PendCommitRequest) -> PendCommitRequest {
    PendCommitRequest {
        pend: PendRequest {
            policy: PendPolicy::Continue,
            ..pc.pend
        },
        commit: pc.commit,
    }
}

/// A pend refused by its policy, with the pending transforms this copy holds.
fn blocked_here(dir: &MemberDirectory, op: &RepoOperation, d: &Decision) -> OpResult {
    let raw = dir.repo.registry().raw();
    blocked(d, op, |b, t| raw.get_pending(b, t).ok().flatten())
}
