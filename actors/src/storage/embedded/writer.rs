//! The write path: callers queue requests ([`EmbeddedRawStorage::send`]), the
//! writer thread group-commits them (one fjall batch, one sync) and the syncer
//! makes lazy batches durable within [`LAZY_SYNC`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::{mpsc, oneshot};

use super::encode::Encoded;
use super::pending::PendingIndex;
use super::{EmbeddedRawStorage, MAX_GROUP};
use crate::storage::{
    lazy_sync_interval, StorageError, StorageStats, WriteBatch, WriteFuture, LAZY_SYNC,
};

pub(super) struct WriteRequest {
    ops: Vec<Encoded>,
    /// May resolve before `fdatasync` (see [`RawStorage::write_lazy`]).
    lazy: bool,
    done: oneshot::Sender<Result<(), StorageError>>,
}

impl EmbeddedRawStorage {
    pub(super) fn send(&self, batch: WriteBatch, lazy: bool) -> WriteFuture {
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
}

pub(super) struct Writer {
    pub(super) stats: Arc<StorageStats>,
    pub(super) pending: Arc<PendingIndex>,
    pub(super) db: Database,
    /// Indexed by [`Space`].
    pub(super) spaces: [Keyspace; 4],
    /// A lazy batch was written and no sync has covered it yet.
    pub(super) unsynced: Arc<AtomicBool>,
}

/// Syncs the journal every [`LAZY_SYNC`] (see [`lazy_sync_interval`]) while lazy
/// batches are unsynced, until `stop`.
pub(super) fn sync_lazy_writes(db: &Database, unsynced: &AtomicBool, stop: &AtomicBool) {
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
    pub(super) fn run(self, mut rx: mpsc::Receiver<WriteRequest>) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use futures::executor::block_on;

    use crate::storage::embedded::{EmbeddedOptions, EmbeddedRawStorage};
    use crate::storage::{RawStorage, WriteBatch, WriteOp};

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
