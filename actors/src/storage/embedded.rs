//! The embedded transactional engine (fjall): the default backend.
//!
//! Three keyspaces: `meta` (one small record per block, keyed by block id),
//! `pend` (pending transforms, `{blockId}/{trxId}`: small, since commits remove
//! them, so listing a block's pendings on activation is cheap) and `data`
//! (revisions, committed transforms, materialized blocks, keyed
//! `{blockId}/{tag}/{suffix}`). Block ids never contain `/`, so one block's keys
//! form one prefix. Values are MessagePack.
//!
//! The ids of pending transactions are also mirrored in memory (loaded at open,
//! updated by the writer after each durable batch), so activating a block costs no
//! range scan; there are only as many entries as transactions in flight.
//!
//! Writes go to one writer thread through a bounded queue. The writer drains every
//! request waiting (up to [`MAX_GROUP`]), applies them as **one** atomic fjall
//! batch with one `fdatasync`, then answers each: concurrent writers share a sync
//! (group commit), and a reply means durable.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use dashmap::DashMap;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{
    lazy_sync_interval, seal, BlockMeta, DataDirLock, RawStorage, StorageError, StorageStats,
    WriteBatch, WriteFuture, WriteOp, LAZY_SYNC,
};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// Most write requests merged into one durable batch.
pub(crate) const MAX_GROUP: usize = 512;
/// How long closing the storage waits for the writer thread to finish.
const WRITER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Write requests queued for the writer thread before callers wait (bound of the queue).
const QUEUE_DEPTH: usize = 4096;

/// Tuning of the embedded engine.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Block cache, bytes.
    pub cache_bytes: u64,
    /// Memtable size per keyspace, bytes (bounds memory used by unflushed writes).
    pub memtable_bytes: u64,
    /// Background flush/compaction threads.
    pub worker_threads: usize,
}

impl EmbeddedOptions {
    /// The tuning of a cluster node: one background worker. fjall 3.1's pool
    /// keeps its first worker for flushes and has it hand compaction requests
    /// back to the queue, so while the second worker runs a long compaction
    /// the first one spins re-queueing them: at 1,000,000 stored blocks the
    /// workers took 24% of a loaded 3-node cluster's CPU, and one worker gave
    /// 15% more pendCommits (docs/BENCHMARKS.md). A node's own writes are
    /// bounded by consensus (a few thousand per second), which one worker keeps
    /// up with; a local engine loading at tens of thousands per second keeps two
    /// (with one, its unflushed memtables grew past 1 GB).
    pub fn cluster_node() -> Self {
        Self {
            worker_threads: 1,
            ..Self::default()
        }
    }
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 32 << 20,
            memtable_bytes: 8 << 20,
            worker_threads: 2,
        }
    }
}

#[derive(Clone, Copy)]
enum Space {
    Meta = 0,
    Pend = 1,
    Data = 2,
    Txn = 3,
}

