//! Which blocks each region holds, and how often each region has changed, so a
//! question about some regions (their heads, their digests) reads only their
//! blocks, and a digest is computed again only for a region that changed since
//! (docs/CONSENSUS.md, "Anti-entropy").
//!
//! The block sets are built by one scan of the stored blocks, the first time
//! they are asked for; from then on every effect a block's storage applies
//! adds the block to its region's set and counts a change of the region (the
//! effect is durable by then, so whoever reads the region after the count
//! moved sees it). A block forgotten since stays listed until a read finds
//! nothing stored and its region unchanged meanwhile. Nothing here is written
//! to disk: it is rebuilt at start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{RawStorage, StorageError};
use crate::model::{BlockId, Region, RegionDigest, REGIONS};

/// The index of one store (shared by every block's storage of a registry).
pub struct RegionIndex {
    /// Effects applied, per region (by [`Region::index`]).
    changes: Box<[AtomicU64]>,
    /// The blocks of each region; `None` until first asked for (then it
    /// collects effects while the first scan runs).
    blocks: Mutex<Option<BTreeMap<Region, BTreeSet<BlockId>>>>,
    /// Held by the one scan that builds the sets: whoever asks meanwhile waits
    /// for it rather than reading half a list.
    building: Mutex<()>,
    /// The scan finished: the sets list every stored block.
    built: AtomicBool,
    /// A region's digest (`None`: no committed block), with the count of
    /// changes it was computed at.
    digests: Mutex<HashMap<Region, (u64, Option<RegionDigest>)>>,
}

