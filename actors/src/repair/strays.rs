//! Stray pending transactions (docs/CONSENSUS.md, "Stray pending transactions"):
//! pure. A member that missed a cancel — cut off while it was decided, and past
//! its coordinator's re-sends — keeps the transaction pending for good, and as a
//! pend with policy `f` counts what any approving member holds pending, that
//! one copy refuses such pends of the block whenever its promise is counted.
//!
//! A pending transaction is dropped here only when its pend is *settled* (its
//! record's deadline has passed, so whether a majority applied it can no longer
//! change) and more than `size - majority` of the configuration's other members
//! hold the block at this copy's latest revision without it: then fewer than a
//! majority hold it, whatever the members that did not answer hold, so no
//! acknowledged pend is lost — this copy is one that missed it.

use std::collections::BTreeMap;

use crate::cluster::majority;
use crate::model::{BlockHead, BlockId, TrxId, TrxRev};

/// The pending transactions of `mine` (this member's heads, in one
/// configuration of `size` members) that `answers` (the heads of the other
/// members that answered, one list each) show fewer than a majority hold.
/// `settled` tells a transaction whose pend can no longer be counted.
pub fn strays(
    mine: &[BlockHead],
    answers: &[Vec<BlockHead>],
    size: usize,
    settled: impl Fn(&BlockId, &TrxId) -> bool,
) -> Vec<(BlockId, TrxId)> {
    let indexed: Vec<BTreeMap<&BlockId, &BlockHead>> = answers
        .iter()
        .map(|heads| heads.iter().map(|h| (&h.block_id, h)).collect())
        .collect();
    // Non-holders needed: even if every member that did not answer holds it,
    // the holders stay short of a majority.
    let needed = size - majority(size) + 1;
    let mut out = Vec::new();
    for h in mine.iter().filter(|h| !h.pending.is_empty()) {
        for trx in h.pending.iter().filter(|t| settled(&h.block_id, t)) {
            let without = indexed
                .iter()
                .filter(|a| {
                    let (latest, pending): (Option<&TrxRev>, &[TrxId]) = match a.get(&h.block_id) {
                        Some(t) => (t.latest.as_ref(), &t.pending),
                        None => (None, &[]),
                    };
                    latest == h.latest.as_ref() && !pending.contains(trx)
                })
                .count();
            if without >= needed {
                out.push((h.block_id.clone(), trx.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn head(block: &str, rev: Option<u64>, pending: &[&str]) -> BlockHead {
        BlockHead {
            block_id: BlockId::new(block).unwrap(),
            latest: rev.map(|rev| TrxRev {
                trx_id: TrxId::new(format!("t{rev}")).unwrap(),
                rev,
            }),
            pending: pending.iter().map(|p| TrxId::new(*p).unwrap()).collect(),
        }
    }

    fn ids(v: Vec<(BlockId, TrxId)>) -> Vec<(String, String)> {
        v.into_iter()
            .map(|(b, t)| (b.as_str().to_string(), t.as_str().to_string()))
            .collect()
    }

    #[test]
    fn a_pending_only_this_copy_holds_is_a_stray_once_settled() {
        let mine = [head("b", Some(1), &["x"])];
        let both = [vec![head("b", Some(1), &[])], vec![head("b", Some(1), &[])]];
        assert_eq!(
            ids(strays(&mine, &both, 3, |_, _| true)),
            vec![("b".into(), "x".into())]
        );
        // Not yet settled: its pend may still be counted.
        assert!(strays(&mine, &both, 3, |_, _| false).is_empty());
    }

    #[test]
    fn one_answer_of_two_cannot_rule_out_a_majority() {
        let mine = [head("b", Some(1), &["x"])];
        // The silent member may hold it: with this copy, that is a majority.
        assert!(strays(&mine, &[vec![head("b", Some(1), &[])]], 3, |_, _| true).is_empty());
        // Another member holds it: a majority does.
        let one_holds = [
            vec![head("b", Some(1), &[])],
            vec![head("b", Some(1), &["x"])],
        ];
        assert!(strays(&mine, &one_holds, 3, |_, _| true).is_empty());
    }

    #[test]
    fn only_members_at_this_copys_revision_count() {
        let mine = [head("b", Some(1), &["x"])];
        // Ahead (it may have committed x) or behind (it may not have the pend
        // yet): neither tells.
        let elsewhere = [vec![head("b", Some(2), &[])], vec![head("b", None, &[])]];
        assert!(strays(&mine, &elsewhere, 3, |_, _| true).is_empty());
        // A block with no committed revision yet: members without any copy of
        // it count as holding none.
        let fresh = [head("n", None, &["ins"])];
        assert_eq!(
            ids(strays(&fresh, &[vec![], vec![]], 3, |_, _| true)),
            vec![("n".into(), "ins".into())]
        );
    }

    #[test]
    fn in_five_three_others_must_lack_it() {
        let mine = [head("b", Some(4), &["x"])];
        let without = || vec![head("b", Some(4), &[])];
        assert!(strays(&mine, &[without(), without()], 5, |_, _| true).is_empty());
        assert_eq!(
            strays(&mine, &[without(), without(), without()], 5, |_, _| true).len(),
            1
        );
    }
}