struct Encoded {
    space: Space,
    /// For pending records: which (block, trx) the pending index must update.
    pend: Option<(BlockId, TrxId)>,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

struct WriteRequest {
    ops: Vec<Encoded>,
    /// May resolve before `fdatasync` (see [`RawStorage::write_lazy`]).
    lazy: bool,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Group-committing fjall store.
pub struct EmbeddedRawStorage {
    db: Database,
    stats: Arc<StorageStats>,
    pending: Arc<PendingIndex>,
    meta: Keyspace,
    pend: Keyspace,
    data: Keyspace,
    txn: Keyspace,
    /// The writer's queue. Write futures hold it weakly and clone the sender only
    /// while they send, so closing the storage (dropping this) leaves the writer
    /// no sender but those of sends in progress.
    queue: Option<Arc<mpsc::Sender<WriteRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    syncer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// The engine's directory (disk usage).
    dir: std::path::PathBuf,
    _lock: DataDirLock,
}

fn engine(e: fjall::Error) -> StorageError {
    StorageError::Engine(e.to_string())
}

impl EmbeddedRawStorage {
    /// Opens (creating) the store in `{data_dir}/fjall`, taking the data dir's lock.
    pub fn open(data_dir: &Path, opts: EmbeddedOptions) -> Result<Self, StorageError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let dir = data_dir.join("fjall");
        let db = Database::builder(&dir)
            .cache_size(opts.cache_bytes)
            .worker_threads(opts.worker_threads.max(1))
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StorageError::InUse(data_dir.to_path_buf()),
                e => engine(e),
            })?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(opts.memtable_bytes)
            })
            .map_err(engine)
        };
        let meta = ks("meta")?;
        let pend = ks("pend")?;
        let data = ks("data")?;
        let txn = ks("txn")?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let pending = Arc::new(PendingIndex::load(&pend)?);
        let stats = Arc::new(StorageStats::default());
        let unsynced = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            stats: stats.clone(),
            db: db.clone(),
            pending: pending.clone(),
            spaces: [meta.clone(), pend.clone(), data.clone(), txn.clone()],
            unsynced: unsynced.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("optimystic-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::io(data_dir, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let syncer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::Builder::new()
                .name("optimystic-syncer".into())
                .spawn(move || sync_lazy_writes(&db, &unsynced, &stop))
                .map_err(|e| StorageError::io(data_dir, e))?
        };
        Ok(Self {
            db,
            stats,
            pending,
            meta,
            pend,
            data,
            txn,
            queue: Some(Arc::new(tx)),
            writer: Mutex::new(Some(handle)),
            syncer: Mutex::new(Some((stop, syncer))),
            dir,
            _lock: lock,
        })
    }

    fn send(&self, batch: WriteBatch, lazy: bool) -> WriteFuture {
        if crate::faults::disk_full() {
            self.stats.failures.add(1);
            let e = StorageError::io("fjall", crate::faults::disk_full_error());
            return Box::pin(std::future::ready(Err(e)));
        }
        let ops = match batch
            .iter()
            .map(Self::encode)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ops) => ops,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let queue = self.queue.as_ref().map(Arc::downgrade);
        Box::pin(async move {
            let queue = queue
                .and_then(|q| q.upgrade())
                .map(|q| (*q).clone())
                .ok_or(StorageError::Closed)?;
            let (done, wait) = oneshot::channel();
            queue
                .send(WriteRequest { ops, lazy, done })
                .await
                .map_err(|_| StorageError::Closed)?;
            wait.await.map_err(|_| StorageError::Closed)?
        })
    }

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

    fn encode(op: &WriteOp) -> Result<Encoded, StorageError> {
        fn val<T: Serialize + ?Sized>(v: &T) -> Result<Option<Vec<u8>>, StorageError> {
            rmp_serde::to_vec_named(v)
                .map(|v| Some(seal::seal_value(&v)))
                .map_err(|e| StorageError::Encode {
                    what: "messagepack record".into(),
                    message: e.to_string(),
                })
        }
        let data = |key: Vec<u8>, value| Encoded {
            space: Space::Data,
            pend: None,
            key,
            value,
        };
        let txn = |hash: &str, value| -> Result<Encoded, StorageError> {
            crate::model::validate_id("message hash", hash).map_err(|e| StorageError::Encode {
                what: "txn key".into(),
                message: e.to_string(),
            })?;
            Ok(Encoded {
                space: Space::Txn,
                pend: None,
                key: hash.as_bytes().to_vec(),
                value,
            })
        };
        let pend = |block: &BlockId, trx: &TrxId, value| Encoded {
            space: Space::Pend,
            pend: Some((block.clone(), trx.clone())),
            key: pend_key(block, trx),
            value,
        };
        Ok(match op {
            WriteOp::PutPending {
                block,
                trx,
                transform,
            } => pend(block, trx, val(&**transform)?),
            WriteOp::DeletePending { block, trx } => pend(block, trx, None),
            WriteOp::PutTransaction {
                block,
                trx,
                transform,
            } => data(
                key(block, b't', trx.as_str().as_bytes()),
                val(&**transform)?,
            ),
            WriteOp::PutMaterialized { block, trx, value } => data(
                key(block, b'b', trx.as_str().as_bytes()),
                val(&value.as_deref())?,
            ),
            WriteOp::DeleteRevision { block, rev } => {
                data(key(block, b'r', &rev.to_be_bytes()), None)
            }
            WriteOp::DeleteTransaction { block, trx } => {
                data(key(block, b't', trx.as_str().as_bytes()), None)
            }
            WriteOp::DeleteMaterialized { block, trx } => {
                data(key(block, b'b', trx.as_str().as_bytes()), None)
            }
            WriteOp::PutRevision { block, rev, trx } => {
                data(key(block, b'r', &rev.to_be_bytes()), val(trx)?)
            }
            WriteOp::PutTxn { hash, bytes } => txn(hash, Some(seal::seal_value(bytes)))?,
            WriteOp::DeleteTxn { hash } => txn(hash, None)?,
            WriteOp::PutMeta { block, meta } => Encoded {
                space: Space::Meta,
                pend: None,
                key: block.as_str().as_bytes().to_vec(),
                value: val(meta)?,
            },
            WriteOp::DeleteMeta { block } => Encoded {
                space: Space::Meta,
                pend: None,
                key: block.as_str().as_bytes().to_vec(),
                value: None,
            },
        })
    }
}

