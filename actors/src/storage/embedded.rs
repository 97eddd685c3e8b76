//! The embedded transactional engine (fjall): the default backend.
//!
//! Two keyspaces: `meta` (one small record per block) and `data` (revisions,
//! pending and committed transforms, materialized blocks), keyed
//! `{blockId}/{tag}/{suffix}`; block ids never contain `/`, so one block's keys
//! form one prefix. Values are MessagePack.
//!
//! Writes go to one writer thread through a bounded queue. The writer drains every
//! request waiting (up to [`MAX_GROUP`]), applies them as **one** atomic fjall
//! batch with one `fdatasync`, then answers each: concurrent writers share a sync
//! (group commit), and a reply means durable.

use std::path::Path;
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{BlockMeta, DataDirLock, RawStorage, StorageError, WriteBatch, WriteFuture, WriteOp};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// Most write requests merged into one durable batch.
pub(crate) const MAX_GROUP: usize = 512;
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

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 32 << 20,
            memtable_bytes: 8 << 20,
            worker_threads: 1,
        }
    }
}

struct Encoded {
    meta: bool,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

struct WriteRequest {
    ops: Vec<Encoded>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Group-committing fjall store.
pub struct EmbeddedRawStorage {
    meta: Keyspace,
    data: Keyspace,
    queue: Option<mpsc::Sender<WriteRequest>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: DataDirLock,
}

fn engine(e: fjall::Error) -> StorageError {
    StorageError::Engine(e.to_string())
}

impl EmbeddedRawStorage {
    /// Opens (creating) the store in `{data_dir}/fjall`, taking the data dir's lock.
    pub fn open(data_dir: &Path, opts: EmbeddedOptions) -> Result<Self, StorageError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let db = Database::builder(data_dir.join("fjall"))
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
        let data = ks("data")?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            db,
            meta: meta.clone(),
            data: data.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("optimystic-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::io(data_dir, e))?;
        Ok(Self {
            meta,
            data,
            queue: Some(tx),
            writer: Mutex::new(Some(handle)),
            _lock: lock,
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
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::corrupt(String::from_utf8_lossy(key), e))
    }

    fn encode(op: &WriteOp) -> Result<Encoded, StorageError> {
        fn val<T: Serialize + ?Sized>(v: &T) -> Result<Option<Vec<u8>>, StorageError> {
            rmp_serde::to_vec_named(v)
                .map(Some)
                .map_err(|e| StorageError::Encode {
                    what: "messagepack record".into(),
                    message: e.to_string(),
                })
        }
        let data = |key: Vec<u8>, value| Encoded {
            meta: false,
            key,
            value,
        };
        Ok(match op {
            WriteOp::PutPending {
                block,
                trx,
                transform,
            } => data(
                key(block, b'p', trx.as_str().as_bytes()),
                val(&**transform)?,
            ),
            WriteOp::DeletePending { block, trx } => {
                data(key(block, b'p', trx.as_str().as_bytes()), None)
            }
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
            WriteOp::PutRevision { block, rev, trx } => {
                data(key(block, b'r', &rev.to_be_bytes()), val(trx)?)
            }
            WriteOp::PutMeta { block, meta } => Encoded {
                meta: true,
                key: block.as_str().as_bytes().to_vec(),
                value: val(meta)?,
            },
        })
    }
}

fn key(block: &BlockId, tag: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = prefix(block, tag);
    k.extend_from_slice(suffix);
    k
}

fn prefix(block: &BlockId, tag: u8) -> Vec<u8> {
    let id = block.as_str().as_bytes();
    let mut k = Vec::with_capacity(id.len() + 3 + 16);
    k.extend_from_slice(id);
    k.extend_from_slice(&[b'/', tag, b'/']);
    k
}

struct Writer {
    db: Database,
    meta: Keyspace,
    data: Keyspace,
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

    fn commit(&self, group: &[WriteRequest]) -> Result<(), String> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for op in group.iter().flat_map(|r| &r.ops) {
            let ks = if op.meta { &self.meta } else { &self.data };
            match &op.value {
                Some(v) => batch.insert(ks, op.key.as_slice(), v.as_slice()),
                None => batch.remove(ks, op.key.as_slice()),
            }
        }
        batch.commit().map_err(|e| e.to_string())
    }
}

impl Drop for EmbeddedRawStorage {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
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
            let trx_id = rmp_serde::from_slice(&v)
                .map_err(|e| StorageError::corrupt(String::from_utf8_lossy(&k), e))?;
            out.push(TrxRev {
                trx_id,
                rev: Rev::from_be_bytes(rev_bytes),
            });
        }
        Ok(out)
    }

    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError> {
        self.get(&self.data, &key(block, b'p', trx.as_str().as_bytes()))
    }

    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError> {
        let p = prefix(block, b'p');
        let mut out = Vec::new();
        for guard in self.data.prefix(&p) {
            let k = guard.key().map_err(engine)?;
            let id = k
                .get(p.len()..)
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| TrxId::new(s).ok())
                .ok_or_else(|| {
                    StorageError::corrupt(String::from_utf8_lossy(&k), "bad pending key")
                })?;
            out.push(id);
        }
        Ok(out)
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
        let ops = match batch
            .iter()
            .map(Self::encode)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ops) => ops,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let queue = self.queue.clone();
        Box::pin(async move {
            let queue = queue.ok_or(StorageError::Closed)?;
            let (done, wait) = oneshot::channel();
            queue
                .send(WriteRequest { ops, done })
                .await
                .map_err(|_| StorageError::Closed)?;
            wait.await.map_err(|_| StorageError::Closed)?
        })
    }

    fn block_count(&self) -> Result<u64, StorageError> {
        Ok(self.meta.approximate_len() as u64)
    }
}
