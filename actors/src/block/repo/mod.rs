//! StorageRepo: the node-local repo (DESIGN §4) over the block actors.
//!
//! Single-block writes go to the block's actor, which checks, writes durably and
//! updates itself in one mailbox turn. Multi-block writes prepare each block in
//! sorted order (each holds its block and returns its writes), then write one batch
//! and tell every block to apply or release: sorted order means no deadlock, and
//! one batch means all blocks change or none (per block on the file backend).
//!
//! This file owns the repo's face: [`StorageRepo`], its public entry points
//! (each recording its metrics) and the [`crate::model::Repo`] impl. Reads are in
//! `read`, pends in `pend`, commits and cancels in `commit`, whole copies in
//! `copies`, the multi-block protocol in `joint` and reply assembly in `outcome`.

mod commit;
mod copies;
mod joint;
mod outcome;
mod pend;
mod read;

use futures::future::BoxFuture;

use super::registry::BlockRegistry;
use crate::metrics::{Outcome, RepoOp};
use crate::model::{
    BlockGets, CommitRequest, CommitResult, GetBlockResults, PendCommitRequest, PendCommitResult,
    PendRequest, PendResult, TrxBlocks,
};
use crate::storage::RepoError;

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

    /// Drops the pending transaction from each block; unknown ones are ignored.
    pub async fn cancel(&self, trx: TrxBlocks) -> Result<(), RepoError> {
        self.registry.metrics().repo.begin();
        let r = self.cancel_inner(trx).await;
        self.record(RepoOp::Cancel, &r, |_| false);
        r
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
