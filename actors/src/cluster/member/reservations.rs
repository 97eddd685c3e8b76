//! Reservations: which undecided transaction holds each block on this member
//! (at most one), and how many each proposer holds, so one proposer's flood
//! exhausts only its own share (docs/CONSENSUS.md, "Bounded records").

use std::collections::{BTreeSet, HashMap};

use crate::model::BlockId;

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Another undecided transaction holds one of the blocks.
    Held(String),
    /// The proposer already holds its share of transactions here.
    OverShare {
        /// Transactions it holds.
        held: usize,
    },
}

/// Block reservations of one member.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    by_block: HashMap<BlockId, String>,
    /// Reserving transactions: their proposer.
    by_hash: HashMap<String, String>,
    per_proposer: HashMap<String, usize>,
}

impl Reservations {
    /// The undecided transaction other than `hash` holding one of `blocks`.
    pub(super) fn conflict(&self, blocks: &BTreeSet<BlockId>, hash: &str) -> Option<String> {
        blocks
            .iter()
            .filter_map(|b| self.by_block.get(b))
            .find(|h| h.as_str() != hash)
            .cloned()
    }

    /// Reserves `blocks` for `hash`, proposed by `proposer`, who may hold at most
    /// `share` transactions here (a resumed transaction is never refused for its
    /// share). On refusal nothing is reserved.
    pub(super) fn reserve(
        &mut self,
        blocks: &BTreeSet<BlockId>,
        hash: &str,
        proposer: &str,
        share: Option<usize>,
    ) -> Result<(), Refusal> {
        if let Some(holder) = self.conflict(blocks, hash) {
            return Err(Refusal::Held(holder));
        }
        if !self.by_hash.contains_key(hash) {
            let held = self.per_proposer.get(proposer).copied().unwrap_or(0);
            if share.is_some_and(|s| held >= s) {
                return Err(Refusal::OverShare { held });
            }
            self.by_hash.insert(hash.to_string(), proposer.to_string());
            *self.per_proposer.entry(proposer.to_string()).or_default() += 1;
        }
        for b in blocks {
            self.by_block.insert(b.clone(), hash.to_string());
        }
        Ok(())
    }

    /// Releases what `hash` holds of `blocks`.
    pub(super) fn release(&mut self, blocks: &BTreeSet<BlockId>, hash: &str) {
        for b in blocks {
            if self.by_block.get(b).is_some_and(|h| h == hash) {
                self.by_block.remove(b);
            }
        }
        if let Some(proposer) = self.by_hash.remove(hash) {
            if let Some(n) = self.per_proposer.get_mut(&proposer) {
                *n -= 1;
                if *n == 0 {
                    self.per_proposer.remove(&proposer);
                }
            }
        }
    }

    /// Transactions `proposer` holds here.
    #[cfg(test)]
    pub(super) fn held_by(&self, proposer: &str) -> usize {
        self.per_proposer.get(proposer).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(ids: &[&str]) -> BTreeSet<BlockId> {
        ids.iter().filter_map(|i| BlockId::new(*i).ok()).collect()
    }

    #[test]
    fn one_holder_per_block_and_a_share_per_proposer() {
        let mut r = Reservations::default();
        assert_eq!(r.reserve(&blocks(&["a", "b"]), "h1", "P", Some(2)), Ok(()));
        // Overlapping: refused, naming the holder; nothing reserved.
        assert_eq!(
            r.reserve(&blocks(&["b", "c"]), "h2", "Q", Some(2)),
            Err(Refusal::Held("h1".into()))
        );
        assert_eq!(r.conflict(&blocks(&["c"]), "h3"), None);
        // The same transaction again is fine (a resumed or repeated proposal).
        assert_eq!(r.reserve(&blocks(&["a"]), "h1", "P", Some(1)), Ok(()));
        assert_eq!(r.reserve(&blocks(&["c"]), "h3", "P", Some(2)), Ok(()));
        // P is at its share; Q is not affected.
        assert_eq!(
            r.reserve(&blocks(&["d"]), "h4", "P", Some(2)),
            Err(Refusal::OverShare { held: 2 })
        );
        assert_eq!(r.reserve(&blocks(&["d"]), "h5", "Q", Some(2)), Ok(()));
        r.release(&blocks(&["a", "b"]), "h1");
        assert_eq!(r.held_by("P"), 1);
        assert_eq!(r.reserve(&blocks(&["b"]), "h4", "P", Some(2)), Ok(()));
        // Releasing another transaction's blocks changes nothing.
        r.release(&blocks(&["b"]), "h9");
        assert_eq!(r.conflict(&blocks(&["b"]), "h0"), Some("h4".into()));
    }
}
