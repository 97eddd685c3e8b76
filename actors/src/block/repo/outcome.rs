//! Replies from the blocks' answers: gathering their pending and missing
//! transactions, and a pend's or a commit's stale or successful outcome.

use std::collections::{BTreeMap, BTreeSet};

use crate::block::actor::Prepared;
use crate::model::{
    BlockId, PendPolicy, PendResult, PendSuccess, StaleFailure, TrxPending, TrxRev, TrxTransforms,
};

/// Collects the blocks' pending lists and merges their missing transactions by (trx, rev).
pub(super) fn gather(prepared: Vec<Prepared>) -> (Vec<TrxPending>, Vec<TrxTransforms>) {
    let mut pending = Vec::new();
    let mut missing: BTreeMap<(u64, TrxRev), TrxTransforms> = BTreeMap::new();
    for p in prepared {
        pending.extend(p.pending);
        for m in p.missing {
            let key = (
                m.rev.unwrap_or(0),
                TrxRev {
                    trx_id: m.trx_id.clone(),
                    rev: m.rev.unwrap_or(0),
                },
            );
            match missing.get_mut(&key) {
                Some(existing) => existing.transforms.merge(m.transforms),
                None => {
                    missing.insert(key, m);
                }
            }
        }
    }
    (pending, missing.into_values().collect())
}

/// A pend's answer from its blocks' answers: stale when any block is behind,
/// blocked when others are pending and the policy is not `c`, else success.
pub(super) fn pend_outcome(
    ids: BTreeSet<BlockId>,
    prepared: Vec<Prepared>,
    policy: PendPolicy,
) -> PendResult {
    let (pending, missing) = gather(prepared);
    if !missing.is_empty() {
        return PendResult::Stale(stale(missing, "stale: revisions committed since"));
    }
    if !pending.is_empty() && policy != PendPolicy::Continue {
        return PendResult::Stale(StaleFailure {
            reason: Some("blocked by pending transactions".into()),
            missing: None,
            pending: Some(pending),
        });
    }
    PendResult::Success(PendSuccess {
        pending,
        block_ids: ids.into_iter().collect(),
    })
}

pub(super) fn stale(missing: Vec<TrxTransforms>, reason: &str) -> StaleFailure {
    StaleFailure {
        reason: Some(reason.into()),
        missing: Some(missing),
        pending: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::{gather, pend_outcome, stale};
    use crate::block::actor::Prepared;
    use crate::model::{
        BlockId, PendPolicy, PendResult, PendSuccess, StaleFailure, Transforms, TrxId, TrxPending,
        TrxTransforms,
    };

    fn block(id: &str) -> BlockId {
        BlockId::new(id).unwrap()
    }

    fn trx(id: &str) -> TrxId {
        TrxId::new(id).unwrap()
    }

    /// Transaction `trx_id`, committed as `rev`, deleted `deleted`.
    fn missed(trx_id: &str, rev: u64, deleted: &str) -> TrxTransforms {
        TrxTransforms {
            trx_id: trx(trx_id),
            rev: Some(rev),
            transforms: Transforms {
                deletes: Some(vec![block(deleted)]),
                ..Transforms::default()
            },
        }
    }

    fn pending_on(block_id: &str, trx_id: &str) -> TrxPending {
        TrxPending {
            block_id: block(block_id),
            trx_id: trx(trx_id),
            transform: None,
        }
    }

    #[test]
    fn gather_merges_a_transaction_missed_on_several_blocks_and_sorts_by_revision() {
        let a = Prepared {
            missing: vec![missed("t2", 2, "a"), missed("t1", 1, "a")],
            ..Prepared::default()
        };
        let b = Prepared {
            pending: vec![pending_on("b", "p")],
            missing: vec![missed("t2", 2, "b")],
            ..Prepared::default()
        };
        let (pending, missing) = gather(vec![a, b]);
        assert_eq!(pending, vec![pending_on("b", "p")]);
        let revs: Vec<Option<u64>> = missing.iter().map(|m| m.rev).collect();
        assert_eq!(revs, [Some(1), Some(2)]);
        assert_eq!(
            missing[1].transforms.deletes,
            Some(vec![block("a"), block("b")])
        );
    }

    #[test]
    fn a_pend_is_stale_when_behind_blocked_by_others_unless_continue_else_a_success() {
        let ids = || BTreeSet::from([block("b"), block("a")]);
        let holding = || Prepared {
            pending: vec![pending_on("a", "p")],
            ..Prepared::default()
        };
        assert_eq!(
            pend_outcome(ids(), vec![holding()], PendPolicy::Fail),
            PendResult::Stale(StaleFailure {
                reason: Some("blocked by pending transactions".into()),
                missing: None,
                pending: Some(vec![pending_on("a", "p")]),
            })
        );
        assert_eq!(
            pend_outcome(ids(), vec![holding()], PendPolicy::Continue),
            PendResult::Success(PendSuccess {
                pending: vec![pending_on("a", "p")],
                block_ids: vec![block("a"), block("b")],
            })
        );
        let behind = Prepared {
            missing: vec![missed("t1", 1, "a")],
            ..holding()
        };
        assert_eq!(
            pend_outcome(ids(), vec![behind], PendPolicy::Continue),
            PendResult::Stale(StaleFailure {
                reason: Some("stale: revisions committed since".into()),
                missing: Some(vec![missed("t1", 1, "a")]),
                pending: None,
            })
        );
    }

    #[test]
    fn stale_reports_the_missing_transactions_with_the_reason() {
        assert_eq!(
            stale(vec![missed("t1", 1, "a")], "why"),
            StaleFailure {
                reason: Some("why".into()),
                missing: Some(vec![missed("t1", 1, "a")]),
                pending: None,
            }
        );
    }
}
