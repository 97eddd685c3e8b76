//! Volatile backend for tests: the same records as the others, in maps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{BlockMeta, RawStorage, StorageError, StorageStats, WriteBatch, WriteFuture, WriteOp};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

#[derive(Default)]
struct MemBlock {
    meta: Option<BlockMeta>,
    revisions: BTreeMap<Rev, TrxId>,
    pending: BTreeMap<TrxId, Arc<Transform>>,
    committed: HashMap<TrxId, Arc<Transform>>,
    materialized: HashMap<TrxId, Option<Arc<Block>>>,
}

/// Keeps everything in memory; writes are immediately "durable".
#[derive(Default)]
pub struct MemoryRawStorage {
    blocks: Mutex<HashMap<BlockId, MemBlock>>,
    txns: Mutex<HashMap<String, Vec<u8>>>,
    stats: StorageStats,
}

impl MemoryRawStorage {
    fn read<T>(&self, block: &BlockId, f: impl FnOnce(&MemBlock) -> T) -> Option<T> {
        self.blocks.lock().get(block).map(f)
    }
}

impl RawStorage for MemoryRawStorage {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn get_meta(&self, block: &BlockId) -> Result<Option<BlockMeta>, StorageError> {
        Ok(self.read(block, |b| b.meta.clone()).flatten())
    }

    fn get_revision(&self, block: &BlockId, rev: Rev) -> Result<Option<TrxId>, StorageError> {
        Ok(self
            .read(block, |b| b.revisions.get(&rev).cloned())
            .flatten())
    }

    fn list_revisions(
        &self,
        block: &BlockId,
        from: Rev,
        to: Rev,
    ) -> Result<Vec<TrxRev>, StorageError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .read(block, |b| {
                b.revisions
                    .range(from..=to)
                    .map(|(rev, trx)| TrxRev {
                        trx_id: trx.clone(),
                        rev: *rev,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError> {
        Ok(self
            .read(block, |b| b.pending.get(trx).map(|t| (**t).clone()))
            .flatten())
    }

    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError> {
        Ok(self
            .read(block, |b| b.pending.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn get_transaction(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Transform>, StorageError> {
        Ok(self
            .read(block, |b| b.committed.get(trx).map(|t| (**t).clone()))
            .flatten())
    }

    fn get_materialized(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Option<Block>>, StorageError> {
        Ok(self
            .read(block, |b| {
                b.materialized
                    .get(trx)
                    .map(|m| m.as_ref().map(|b| (**b).clone()))
            })
            .flatten())
    }

    fn stats(&self) -> &StorageStats {
        &self.stats
    }

    fn write(&self, batch: WriteBatch) -> WriteFuture {
        self.stats.batches.add(1);
        let mut blocks = self.blocks.lock();
        for op in batch {
            match op {
                WriteOp::PutPending {
                    block,
                    trx,
                    transform,
                } => {
                    blocks
                        .entry(block)
                        .or_default()
                        .pending
                        .insert(trx, transform);
                }
                WriteOp::DeletePending { block, trx } => {
                    blocks.entry(block).or_default().pending.remove(&trx);
                }
                WriteOp::PutTransaction {
                    block,
                    trx,
                    transform,
                } => {
                    blocks
                        .entry(block)
                        .or_default()
                        .committed
                        .insert(trx, transform);
                }
                WriteOp::PutMaterialized { block, trx, value } => {
                    blocks
                        .entry(block)
                        .or_default()
                        .materialized
                        .insert(trx, value);
                }
                WriteOp::DeleteRevision { block, rev } => {
                    blocks.entry(block).or_default().revisions.remove(&rev);
                }
                WriteOp::PutRevision { block, rev, trx } => {
                    blocks.entry(block).or_default().revisions.insert(rev, trx);
                }
                WriteOp::PutTxn { hash, bytes } => {
                    self.txns.lock().insert(hash, (*bytes).clone());
                }
                WriteOp::DeleteTxn { hash } => {
                    self.txns.lock().remove(&hash);
                }
                WriteOp::PutMeta { block, meta } => {
                    blocks.entry(block).or_default().meta = Some(meta);
                }
                WriteOp::DeleteTransaction { block, trx } => {
                    if let Some(b) = blocks.get_mut(&block) {
                        b.committed.remove(&trx);
                    }
                }
                WriteOp::DeleteMaterialized { block, trx } => {
                    if let Some(b) = blocks.get_mut(&block) {
                        b.materialized.remove(&trx);
                    }
                }
                WriteOp::DeleteMeta { block } => {
                    // Last of a hand-off's batch: nothing of the block is left.
                    if let Some(b) = blocks.get_mut(&block) {
                        b.meta = None;
                    }
                    if blocks.get(&block).is_some_and(|b| {
                        b.pending.is_empty()
                            && b.committed.is_empty()
                            && b.materialized.is_empty()
                            && b.revisions.is_empty()
                    }) {
                        blocks.remove(&block);
                    }
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn get_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.txns.lock().get(hash).cloned())
    }

    fn list_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .txns
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn block_count(&self) -> Result<u64, StorageError> {
        Ok(self
            .blocks
            .lock()
            .values()
            .filter(|b| b.meta.is_some())
            .count() as u64)
    }

    fn list_blocks(&self) -> Result<Vec<BlockId>, StorageError> {
        Ok(self
            .blocks
            .lock()
            .iter()
            .filter(|(_, b)| b.meta.is_some())
            .map(|(id, _)| id.clone())
            .collect())
    }
}
