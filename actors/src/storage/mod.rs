//! Block storage: the [`RawStorage`] trait, its three backends and the per-block
//! rules of DESIGN §4 ([`BlockStorage`]). Nothing in here knows about actors.
//!
//! A backend stores, per block: metadata (present revision ranges and `latest`),
//! the revision → transaction map, committed and pending transforms, and
//! materialized blocks. Reads are synchronous; a write is one [`WriteBatch`] that
//! is atomic per block and durable when its future resolves.

pub mod backup;
mod block_storage;
mod changes;
mod embedded;
mod file;
mod lock;
mod memory;
mod regions;
mod seal;
mod types;
mod usage;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use crate::model::{RepoError, StorageError};
pub use block_storage::{
    BlockStorage, CachedState, CommitPlan, Effect, PendCommitPlan, PendPlan, RestoreFn,
};
pub use changes::Changes;
pub use embedded::{EmbeddedOptions, EmbeddedRawStorage};
pub use file::FileRawStorage;
pub use lock::DataDirLock;
pub use memory::MemoryRawStorage;
pub use regions::RegionIndex;
pub use seal::{read_embedded_meta, read_file_meta};
pub use types::{ArchiveRevision, BlockArchive, BlockMeta, RevRange, WriteBatch, WriteOp};

use crate::metrics::Counter;
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// Resolves once a [`WriteBatch`] is durable (or failed, having changed nothing
/// on the embedded backend, or leaving each block before or after on the file one).
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

