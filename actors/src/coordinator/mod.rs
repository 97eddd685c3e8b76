//! The coordinator (the seed's CoordinatorRepo): runs a client's write as a
//! signed two-phase commit across the cluster of its blocks, and answers with
//! its own StorageRepo's result. Reads are not coordinated (served locally,
//! restored from peers when missing).
//!
//! - [`plan`]: which peers a write's blocks belong to, and where to forward it;
//! - [`batch`]: lanes of writes with the same peer set, batched into records;
//! - [`agree`]: one record's rounds of promises and commits;
//! - [`split`]: writes whose blocks belong to several clusters;
//! - [`handle`]: the actor and its typed handle (a [`crate::model::Repo`]).
//!
//! A node runs two [`CoordinatorActor`]s over one [`Coordinator`]: one on the
//! node's system arbiter, and one beside the swarm that takes a write arriving
//! while no other is running (fewer thread hops for a lone write; writes under
//! load stay off the swarm's thread). docs/BENCHMARKS.md has the measurements.

mod agree;
mod batch;
mod fault;
mod handle;
mod plan;
mod split;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;

use crate::block::StorageRepo;
use crate::cluster::{CatchUp, MemberDirectory};
use crate::metrics::{Counter, Histogram};
use crate::model::{BlockGets, GetBlockResults, OpResult, RepoError, RepoOperation};
use crate::net::NetClient;

pub use handle::{CoordinatorActor, CoordinatorHandle};

/// Transaction outcomes and phase latencies, as the coordinator saw them.
#[derive(Debug, Default)]
pub struct TxnMetrics {
    /// Transactions started (records built).
    pub started: Counter,
    /// Decided commit.
    pub committed: Counter,
    /// Refused (threshold of promises not reached).
    pub aborted: Counter,
    /// Decided commit but fewer than threshold commit acknowledgements came back.
    pub in_doubt: Counter,
    /// Writes applied directly (lone node).
    pub local: Counter,
    /// Writes handed to the blocks' coordinator (this node is not in their cluster).
    pub forwarded: Counter,
    /// Phase 1 (promises) latency.
    pub phase1: Histogram,
    /// Phase 2 (commits) latency.
    pub phase2: Histogram,
    /// Client writes carried by records (divided by `started`: the mean batch).
    pub operations: Counter,
}

/// Runs writes through the cluster.
pub struct Coordinator {
    metrics: Arc<TxnMetrics>,
    key: Keypair,
    me: PeerId,
    repo: StorageRepo,
    net: Arc<OnceLock<NetClient>>,
    members: Arc<MemberDirectory>,
    cluster_size: usize,
    timeout: Duration,
    lanes: parking_lot::Mutex<HashMap<String, batch::Lane>>,
    fault: fault::Fault,
    catch_up: Arc<CatchUp>,
    /// Client writes being coordinated here now.
    running: AtomicUsize,
}

impl Coordinator {
    /// A coordinator for this node; `net` is filled in once the swarm runs.
    pub fn new(
        key: Keypair,
        repo: StorageRepo,
        net: Arc<OnceLock<NetClient>>,
        members: Arc<MemberDirectory>,
        cluster_size: usize,
        timeout: Duration,
    ) -> Self {
        let me = key.public().to_peer_id();
        let catch_up = Arc::new(CatchUp::new(
            me,
            repo.clone(),
            net.clone(),
            members.freshness().clone(),
            cluster_size,
        ));
        members.set_catch_up(catch_up.clone());
        Self {
            metrics: Arc::new(TxnMetrics::default()),
            key,
            me,
            repo,
            net,
            members,
            cluster_size: cluster_size.max(1),
            timeout,
            lanes: parking_lot::Mutex::new(HashMap::new()),
            fault: fault::Fault::configured(),
            catch_up,
            running: AtomicUsize::new(0),
        }
    }

    /// Outcome counts and phase latencies.
    pub fn metrics(&self) -> &Arc<TxnMetrics> {
        &self.metrics
    }

    fn net(&self) -> Result<&NetClient, RepoError> {
        self.net
            .get()
            .ok_or_else(|| RepoError::Unavailable("network not started".into()))
    }

    /// A read: served by the local store; a block not compared with its cluster
    /// since this node started or its member set last changed is compared first (one
    /// round trip to its cluster peers), and restored from them when they hold a
    /// newer revision. Reads with a context restore on their own.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        if gets.context.is_none() {
            self.catch_up.catch_up(&gets.block_ids).await;
        }
        self.repo.get(gets).await
    }

    /// Runs a write: split by cluster, each part forwarded, applied locally or
    /// agreed by its cluster. `forwarded` when another node handed it here (it is
    /// then never forwarded again).
    async fn run(
        self: &Arc<Self>,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        if let RepoOperation::PendCommit(pc) = &op {
            pc.check().map_err(RepoError::Invalid)?;
        }
        let view = self.view()?;
        let groups = self.groups(&view, crate::cluster::operation_blocks(&op));
        if let (RepoOperation::PendCommit(pc), true) = (&op, groups.len() > 1) {
            let r = self
                .pend_commit_split(&view, groups, pc.clone(), forwarded)
                .await?;
            return Ok(OpResult::PendCommit(r));
        }
        if groups.len() <= 1 {
            let (cluster, blocks) = groups.into_iter().next().unwrap_or_default();
            let plan = self.plan(&view, &cluster, &blocks);
            return self.run_part(plan, op, forwarded).await;
        }
        self.run_split(&view, groups, op, forwarded).await
    }

    /// Applies a write to this node's store directly (a lone node).
    async fn local(&self, op: RepoOperation) -> Result<OpResult, RepoError> {
        op.run(&self.repo).await
    }
}