fn key(block: &BlockId, tag: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = prefix(block, tag);
    k.extend_from_slice(suffix);
    k
}

fn pend_key(block: &BlockId, trx: &TrxId) -> Vec<u8> {
    format!("{block}/{trx}").into_bytes()
}

fn prefix(block: &BlockId, tag: u8) -> Vec<u8> {
    let id = block.as_str().as_bytes();
    let mut k = Vec::with_capacity(id.len() + 3 + 16);
    k.extend_from_slice(id);
    k.extend_from_slice(&[b'/', tag, b'/']);
    k
}

/// Ids of pending transactions by block, mirroring the `pend` keyspace.
struct PendingIndex(DashMap<BlockId, BTreeSet<TrxId>>);

impl PendingIndex {
    fn load(pend: &Keyspace) -> Result<Self, StorageError> {
        let index = DashMap::new();
        for guard in pend.iter() {
            let k = guard.key().map_err(engine)?;
            let bad = || StorageError::corrupt(String::from_utf8_lossy(&k), "bad pending key");
            let text = std::str::from_utf8(&k).map_err(|_| bad())?;
            let (block, trx) = text.split_once('/').ok_or_else(bad)?;
            let block = BlockId::new(block).map_err(|_| bad())?;
            let trx = TrxId::new(trx).map_err(|_| bad())?;
            index.entry(block).or_insert_with(BTreeSet::new).insert(trx);
        }
        Ok(Self(index))
    }

    fn apply(&self, op: &Encoded) {
        let Some((block, trx)) = &op.pend else {
            return;
        };
        if op.value.is_some() {
            self.0.entry(block.clone()).or_default().insert(trx.clone());
        } else {
            self.0.remove_if_mut(block, |_, set| {
                set.remove(trx);
                set.is_empty()
            });
        }
    }
}

struct Writer {
    stats: Arc<StorageStats>,
    pending: Arc<PendingIndex>,
    db: Database,
    /// Indexed by [`Space`].
    spaces: [Keyspace; 4],
    /// A lazy batch was written and no sync has covered it yet.
    unsynced: Arc<AtomicBool>,
}

/// Syncs the journal every [`LAZY_SYNC`] (see [`lazy_sync_interval`]) while lazy
/// batches are unsynced, until `stop`.
fn sync_lazy_writes(db: &Database, unsynced: &AtomicBool, stop: &AtomicBool) {
    let every = lazy_sync_interval();
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Acquire) {
        // Wakes at least every LAZY_SYNC, so a stop is seen that soon.
        std::thread::sleep(every.min(LAZY_SYNC));
        if last.elapsed() < every {
            continue;
        }
        last = std::time::Instant::now();
        if unsynced.swap(false, Ordering::AcqRel) {
            if let Err(e) = db.persist(PersistMode::SyncData) {
                unsynced.store(true, Ordering::Release);
                tracing::error!(error = %e, "syncing lazily written records failed");
            }
        }
    }
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(req) => group.push(req),
                    Err(_) => break,
                }
            }
            let result = self.commit(&group);
            self.count(&group, result.is_ok());
            if result.is_ok() {
                group
                    .iter()
                    .flat_map(|r| &r.ops)
                    .for_each(|op| self.pending.apply(op));
            }
            for req in group.drain(..) {
                let reply = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StorageError::Engine(e.clone())),
                };
                // The caller may have gone away; the write is durable regardless.
                let _ = req.done.send(reply);
            }
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final persist of the embedded store failed");
        }
    }

    fn count(&self, group: &[WriteRequest], ok: bool) {
        let n = group.len() as u64;
        if !ok {
            self.stats.failures.add(n);
            return;
        }
        self.stats.batches.add(n);
        if group.iter().any(|r| !r.lazy) {
            self.stats.syncs.add(1);
        }
        let bytes: usize = group
            .iter()
            .flat_map(|r| &r.ops)
            .map(|op| op.key.len() + op.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.stats.bytes.add(bytes as u64);
    }

    /// One batch for the group: synced unless every request in it is lazy (then
    /// handed to the OS, and the syncer covers it within [`LAZY_SYNC`]).
    fn commit(&self, group: &[WriteRequest]) -> Result<(), String> {
        let lazy = group.iter().all(|r| r.lazy);
        let mode = if lazy {
            PersistMode::Buffer
        } else {
            PersistMode::SyncData
        };
        let mut batch = self.db.batch().durability(Some(mode));
        for op in group.iter().flat_map(|r| &r.ops) {
            let ks = &self.spaces[op.space as usize];
            match &op.value {
                Some(v) => batch.insert(ks, op.key.as_slice(), v.as_slice()),
                None => batch.remove(ks, op.key.as_slice()),
            }
        }
        batch.commit().map_err(|e| e.to_string())?;
        if lazy {
            self.unsynced.store(true, Ordering::Release);
        }
        Ok(())
    }
}

