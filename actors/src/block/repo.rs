//! StorageRepo: the node-local repo (DESIGN §4) over the block actors.
//!
//! Single-block writes go to the block's actor, which checks, writes durably and
//! updates itself in one mailbox turn. Multi-block writes prepare each block in
//! sorted order (each holds its block and returns its writes), then write one batch
//! and tell every block to apply or release: sorted order means no deadlock, and
//! one batch means all blocks change or none (per block on the file backend).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::{join_all, BoxFuture};

use super::actor::{BlockOp, Decision, Mode, Prepare, Prepared, Read};
use super::registry::BlockRegistry;
use crate::metrics::{Outcome, RepoOp};
use crate::model::{
    BlockGets, BlockId, CommitRequest, CommitResult, GetBlockResults, PendCommitRequest,
    PendCommitResult, PendPolicy, PendRequest, PendResult, PendSuccess, Rev, StaleFailure,
    Transform, TrxBlocks, TrxId, TrxPending, TrxRev, TrxTransforms,
};
use crate::storage::{BlockArchive, BlockStorage, RepoError};

/// The local repo: `get`, `pend`, `commit`, `cancel`.
#[derive(Clone)]
pub struct StorageRepo {
    registry: BlockRegistry,
}

impl StorageRepo {
    /// A repo over the given registry's blocks.
    pub fn new(registry: BlockRegistry) -> Self {
        Self { registry }
    }

    /// The registry behind the repo.
    pub fn registry(&self) -> &BlockRegistry {
        &self.registry
    }

    fn record<T>(&self, op: RepoOp, r: &Result<T, RepoError>, stale: impl FnOnce(&T) -> bool) {
        if op != RepoOp::Get {
            self.registry.metrics().repo.end();
        }
        let outcome = match r {
            Ok(v) if stale(v) => Outcome::Stale,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Error,
        };
        self.registry.metrics().repo.record(op, outcome);
    }

