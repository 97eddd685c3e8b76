//! [`RawStorage`] over the fjall keyspaces: point reads and range scans of a
//! block's records, counts and listings, and the snapshot export of a backup.

use fjall::{Keyspace, PersistMode};
use serde::de::DeserializeOwned;

use super::keys::{key, pend_key, prefix};
use super::{engine, EmbeddedRawStorage};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};
use crate::storage::{
    backup, seal, usage, BlockMeta, RawStorage, StorageError, StorageStats, WriteBatch, WriteFuture,
};

impl EmbeddedRawStorage {
    fn get<T: DeserializeOwned>(
        &self,
        ks: &Keyspace,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = ks.get(key).map_err(engine)? else {
            return Ok(None);
        };
        seal::decode_value(&String::from_utf8_lossy(key), &bytes)
            .map(Some)
            .map_err(|e| self.stats.corrupt_found(e))
    }
}

impl RawStorage for EmbeddedRawStorage {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn get_meta(&self, block: &BlockId) -> Result<Option<BlockMeta>, StorageError> {
        self.get(&self.meta, block.as_str().as_bytes())
    }

    fn get_revision(&self, block: &BlockId, rev: Rev) -> Result<Option<TrxId>, StorageError> {
        self.get(&self.data, &key(block, b'r', &rev.to_be_bytes()))
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
        let lo = key(block, b'r', &from.to_be_bytes());
        let hi = key(block, b'r', &to.to_be_bytes());
        let p = prefix(block, b'r').len();
        let mut out = Vec::new();
        for guard in self.data.range(lo..=hi) {
            let (k, v) = guard.into_inner().map_err(engine)?;
            let rev_bytes: [u8; 8] =
                k.get(p..).and_then(|s| s.try_into().ok()).ok_or_else(|| {
                    StorageError::corrupt(String::from_utf8_lossy(&k), "bad revision key")
                })?;
            let trx_id = seal::decode_value(&String::from_utf8_lossy(&k), &v)
                .map_err(|e| self.stats.corrupt_found(e))?;
            out.push(TrxRev {
                trx_id,
                rev: Rev::from_be_bytes(rev_bytes),
            });
        }
        Ok(out)
    }

    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError> {
        self.get(&self.pend, &pend_key(block, trx))
    }

    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError> {
        Ok(self
            .pending
            .0
            .get(block)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn get_transaction(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Transform>, StorageError> {
        self.get(&self.data, &key(block, b't', trx.as_str().as_bytes()))
    }

    fn get_materialized(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Option<Block>>, StorageError> {
        self.get(&self.data, &key(block, b'b', trx.as_str().as_bytes()))
    }

    fn write(&self, batch: WriteBatch) -> WriteFuture {
        self.send(batch, false)
    }

    fn write_lazy(&self, batch: WriteBatch) -> WriteFuture {
        self.send(batch, true)
    }

    fn block_count(&self) -> Result<u64, StorageError> {
        self.meta.len().map(|n| n as u64).map_err(engine)
    }

    fn approximate_block_count(&self) -> Result<u64, StorageError> {
        Ok(self.meta.approximate_len() as u64)
    }

    fn list_blocks(&self) -> Result<Vec<BlockId>, StorageError> {
        let mut out = Vec::new();
        for guard in self.meta.iter() {
            let k = guard.key().map_err(engine)?;
            if let Ok(id) = BlockId::new(String::from_utf8_lossy(&k).into_owned()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn stats(&self) -> &StorageStats {
        &self.stats
    }

    fn get_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(v) = self.txn.get(hash.as_bytes()).map_err(engine)? else {
            return Ok(None);
        };
        match seal::open_value(&v) {
            Ok(record) => Ok(Some(record.to_vec())),
            Err(e) => Err(self
                .stats
                .corrupt_found(StorageError::corrupt(format!("txn {hash}"), e))),
        }
    }

    fn list_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for guard in self.txn.iter() {
            let (k, v) = guard.into_inner().map_err(engine)?;
            let hash = String::from_utf8_lossy(&k).into_owned();
            match seal::open_value(&v) {
                Ok(record) => out.push((hash, record.to_vec())),
                // Counted and logged; a damaged state is skipped, not fatal.
                Err(e) => {
                    self.stats
                        .corrupt_found(StorageError::corrupt(format!("txn {hash}"), e));
                }
            }
        }
        Ok(out)
    }

    fn disk_bytes(&self) -> Result<u64, StorageError> {
        usage::allocated_bytes(&self.dir).map_err(|e| StorageError::io(&self.dir, e))
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine)
    }

    fn exports(&self) -> bool {
        true
    }

    /// One fjall snapshot across the three keyspaces: every record as of one
    /// sequence number, however writes go on meanwhile.
    fn export(&self, sink: &mut backup::ExportSink<'_>) -> Result<u64, StorageError> {
        use fjall::Readable as _;
        let snapshot = self.db.snapshot();
        let mut n = 0;
        for (space, ks) in (0u8..).zip([&self.meta, &self.pend, &self.data]) {
            for guard in snapshot.iter(ks) {
                let (k, v) = guard.into_inner().map_err(engine)?;
                sink(space, &k, &v)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
