//! One JSON file per record, in the seed's layout:
//! `{base}/{blockId}/meta.json, revs/{rev}.json, pend/{trxId}.json, trx/{trxId}.json,
//! blocks/{trxId}.json`, with `base = {data_dir}/blocks`.
//!
//! Every file is written to a temporary name, synced, renamed into place and its
//! directory synced. A batch is applied in three phases (data, then `meta.json`,
//! then removal of pending files), so a crash leaves each block either before or
//! after the batch: `meta.json` is what publishes a commit. Paths are only ever
//! built from validated ids and integers.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    seal, BlockMeta, DataDirLock, RawStorage, StorageError, StorageStats, WriteBatch, WriteFuture,
    WriteOp,
};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// The inspectable file backend.
pub struct FileRawStorage {
    inner: Arc<Inner>,
}

struct Inner {
    base: PathBuf,
    txn_dir: PathBuf,
    stats: StorageStats,
    tmp_counter: AtomicU64,
    _lock: DataDirLock,
}

impl FileRawStorage {
    /// Opens (creating) the store under `data_dir`, taking its lock.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let base = data_dir.join("blocks");
        fs::create_dir_all(&base).map_err(|e| StorageError::io(&base, e))?;
        let txn_dir = data_dir.join("cluster");
        fs::create_dir_all(&txn_dir).map_err(|e| StorageError::io(&txn_dir, e))?;
        sync_dir(data_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                txn_dir,
                stats: StorageStats::default(),
                tmp_counter: AtomicU64::new(0),
                _lock: lock,
            }),
        })
    }
}

impl Inner {
    fn block_dir(&self, block: &BlockId) -> PathBuf {
        self.base.join(block.as_str())
    }