    /// Reads blocks, catching up on `context.committed` first.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        let r = self.get_inner(gets).await;
        self.record(RepoOp::Get, &r, |_| false);
        r
    }

    /// Holds transforms pending under `req.trx_id` (DESIGN §4 "pend").
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.registry.metrics().repo.begin();
        let r = self.pend_inner(req).await;
        self.record(RepoOp::Pend, &r, |v| !v.is_success());
        r
    }

    /// Commits pending `req.trx_id` as `req.rev` on every block (DESIGN §4 "commit").
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        self.registry.metrics().repo.begin();
        let r = self.commit_inner(req).await;
        self.record(RepoOp::Commit, &r, |v| !v.is_success());
        r
    }

    /// Pends `req.pend` and commits it as `req.commit` says, in one durable batch
    /// with no pending record in between: either the transaction is committed or
    /// nothing of it is written (a commit that would be stale leaves no pend
    /// behind). Deterministic given the blocks' state, so every cluster member
    /// reaches the same outcome; re-running a committed one succeeds unchanged.
    pub async fn pend_commit(&self, req: PendCommitRequest) -> Result<PendCommitResult, RepoError> {
        self.registry.metrics().repo.begin();
        let r = self.pend_commit_inner(req).await;
        self.record(RepoOp::PendCommit, &r, |v| !v.is_success());
        r
    }

    async fn pend_commit_inner(
        &self,
        req: PendCommitRequest,
    ) -> Result<PendCommitResult, RepoError> {
        req.check().map_err(RepoError::Invalid)?;
        let rev = req.commit.rev;
        let (ids, prepared) = self
            .pend_blocks(&req.pend, |trx, transform| BlockOp::PendCommit {
                trx,
                transform,
                pend_rev: req.pend.rev,
                policy: req.pend.policy,
                rev,
            })
            .await?;
        let (commit_stale, pend_part): (Vec<Prepared>, Vec<Prepared>) =
            prepared.into_iter().partition(|p| p.commit_stale);
        let pend = pend_outcome(ids, pend_part, req.pend.policy);
        let PendResult::Success(mut ok) = pend else {
            return Ok(PendCommitResult { pend, commit: None });
        };
        let (pending, missing) = gather(commit_stale);
        ok.pending.extend(pending);
        let commit = if missing.is_empty() {
            CommitResult::Success
        } else {
            CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
        };
        Ok(PendCommitResult {
            pend: PendResult::Success(ok),
            commit: Some(commit),
        })
    }

    /// Runs `op(trx, transform)` on each block of `req` (joint when several): the
    /// blocks and their answers. Written only when no block is stale and, unless
    /// the policy is `c`, none has other pending transactions.
    async fn pend_blocks(
        &self,
        req: &PendRequest,
        op: impl Fn(TrxId, Arc<Transform>) -> BlockOp,
    ) -> Result<(BTreeSet<BlockId>, Vec<Prepared>), RepoError> {
        let ids = req.transforms.block_ids();
        if ids.is_empty() {
            return Err(RepoError::Invalid("pend names no block".into()));
        }
        let policy = req.policy;
        let ops = ids
            .iter()
            .map(|id| {
                let transform = Arc::new(req.transforms.for_block(id));
                (id.clone(), op(req.trx_id.clone(), transform))
            })
            .collect();
        let prepared = self
            .run(ops, move |p| {
                p.iter().all(|p| p.missing.is_empty())
                    && (policy == PendPolicy::Continue || p.iter().all(|p| p.pending.is_empty()))
            })
            .await?;
        Ok((ids, prepared))
    }

    /// A pend its cluster agreed on: the cluster decided its policy and stale
    /// check (docs/CONSENSUS.md, "The decided effect"), so it goes ahead whatever
    /// this copy's pending set holds, unbounded by the per-block limit.
    pub async fn pend_agreed(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.registry.metrics().repo.begin();
        let req = PendRequest {
            policy: PendPolicy::Continue,
            ..req
        };
        let r = self
            .pend_blocks(&req, |trx, transform| BlockOp::PendAgreed {
                trx,
                transform,
                rev: req.rev,
            })
            .await
            .map(|(ids, prepared)| pend_outcome(ids, prepared, PendPolicy::Continue));
        self.record(RepoOp::Pend, &r, |v| !v.is_success());
        r
    }

    /// A commit its cluster agreed on; `transforms` stand in for the pending
    /// records of blocks this copy never got the pend of (they came from a member
    /// that holds them).
    pub async fn commit_with(
        &self,
        req: CommitRequest,
        transforms: BTreeMap<BlockId, Transform>,
    ) -> Result<CommitResult, RepoError> {
        self.registry.metrics().repo.begin();
        let ids: BTreeSet<BlockId> = req.block_ids.iter().cloned().collect();
        let ops = ids
            .into_iter()
            .map(|id| {
                let op = match transforms.get(&id) {
                    Some(t) => BlockOp::CommitWith {
                        trx: req.trx_id.clone(),
                        rev: req.rev,
                        transform: Arc::new(t.clone()),
                    },
                    None => BlockOp::Commit {
                        trx: req.trx_id.clone(),
                        rev: req.rev,
                    },
                };
                (id, op)
            })
            .collect();
        let r = self
            .run(ops, |p| p.iter().all(|p| p.missing.is_empty()))
            .await
            .map(|prepared| {
                let (_, missing) = gather(prepared);
                if missing.is_empty() {
                    CommitResult::Success
                } else {
                    CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
                }
            });
        self.record(RepoOp::Commit, &r, |v| !v.is_success());
        r
    }

    /// Stores a peer's archive of its block (`authoritative`: a majority of the
    /// block's cluster holds it, so a revision held here under another transaction
    /// is replaced; see `BlockStorage::plan_restore_with`). The block's latest
    /// revision afterwards.
    pub async fn restore(
        &self,
        archive: BlockArchive,
        authoritative: bool,
    ) -> Result<Option<TrxRev>, RepoError> {
        let id = archive.block_id.clone();
        let msg = Prepare {
            op: BlockOp::Restore {
                archive: Arc::new(archive),
                authoritative,
            },
            mode: Mode::Solo,
        };
        self.registry.call(&id, msg).await??;
        Ok(self.registry.raw().get_meta(&id)?.and_then(|m| m.latest))
    }

    /// Forgets this node's copy of `id` if it still ends at `expected` with
    /// exactly `pending` pending, those too (a hand-off; the caller checked that
    /// the block's configuration holds it). Whether the copy is gone.
    pub async fn drop_copy(
        &self,
        id: &BlockId,
        expected: TrxRev,
        pending: Vec<TrxId>,
    ) -> Result<bool, RepoError> {
        let msg = Prepare {
            op: BlockOp::Drop { expected, pending },
            mode: Mode::Solo,
        };
        self.registry.call(id, msg).await??;
        Ok(self.registry.raw().get_meta(id)?.is_none())
    }

    /// Drops the pending transaction from each block; unknown ones are ignored.
    pub async fn cancel(&self, trx: TrxBlocks) -> Result<(), RepoError> {
        self.registry.metrics().repo.begin();
        let r = self.cancel_inner(trx).await;
        self.record(RepoOp::Cancel, &r, |_| false);
        r
    }

    async fn get_inner(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        let ids: BTreeSet<BlockId> = gets.block_ids.into_iter().collect();
        let (rev, overlay, mut committed) = match gets.context {
            Some(c) => (Some(c.rev), c.trx_id, c.committed),
            None => (None, None, Vec::new()),
        };
        committed.sort_by_key(|c| c.rev);
        let read = Read {
            rev,
            overlay,
            catch_up: Arc::new(committed),
        };
        let replies = join_all(ids.iter().map(|id| self.registry.call(id, read.clone()))).await;
        ids.into_iter()
            .zip(replies)
            .map(|(id, r)| Ok((id, r??)))
            .collect()
    }

    async fn pend_inner(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        let (ids, prepared) = self
            .pend_blocks(&req, |trx, transform| BlockOp::Pend {
                trx,
                transform,
                rev: req.rev,
                policy: req.policy,
            })
            .await?;
        Ok(pend_outcome(ids, prepared, req.policy))
    }

    async fn commit_inner(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        let ids: BTreeSet<BlockId> = req.block_ids.iter().cloned().collect();
        if ids.is_empty() {
            return Err(RepoError::Invalid("commit names no block".into()));
        }
        let ops = ids
            .into_iter()
            .map(|id| {
                let op = BlockOp::Commit {
                    trx: req.trx_id.clone(),
                    rev: req.rev,
                };
                (id, op)
            })
            .collect();
        let prepared = self
            .run(ops, |p| p.iter().all(|p| p.missing.is_empty()))
            .await?;
        let (_, missing) = gather(prepared);
        Ok(if missing.is_empty() {
            CommitResult::Success
        } else {
            CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
        })
    }

    async fn cancel_inner(&self, trx: TrxBlocks) -> Result<(), RepoError> {
        let ops = trx
            .block_ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|id| {
                let op = BlockOp::Cancel {
                    trx: trx.trx_id.clone(),
                };
                (id.clone(), op)
            })
            .collect();
        self.run(ops, |_| true).await.map(|_| ())
    }

    /// The block's archive for a restoring peer: from `from`, or its latest revision.
    ///
    /// Read straight from storage (what is durable), not through the block's actor:
    /// that actor may itself be restoring the block from the asking peer, and two
    /// nodes restoring one block from each other would wait on each other.
    pub async fn archive(
        &self,
        id: &BlockId,
        from: Option<Rev>,
    ) -> Result<Option<BlockArchive>, RepoError> {
        let raw = self.registry.raw().clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || BlockStorage::load(id, raw)?.archive(from))
            .await
            .map_err(|e| RepoError::Unavailable(format!("archive task failed: {e}")))?
            .map_err(RepoError::from)
    }

    /// Every block stored here in `regions`, with its latest revision and its
    /// pending transactions, sorted by id (a scan of the stored blocks, off the
    /// caller's thread).
    pub async fn heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        self.scan_heads(regions, true).await
    }

    /// As [`heads`](Self::heads) without the pending transactions (one read
    /// per block instead of two): what region digests cover.
    pub async fn latests(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        self.scan_heads(regions, false).await
    }

    /// The latest revision and pending transactions of each block of `blocks`
    /// stored here (one with neither is left out), in the order asked, off the
    /// caller's thread.
    pub async fn heads_of(
        &self,
        blocks: Vec<BlockId>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        let raw = self.registry.raw().clone();
        tokio::task::spawn_blocking(move || {
            let mut heads = Vec::with_capacity(blocks.len());
            for block_id in blocks {
                let latest = raw.get_meta(&block_id)?.map(|m| m.latest);
                let mut pending = raw.list_pending(&block_id)?;
                if latest.is_none() && pending.is_empty() {
                    continue;
                }
                pending.sort();
                heads.push(crate::model::BlockHead {
                    block_id,
                    latest: latest.flatten(),
                    pending,
                });
            }
            Ok(heads)
        })
        .await
        .map_err(|e| RepoError::Unavailable(format!("heads task failed: {e}")))?
    }

    async fn scan_heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
        with_pending: bool,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        let raw = self.registry.raw().clone();
        tokio::task::spawn_blocking(move || {
            let mut heads = Vec::new();
            for block_id in raw.list_blocks()? {
                if !regions.contains(&crate::model::Region::of(&block_id)) {
                    continue;
                }
                let latest = raw.get_meta(&block_id)?.and_then(|m| m.latest);
                let mut pending = if with_pending {
                    raw.list_pending(&block_id)?
                } else {
                    Vec::new()
                };
                pending.sort();
                heads.push(crate::model::BlockHead {
                    block_id,
                    latest,
                    pending,
                });
            }
            heads.sort_by(|a, b| a.block_id.cmp(&b.block_id));
            Ok(heads)
        })
        .await
        .map_err(|e| RepoError::Unavailable(format!("block scan failed: {e}")))?
    }

    /// Runs one operation per block: solo for one block, else prepare-all in
    /// sorted order, decide with `go`, write one batch, apply or release.
    async fn run(
        &self,
        ops: Vec<(BlockId, BlockOp)>,
        go: impl FnOnce(&[Prepared]) -> bool + Send + 'static,
    ) -> Result<Vec<Prepared>, RepoError> {
        if let [(id, op)] = ops.as_slice() {
            let msg = Prepare {
                op: op.clone(),
                mode: Mode::Solo,
            };
            return Ok(vec![self.registry.call(id, msg).await??]);
        }
        // Spawned so that a caller giving up cannot stop it between the write and
        // the decision; the blocks are held only for the task's duration.
        let registry = self.registry.clone();
        let task = actix_rt::spawn(joint(registry, ops, go));
        task.await
            .map_err(|e| RepoError::Unavailable(format!("joint write task failed: {e}")))?
    }
}