/// What every backend provides. Implementations must be safe to share between
/// threads; the BlockActor guarantees a single writer per block.
pub trait RawStorage: Send + Sync + 'static {
    /// Short name of the backend (`embedded`, `file`, `memory`).
    fn backend(&self) -> &'static str;
    /// The block's metadata, `None` for a block never stored here.
    fn get_meta(&self, block: &BlockId) -> Result<Option<BlockMeta>, StorageError>;
    /// The transaction that produced `rev`.
    fn get_revision(&self, block: &BlockId, rev: Rev) -> Result<Option<TrxId>, StorageError>;
    /// Revisions in `from..=to`, ascending.
    fn list_revisions(
        &self,
        block: &BlockId,
        from: Rev,
        to: Rev,
    ) -> Result<Vec<TrxRev>, StorageError>;
    /// A pending transform.
    fn get_pending(&self, block: &BlockId, trx: &TrxId) -> Result<Option<Transform>, StorageError>;
    /// Ids of every pending transaction on the block, sorted.
    fn list_pending(&self, block: &BlockId) -> Result<Vec<TrxId>, StorageError>;
    /// A committed transform.
    fn get_transaction(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Transform>, StorageError>;
    /// The block as materialized by `trx`: `Some(None)` means deleted by it.
    fn get_materialized(
        &self,
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<Option<Option<Block>>, StorageError>;
    /// Applies `batch` atomically per block; resolves when durable.
    fn write(&self, batch: WriteBatch) -> WriteFuture;
    /// Like [`Self::write`], but may resolve once the batch survives a crash of
    /// this process (handed to the operating system) rather than a power loss: it
    /// becomes durable with the next durable write, or within [`LAZY_SYNC`]. For
    /// records that only speed up recovery and can be rebuilt from durable ones
    /// (a cluster member's `Committed` state). Backends without the distinction
    /// write durably.
    fn write_lazy(&self, batch: WriteBatch) -> WriteFuture {
        self.write(batch)
    }
    /// Number of blocks with metadata, exactly (may scan every block).
    fn block_count(&self) -> Result<u64, StorageError>;
    /// Number of blocks with metadata, cheaply: may count a block more than once
    /// until the engine compacts (the embedded engine counts record versions).
    fn approximate_block_count(&self) -> Result<u64, StorageError> {
        self.block_count()
    }
    /// Every block with metadata (a scan: for handing a region's blocks over).
    fn list_blocks(&self) -> Result<Vec<BlockId>, StorageError>;
    /// Write counters of this backend.
    fn stats(&self) -> &StorageStats;
    /// A cluster transaction's stored state (JSON), by messageHash.
    fn get_txn(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every stored cluster transaction, as (messageHash, JSON).
    fn list_txns(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Whether a batch lands all-or-nothing (false for the file backend, whose
    /// blocks are only atomic one at a time and may keep unpublished records).
    fn atomic_batches(&self) -> bool {
        true
    }
    /// Bytes the store's files occupy on disk, as allocated (0 for memory).
    fn disk_bytes(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
    /// Whether [`export`](Self::export) works on this backend.
    fn exports(&self) -> bool {
        false
    }
    /// Every block record (metadata, pending transforms, revisions) as of one
    /// instant, handed to `sink` with its keyspace (a [`backup::SPACES`] index)
    /// and its bytes as stored; returns how many. A backend that cannot read
    /// one instant refuses.
    fn export(&self, sink: &mut backup::ExportSink<'_>) -> Result<u64, StorageError> {
        let _ = sink;
        Err(StorageError::Unsupported(format!(
            "backups need the embedded backend (this node runs {}): stop the node and copy its data directory instead",
            self.backend()
        )))
    }
    /// Makes everything written so far durable (every acknowledged write already
    /// is; this also persists engine state, for a clean shutdown).
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Longest a lazily written batch stays short of durable (see
/// [`RawStorage::write_lazy`]).
pub const LAZY_SYNC: std::time::Duration = std::time::Duration::from_millis(25);

/// How often a backend syncs lazily written batches: [`LAZY_SYNC`]. Debug builds
/// take the `lazy-sync` rule of the test fault file instead ([`crate::faults`]),
/// so the power-cut tests can hold
/// lazy batches back as long as they like — the worst case `write_lazy` allows,
/// durable only with the next durable write — and show that no acknowledged
/// write depends on one.
pub fn lazy_sync_interval() -> std::time::Duration {
    crate::faults::lazy_sync().unwrap_or(LAZY_SYNC)
}

/// Write counters kept by every backend.
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Write batches made durable.
    pub batches: Counter,
    /// `fsync`/`fdatasync` calls (one per group on the embedded engine).
    pub syncs: Counter,
    /// Bytes of records written (keys and values, or file contents).
    pub bytes: Counter,
    /// Write batches that failed.
    pub failures: Counter,
    /// Reads that found a damaged record (checksum mismatch, truncation, bad encoding).
    pub corrupt: Counter,
}

impl StorageStats {
    /// Counts and logs a damaged record found by a read, passing the error on.
    pub(crate) fn corrupt_found(&self, e: StorageError) -> StorageError {
        if matches!(e, StorageError::Corrupt { .. }) {
            self.corrupt.add(1);
            tracing::warn!(error = %e, "damaged record on disk: treated as missing, to be restored from peers");
        }
        e
    }
}

/// Which backend a node stores its blocks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// The embedded transactional engine (fjall): the fast default.
    #[default]
    Embedded,
    /// One JSON file per record, in the seed's inspectable layout.
    File,
    /// Volatile, for tests.
    Memory,
}

impl std::str::FromStr for StorageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            "file" => Ok(Self::File),
            "memory" => Ok(Self::Memory),
            other => Err(format!(
                "unknown storage {other:?}; expected embedded, file or memory"
            )),
        }
    }
}

impl std::fmt::Display for StorageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Embedded => "embedded",
            Self::File => "file",
            Self::Memory => "memory",
        })
    }
}

/// Opens the backend `kind` under `data_dir` (created if absent), taking the
/// data dir's lock so a second process gets [`StorageError::InUse`].
pub fn open_storage(
    kind: StorageKind,
    data_dir: &Path,
) -> Result<Arc<dyn RawStorage>, StorageError> {
    open_storage_with(kind, data_dir, EmbeddedOptions::default())
}

/// [`open_storage`] with the embedded engine tuned by `embedded`.
pub fn open_storage_with(
    kind: StorageKind,
    data_dir: &Path,
    embedded: EmbeddedOptions,
) -> Result<Arc<dyn RawStorage>, StorageError> {
    Ok(match kind {
        StorageKind::Embedded => Arc::new(EmbeddedRawStorage::open(data_dir, embedded)?),
        StorageKind::File => Arc::new(FileRawStorage::open(data_dir)?),
        StorageKind::Memory => Arc::new(MemoryRawStorage::default()),
    })
}

#[cfg(test)]
mod conformance;