    fn path(&self, block: &BlockId, sub: &str, name: &str) -> PathBuf {
        self.block_dir(block).join(sub).join(format!("{name}.json"))
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        for phase in 0..=WriteOp::LAST_PHASE {
            let mut dirty = BTreeSet::new();
            for op in batch.iter().filter(|op| op.phase() == phase) {
                self.apply_op(op, &mut dirty)?;
            }
            for dir in dirty {
                sync_dir(&dir)?;
                self.stats.syncs.add(1);
            }
        }
        // A block no longer stored: its directories go once empty (the batch
        // that unpublished it removed its records too).
        for op in &batch {
            if let WriteOp::DeleteMeta { block } = op {
                let dir = self.block_dir(block);
                for sub in ["pend", "trx", "blocks", "revs"] {
                    let _ = fs::remove_dir(dir.join(sub));
                }
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(())
    }

    fn apply_op(&self, op: &WriteOp, dirty: &mut BTreeSet<PathBuf>) -> Result<(), StorageError> {
        match op {
            WriteOp::PutPending {
                block,
                trx,
                transform,
            } => self.put(block, "pend", trx.as_str(), &**transform, dirty),
            WriteOp::PutTransaction {
                block,
                trx,
                transform,
            } => self.put(block, "trx", trx.as_str(), &**transform, dirty),
            WriteOp::PutMaterialized { block, trx, value } => {
                self.put(block, "blocks", trx.as_str(), &value.as_deref(), dirty)
            }
            WriteOp::PutRevision { block, rev, trx } => {
                self.put(block, "revs", &rev.to_string(), trx, dirty)
            }
            WriteOp::PutTxn { hash, bytes } => {
                let path = self.txn_path(hash)?;
                self.write_file(&path, &seal::seal_json(bytes))?;
                dirty.insert(self.txn_dir.clone());
                Ok(())
            }
            WriteOp::DeleteTxn { hash } => {
                let path = self.txn_path(hash)?;
                match fs::remove_file(&path) {
                    Ok(()) => {
                        dirty.insert(self.txn_dir.clone());
                        Ok(())
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StorageError::io(path, e)),
                }
            }
            WriteOp::PutMeta { block, meta } => {
                let dir = self.ensure_dir(block, None, dirty)?;
                self.write_file(&dir.join("meta.json"), &encode(meta)?)?;
                dirty.insert(dir);
                Ok(())
            }
            WriteOp::DeleteRevision { block, rev } => {
                self.remove(block, "revs", &rev.to_string(), dirty)
            }
            WriteOp::DeletePending { block, trx } => {
                self.remove(block, "pend", trx.as_str(), dirty)
            }
            WriteOp::DeleteTransaction { block, trx } => {
                self.remove(block, "trx", trx.as_str(), dirty)
            }
            WriteOp::DeleteMaterialized { block, trx } => {
                self.remove(block, "blocks", trx.as_str(), dirty)
            }
            WriteOp::DeleteMeta { block } => {
                let dir = self.block_dir(block);
                let path = dir.join("meta.json");
                match fs::remove_file(&path) {
                    Ok(()) => {
                        dirty.insert(dir);
                        Ok(())
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StorageError::io(path, e)),
                }
            }
        }
    }

    /// Removes one record file of `block` (absent is fine).
    fn remove(
        &self,
        block: &BlockId,
        kind: &str,
        name: &str,
        dirty: &mut BTreeSet<PathBuf>,
    ) -> Result<(), StorageError> {
        let path = self.path(block, kind, name);
        match fs::remove_file(&path) {
            Ok(()) => {
                dirty.insert(self.block_dir(block).join(kind));
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(path, e)),
        }
    }

    fn put<T: Serialize + ?Sized>(
        &self,
        block: &BlockId,
        sub: &str,
        name: &str,
        value: &T,
        dirty: &mut BTreeSet<PathBuf>,
    ) -> Result<(), StorageError> {
        let dir = self.ensure_dir(block, Some(sub), dirty)?;
        self.write_file(&dir.join(format!("{name}.json")), &encode(value)?)?;
        dirty.insert(dir);
        Ok(())
    }

    /// Creates the block directory (and `sub`) if missing, marking parents to sync.
    fn ensure_dir(
        &self,
        block: &BlockId,
        sub: Option<&str>,
        dirty: &mut BTreeSet<PathBuf>,
    ) -> Result<PathBuf, StorageError> {
        let block_dir = self.block_dir(block);
        if create_dir(&block_dir)? {
            dirty.insert(self.base.clone());
        }
        let Some(sub) = sub else {
            return Ok(block_dir);
        };
        let dir = block_dir.join(sub);
        if create_dir(&dir)? {
            dirty.insert(block_dir);
        }
        Ok(dir)
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{n}"));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()?;
            self.stats.syncs.add(1);
            self.stats.bytes.add(bytes.len() as u64);
            fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StorageError::io(path, e)
        })
    }

    fn txn_path(&self, hash: &str) -> Result<PathBuf, StorageError> {
        crate::model::validate_id("message hash", hash)
            .map_err(|e| StorageError::corrupt(hash, e))?;
        Ok(self.txn_dir.join(format!("{hash}.json")))
    }

    fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, StorageError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        seal::decode_json(&path.display().to_string(), &bytes)
            .map(Some)
            .map_err(|e| self.stats.corrupt_found(e))
    }

    fn read_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.txn_path(hash)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        match seal::open_json(&bytes) {
            Ok(record) => Ok(Some(record.to_vec())),
            Err(e) => Err(self
                .stats
                .corrupt_found(StorageError::corrupt(path.display().to_string(), e))),
        }
    }

    /// File stems in `{block}/{sub}/` that parse with `parse`, skipping anything else
    /// (temporary files, foreign files).
    fn list<T>(
        &self,
        block: &BlockId,
        sub: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, StorageError> {
        let dir = self.block_dir(block).join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
            let name = entry.file_name();
            if let Some(v) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(&parse)
            {
                out.push(v);
            }
        }
        Ok(out)
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value)
        .map(|json| seal::seal_json(&json))
        .map_err(|e| StorageError::Encode {
            what: "json record".into(),
            message: e.to_string(),
        })
}

