//! One block's rules (DESIGN §4) over a [`RawStorage`], as plans: each write
//! operation is checked against the cached state and returns the [`WriteBatch`] to
//! make durable plus the [`Effect`] to apply to the cache once it is. The owner
//! (a BlockActor) runs one operation at a time, so the cache is always the truth.

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

    /// The block at `rev` (or the latest): the revision read and the block
    /// (`None` = deleted). `None` when the block did not exist at that revision.
    pub fn read(&self, rev: Option<Rev>) -> Result<Option<(TrxRev, Option<Block>)>, StorageError> {
        if let Some(e) = self.damaged_error() {
            return Err(e);
        }
        let Some(latest) = self.latest() else {
            return Ok(None);
        };
        match rev {
            Some(rev) if rev < latest.rev => self.materialize_at(rev),
            _ => Ok(Some((
                latest.clone(),
                self.state.latest_block.as_deref().cloned(),
            ))),
        }
    }

    /// Materializes at `rev`: the newest stored materialization at or below it,
    /// then the later transforms in order.
    fn materialize_at(&self, rev: Rev) -> Result<Option<(TrxRev, Option<Block>)>, StorageError> {
        let start = self
            .state
            .meta
            .as_ref()
            .and_then(|m| {
                m.ranges
                    .iter()
                    .filter(|r| r.start <= rev)
                    .map(|r| r.start)
                    .max()
            })
            .unwrap_or(0);
        let revs = self.raw.list_revisions(&self.id, start, rev)?;
        let Some(read) = revs.last().cloned() else {
            return Ok(None);
        };
        let mut base: Option<Block> = None;
        let mut from = 0;
        for (i, tr) in revs.iter().enumerate().rev() {
            if let Some(m) = self.materialized(&tr.trx_id)? {
                base = m;
                from = i + 1;
                break;
            }
        }
        for tr in &revs[from..] {
            let t = self.committed_transform(tr)?;
            base = apply_transform(&self.id, base.as_ref(), &t).map_err(|e| {
                StorageError::corrupt(format!("block {} rev {}", self.id, tr.rev), e)
            })?;
        }
        Ok(Some((read, base)))
    }

    /// The transform of a published revision; its absence means a damaged store.
    fn committed_transform(&self, tr: &TrxRev) -> Result<Transform, StorageError> {
        self.raw
            .get_transaction(&self.id, &tr.trx_id)?
            .ok_or_else(|| {
                StorageError::corrupt(
                    format!("block {} rev {}", self.id, tr.rev),
                    "transform missing",
                )
            })
    }

    /// Committed transactions in `from..=latest`, as reported in `missing`.
    fn missing_from(&self, from: Rev) -> Result<Vec<TrxTransforms>, StorageError> {
        let Some(latest) = self.latest() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for tr in self.raw.list_revisions(&self.id, from, latest.rev)? {
            let t = self
                .raw
                .get_transaction(&self.id, &tr.trx_id)?
                .unwrap_or_default();
            out.push(TrxTransforms {
                trx_id: tr.trx_id,
                rev: Some(tr.rev),
                transforms: Transforms::from_block(&self.id, &t),
            });
        }
        Ok(out)
    }

    /// Checks a pend of `transform` under `trx` (DESIGN §4 "pend").
    pub fn plan_pend(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
        policy: PendPolicy,
    ) -> Result<PendPlan, RepoError> {
        self.check_pend(trx, transform, rev, policy, true)
    }

    /// A pend its cluster agreed on: the policy and the stale check were decided
    /// by the cluster (docs/CONSENSUS.md, "The decided effect"), so it goes ahead
    /// whatever this copy's own pending set holds, and the per-block limit (a local
    /// setting) does not apply.
    pub fn plan_pend_agreed(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
    ) -> Result<PendPlan, RepoError> {
        self.check_pend(trx, transform, rev, PendPolicy::Continue, false)
    }

    /// [`Self::plan_pend`]; `limit` enforces the most pending transactions (a
    /// pendCommit leaves nothing pending, so it does not).
    fn check_pend(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
        policy: PendPolicy,
        limit: bool,
    ) -> Result<PendPlan, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        let pending = self
            .state
            .pending
            .iter()
            .filter(|(id, _)| *id != trx)
            .map(|(id, t)| TrxPending {
                block_id: self.id.clone(),
                trx_id: id.clone(),
                transform: (policy == PendPolicy::Return).then(|| (**t).clone()),
            })
            .collect();
        let mut plan = PendPlan {
            pending,
            missing: Vec::new(),
            ops: Vec::new(),
            effect: Effect::None,
        };
        if rev.is_some() || transform.insert.is_some() {
            let from = rev.unwrap_or(0);
            if self.latest().is_some_and(|l| l.rev >= from) {
                plan.missing = self.missing_from(from)?;
                return Ok(plan);
            }
        }
        if let Some(existing) = self.state.pending.get(trx) {
            if existing == transform {
                return Ok(plan);
            }
            return Err(RepoError::PendConflict {
                block: self.id.clone(),
                trx: trx.clone(),
            });
        }
        if limit && self.state.pending.len() >= self.max_pending {
            return Err(RepoError::TooManyPending {
                block: self.id.clone(),
                limit: self.max_pending,
            });
        }
        apply_transform(&self.id, self.state.latest_block.as_deref(), transform)?;
        plan.ops.push(WriteOp::PutPending {
            block: self.id.clone(),
            trx: trx.clone(),
            transform: transform.clone(),
        });
        plan.effect = Effect::Pended(trx.clone(), transform.clone());
        Ok(plan)
    }

    /// Checks a pend of `transform` under `trx` followed at once by its commit as
    /// `rev`, written as one batch with no pending record in between (a
    /// pendCommit): the pend's rules, then the commit's.
    pub fn plan_pend_commit(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        pend_rev: Option<Rev>,
        policy: PendPolicy,
        rev: Rev,
    ) -> Result<PendCommitPlan, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        let past = self.latest().is_some_and(|l| l.rev >= rev);
        if past && self.raw.get_revision(&self.id, rev)?.as_ref() == Some(trx) {
            return Ok(PendCommitPlan::AlreadyCommitted);
        }
        let pend = self.check_pend(trx, transform, pend_rev, policy, false)?;
        if !pend.missing.is_empty() || (!pend.pending.is_empty() && policy != PendPolicy::Continue)
        {
            return Ok(PendCommitPlan::PendBlocked(pend));
        }
        if past {
            return Ok(PendCommitPlan::CommitStale {
                pending: pend.pending,
                missing: self.missing_from(rev)?,
            });
        }
        let (ops, effect) = self.commit_ops(trx, rev, transform)?;
        Ok(PendCommitPlan::Apply {
            pending: pend.pending,
            ops,
            effect,
        })
    }

    /// Records are keyed by transaction, so a transaction that already committed
    /// another revision of this block must not commit again: it would overwrite
    /// that revision's transform and materialization. Records identical to the
    /// ones about to be written (a commit retried after a crash part-way through a
    /// non-atomic batch) change nothing and are allowed. One point read when the
    /// transaction is new here.
    fn check_trx_unused(
        &self,
        trx: &TrxId,
        transform: &Transform,
        block: Option<&Block>,
    ) -> Result<(), RepoError> {
        if self.state.meta.is_none() {
            return Ok(());
        }
        let Some(existing) = self.raw.get_transaction(&self.id, trx)? else {
            return Ok(());
        };
        let same_block = || -> Result<bool, StorageError> {
            Ok(match self.raw.get_materialized(&self.id, trx)? {
                Some(m) => m.as_ref() == block,
                None => true,
            })
        };
        if existing == *transform && same_block()? {
            return Ok(());
        }
        Err(RepoError::Invalid(format!(
            "transaction {trx} already committed another revision of block {}; a transaction commits a block once",
            self.id
        )))
    }

    /// Checks a commit of pending `trx` as `rev` (DESIGN §4 "commit").
    pub fn plan_commit(&self, trx: &TrxId, rev: Rev) -> Result<CommitPlan, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        if let Some(latest) = self.latest() {
            if latest.rev >= rev {
                if self.raw.get_revision(&self.id, rev)?.as_ref() == Some(trx) {
                    return Ok(CommitPlan::AlreadyCommitted);
                }
                return Ok(CommitPlan::Stale(self.missing_from(rev)?));
            }
        }
        let transform = self
            .state
            .pending
            .get(trx)
            .ok_or_else(|| RepoError::NotPending {
                block: self.id.clone(),
                trx: trx.clone(),
            })?;
        let (ops, effect) = self.commit_ops(trx, rev, transform)?;
        Ok(CommitPlan::Apply(ops, effect))
    }

    /// Checks a commit of `trx` as `rev` whose transform this copy may not hold
    /// pending (it missed the pend; the cluster agreed the commit and `transform`
    /// came from a member that held it): as [`Self::plan_commit`], with `transform`
    /// standing in for a missing pending record.
    pub fn plan_commit_with(
        &self,
        trx: &TrxId,
        rev: Rev,
        transform: Arc<Transform>,
    ) -> Result<CommitPlan, RepoError> {
        if self.state.pending.contains_key(trx) {
            return self.plan_commit(trx, rev);
        }
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        if let Some(latest) = self.latest() {
            if latest.rev >= rev {
                if self.raw.get_revision(&self.id, rev)?.as_ref() == Some(trx) {
                    return Ok(CommitPlan::AlreadyCommitted);
                }
                return Ok(CommitPlan::Stale(self.missing_from(rev)?));
            }
        }
        let (ops, effect) = self.commit_ops(trx, rev, &transform)?;
        Ok(CommitPlan::Apply(ops, effect))
    }

    /// The writes and cache change of committing `transform` as (`trx`, `rev`) on
    /// top of the latest revision (checked newer by the caller).
    fn commit_ops(
        &self,
        trx: &TrxId,
        rev: Rev,
        transform: &Arc<Transform>,
    ) -> Result<(WriteBatch, Effect), RepoError> {
        let block =
            apply_transform(&self.id, self.state.latest_block.as_deref(), transform)?.map(Arc::new);
        self.check_trx_unused(trx, transform, block.as_deref())?;
        let mut meta = self.state.meta.clone().unwrap_or_else(|| BlockMeta {
            ranges: vec![RevRange::ALL],
            latest: None,
        });
        let trx_rev = TrxRev {
            trx_id: trx.clone(),
            rev,
        };
        meta.latest = Some(trx_rev.clone());
        let id = &self.id;
        let mut ops: Vec<WriteOp> = self
            .state
            .orphans
            .iter()
            .filter(|r| **r != rev)
            .map(|r| WriteOp::DeleteRevision {
                block: id.clone(),
                rev: *r,
            })
            .collect();
        ops.extend([
            WriteOp::PutTransaction {
                block: id.clone(),
                trx: trx.clone(),
                transform: transform.clone(),
            },
            WriteOp::PutMaterialized {
                block: id.clone(),
                trx: trx.clone(),
                value: block.clone(),
            },
            WriteOp::PutRevision {
                block: id.clone(),
                rev,
                trx: trx.clone(),
            },
            WriteOp::PutMeta {
                block: id.clone(),
                meta: meta.clone(),
            },
            WriteOp::DeletePending {
                block: id.clone(),
                trx: trx.clone(),
            },
        ]);
        Ok((
            ops,
            Effect::Committed {
                trx_rev,
                block,
                meta,
            },
        ))
    }

    /// Plans dropping pending `trx`; `None` when it is not pending.
    pub fn plan_cancel(&self, trx: &TrxId) -> Option<(WriteBatch, Effect)> {
        self.state.pending.contains_key(trx).then(|| {
            (
                vec![WriteOp::DeletePending {
                    block: self.id.clone(),
                    trx: trx.clone(),
                }],
                Effect::Cancelled(trx.clone()),
            )
        })
    }

    /// Plans forgetting this copy (hand-off: the block's configuration holds it
    /// and this node is no longer a member): every record of the block, its
    /// metadata first. `None` — nothing to do — unless the copy still ends at
    /// `expected` and holds no pending transaction (it changed since the check).
    pub fn plan_drop(&self, expected: &TrxRev) -> Result<Option<(WriteBatch, Effect)>, RepoError> {
        if self.latest() != Some(expected) || !self.state.pending.is_empty() {
            return Ok(None);
        }
        let id = &self.id;
        let mut ops = vec![WriteOp::DeleteMeta { block: id.clone() }];
        for tr in self.raw.list_revisions(id, 0, expected.rev)? {
            ops.push(WriteOp::DeleteRevision {
                block: id.clone(),
                rev: tr.rev,
            });
            ops.push(WriteOp::DeleteTransaction {
                block: id.clone(),
                trx: tr.trx_id.clone(),
            });
            ops.push(WriteOp::DeleteMaterialized {
                block: id.clone(),
                trx: tr.trx_id,
            });
        }
        for rev in &self.state.orphans {
            ops.push(WriteOp::DeleteRevision {
                block: id.clone(),
                rev: *rev,
            });
        }
        Ok(Some((ops, Effect::Restored(Box::default()))))
    }

    /// Plans storing a peer's archive: its revisions, range and pending transactions.
    pub fn plan_restore(&self, archive: BlockArchive) -> Result<(WriteBatch, Effect), RepoError> {
        self.plan_restore_with(archive, false)
    }

    /// [`Self::plan_restore`]; `authoritative` when a majority of the block's
    /// cluster is known to hold the archive's history (docs/CONSENSUS.md,
    /// "Repairing a diverged copy"): a revision this copy holds under another
    /// transaction is replaced, and revisions past the archive's latest — writes
    /// that can no longer reach a majority — are dropped, so the copy ends exactly
    /// at the archive's latest.
    pub fn plan_restore_with(
        &self,
        archive: BlockArchive,
        authoritative: bool,
    ) -> Result<(WriteBatch, Effect), RepoError> {
        if archive.block_id != self.id {
            return Err(RepoError::Restore {
                block: self.id.clone(),
                message: format!("archive is for block {}", archive.block_id),
            });
        }
        let mut state = self.state.clone();
        // Every record the archive covers is rewritten (sealed afresh).
        state.damaged = None;
        let meta = state.meta.get_or_insert_with(BlockMeta::default);
        let mut ops = Vec::new();
        let id = &self.id;
        let restored: std::collections::BTreeSet<TrxId> = archive
            .revisions
            .iter()
            .map(|r| r.trx_rev.trx_id.clone())
            .collect();
        if let (true, Some(last), Some(local)) = (
            authoritative,
            archive.revisions.last().map(|r| r.trx_rev.clone()),
            meta.latest.clone(),
        ) {
            // Everything this copy holds past the archive's latest goes.
            for tr in self
                .raw
                .list_revisions(id, last.rev.saturating_add(1), local.rev)?
            {
                ops.push(WriteOp::DeleteRevision {
                    block: id.clone(),
                    rev: tr.rev,
                });
            }
            meta.latest = Some(last);
        }
        for r in archive.revisions {
            let newer = meta.latest.as_ref().is_none_or(|l| r.trx_rev.rev > l.rev);
            if newer {
                meta.latest = Some(r.trx_rev.clone());
            }
            let trx = r.trx_rev.trx_id;
            let materialized = match r.block {
                Some(b) => Some(Some(b)),
                None if r.transform.delete == Some(true) => Some(None),
                None => None,
            };
            if let Some(m) = materialized {
                ops.push(WriteOp::PutMaterialized {
                    block: id.clone(),
                    trx: trx.clone(),
                    value: m.map(Arc::new),
                });
            }
            ops.push(WriteOp::PutTransaction {
                block: id.clone(),
                trx: trx.clone(),
                transform: Arc::new(r.transform),
            });
            ops.push(WriteOp::PutRevision {
                block: id.clone(),
                rev: r.trx_rev.rev,
                trx: trx.clone(),
            });
            // Committed now: its pending record (if this node had pended it) goes
            // too, or a reload would bring it back as pending.
            if state.pending.remove(&trx).is_some() {
                ops.push(WriteOp::DeletePending {
                    block: id.clone(),
                    trx: trx.clone(),
                });
            }
        }
        meta.add_range(archive.range);
        for (trx, t) in archive.pending {
            if restored.contains(&trx) {
                continue;
            }
            let t = Arc::new(t);
            ops.push(WriteOp::PutPending {
                block: id.clone(),
                trx: trx.clone(),
                transform: t.clone(),
            });
            state.pending.insert(trx, t);
        }
        ops.push(WriteOp::PutMeta {
            block: id.clone(),
            meta: meta.clone(),
        });
        Ok((ops, Effect::Restored(Box::new(state))))
    }

    /// What a peer needs to restore this block: from `from` (whole history up to
    /// the latest) or, without `from`, just the latest revision. `None` when the
    /// block has no committed revision here.
    pub fn archive(&self, from: Option<Rev>) -> Result<Option<BlockArchive>, StorageError> {
        if let Some(e) = self.damaged_error() {
            return Err(e);
        }
        let (Some(meta), Some(latest)) = (&self.state.meta, self.latest()) else {
            // No revision here, but transactions pending: they are what a member
            // that missed their pend needs to apply an agreed commit.
            if self.state.pending.is_empty() {
                return Ok(None);
            }
            return Ok(Some(BlockArchive {
                block_id: self.id.clone(),
                revisions: Vec::new(),
                range: RevRange {
                    start: 0,
                    end: Some(0),
                },
                pending: self.pending_list(),
            }));
        };
        let start = match from {
            Some(r) if meta.covers(r) && r <= latest.rev => r,
            _ => latest.rev,
        };
        let mut revisions = Vec::new();
        for tr in self.raw.list_revisions(&self.id, start, latest.rev)? {
            let transform = self.committed_transform(&tr)?;
            let block = self.materialized(&tr.trx_id)?.flatten();
            revisions.push(ArchiveRevision {
                trx_rev: tr,
                transform,
                block,
            });
        }
        Ok(Some(BlockArchive {
            block_id: self.id.clone(),
            revisions,
            range: RevRange { start, end: None },
            pending: self.pending_list(),
        }))
    }

    /// The pending transactions with their transforms, as an archive carries them.
    fn pending_list(&self) -> Vec<(TrxId, Transform)> {
        self.state
            .pending
            .iter()
            .map(|(t, tf)| (t.clone(), (**tf).clone()))
            .collect()
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
        self.changes = changes;
        Ok(())
    }

    /// The backend.
    pub fn raw(&self) -> &Arc<dyn RawStorage> {
        &self.raw
    }
}
