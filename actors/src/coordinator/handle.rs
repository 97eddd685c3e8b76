//! The coordinator as an actor — one bounded, metered mailbox in front of the
//! shared logic, each write running as its own future — and its typed handle,
//! which is the node's [`Repo`] as clients see it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Coordinator, TxnMetrics};
use crate::metrics::ActorMetrics;
use crate::model::{
    BlockGets, CancelOperation, CommitRequest, CommitResult, GetBlockResults, OpResult,
    PendCommitRequest, PendCommitResult, PendRequest, PendResult, Repo, RepoError, RepoOperation,
    TrxBlocks,
};

/// Mailbox capacity of a coordinator actor (senders wait beyond it).
const COORDINATOR_MAILBOX: usize = 1024;

/// The coordinator's mailbox.
pub struct CoordinatorActor {
    inner: Arc<Coordinator>,
    metrics: Arc<ActorMetrics>,
}

impl actix::Actor for CoordinatorActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(COORDINATOR_MAILBOX);
    }
}

/// A client write to coordinate.
#[derive(actix::Message)]
#[rtype(result = "Result<OpResult, RepoError>")]
struct Coordinate {
    op: RepoOperation,
    /// Another node handed it here: run it, never forward it again.
    forwarded: bool,
}

impl actix::Handler<Coordinate> for CoordinatorActor {
    type Result = actix::ResponseFuture<Result<OpResult, RepoError>>;

    fn handle(&mut self, msg: Coordinate, _: &mut Self::Context) -> Self::Result {
        let timer = self.metrics.start();
        let inner = self.inner.clone();
        inner.running.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let r = inner.run(msg.op, msg.forwarded).await;
            inner.running.fetch_sub(1, Ordering::Relaxed);
            drop(timer);
            r
        })
    }
}

/// Typed handle to the [`CoordinatorActor`].
#[derive(Clone)]
pub struct CoordinatorHandle {
    addr: actix::Addr<CoordinatorActor>,
    /// A second actor over the same coordinator, beside the swarm, that takes a
    /// write arriving while no other is running (see [`Self::with_idle_actor`]).
    idle: Option<actix::Addr<CoordinatorActor>>,
    inner: Arc<Coordinator>,
    metrics: Arc<ActorMetrics>,
    txns: Arc<TxnMetrics>,
}

impl CoordinatorHandle {
    /// Starts the actor (on the current arbiter).
    pub fn start(inner: Coordinator) -> Self {
        use actix::Actor as _;
        let metrics = Arc::new(ActorMetrics::new("coordinator"));
        let txns = inner.metrics.clone();
        let inner = Arc::new(inner);
        let addr = CoordinatorActor {
            inner: inner.clone(),
            metrics: metrics.clone(),
        }
        .start();
        Self {
            addr,
            idle: None,
            inner,
            metrics,
            txns,
        }
    }

    /// Adds an actor on `arbiter` (the swarm's) that coordinates a write arriving
    /// while no other write is running here. A lone write then crosses no thread
    /// on this node (its request, coordination and member calls all run beside
    /// the swarm: ~5% lower sequential latency), while writes under load keep
    /// running on the first actor's arbiter, off the swarm's busy thread (which
    /// measured ~10% more throughput than running them all beside the swarm).
    /// Both share one coordinator, so batching and records are the same.
    pub fn with_idle_actor(mut self, arbiter: &actix_rt::ArbiterHandle) -> Self {
        use actix::Actor as _;
        let (inner, metrics) = (self.inner.clone(), self.metrics.clone());
        self.idle = Some(CoordinatorActor::start_in_arbiter(arbiter, move |_| {
            CoordinatorActor { inner, metrics }
        }));
        self
    }

    /// The actor for the next write.
    fn next_actor(&self) -> &actix::Addr<CoordinatorActor> {
        match &self.idle {
            Some(idle) if self.inner.running.load(Ordering::Relaxed) == 0 => idle,
            _ => &self.addr,
        }
    }

    /// Starts the placement driver on the current arbiter: every
    /// `PLACEMENT_INTERVAL` it takes the next configuration step due in the
    /// regions this node leads, and every few seconds sends co-members the
    /// changes they missed; while the node leaves, every second a hand-off
    /// pass. It stops with the coordinator.
    pub fn start_placement(&self) {
        let weak = Arc::downgrade(&self.inner);
        actix_rt::spawn(async move {
            loop {
                tokio::time::sleep(super::driver::PLACEMENT_INTERVAL).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                // Steps follow one another at once while some are due.
                while inner.place().await {}
                inner.bring_up_lagging_if_due().await;
            }
        });
        // A leaving node forgets what its configurations hold in full as soon
        // as they do (see `leave.rs`).
        let weak = Arc::downgrade(&self.inner);
        actix_rt::spawn(async move {
            loop {
                tokio::time::sleep(super::leave::LEAVE_HAND_OFF).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.leaving() {
                    inner.hand_off().await;
                }
            }
        });
    }