/// Returns whether the directory was created now.
fn create_dir(dir: &Path) -> Result<bool, StorageError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StorageError::io(dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

impl RawStorage for FileRawStorage {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn get_meta(&self, block: &BlockId) -> Result<Option<BlockMeta>, StorageError> {
        self.inner
            .read(&self.inner.block_dir(block).join("meta.json"))
    }

    fn get_revision(&self, block: &BlockId, rev: Rev) -> Result<Option<TrxId>, StorageError> {
        self.inner
            .read(&self.inner.path(block, "revs", &rev.to_string()))
    }

    fn list_revisions(
        &self,
        block: &BlockId,
        from: Rev,
        to: Rev,
    ) -> Result<Vec<TrxRev>, StorageError> {
        let mut revs = self.inner.list(block, "revs", |s| {
            s.parse::<Rev>().ok().filter(|r| (from..=to).contains(r))
        })?;
        revs.sort_unstable();
        revs.into_iter()
            .filter_map(|rev| match self.get_revision(block, rev) {
                Ok(Some(trx_id)) => Some(Ok(TrxRev { trx_id, rev })),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError> {
        self.inner
            .read(&self.inner.path(block, "pend", trx.as_str()))
    }

    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError> {
        let mut ids = self.inner.list(block, "pend", |s| TrxId::new(s).ok())?;
        ids.sort();
        Ok(ids)
    }

    fn get_transaction(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Transform>, StorageError> {
        self.inner
            .read(&self.inner.path(block, "trx", trx.as_str()))
    }

    fn get_materialized(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Option<Block>>, StorageError> {
        self.inner
            .read(&self.inner.path(block, "blocks", trx.as_str()))
    }

    fn write(&self, batch: WriteBatch) -> WriteFuture {
        if crate::faults::disk_full() {
            self.inner.stats.failures.add(1);
            let e = StorageError::io(&self.inner.base, crate::faults::disk_full_error());
            return Box::pin(std::future::ready(Err(e)));
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let stats_inner = inner.clone();
            let r = tokio::task::spawn_blocking(move || inner.apply(batch))
                .await
                .map_err(|e| StorageError::Engine(format!("file writer task failed: {e}")))?;
            match &r {
                Ok(()) => stats_inner.stats.batches.add(1),
                Err(_) => stats_inner.stats.failures.add(1),
            }
            r
        })
    }

    fn stats(&self) -> &StorageStats {
        &self.inner.stats
    }

    fn atomic_batches(&self) -> bool {
        false
    }

    fn get_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read_txn(hash)
    }

    fn list_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let dir = &self.inner.txn_dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if crate::model::validate_id("message hash", hash).is_err() {
                continue;
            }
            match self.get_txn(hash) {
                Ok(Some(b)) => out.push((hash.to_string(), b)),
                Ok(None) => {}
                // Counted and logged; a damaged state is skipped, not fatal.
                Err(StorageError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn disk_bytes(&self) -> Result<u64, StorageError> {
        let base = &self.inner.base;
        Ok(
            super::usage::allocated_bytes(base).map_err(|e| StorageError::io(base, e))?
                + super::usage::allocated_bytes(&self.inner.txn_dir).unwrap_or(0),
        )
    }

    fn block_count(&self) -> Result<u64, StorageError> {
        let entries =
            fs::read_dir(&self.inner.base).map_err(|e| StorageError::io(&self.inner.base, e))?;
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&self.inner.base, e))?;
            if entry.path().join("meta.json").exists() {
                n += 1;
            }
        }
        Ok(n)
    }

    fn list_blocks(&self) -> Result<Vec<BlockId>, StorageError> {
        let base = &self.inner.base;
        let mut out = Vec::new();
        for entry in fs::read_dir(base).map_err(|e| StorageError::io(base, e))? {
            let entry = entry.map_err(|e| StorageError::io(base, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if entry.path().join("meta.json").exists() {
                if let Ok(id) = BlockId::new(name) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}
