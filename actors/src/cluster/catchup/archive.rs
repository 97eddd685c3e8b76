//! Archive helpers of catching up: cutting an archive at a base, dropping its
//! pending transactions, its newest revision and whether it holds a revision.

use crate::model::TrxRev;
use crate::storage::BlockArchive;

/// `a` without the revisions after `base`; `None` when its history does not
/// hold `base` (under the same transaction).
pub(super) fn up_to(mut a: BlockArchive, base: &TrxRev) -> Option<BlockArchive> {
    let at = a.revisions.iter().position(|r| r.trx_rev == *base)?;
    a.revisions.truncate(at + 1);
    Some(a)
}

/// `a` without its pending transactions. A holder's pend is not this member's:
/// it did not apply it, so the commit or cancel that settles it may never be
/// delivered here, and a copy of it would stay pending (and in the pending
/// union of every later pend) until the stray rule drops it. A commit of such a
/// transaction fetches its transform from a holder instead.
pub(super) fn revisions_only(mut a: BlockArchive) -> BlockArchive {
    a.pending.clear();
    a
}

/// The newest revision of an archive.
pub(super) fn archive_latest(a: &BlockArchive) -> Option<TrxRev> {
    a.revisions.last().map(|r| r.trx_rev.clone())
}

/// Whether `a` holds `rev` (this copy's latest) under the same transaction; a
/// copy with no revision is in every history.
pub(super) fn contains(a: &BlockArchive, rev: Option<&TrxRev>) -> bool {
    match rev {
        None => true,
        Some(l) => a.revisions.iter().any(|r| r.trx_rev == *l),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::fixtures::at;
    use super::*;

    /// An archive from revision 1 holding `revs` and one pending transaction.
    fn archive(revs: &[TrxRev]) -> BlockArchive {
        super::super::fixtures::archive(1, revs)
    }

    #[test]
    fn up_to_cuts_after_the_base_and_refuses_a_history_without_it() {
        let a = archive(&[at("t1", 1), at("t2", 2), at("t3", 3)]);
        let cut = up_to(a.clone(), &at("t2", 2)).unwrap();
        assert_eq!(cut.revisions.len(), 2);
        assert_eq!(archive_latest(&cut), Some(at("t2", 2)));
        assert!(up_to(a, &at("other", 2)).is_none());
    }

    #[test]
    fn contains_matches_the_transaction_and_an_empty_copy_is_in_every_history() {
        let a = archive(&[at("t1", 1), at("t2", 2)]);
        assert!(contains(&a, None));
        assert!(contains(&a, Some(&at("t1", 1))));
        assert!(!contains(&a, Some(&at("other", 1))));
    }

    #[test]
    fn revisions_only_drops_the_pendings_and_keeps_the_revisions() {
        let a = revisions_only(archive(&[at("t1", 1)]));
        assert!(a.pending.is_empty());
        assert_eq!(archive_latest(&a), Some(at("t1", 1)));
        assert_eq!(archive_latest(&archive(&[])), None);
    }
}
