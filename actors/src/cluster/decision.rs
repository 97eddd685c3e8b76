//! The decision of a record, computed by every member from the same inputs: the
//! message and the approving promises' signed states (docs/CONSENSUS.md, "The
//! decided effect"). The coordinator sends one promise set in phase 2 and every
//! member's commit vote covers it, so every member that applies a record applies
//! the same thing, whatever its own pending set says.
//!
//! Per block, the **base** is the latest revision reported identically by at
//! least a threshold of the approvals: a majority holds it, so it is final. A
//! block without such a base is *diverged* (some member is behind, ahead or holds
//! another write at the same revision) and its operations are refused this time.
//! Per operation the verdict follows from the bases and from the union of the
//! approvals' pending transactions.

use std::collections::{BTreeMap, BTreeSet};

use super::canonical::digest;
use super::record::{ClusterRecord, States};
pub use crate::model::EffectKind;
use crate::model::{
    BlockId, OpOutcome, OpResult, PendPolicy, PendRequest, RepoOperation, Rev, TrxId, TrxRev,
};

/// What every member does with one operation of a decided record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it on the base, whatever this member's own pending set says.
    Apply,
    /// Its revision is taken on the base: nothing is written; the reply lists what
    /// the requester missed (or says it was already committed).
    Stale,
    /// A pend with policy `f` or `r` on blocks other transactions are pending on.
    Blocked,
    /// A commit of a transaction no approving member holds pending.
    NotPending,
    /// No threshold of approvals agrees on this block's latest revision.
    Diverged(BlockId),
}

/// The decision of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// One verdict per operation, in the message's order.
    pub verdicts: Vec<Verdict>,
    /// Each block's base (`None`: no revision) where a threshold agrees.
    pub bases: BTreeMap<BlockId, Option<TrxRev>>,
    /// Approving members holding each block's base (to restore from).
    pub holders: BTreeMap<BlockId, Vec<String>>,
    /// Each block's pending transactions, over all approvals, with the members
    /// reporting each (to fetch a transform from).
    pub pendings: BTreeMap<BlockId, BTreeMap<TrxId, Vec<String>>>,
}

