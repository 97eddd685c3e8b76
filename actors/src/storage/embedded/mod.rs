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
//!
//! This file owns the store itself: opening it (keyspaces, writer and syncer
//! threads) and closing it. Key layout is in `keys`, record encoding in `encode`,
//! the pending index in `pending`, the write path in `writer`, reads in `raw` and
//! backup restore in `import`.

mod encode;
mod import;
mod keys;
mod options;
mod pending;
mod raw;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{DataDirLock, StorageError, StorageStats};
use pending::PendingIndex;
use writer::{sync_lazy_writes, WriteRequest, Writer};

pub use options::EmbeddedOptions;

/// Most write requests merged into one durable batch.
pub(crate) const MAX_GROUP: usize = 512;
/// How long closing the storage waits for the writer thread to finish.
const WRITER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Write requests queued for the writer thread before callers wait (bound of the queue).
const QUEUE_DEPTH: usize = 4096;

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
