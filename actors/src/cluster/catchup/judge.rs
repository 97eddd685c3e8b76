//! The verdict of comparing a copy of a block with its cluster: a majority
//! reporting one latest revision decides, pure of any I/O.

use std::collections::BTreeMap;

use libp2p::PeerId;

use crate::cluster::majority;
use crate::model::TrxRev;

/// What a comparison of a block with its cluster concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Too few answered, or no majority reported one latest revision.
    NoMajority,
    /// A majority agrees with this copy (or holds it).
    Settled,
    /// This copy is ahead of the majority: its extra writes may still be
    /// decided, so there is nothing to repair yet.
    Ahead,
    /// A majority holds no revision of a block this copy holds.
    MajorityEmpty,
    /// A majority (`holders`) holds `target`, which this copy is behind or
    /// diverged from: final, so this copy moves to it.
    Move {
        target: TrxRev,
        holders: Vec<PeerId>,
    },
}

/// Judges a copy at `local` against its cluster of `size` members: the
/// reports of the peers that answered and, when this node is a member, its
/// own (`mine`). A majority reporting one latest revision decides; a write
/// this copy holds at or below it under another transaction can no longer
/// reach a majority (they are past it).
pub(super) fn judge(
    local: &Option<TrxRev>,
    mine: Option<(PeerId, Option<TrxRev>)>,
    size: usize,
    reports: impl IntoIterator<Item = (PeerId, Option<TrxRev>)>,
) -> Verdict {
    let me = mine.as_ref().map(|(p, _)| *p);
    let mut by_latest: BTreeMap<Option<TrxRev>, Vec<PeerId>> = BTreeMap::new();
    for (peer, latest) in mine.into_iter().chain(reports) {
        by_latest.entry(latest).or_default().push(peer);
    }
    let need = majority(size);
    let Some((target, holders)) = by_latest.into_iter().find(|(_, h)| h.len() >= need) else {
        return Verdict::NoMajority;
    };
    if target == *local || me.is_some_and(|m| holders.contains(&m)) {
        return Verdict::Settled;
    }
    match (local, target) {
        (Some(l), Some(t)) if l.rev > t.rev => Verdict::Ahead,
        (_, Some(target)) => Verdict::Move { target, holders },
        (_, None) => Verdict::MajorityEmpty,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::TrxId;

    fn at(trx: &str, rev: u64) -> Option<TrxRev> {
        Some(TrxRev {
            trx_id: TrxId::new(trx).unwrap(),
            rev,
        })
    }

    fn peers() -> [PeerId; 3] {
        [PeerId::random(), PeerId::random(), PeerId::random()]
    }

    #[test]
    fn a_majority_at_this_copy_settles_it() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t1", 1)), (c, at("t2", 2))],
        );
        assert_eq!(v, Verdict::Settled);
    }

    #[test]
    fn a_copy_behind_a_majority_moves_to_it_from_the_holders() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t2", 2)), (c, at("t2", 2))],
        );
        assert_eq!(
            v,
            Verdict::Move {
                target: at("t2", 2).unwrap(),
                holders: vec![b, c]
            }
        );
    }

    #[test]
    fn a_copy_with_another_write_at_the_majoritys_revision_is_repaired() {
        let [me, b, c] = peers();
        let v = judge(
            &at("mine", 2),
            Some((me, at("mine", 2))),
            3,
            [(b, at("theirs", 2)), (c, at("theirs", 2))],
        );
        assert!(matches!(v, Verdict::Move { target, .. } if target == at("theirs", 2).unwrap()));
    }

    #[test]
    fn a_copy_ahead_of_the_majority_is_left_alone() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t3", 3),
            Some((me, at("t3", 3))),
            3,
            [(b, at("t2", 2)), (c, at("t2", 2))],
        );
        assert_eq!(v, Verdict::Ahead);
    }

    #[test]
    fn too_few_answers_or_a_split_settle_nothing() {
        let [me, b, c] = peers();
        let only_one = judge(&None, Some((me, None)), 3, [(b, at("t1", 1))]);
        assert_eq!(only_one, Verdict::NoMajority);
        let split = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t2", 2)), (c, at("t3", 3))],
        );
        assert_eq!(split, Verdict::NoMajority);
    }

    #[test]
    fn a_non_member_counts_only_the_members_reports() {
        let [b, c, d] = peers();
        // Two of three members report t1@1: a majority without this node.
        let v = judge(
            &None,
            None,
            3,
            [(b, at("t1", 1)), (c, at("t1", 1)), (d, None)],
        );
        assert!(matches!(v, Verdict::Move { .. }));
        // One report is not a majority of three, whatever this copy holds.
        let v = judge(&at("t1", 1), None, 3, [(b, at("t1", 1))]);
        assert_eq!(v, Verdict::NoMajority);
    }

    #[test]
    fn a_majority_without_the_block_does_not_settle_a_copy_that_holds_it() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, None), (c, None)],
        );
        assert_eq!(v, Verdict::MajorityEmpty);
    }
}
