//! Which blocks this node knows to be current: compared with their cluster (a
//! read's catch-up) or written by an agreed commit here, since the set of connected
//! members or this node's configurations last changed (a node dropped from a
//! region's configuration hears of no more writes there, so its copies stop being
//! current the moment it applies the change). A node that was down or cut off may be behind on exactly
//! the blocks it does not know to be current; a plain read of one compares it with
//! its cluster first (see the coordinator).

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::model::BlockId;

/// Most blocks remembered; past it the set starts over (reads compare again).
const MAX_FRESH: usize = 100_000;

/// What the set is valid under: the connected members' fingerprint and the
/// configuration table's generation, mixed into one tag.
pub fn epoch(members: u64, configs_generation: u64) -> u64 {
    members ^ configs_generation.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The set, tagged with the member-set fingerprint it was built under.
#[derive(Debug, Default)]
pub struct Freshness {
    inner: Mutex<(u64, HashSet<BlockId>)>,
}

impl Freshness {
    /// The blocks of `blocks` not known current under member set `members`
    /// (a different set than last time forgets everything).
    pub fn unknown(&self, members: u64, blocks: &[BlockId]) -> Vec<BlockId> {
        let mut f = self.inner.lock();
        if f.0 != members || f.1.len() > MAX_FRESH {
            *f = (members, HashSet::new());
        }
        blocks
            .iter()
            .filter(|b| !f.1.contains(*b))
            .cloned()
            .collect()
    }

    /// Records `blocks` as compared under member set `members` (ignored if the set
    /// changed meanwhile).
    pub fn compared(&self, members: u64, blocks: impl IntoIterator<Item = BlockId>) {
        let mut f = self.inner.lock();
        if f.0 == members {
            f.1.extend(blocks);
        }
    }

    /// Records `blocks` as current under member set `members`: an agreed commit
    /// was just applied to them here (a write under a new member set starts the
    /// set over from it).
    pub fn written(&self, members: u64, blocks: impl IntoIterator<Item = BlockId>) {
        let mut f = self.inner.lock();
        if f.0 != members || f.1.len() > MAX_FRESH {
            *f = (members, HashSet::new());
        }
        f.1.extend(blocks);
    }
}

impl Freshness {
    /// Forgets `blocks` (this copy was found to disagree with its cluster).
    pub fn forget<'a>(&self, blocks: impl IntoIterator<Item = &'a BlockId>) {
        let mut f = self.inner.lock();
        for b in blocks {
            f.1.remove(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_member_set_forgets_and_writes_count() {
        let f = Freshness::default();
        let (a, b) = (BlockId::new("a").unwrap(), BlockId::new("b").unwrap());
        assert_eq!(f.unknown(1, &[a.clone(), b.clone()]).len(), 2);
        f.compared(1, [a.clone()]);
        f.written(1, [b.clone()]);
        assert!(f.unknown(1, &[a.clone(), b.clone()]).is_empty());
        // Compared under a set that has changed since: not recorded.
        f.compared(2, [a.clone()]);
        // A new member set: everything is unknown again.
        assert_eq!(f.unknown(2, &[a.clone(), b.clone()]).len(), 2);
        // Written before any read: still known at the first read under that set.
        let g = Freshness::default();
        g.written(7, [a.clone()]);
        assert_eq!(g.unknown(7, &[a.clone(), b.clone()]), vec![b.clone()]);
        // A write under a newer set than the one read under starts over from it.
        g.written(8, [b.clone()]);
        assert_eq!(g.unknown(8, &[a.clone(), b.clone()]), vec![a]);
    }
}
