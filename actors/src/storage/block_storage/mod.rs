//! One block's rules (DESIGN §4) over a [`RawStorage`], as plans: each write
//! operation is checked against the cached state and returns the [`WriteBatch`] to
//! make durable plus the [`Effect`] to apply to the cache once it is. The owner
//! (a BlockActor) runs one operation at a time, so the cache is always the truth.
//!
//! Here: the plan and cache types, loading and applying; [`read`] the reads and
//! archives, [`rules`] the write plans, [`restore`] restoration from an archive.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{
    ArchiveRevision, BlockArchive, BlockMeta, RawStorage, RepoError, RevRange, StorageError,
    WriteBatch, WriteOp,
};
use crate::model::{
    apply_transform, Block, BlockId, PendPolicy, Rev, Transform, Transforms, TrxId, TrxPending,
    TrxRev, TrxTransforms,
};

/// Asks the network for a block's archive from a revision (`None`: the latest part).
pub type RestoreFn = Arc<
    dyn Fn(BlockId, Option<Rev>) -> BoxFuture<'static, Result<Option<BlockArchive>, String>>
        + Send
        + Sync,
>;

/// A damaged record (see [`StorageError::Corrupt`]) read as absent, remembering why
/// in `damaged`; other errors pass through.
fn missing_if_corrupt<T>(
    r: Result<T, StorageError>,
    damaged: &mut Option<String>,
) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ StorageError::Corrupt { .. }) => {
            *damaged = Some(e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What the owner of a block keeps between operations.
#[derive(Debug, Clone, Default)]
pub struct CachedState {
    /// Metadata; `None` for a block never stored here.
    pub meta: Option<BlockMeta>,
    /// Pending transforms by transaction.
    pub pending: BTreeMap<TrxId, Arc<Transform>>,
    /// The block materialized at `meta.latest` (`None` = deleted or never written).
    pub latest_block: Option<Arc<Block>>,
    /// Revision records past `latest`, left by commits that crashed before they were
    /// published (file backend only); the next commit removes them.
    pub orphans: Vec<Rev>,
    /// Why the block is damaged on this node (a record failed its checksum or did
    /// not decode), until a restoration from peers repairs it. A damaged block is
    /// never served nor written: reads restore it first, or fail.
    pub damaged: Option<String>,
}

/// A cache change to apply once its batch is durable.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Nothing changes (idempotent repeat).
    None,
    /// A transaction became pending.
    Pended(TrxId, Arc<Transform>),
    /// A transaction committed.
    Committed {
        /// Transaction and revision.
        trx_rev: TrxRev,
        /// The newly materialized block.
        block: Option<Arc<Block>>,
        /// Metadata after the commit.
        meta: BlockMeta,
    },
    /// A pending transaction was dropped.
    Cancelled(TrxId),
    /// Revisions were restored from a peer.
    Restored(Box<CachedState>),
}

/// Outcome of checking a pend on one block.
#[derive(Debug)]
pub struct PendPlan {
    /// Other transactions pending on the block.
    pub pending: Vec<TrxPending>,
    /// Committed transactions the requester has not seen (stale when non-empty).
    pub missing: Vec<TrxTransforms>,
    /// What to write if the pend goes ahead.
    pub ops: WriteBatch,
    /// Cache change once written.
    pub effect: Effect,
}

/// Outcome of checking a commit on one block.
#[derive(Debug)]
pub enum CommitPlan {
    /// The same (trx, rev) is already committed: succeed without change.
    AlreadyCommitted,
    /// The block is past `rev`: these are the transactions the requester missed.
    Stale(Vec<TrxTransforms>),
    /// Write `ops`, then apply `effect`.
    Apply(WriteBatch, Effect),
}

/// Outcome of checking a pendCommit on one block.
#[derive(Debug)]
pub enum PendCommitPlan {
    /// The same (trx, rev) is already committed: succeed without change.
    AlreadyCommitted,
    /// The pend would not go ahead (stale, or blocked by the policy).
    PendBlocked(PendPlan),
    /// The pend would go ahead but the commit is stale; nothing is written.
    CommitStale {
        /// Other transactions pending on the block.
        pending: Vec<TrxPending>,
        /// Committed transactions the requester missed.
        missing: Vec<TrxTransforms>,
    },
    /// Write `ops` (the commit, no pending record), then apply `effect`.
    Apply {
        /// Other transactions pending on the block.
        pending: Vec<TrxPending>,
        /// The writes.
        ops: WriteBatch,
        /// The cache change.
        effect: Effect,
    },
}

/// One block's storage rules over a raw backend.
pub struct BlockStorage {
    id: BlockId,
    raw: Arc<dyn RawStorage>,
    state: CachedState,
    max_pending: usize,
    /// Told of every applied effect (watchers).
    changes: Option<super::Changes>,
}

mod read;
mod restore;
mod rules;

impl BlockStorage {
    /// Loads the block's metadata, pending transforms and latest materialization.
    pub fn load(id: BlockId, raw: Arc<dyn RawStorage>) -> Result<Self, StorageError> {
        let mut damaged = None;
        let meta = missing_if_corrupt(raw.get_meta(&id), &mut damaged)?.flatten();
        let latest_rev = meta.as_ref().and_then(|m| m.latest.as_ref()).map(|l| l.rev);
        // Backends without atomic batches may hold records of a commit that crashed
        // before its metadata published it: revisions past `latest`, and a committed
        // transform beside a still-pending one.
        let orphans: Vec<TrxRev> = if raw.atomic_batches() {
            Vec::new()
        } else {
            raw.list_revisions(&id, latest_rev.map_or(0, |r| r + 1), Rev::MAX)?
        };
        let mut pending = BTreeMap::new();
        for trx in raw.list_pending(&id)? {
            if let Some(latest) = latest_rev.filter(|_| !raw.atomic_batches()) {
                // Left behind by a crash after its commit was published.
                let published = raw.get_transaction(&id, &trx)?.is_some()
                    && raw
                        .list_revisions(&id, 0, latest)?
                        .iter()
                        .any(|r| r.trx_id == trx);
                if published {
                    continue;
                }
            }
            if let Some(t) = missing_if_corrupt(raw.get_pending(&id, &trx), &mut damaged)?.flatten()
            {
                pending.insert(trx, Arc::new(t));
            }
        }
        let mut me = Self {
            id,
            raw,
            max_pending: usize::MAX,
            changes: None,
            state: CachedState {
                meta,
                pending,
                latest_block: None,
                orphans: orphans.into_iter().map(|r| r.rev).collect(),
                damaged,
            },
        };
        me.state.latest_block = me.load_latest_block()?;
        Ok(me)
    }

    /// Loads the latest materialization into the cache; a damaged record marks the
    /// block damaged instead of failing.
    fn load_latest_block(&mut self) -> Result<Option<Arc<Block>>, StorageError> {
        let Some(latest) = self.latest().cloned() else {
            return Ok(None);
        };
        // Every local commit stores its materialization: usually one point read.
        if let Some(m) = self.materialized(&latest.trx_id)? {
            return Ok(m.map(Arc::new));
        }
        let mut damaged = None;
        let read = missing_if_corrupt(self.materialize_at(latest.rev), &mut damaged)?;
        if damaged.is_some() {
            self.state.damaged = damaged;
        }
        Ok(read.flatten().and_then(|(_, b)| b).map(Arc::new))
    }

    /// A stored materialization; a damaged one counts as absent (the transforms
    /// rebuild it).
    fn materialized(&self, trx: &TrxId) -> Result<Option<Option<Block>>, StorageError> {
        match self.raw.get_materialized(&self.id, trx) {
            Err(StorageError::Corrupt { .. }) => Ok(None),
            r => r,
        }
    }

    /// Marks the block damaged (a read found a record that failed its checks), so
    /// the next read restores it from peers before serving anything.
    pub fn mark_damaged(&mut self, why: String) {
        self.state.damaged = Some(why);
    }

    /// The error to return for a damaged block nobody could repair.
    fn damaged_error(&self) -> Option<StorageError> {
        self.state
            .damaged
            .as_ref()
            .map(|why| StorageError::Corrupt {
                what: format!("block {}", self.id),
                message: format!("{why}; no peer restored it"),
            })
    }

    /// Limits the pending transactions a pend may leave on the block (a repeat of
    /// one already pending is not counted); unlimited by default.
    pub fn with_pending_limit(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// Tells `changes` of every effect applied from now on.
    pub fn with_changes(mut self, changes: super::Changes) -> Self {
        self.changes = Some(changes);
        self
    }

    /// The block id.
    pub fn id(&self) -> &BlockId {
        &self.id
    }

    /// The cached state.
    pub fn state(&self) -> &CachedState {
        &self.state
    }

    /// The newest committed revision.
    pub fn latest(&self) -> Option<&TrxRev> {
        self.state.meta.as_ref().and_then(|m| m.latest.as_ref())
    }

    /// Ids of pending transactions, sorted.
    pub fn pending_ids(&self) -> Vec<TrxId> {
        self.state.pending.keys().cloned().collect()
    }

    /// A pending transform.
    pub fn pending(&self, trx: &TrxId) -> Option<&Arc<Transform>> {
        self.state.pending.get(trx)
    }

    /// Whether `rev` must be restored from peers before it can be read.
    pub fn needs_restore(&self, rev: Option<Rev>) -> bool {
        if self.state.damaged.is_some() {
            return true;
        }
        match (&self.state.meta, rev) {
            (None, _) => true,
            // Asked for a revision this node lacks, or one past its latest (it is behind).
            (Some(meta), Some(rev)) => {
                !meta.covers(rev) || meta.latest.as_ref().is_none_or(|l| rev > l.rev)
            }
            (Some(_), None) => false,
        }
    }

    /// The first revision to ask peers for when reading at `rev`: the one after
    /// this node's latest when it is behind, else `rev` itself (a damaged block
    /// asks for `rev`: its own records cannot be trusted).
    pub fn restore_from(&self, rev: Option<Rev>) -> Option<Rev> {
        if self.state.damaged.is_some() {
            return rev;
        }
        match (self.latest(), rev) {
            (Some(l), Some(r)) if r > l.rev => Some(l.rev + 1),
            _ => rev,
        }
    }

    /// Applies a plan's effect once its batch is durable.
    pub fn apply(&mut self, effect: Effect) -> Result<(), StorageError> {
        match effect {
            Effect::None => {}
            Effect::Pended(trx, t) => {
                self.state.pending.insert(trx, t);
            }
            Effect::Committed {
                trx_rev,
                block,
                meta,
            } => {
                self.state.pending.remove(&trx_rev.trx_id);
                self.state.orphans.clear();
                self.state.meta = Some(meta);
                self.state.latest_block = block;
            }
            Effect::Cancelled(trx) => {
                self.state.pending.remove(&trx);
            }
            Effect::Restored(state) => {
                self.state = *state;
                let latest = self.load_latest_block()?;
                self.state.latest_block = latest;
            }
        }
        if let Some(c) = &self.changes {
            c.notify(&self.id);
        }
        Ok(())
    }

    /// Reloads everything from the backend (after a write whose outcome is unknown).
    pub fn reload(&mut self) -> Result<(), StorageError> {
        let changes = self.changes.take();
        *self = Self::load(self.id.clone(), self.raw.clone())?.with_pending_limit(self.max_pending);
        // The write may have landed: whatever is cached of the block's region
        // must be read again.
        if let Some(c) = &changes {
            c.notify(&self.id);
        }
        self.changes = changes;
        Ok(())
    }

    /// The backend.
    pub fn raw(&self) -> &Arc<dyn RawStorage> {
        &self.raw
    }
}
