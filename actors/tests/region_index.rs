//! The cost of anti-entropy's questions (docs/CONSENSUS.md, "Anti-entropy"): a
//! region's digest is read again only once the region changed, and heads of
//! some regions read only those regions' blocks — counted as the backend's
//! metadata reads, through a backend that counts them. Every answer is also
//! checked against one computed from scratch.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use optimystic_actors::model::*;
use optimystic_actors::storage::{
    BlockMeta, MemoryRawStorage, RawStorage, StorageError, StorageStats, WriteBatch, WriteFuture,
};

/// A memory backend that counts metadata reads and full scans.
#[derive(Default)]
struct Counting {
    inner: MemoryRawStorage,
    metas: AtomicU64,
    scans: AtomicU64,
}

impl RawStorage for Counting {
    fn backend(&self) -> &'static str {
        "counting"
    }
    fn get_meta(&self, block: &BlockId) -> Result<Option<BlockMeta>, StorageError> {
        self.metas.fetch_add(1, Ordering::Relaxed);
        self.inner.get_meta(block)
    }
    fn get_revision(&self, block: &BlockId, rev: Rev) -> Result<Option<TrxId>, StorageError> {
        self.inner.get_revision(block, rev)
    }
    fn list_revisions(
        &self,
        block: &BlockId,
        from: Rev,
        to: Rev,
    ) -> Result<Vec<TrxRev>, StorageError> {
        self.inner.list_revisions(block, from, to)
    }
    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError> {
        self.inner.get_pending(block, trx)
    }
    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError> {
        self.inner.list_pending(block)
    }
    fn get_transaction(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Transform>, StorageError> {
        self.inner.get_transaction(block, trx)
    }
    fn get_materialized(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Option<Block>>, StorageError> {
        self.inner.get_materialized(block, trx)
    }
    fn write(&self, batch: WriteBatch) -> WriteFuture {
        self.inner.write(batch)
    }
    fn block_count(&self) -> Result<u64, StorageError> {
        self.inner.block_count()
    }
    fn list_blocks(&self) -> Result<Vec<BlockId>, StorageError> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.inner.list_blocks()
    }
    fn stats(&self) -> &StorageStats {
        self.inner.stats()
    }
    fn get_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get_txn(hash)
    }
    fn list_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.inner.list_txns()
    }
}

const BLOCKS: usize = 2_000;

#[actix_rt::test]
async fn digests_are_read_again_only_where_a_region_changed() {
    let raw = Arc::new(Counting::default());
    let repo = repo_on(raw.clone());
    let ids: Vec<String> = (0..BLOCKS).map(|i| format!("blk{i}")).collect();
    for id in &ids {
        write(&repo, &format!("{id}-1"), 1, insert(&[id])).await;
    }
    let all: BTreeSet<Region> = Region::all().collect();
    let from_scratch = |heads: &[BlockHead]| region_digests(heads);
    let metas = || raw.metas.swap(0, Ordering::Relaxed);

    let first = repo.digests(all.clone()).await.unwrap();
    let truth = from_scratch(&repo.latests(all.clone()).await.unwrap());
    assert_eq!(first, truth);
    assert_eq!(first.iter().map(|d| d.blocks).sum::<u64>(), BLOCKS as u64);
    metas();
    // Nothing changed: no block is read.
    assert_eq!(repo.digests(all.clone()).await.unwrap(), first);
    assert_eq!(metas(), 0, "digests of unchanged regions read blocks");

    // One write: only its region is read again, and its digest moves.
    let b = &ids[7];
    let region = Region::of(&bid(b));
    let in_region = ids.iter().filter(|i| Region::of(&bid(i)) == region).count() as u64;
    write(
        &repo,
        &format!("{b}-2"),
        2,
        append(&[b], serde_json::json!(1)),
    )
    .await;
    metas();
    let after = repo.digests(all.clone()).await.unwrap();
    assert_eq!(metas(), in_region, "reads after one write");
    assert_eq!(
        after,
        from_scratch(&repo.latests(all.clone()).await.unwrap())
    );
    let moved: Vec<Region> = first
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.region)
        .collect();
    assert_eq!(moved, vec![region]);

    // Heads of one region read that region's blocks only.
    metas();
    let heads = repo.heads(BTreeSet::from([region])).await.unwrap();
    assert_eq!(heads.len() as u64, in_region);
    assert_eq!(metas(), in_region);

    // A forgotten copy leaves its region's digest.
    let latest = heads
        .iter()
        .find(|h| h.block_id == bid(b))
        .unwrap()
        .latest
        .clone();
    assert!(repo.drop_copy(&bid(b), latest, vec![]).await.unwrap());
    let gone = repo.digests(BTreeSet::from([region])).await.unwrap();
    let left = in_region - 1;
    assert_eq!(gone.first().map_or(0, |d| d.blocks), left);
    assert_eq!(
        gone,
        from_scratch(&repo.latests(BTreeSet::from([region])).await.unwrap())
    );
    // Every answer came from one scan of the stored blocks, at the first ask.
    assert_eq!(raw.scans.load(Ordering::Relaxed), 1);
}

/// A page of heads reads the blocks of its page, not every block of the
/// regions asked, and the pages together are the whole answer.
#[actix_rt::test]
async fn heads_come_in_pages_that_read_only_their_blocks() {
    let raw = Arc::new(Counting::default());
    let repo = repo_on(raw.clone());
    for i in 0..300 {
        let id = format!("p{i}");
        write(&repo, &format!("{id}-1"), 1, insert(&[&id])).await;
    }
    let all: BTreeSet<Region> = Region::all().collect();
    let whole = repo.heads(all.clone()).await.unwrap();
    assert_eq!(whole.len(), 300);
    let (mut pages, mut after) = (Vec::new(), None);
    loop {
        raw.metas.swap(0, Ordering::Relaxed);
        let (page, more) = repo
            .heads_page(all.clone(), after.clone(), 100)
            .await
            .unwrap();
        // A page reads its blocks, and one more to tell whether more follow.
        assert!(raw.metas.load(Ordering::Relaxed) <= 101);
        after = page.last().map(|h| h.block_id.clone());
        pages.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(pages, whole);
}
