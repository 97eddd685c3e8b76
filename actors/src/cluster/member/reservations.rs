//! Reservations: which undecided transaction holds each block on this member
//! (at most one), which holds each region being reconfigured (a configuration
//! change holds every block of its regions), and how many each proposer holds,
//! so one proposer's flood exhausts only its own share (docs/CONSENSUS.md,
//! "Bounded records").

use std::collections::{BTreeSet, HashMap};

use crate::model::{BlockId, Region};

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

/// What a transaction holds: its blocks, or (a configuration change) whole regions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) blocks: BTreeSet<BlockId>,
    pub(super) regions: BTreeSet<Region>,
}

impl Claim {
    /// The regions its blocks lie in, and its own.
    fn touched(&self) -> BTreeSet<Region> {
        let mut r: BTreeSet<Region> = self.blocks.iter().map(Region::of).collect();
        r.extend(self.regions.iter().copied());
        r
    }
}

/// Block reservations of one member.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    by_block: HashMap<BlockId, String>,
    by_region: HashMap<Region, String>,
    /// Blocks reserved per region (a region with some may not be reconfigured).
    blocks_in: HashMap<Region, usize>,
    /// Reserving transactions: their proposer.
    by_hash: HashMap<String, String>,
    per_proposer: HashMap<String, usize>,
}

impl Reservations {
    /// Whether an undecided transaction holds `block` here (itself, or its
    /// whole region).
    pub(super) fn holds(&self, block: &BlockId) -> bool {
        self.by_block.contains_key(block) || self.by_region.contains_key(&Region::of(block))
    }

    /// Whether an undecided configuration change holds `region` here.
    pub(super) fn changing(&self, region: Region) -> bool {
        self.by_region.contains_key(&region)
    }

    /// The undecided transaction other than `hash` holding part of `claim`.
    pub(super) fn conflict(&self, claim: &Claim, hash: &str) -> Option<String> {
        let blocks = claim
            .blocks
            .iter()
            .filter_map(|b| self.by_block.get(b))
            .find(|h| h.as_str() != hash);
        let regions = claim
            .touched()
            .into_iter()
            .filter_map(|r| self.by_region.get(&r))
            .find(|h| h.as_str() != hash);
        if let Some(h) = blocks.or(regions) {
            return Some(h.clone());
        }
        // A change of a region with blocks held by others.
        claim
            .regions
            .iter()
            .any(|r| self.blocks_in.get(r).is_some_and(|n| *n > 0))
            .then(|| {
                self.by_block
                    .iter()
                    .find(|(b, h)| claim.regions.contains(&Region::of(b)) && h.as_str() != hash)
                    .map(|(_, h)| h.clone())
            })
            .flatten()
    }

    /// Reserves `blocks` for `hash`, proposed by `proposer`, who may hold at most
    /// `share` transactions here (a resumed transaction is never refused for its
    /// share). On refusal nothing is reserved.
    pub(super) fn reserve(
        &mut self,
        claim: &Claim,
        hash: &str,
        proposer: &str,
        share: Option<usize>,
    ) -> Result<(), Refusal> {
        if let Some(holder) = self.conflict(claim, hash) {
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
        for b in &claim.blocks {
            if self.by_block.insert(b.clone(), hash.to_string()).is_none() {
                *self.blocks_in.entry(Region::of(b)).or_default() += 1;
            }
        }
        for r in &claim.regions {
            self.by_region.insert(*r, hash.to_string());
        }
        Ok(())
    }

    /// Releases what `hash` holds of `claim`.
    pub(super) fn release(&mut self, claim: &Claim, hash: &str) {
        for b in &claim.blocks {
            if self.by_block.get(b).is_some_and(|h| h == hash) {
                self.by_block.remove(b);
                let r = Region::of(b);
                if let Some(n) = self.blocks_in.get_mut(&r) {
                    *n -= 1;
                    if *n == 0 {
                        self.blocks_in.remove(&r);
                    }
                }
            }
        }
        for r in &claim.regions {
            if self.by_region.get(r).is_some_and(|h| h == hash) {
                self.by_region.remove(r);
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

    fn blocks(ids: &[&str]) -> Claim {
        Claim {
            blocks: ids.iter().filter_map(|i| BlockId::new(*i).ok()).collect(),
            regions: BTreeSet::new(),
        }
    }

    #[test]
    fn a_change_holds_its_regions_against_writes_and_the_other_way() {
        let mut r = Reservations::default();
        let b = BlockId::new("x").unwrap_or_else(|_| unreachable!());
        let region = Region::of(&b);
        let change = Claim {
            blocks: BTreeSet::new(),
            regions: BTreeSet::from([region]),
        };
        assert_eq!(r.reserve(&blocks(&["x"]), "w", "P", None), Ok(()));
        assert_eq!(
            r.reserve(&change, "c", "P", None),
            Err(Refusal::Held("w".into()))
        );
        r.release(&blocks(&["x"]), "w");
        assert_eq!(r.reserve(&change, "c", "P", None), Ok(()));
        assert_eq!(
            r.reserve(&blocks(&["x"]), "w2", "P", None),
            Err(Refusal::Held("c".into()))
        );
        r.release(&change, "c");
        assert_eq!(r.reserve(&blocks(&["x"]), "w2", "P", None), Ok(()));
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
