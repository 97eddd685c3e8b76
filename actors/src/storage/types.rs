//! Records kept per block and write batches (the archive and revision-range
//! wire types are in `model::archive`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::model::{ArchiveRevision, BlockArchive, RevRange};
use crate::model::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// Per-block metadata. `latest` is written last in every commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// Revision ranges present locally.
    pub ranges: Vec<RevRange>,
    /// The newest committed revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<TrxRev>,
}

impl BlockMeta {
    /// Whether revision `rev` is held locally.
    pub fn covers(&self, rev: Rev) -> bool {
        self.ranges.iter().any(|r| r.contains(rev))
    }

    /// Adds a range, merging it with the ranges it touches (an empty one adds
    /// nothing).
    pub fn add_range(&mut self, added: RevRange) {
        if added.end.is_some_and(|e| e <= added.start) {
            return;
        }
        let mut merged = added;
        self.ranges.retain(|r| {
            let touches =
                r.end.is_none_or(|e| e >= merged.start) && merged.end.is_none_or(|e| e >= r.start);
            if touches {
                merged.start = merged.start.min(r.start);
                merged.end = match (merged.end, r.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            !touches
        });
        self.ranges.push(merged);
        self.ranges.sort_by_key(|r| r.start);
    }
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Store a pending transform.
    PutPending {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
        /// Transform.
        transform: Arc<Transform>,
    },
    /// Drop a pending transform.
    DeletePending {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
    },
    /// Store a committed transform.
    PutTransaction {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
        /// Transform.
        transform: Arc<Transform>,
    },
    /// Store the block as materialized by a transaction (`None` = deleted).
    PutMaterialized {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
        /// Result.
        value: Option<Arc<Block>>,
    },
    /// Drop a revision record left by a commit that crashed before it was published.
    DeleteRevision {
        /// Block.
        block: BlockId,
        /// Revision.
        rev: Rev,
    },
    /// Record that `rev` was produced by `trx`.
    PutRevision {
        /// Block.
        block: BlockId,
        /// Revision.
        rev: Rev,
        /// Transaction.
        trx: TrxId,
    },
    /// Store a cluster transaction's state (JSON) under its messageHash.
    PutTxn {
        /// The transaction's messageHash (validated as an id).
        hash: String,
        /// Its state, JSON.
        bytes: Arc<Vec<u8>>,
    },
    /// Forget a cluster transaction's state (pruning decided ones).
    DeleteTxn {
        /// The transaction's messageHash (validated as an id).
        hash: String,
    },
    /// Replace the block's metadata.
    PutMeta {
        /// Block.
        block: BlockId,
        /// New metadata.
        meta: BlockMeta,
    },
    /// Forget a committed transform (a copy handed off: see
    /// `BlockStorage::plan_drop`).
    DeleteTransaction {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
    },
    /// Forget the block as a transaction materialized it.
    DeleteMaterialized {
        /// Block.
        block: BlockId,
        /// Transaction.
        trx: TrxId,
    },
    /// Forget the block's metadata: it is no longer stored here.
    DeleteMeta {
        /// Block.
        block: BlockId,
    },
}

impl WriteOp {
    /// Crash-safety order on backends without atomic batches: removal of the
    /// metadata (a block handed off is unpublished before its records go), data,
    /// then metadata (which publishes it), then removal of pending records.
    pub(crate) fn phase(&self) -> u8 {
        match self {
            Self::DeleteMeta { .. } => 0,
            Self::PutMeta { .. } => 2,
            Self::DeletePending { .. } => 3,
            _ => 1,
        }
    }

    /// The last phase of [`Self::phase`].
    pub(crate) const LAST_PHASE: u8 = 3;
}

/// Changes applied together: atomically on the embedded engine, per block in
/// crash-safe order on the file backend.
pub type WriteBatch = Vec<WriteOp>;