async fn joint(
    registry: BlockRegistry,
    ops: Vec<(BlockId, BlockOp)>,
    go: impl FnOnce(&[Prepared]) -> bool,
) -> Result<Vec<Prepared>, RepoError> {
    let mut prepared = Vec::with_capacity(ops.len());
    let mut failure = None;
    for (id, op) in ops {
        let msg = Prepare {
            op,
            mode: Mode::Joint,
        };
        match registry.call(&id, msg).await {
            Ok(Ok(p)) => prepared.push(p),
            Ok(Err(e)) | Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let stale = prepared.iter().any(|p| !p.missing.is_empty());
    // A stale request is answered as stale even if another block failed (the
    // requester must catch up first); a stale commit inside a pendCommit is not
    // that kind of staleness: the pend's error comes first.
    let behind = prepared
        .iter()
        .any(|p| !p.missing.is_empty() && !p.commit_stale);
    let holds: Vec<_> = prepared.iter_mut().filter_map(|p| p.hold.take()).collect();
    if let Some(e) = failure.filter(|_| !behind) {
        decide(holds, Decision::Release);
        return Err(e);
    }
    if stale || !go(&prepared) {
        decide(holds, Decision::Release);
        return Ok(prepared);
    }
    let batch: Vec<_> = prepared
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.ops))
        .collect();
    if !batch.is_empty() {
        if let Err(e) = registry.raw().write(batch).await {
            // Dropping the holds makes each block reload what is really on disk.
            drop(holds);
            return Err(e.into());
        }
    }
    decide(holds, Decision::Apply);
    Ok(prepared)
}