impl Default for RegionIndex {
    fn default() -> Self {
        Self {
            changes: (0..REGIONS).map(|_| AtomicU64::new(0)).collect(),
            blocks: Mutex::new(None),
            building: Mutex::new(()),
            built: AtomicBool::new(false),
            digests: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for RegionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionIndex")
            .field("built", &self.built.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl RegionIndex {
    /// A durable effect on block `id` was applied.
    pub fn touched(&self, id: &BlockId) {
        let r = Region::of(id);
        if let Some(map) = self.blocks.lock().as_mut() {
            map.entry(r).or_default().insert(id.clone());
        }
        self.changes[r.index() as usize].fetch_add(1, Ordering::Release);
    }

    /// How many effects region `r` has seen (a digest computed at one count is
    /// the region's as long as the count stays).
    pub fn changes(&self, r: Region) -> u64 {
        self.changes[r.index() as usize].load(Ordering::Acquire)
    }

    /// The blocks of `regions` that may be stored here (every one that is, and
    /// possibly some forgotten since), sorted by id. Blocking: the first call
    /// scans every stored block.
    pub fn blocks(
        &self,
        raw: &dyn RawStorage,
        regions: &BTreeSet<Region>,
    ) -> Result<Vec<BlockId>, StorageError> {
        self.blocks_listed_by(&|| raw.list_blocks(), regions)
    }

    /// [`Self::blocks`], the first scan being `list`.
    fn blocks_listed_by(
        &self,
        list: &dyn Fn() -> Result<Vec<BlockId>, StorageError>,
        regions: &BTreeSet<Region>,
    ) -> Result<Vec<BlockId>, StorageError> {
        self.build(list)?;
        let guard = self.blocks.lock();
        let mut out: Vec<BlockId> = guard
            .iter()
            .flat_map(|map| regions.iter().filter_map(|r| map.get(r)))
            .flatten()
            .cloned()
            .collect();
        out.sort();
        Ok(out)
    }

    /// Drops `id` from its region's set, if the region saw no change since its
    /// count was `at` (a read then found nothing of the block stored).
    pub fn forget(&self, id: &BlockId, at: u64) {
        let r = Region::of(id);
        let mut guard = self.blocks.lock();
        if self.changes(r) != at {
            return;
        }
        if let Some(set) = guard.as_mut().and_then(|m| m.get_mut(&r)) {
            set.remove(id);
        }
    }

    /// Region `r`'s digest, if one was kept since its last change: `Some(None)`
    /// when it holds no committed block.
    pub fn digest(&self, r: Region) -> Option<Option<RegionDigest>> {
        let now = self.changes(r);
        match self.digests.lock().get(&r) {
            Some((at, d)) if *at == now => Some(d.clone()),
            _ => None,
        }
    }

    /// Keeps `digest` as region `r`'s, computed from reads that began when its
    /// count was `at` (kept only if the region has not changed since).
    pub fn keep_digest(&self, r: Region, at: u64, digest: Option<RegionDigest>) {
        let mut guard = self.digests.lock();
        if self.changes(r) == at {
            guard.insert(r, (at, digest));
        }
    }

    /// The block sets, from one scan (`list`), unless built already. The
    /// empty map is put in place before the scan, so a block stored while it
    /// runs is listed either by the scan or by its effect; a second asker waits
    /// for the scan.
    fn build(
        &self,
        list: &dyn Fn() -> Result<Vec<BlockId>, StorageError>,
    ) -> Result<(), StorageError> {
        if self.built.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.building.lock();
        if self.built.load(Ordering::Acquire) {
            return Ok(());
        }
        self.blocks.lock().get_or_insert_with(BTreeMap::new);
        let stored = match list() {
            Ok(s) => s,
            Err(e) => {
                *self.blocks.lock() = None;
                return Err(e);
            }
        };
        if let Some(map) = self.blocks.lock().as_mut() {
            for id in stored {
                map.entry(Region::of(&id)).or_default().insert(id);
            }
        }
        self.built.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::MemoryRawStorage;

    fn id(s: &str) -> BlockId {
        BlockId::new(s).unwrap()
    }

    #[test]
    fn a_block_touched_before_or_after_the_build_is_listed_in_its_region_only() {
        let raw = MemoryRawStorage::default();
        let index = RegionIndex::default();
        // Touched before anything asked: the build's scan would list it once
        // stored; here nothing is stored, so it is not listed.
        index.touched(&id("early"));
        let all: BTreeSet<Region> = Region::all().collect();
        assert!(index.blocks(&raw, &all).unwrap().is_empty());
        index.touched(&id("b"));
        index.touched(&id("a"));
        assert_eq!(index.blocks(&raw, &all).unwrap(), vec![id("a"), id("b")]);
        let only_a = BTreeSet::from([Region::of(&id("a"))]);
        let listed = index.blocks(&raw, &only_a).unwrap();
        assert!(listed.contains(&id("a")));
        assert_eq!(
            listed.contains(&id("b")),
            Region::of(&id("b")) == Region::of(&id("a"))
        );
    }

    #[test]
    fn a_block_is_forgotten_only_if_its_region_did_not_change_since() {
        let raw = MemoryRawStorage::default();
        let index = RegionIndex::default();
        let all: BTreeSet<Region> = Region::all().collect();
        index.blocks(&raw, &all).unwrap();
        index.touched(&id("x"));
        let r = Region::of(&id("x"));
        let at = index.changes(r);
        index.touched(&id("x"));
        index.forget(&id("x"), at);
        assert_eq!(index.blocks(&raw, &all).unwrap(), vec![id("x")]);
        index.forget(&id("x"), index.changes(r));
        assert!(index.blocks(&raw, &all).unwrap().is_empty());
    }

    #[test]
    fn whoever_asks_while_the_first_scan_runs_waits_for_all_of_it() {
        type Asker = std::thread::JoinHandle<Result<Vec<BlockId>, StorageError>>;
        let index = std::sync::Arc::new(RegionIndex::default());
        let all: BTreeSet<Region> = Region::all().collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let second: Mutex<Option<(Asker, bool)>> = Mutex::new(None);
        // The first scan asks again from another thread while it runs, and
        // gives that asker half a second to answer before the scan finishes.
        let scan = || {
            let (index, all, tx) = (index.clone(), all.clone(), tx.clone());
            let asker = std::thread::spawn(move || {
                let listed = index.blocks_listed_by(&|| Ok(Vec::new()), &all);
                let _ = tx.send(());
                listed
            });
            let early = rx
                .recv_timeout(std::time::Duration::from_millis(500))
                .is_ok();
            *second.lock() = Some((asker, early));
            Ok(vec![id("stored")])
        };
        assert_eq!(
            index.blocks_listed_by(&scan, &all).unwrap(),
            vec![id("stored")]
        );
        let (asker, early) = second.lock().take().unwrap();
        assert!(!early, "a second asker was answered while the scan ran");
        assert_eq!(asker.join().unwrap().unwrap(), vec![id("stored")]);
    }

    #[test]
    fn a_digest_is_kept_until_its_region_changes() {
        let index = RegionIndex::default();
        let r = Region::of(&id("d"));
        let d = RegionDigest {
            region: r,
            blocks: 1,
            digest: "00".into(),
        };
        assert_eq!(index.digest(r), None);
        let at = index.changes(r);
        index.keep_digest(r, at, Some(d.clone()));
        assert_eq!(index.digest(r), Some(Some(d.clone())));
        index.touched(&id("d"));
        assert_eq!(index.digest(r), None, "a change drops the kept digest");
        // Computed from reads that began before a change: not kept.
        index.keep_digest(r, at, Some(d));
        assert_eq!(index.digest(r), None);
    }
}