impl Decision {
    /// Other transactions pending on `block`.
    pub fn others(&self, block: &BlockId, trx: &TrxId) -> Vec<TrxId> {
        self.pendings
            .get(block)
            .map(|p| p.keys().filter(|t| *t != trx).cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any operation is to be applied.
    pub fn applies(&self) -> bool {
        self.verdicts.contains(&Verdict::Apply)
    }
}

/// The decision of `record` for `threshold` approvals.
pub fn decide(record: &ClusterRecord, threshold: usize) -> Decision {
    decide_states(
        &record.message.operations,
        &record.states(),
        threshold.max(1),
    )
}

/// [`decide`] over the approvals' states by member.
pub fn decide_states(
    ops: &[RepoOperation],
    states: &BTreeMap<&str, &States>,
    threshold: usize,
) -> Decision {
    let mut d = Decision::default();
    let blocks: BTreeSet<&BlockId> = states.values().flat_map(|s| s.keys()).collect();
    for block in blocks {
        let mut by_latest: BTreeMap<Option<&TrxRev>, Vec<String>> = BTreeMap::new();
        for (peer, s) in states {
            if let Some(bs) = s.get(block) {
                by_latest
                    .entry(bs.latest.as_ref())
                    .or_default()
                    .push((*peer).to_string());
                for trx in &bs.pendings {
                    d.pendings
                        .entry(block.clone())
                        .or_default()
                        .entry(trx.clone())
                        .or_default()
                        .push((*peer).to_string());
                }
            }
        }
        if let Some((latest, holders)) = by_latest.into_iter().find(|(_, h)| h.len() >= threshold) {
            d.bases.insert(block.clone(), latest.cloned());
            d.holders.insert(block.clone(), holders);
        }
    }
    d.verdicts = ops.iter().map(|op| verdict(&d, op)).collect();
    d
}

fn verdict(d: &Decision, op: &RepoOperation) -> Verdict {
    let blocks = super::operation_blocks(op);
    if let Some(b) = blocks.iter().find(|b| !d.bases.contains_key(*b)) {
        if !matches!(op, RepoOperation::Cancel(_)) {
            return Verdict::Diverged(b.clone());
        }
    }
    let base_rev = |b: &BlockId| d.bases.get(b).cloned().flatten().map(|l| l.rev);
    let taken = |b: &BlockId, rev: Rev| base_rev(b).is_some_and(|l| l >= rev);
    match op {
        RepoOperation::Pend(p) => pend_verdict(d, p).unwrap_or(Verdict::Apply),
        RepoOperation::Commit(c) => {
            if c.block_ids.iter().any(|b| taken(b, c.rev)) {
                Verdict::Stale
            } else if c
                .block_ids
                .iter()
                .any(|b| !d.pendings.get(b).is_some_and(|p| p.contains_key(&c.trx_id)))
            {
                Verdict::NotPending
            } else {
                Verdict::Apply
            }
        }
        RepoOperation::PendCommit(pc) => {
            // Already committed (a repeat) or pend stale: both read-only.
            if pc.commit.block_ids.iter().any(|b| taken(b, pc.commit.rev)) {
                return Verdict::Stale;
            }
            pend_verdict(d, &pc.pend).unwrap_or(Verdict::Apply)
        }
        RepoOperation::Cancel(_) => Verdict::Apply,
        // Reads are never agreed; a record carrying one applies it as a read.
        RepoOperation::Get(_) => Verdict::Stale,
    }
}

/// A pend's verdict when it does not go ahead: stale (DESIGN §4: a `rev`, or an
/// insert, at or below a block's latest) or blocked by the policy.
fn pend_verdict(d: &Decision, p: &PendRequest) -> Option<Verdict> {
    let blocks = p.transforms.block_ids();
    let stale = blocks.iter().any(|b| {
        let inserts = p
            .transforms
            .inserts
            .as_ref()
            .is_some_and(|i| i.contains_key(b));
        let latest = d.bases.get(b).cloned().flatten().map(|l| l.rev);
        (p.rev.is_some() || inserts) && latest.is_some_and(|l| l >= p.rev.unwrap_or(0))
    });
    if stale {
        return Some(Verdict::Stale);
    }
    let others = blocks.iter().any(|b| !d.others(b, &p.trx_id).is_empty());
    (others && p.policy != PendPolicy::Continue).then_some(Verdict::Blocked)
}

/// The digest of an effect (what each operation did, in order), as the commit
/// payload covers it.
pub fn effect(kinds: &[EffectKind]) -> String {
    digest(&kinds)
}

/// A refusal of `op` with `reason`, as its result type says it.
pub fn refusal(op: &RepoOperation, reason: &str) -> OpResult {
    use crate::model::{CommitResult, PendCommitResult, PendResult, StaleFailure};
    let stale = || StaleFailure {
        reason: Some(reason.to_string()),
        missing: None,
        pending: None,
    };
    match op {
        RepoOperation::Pend(_) => OpResult::Pend(PendResult::Stale(stale())),
        RepoOperation::PendCommit(_) => OpResult::PendCommit(PendCommitResult {
            pend: PendResult::Stale(stale()),
            commit: None,
        }),
        _ => OpResult::Commit(CommitResult::Stale(stale())),
    }
}

/// A pend refused by its policy: the transactions pending on its blocks, with
/// the transforms `lookup` finds for policy `r`.
pub fn blocked(
    d: &Decision,
    op: &RepoOperation,
    lookup: impl Fn(&BlockId, &TrxId) -> Option<crate::model::Transform>,
) -> OpResult {
    use crate::model::{PendCommitResult, PendResult, StaleFailure, TrxPending};
    let pend = match op {
        RepoOperation::Pend(p) => p,
        RepoOperation::PendCommit(pc) => &pc.pend,
        other => return refusal(other, "blocked by pending transactions"),
    };
    let pending = pend
        .transforms
        .block_ids()
        .into_iter()
        .flat_map(|b| {
            let others = d.others(&b, &pend.trx_id);
            others
                .into_iter()
                .map(|t| TrxPending {
                    transform: (pend.policy == PendPolicy::Return)
                        .then(|| lookup(&b, &t))
                        .flatten(),
                    block_id: b.clone(),
                    trx_id: t,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let failure = PendResult::Stale(StaleFailure {
        reason: Some("blocked by pending transactions".into()),
        missing: None,
        pending: Some(pending),
    });
    match op {
        RepoOperation::PendCommit(_) => OpResult::PendCommit(PendCommitResult {
            pend: failure,
            commit: None,
        }),
        _ => OpResult::Pend(failure),
    }
}

/// The outcome of `op` as the members' agreed `kind` and the decision imply it,
/// for a coordinator whose own copy did not take part (its details — `missing`
/// lists, pending transforms — are then left out).
pub fn implied_outcome(
    d: &Decision,
    op: &RepoOperation,
    verdict: &Verdict,
    kind: &EffectKind,
) -> OpOutcome {
    use crate::model::{ErrorCode, Failure};
    match kind {
        EffectKind::Ok => implied_success(d, op)
            .ok_or_else(|| Failure::new(ErrorCode::Invalid, "a read is not agreed by the cluster")),
        EffectKind::Refused => Ok(match verdict {
            Verdict::Blocked => blocked(d, op, |_, _| None),
            Verdict::Diverged(b) => refusal(
                op,
                &format!("replicas of block {b} disagree; they are being repaired, retry"),
            ),
            _ => refusal(op, "stale: a newer revision is committed"),
        }),
        EffectKind::Failed(code) => Err(Failure::new(
            ErrorCode::parse(code),
            format!("the cluster's members failed this {}: {code}", op.name()),
        )),
    }
}

/// A success result for `op`, as the decision implies it (for a coordinator that
/// has no local outcome of its own to answer with).
pub fn implied_success(d: &Decision, op: &RepoOperation) -> Option<OpResult> {
    use crate::model::{CommitResult, PendCommitResult, PendResult, PendSuccess, TrxPending};
    let pend_success = |p: &PendRequest| {
        let blocks = p.transforms.block_ids();
        let pending = blocks
            .iter()
            .flat_map(|b| {
                d.others(b, &p.trx_id).into_iter().map(|t| TrxPending {
                    block_id: b.clone(),
                    trx_id: t,
                    transform: None,
                })
            })
            .collect();
        PendResult::Success(PendSuccess {
            pending,
            block_ids: blocks.into_iter().collect(),
        })
    };
    Some(match op {
        RepoOperation::Pend(p) => OpResult::Pend(pend_success(p)),
        RepoOperation::Commit(_) => OpResult::Commit(CommitResult::Success),
        RepoOperation::PendCommit(pc) => OpResult::PendCommit(PendCommitResult {
            pend: pend_success(&pc.pend),
            commit: Some(CommitResult::Success),
        }),
        RepoOperation::Cancel(_) => OpResult::Cancel,
        RepoOperation::Get(_) => return None,
    })
}

#[cfg(test)]
mod tests;