fn decide(holds: Vec<tokio::sync::oneshot::Sender<Decision>>, d: Decision) {
    for h in holds {
        // A block whose actor is gone reloads from disk anyway.
        let _ = h.send(d);
    }
}

/// Collects the blocks' pending lists and merges their missing transactions by (trx, rev).
fn gather(prepared: Vec<Prepared>) -> (Vec<TrxPending>, Vec<TrxTransforms>) {
    let mut pending = Vec::new();
    let mut missing: BTreeMap<(u64, TrxRev), TrxTransforms> = BTreeMap::new();
    for p in prepared {
        pending.extend(p.pending);
        for m in p.missing {
            let key = (
                m.rev.unwrap_or(0),
                TrxRev {
                    trx_id: m.trx_id.clone(),
                    rev: m.rev.unwrap_or(0),
                },
            );
            match missing.get_mut(&key) {
                Some(existing) => existing.transforms.merge(m.transforms),
                None => {
                    missing.insert(key, m);
                }
            }
        }
    }
    (pending, missing.into_values().collect())
}

/// A pend's answer from its blocks' answers: stale when any block is behind,
/// blocked when others are pending and the policy is not `c`, else success.
fn pend_outcome(ids: BTreeSet<BlockId>, prepared: Vec<Prepared>, policy: PendPolicy) -> PendResult {
    let (pending, missing) = gather(prepared);
    if !missing.is_empty() {
        return PendResult::Stale(stale(missing, "stale: revisions committed since"));
    }
    if !pending.is_empty() && policy != PendPolicy::Continue {
        return PendResult::Stale(StaleFailure {
            reason: Some("blocked by pending transactions".into()),
            missing: None,
            pending: Some(pending),
        });
    }
    PendResult::Success(PendSuccess {
        pending,
        block_ids: ids.into_iter().collect(),
    })
}

fn stale(missing: Vec<TrxTransforms>, reason: &str) -> StaleFailure {
    StaleFailure {
        reason: Some(reason.into()),
        missing: Some(missing),
        pending: None,
    }
}

impl crate::model::Repo for StorageRepo {
    fn get(&self, gets: BlockGets) -> BoxFuture<'_, Result<GetBlockResults, RepoError>> {
        Box::pin(StorageRepo::get(self, gets))
    }

    fn pend(&self, req: PendRequest) -> BoxFuture<'_, Result<PendResult, RepoError>> {
        Box::pin(StorageRepo::pend(self, req))
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<CommitResult, RepoError>> {
        Box::pin(StorageRepo::commit(self, req))
    }

    fn pend_commit(
        &self,
        req: PendCommitRequest,
    ) -> BoxFuture<'_, Result<PendCommitResult, RepoError>> {
        Box::pin(StorageRepo::pend_commit(self, req))
    }

    fn cancel(&self, trx: TrxBlocks) -> BoxFuture<'_, Result<(), RepoError>> {
        Box::pin(StorageRepo::cancel(self, trx))
    }
}