impl Drop for EmbeddedRawStorage {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.syncer.lock().take() {
            stop.store(true, Ordering::Release);
            if handle.join().is_err() {
                tracing::error!("embedded storage syncer thread panicked");
            }
        }
        self.queue.take();
        if let Some(handle) = self.writer.lock().take() {
            // The writer stops once every queued write is done and no sender is
            // left. A send blocked on a full queue, in a task of the runtime being
            // dropped right now on this thread, would still hold one: waiting for
            // it would never end, so wait a bounded time and let the writer finish
            // on its own (it drains what it receives; nothing acknowledged is lost).
            let deadline = std::time::Instant::now() + WRITER_STOP_WAIT;
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if !handle.is_finished() {
                tracing::warn!(
                    "embedded storage writer still has senders at close; not waiting for it"
                );
            } else if handle.join().is_err() {
                tracing::error!("embedded storage writer thread panicked");
            }
        }
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
        super::usage::allocated_bytes(&self.dir).map_err(|e| StorageError::io(&self.dir, e))
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine)
    }

    fn exports(&self) -> bool {
        true
    }

    /// One fjall snapshot across the three keyspaces: every record as of one
    /// sequence number, however writes go on meanwhile.
    fn export(&self, sink: &mut super::backup::ExportSink<'_>) -> Result<u64, StorageError> {
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

impl EmbeddedRawStorage {
    /// Fills this store, which must be empty and not yet serving, with a
    /// backup's records (`records` yields them in order) in batches, then makes
    /// them durable. Close the store afterwards: its in-memory index of pending
    /// transactions was built before the import.
    pub fn import(
        &self,
        records: impl FnOnce(&mut super::backup::ImportSink<'_>) -> Result<u64, StorageError>,
    ) -> Result<u64, StorageError> {
        const BATCH: usize = 4096;
        if self.meta.approximate_len() > 0 || self.data.approximate_len() > 0 {
            return Err(StorageError::Unsupported(
                "a backup is restored only into an empty store".into(),
            ));
        }
        let spaces = [&self.meta, &self.pend, &self.data];
        let mut batch = self.db.batch();
        let mut held = 0;
        let n = records(&mut |space, k, v| {
            let ks = spaces
                .get(usize::from(space))
                .ok_or_else(|| StorageError::corrupt("backup", format!("keyspace {space}")))?;
            batch.insert(ks, k, v);
            held += 1;
            if held >= BATCH {
                std::mem::replace(&mut batch, self.db.batch())
                    .commit()
                    .map_err(engine)?;
                held = 0;
            }
            Ok(())
        })?;
        batch.commit().map_err(engine)?;
        self.db.persist(PersistMode::SyncAll).map_err(engine)?;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn put(hash: &str) -> WriteBatch {
        vec![WriteOp::PutTxn {
            hash: hash.into(),
            bytes: Arc::new(b"{}".to_vec()),
        }]
    }

    #[test]
    fn a_lazy_batch_is_not_synced_on_its_own_yet_is_read_at_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()).unwrap();
            block_on(s.write_lazy(put("a"))).unwrap();
            assert_eq!(s.stats().syncs.get(), 0, "a lazy batch alone is not synced");
            assert!(s.get_txn("a").unwrap().is_some(), "readable at once");
            block_on(s.write(put("b"))).unwrap();
            assert_eq!(s.stats().syncs.get(), 1, "a durable batch is");
        }
        let s = EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert!(s.get_txn("a").unwrap().is_some());
        assert!(s.get_txn("b").unwrap().is_some());
    }
}
