//! [`NodeRepo`]: the repo API of a node as its clients see it — reads, writes
//! agreed by each block's cluster, peer retirement, leaving, and block watches.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use optimystic_actors::block::StorageRepo;
use optimystic_actors::cluster::Configs;
use optimystic_actors::coordinator::{CoordinatorHandle, LeaveProgress};
use optimystic_actors::model::{
    BlockGets, BlockId, CommitRequest, CommitResult, GetBlockResults, PendCommitRequest,
    PendCommitResult, PendRequest, PendResult, TrxBlocks,
};
use optimystic_actors::storage::RepoError;

/// The repo API of a node, as clients of the node see it.
#[derive(Clone)]
pub struct NodeRepo {
    pub(super) local: StorageRepo,
    pub(super) coordinator: CoordinatorHandle,
}

impl NodeRepo {
    /// Reads blocks (locally; restored from peers when missing or behind).
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        self.coordinator.get(gets).await
    }

    /// Pends a transaction (through the cluster when the node has peers).
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.coordinator.pend(req).await
    }

    /// Commits a transaction (through the cluster when the node has peers).
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        self.coordinator.commit(req).await
    }

    /// Cancels a pending transaction (through the cluster when the node has peers).
    pub async fn cancel(&self, trx: TrxBlocks) -> Result<(), RepoError> {
        self.coordinator.cancel(trx).await
    }

    /// Pends and commits one transaction in one step: one agreed record, all or
    /// nothing (see `PendCommitRequest`).
    pub async fn pend_commit(&self, req: PendCommitRequest) -> Result<PendCommitResult, RepoError> {
        self.coordinator.pend_commit(req).await
    }

    /// Retires `peer` from every configuration (`optimystic peers remove`):
    /// returns how many of this node's regions still list it.
    pub async fn retire_peer(&self, peer: &str) -> Result<usize, RepoError> {
        self.coordinator.retire(peer).await
    }

    /// Starts a graceful leave (`optimystic leave`): the node retires itself,
    /// hands every block it holds to the blocks' next configurations and is
    /// replaced wherever it is a member. Returns how far it has come.
    pub async fn leave(&self) -> Result<LeaveProgress, RepoError> {
        self.coordinator.leave().await
    }

    /// How far a leave has come: done once the node is in no configuration
    /// and every block it held is on every member of its configuration.
    pub async fn leave_progress(&self) -> Result<LeaveProgress, RepoError> {
        self.coordinator.leave_progress().await
    }

    /// The node's configurations and peer book.
    pub fn configs(&self) -> &Arc<Configs> {
        self.coordinator.configs()
    }

    /// What anti-entropy and repair did on this node.
    pub fn repair_metrics(&self) -> &Arc<optimystic_actors::repair::RepairMetrics> {
        self.coordinator.repair_metrics()
    }

    /// This node's own store, bypassing consensus (tests, tools).
    pub fn local(&self) -> &StorageRepo {
        &self.local
    }

    /// Every committed revision of `block` as it commits (see
    /// [`NodeHandle::watch`]): woken by this node's writes, and polling every
    /// [`WATCH_POLL`] for those that reach it otherwise.
    ///
    /// [`NodeHandle::watch`]: super::NodeHandle::watch
    pub fn watch(
        &self,
        block: BlockId,
        from: Option<u64>,
    ) -> impl futures::Stream<Item = Result<optimystic_actors::watch::Revision, RepoError>> {
        let wake = self.local.registry().changes().subscribe();
        optimystic_actors::watch::watch(
            crate::watch::NodeHistory {
                reads: self.clone(),
                local: self.local().clone(),
            },
            block,
            from,
            Some(wake),
            WATCH_POLL,
        )
    }
}

/// How often a watch reads its block when nothing woke it: writes applied on
/// this node wake it at once; this bounds the delay for revisions that arrive
/// another way (a node outside the block's configuration).
pub const WATCH_POLL: Duration = Duration::from_secs(1);

impl optimystic_actors::model::Repo for NodeRepo {
    fn get(&self, gets: BlockGets) -> BoxFuture<'_, Result<GetBlockResults, RepoError>> {
        Box::pin(NodeRepo::get(self, gets))
    }

    fn pend(&self, req: PendRequest) -> BoxFuture<'_, Result<PendResult, RepoError>> {
        Box::pin(NodeRepo::pend(self, req))
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<CommitResult, RepoError>> {
        Box::pin(NodeRepo::commit(self, req))
    }

    fn pend_commit(
        &self,
        req: PendCommitRequest,
    ) -> BoxFuture<'_, Result<PendCommitResult, RepoError>> {
        Box::pin(NodeRepo::pend_commit(self, req))
    }

    fn cancel(&self, trx: TrxBlocks) -> BoxFuture<'_, Result<(), RepoError>> {
        Box::pin(NodeRepo::cancel(self, trx))
    }
}