    /// Starts anti-entropy on the current arbiter: a round against the next
    /// co-member every `settings.interval`, each followed by a hand-off pass
    /// over the copies of regions this node left. It stops with the coordinator.
    pub fn start_anti_entropy(&self, settings: super::EntropySettings) {
        let weak = Arc::downgrade(&self.inner);
        actix_rt::spawn(async move {
            // First the start-up catch-up: a node restarted on data that lags
            // converges in seconds, not at its first round. A node that starts
            // with no configuration of its own (new) holds nothing to catch up.
            let restarted = weak
                .upgrade()
                .is_some_and(|inner| !inner.configs.table().groups().is_empty());
            if let Some(inner) = weak.upgrade().filter(|_| !restarted) {
                inner.repair_metrics.caught_up.add(1);
            }
            let started = std::time::Instant::now();
            let mut done = std::collections::BTreeSet::new();
            while restarted && started.elapsed() < super::entropy::STARTUP_WINDOW {
                tokio::time::sleep(super::entropy::STARTUP_RETRY).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.catch_up_at_start(settings, &mut done).await {
                    inner.repair_metrics.caught_up.add(1);
                    break;
                }
            }
            loop {
                tokio::time::sleep(settings.interval).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.anti_entropy_round(settings).await;
                inner.drop_strays().await;
                inner.hand_off().await;
            }
        });
    }

    /// What anti-entropy did on this node.
    pub fn repair_metrics(&self) -> &Arc<crate::repair::RepairMetrics> {
        &self.inner.repair_metrics
    }

    /// Retires `peer` (an operator's `peers remove`; see docs/OPERATIONS.md):
    /// it becomes a candidate for no region and is replaced, after a hand-over,
    /// wherever it is a member. Returns how many of this node's regions still
    /// list it.
    pub async fn retire(&self, peer: &str) -> Result<usize, RepoError> {
        self.inner.retire(peer).await
    }

    /// Starts a graceful leave (`optimystic leave`; see docs/OPERATIONS.md):
    /// this node retires itself and is replaced wherever it is a member. Returns
    /// how far it has come.
    pub async fn leave(&self) -> Result<super::LeaveProgress, RepoError> {
        self.inner.leave().await
    }

    /// How far a leave has come (see [`Self::leave`]).
    pub async fn leave_progress(&self) -> Result<super::LeaveProgress, RepoError> {
        self.inner.leave_progress().await
    }

    /// The node's configurations.
    pub fn configs(&self) -> &Arc<crate::cluster::Configs> {
        &self.inner.configs
    }

    /// Mailbox metrics.
    pub fn actor_metrics(&self) -> &Arc<ActorMetrics> {
        &self.metrics
    }

    /// Transaction outcomes.
    pub fn txn_metrics(&self) -> &Arc<TxnMetrics> {
        &self.txns
    }

    async fn call(&self, op: RepoOperation, forwarded: bool) -> Result<OpResult, RepoError> {
        self.metrics.enqueued();
        self.next_actor()
            .send(Coordinate { op, forwarded })
            .await
            .map_err(|e| {
                self.metrics.dropped();
                RepoError::Unavailable(format!("coordinator: {e}"))
            })?
    }

    /// Runs a write another node forwarded here: coordinated by this node (which
    /// takes part even if it is not in the cluster), never forwarded again.
    pub async fn coordinate_forwarded(&self, op: RepoOperation) -> Result<OpResult, RepoError> {
        self.call(op, true).await
    }

    /// Asks peers for the configurations of those of `regions` for which this
    /// node knows none, or none that has `member` (see `Coordinator::discover`).
    pub async fn discover(&self, regions: &[crate::model::Region], member: &str) {
        let stale: Vec<_> = regions
            .iter()
            .copied()
            .filter(|r| {
                self.inner
                    .configs
                    .config(*r)
                    .is_none_or(|c| !c.members.contains(member))
            })
            .collect();
        if !stale.is_empty() {
            self.inner.discover(&stale).await;
        }
    }

    /// Reads (see [`Coordinator::get`]): local, caught up with the cluster first
    /// when this node may be behind. Not queued behind writes.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        self.inner.get(gets).await
    }

    /// Pends through the cluster.
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.call(RepoOperation::Pend(req), false)
            .await?
            .into_pend()
    }

    /// Commits through the cluster.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        self.call(RepoOperation::Commit(req), false)
            .await?
            .into_commit()
    }

    /// Pends and commits one transaction through the cluster in one round.
    pub async fn pend_commit(&self, req: PendCommitRequest) -> Result<PendCommitResult, RepoError> {
        self.call(RepoOperation::PendCommit(req), false)
            .await?
            .into_pend_commit()
    }

    /// Cancels through the cluster.
    pub async fn cancel(&self, trx_ref: TrxBlocks) -> Result<(), RepoError> {
        self.call(RepoOperation::Cancel(CancelOperation { trx_ref }), false)
            .await?
            .into_cancel()
    }
}

impl Repo for CoordinatorHandle {
    fn get(&self, gets: BlockGets) -> BoxFuture<'_, Result<GetBlockResults, RepoError>> {
        Box::pin(CoordinatorHandle::get(self, gets))
    }

    fn pend(&self, req: PendRequest) -> BoxFuture<'_, Result<PendResult, RepoError>> {
        Box::pin(CoordinatorHandle::pend(self, req))
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<CommitResult, RepoError>> {
        Box::pin(CoordinatorHandle::commit(self, req))
    }

    fn pend_commit(
        &self,
        req: PendCommitRequest,
    ) -> BoxFuture<'_, Result<PendCommitResult, RepoError>> {
        Box::pin(CoordinatorHandle::pend_commit(self, req))
    }

    fn cancel(&self, trx: TrxBlocks) -> BoxFuture<'_, Result<(), RepoError>> {
        Box::pin(CoordinatorHandle::cancel(self, trx))
    }
}
