//! The coordinator (the seed's CoordinatorRepo): runs a client's write as a
//! signed two-phase commit across the cluster of its blocks, and answers with
//! its own StorageRepo's result. Reads are not coordinated (served locally,
//! restored from peers when missing).
//!
//! - [`plan`]: which peers a write's blocks belong to, and where to forward it;
//! - [`batch`]: lanes of writes with the same peer set, batched into records;
//! - [`agree`]: one record's rounds of promises and commits;
//! - [`retry`]: writing again after `wrong_cluster`, or a commit or cancel
//!   refused by a conflict;
//! - [`split`]: writes whose blocks belong to several clusters;
//! - [`driver`]: the placement driver, moving regions toward their targets;
//! - [`handover`]: handing a region's blocks to the peer a change adds;
//! - [`lagging`]: sending co-members the configuration changes they missed;
//! - [`entropy`]: anti-entropy, comparing region digests with co-members;
//! - [`handoff`]: forgetting copies of regions this node left, once held there;
//! - [`leave`]: a graceful leave, this node replacing itself everywhere;
//! - [`strays`]: dropping pending transactions only a minority holds;
//! - [`handle`]: the actor and its typed handle (a [`crate::model::Repo`]).
//!
//! A node runs two [`CoordinatorActor`]s over one [`Coordinator`]: one on the
//! node's system arbiter, and one beside the swarm that takes a write arriving
//! while no other is running (fewer thread hops for a lone write; writes under
//! load stay off the swarm's thread). docs/BENCHMARKS.md has the measurements.

mod agree;
mod batch;
mod driver;
mod entropy;
mod fault;
mod handle;
mod handoff;
mod handover;
mod lagging;
mod leave;
mod plan;
mod retry;
mod split;
mod strays;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;

use crate::block::StorageRepo;
use crate::cluster::{CatchUp, Configs, MemberDirectory};
use crate::metrics::{Counter, Histogram};
use crate::model::Peers;
use crate::model::{BlockGets, Consistency, GetBlockResults, OpResult, RepoError, RepoOperation};

pub use entropy::EntropySettings;
pub use handle::{CoordinatorActor, CoordinatorHandle};
pub use leave::LeaveProgress;

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
    /// Configuration changes this node proposed (not counted above).
    pub changes: ChangeMetrics,
}

/// Configuration changes by outcome, as their proposer saw them.
#[derive(Debug, Default)]
pub struct ChangeMetrics {
    /// Proposed.
    pub started: Counter,
    /// Agreed and applied by a majority.
    pub committed: Counter,
    /// Refused.
    pub aborted: Counter,
    /// Decided, not reported applied by a majority in time.
    pub in_doubt: Counter,
}

/// What became of a record, for the metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Started,
    Committed,
    Aborted,
    InDoubt,
}

impl TxnMetrics {
    /// Counts `outcome` of a write's record, or of a change's (`change`).
    pub(crate) fn count(&self, change: bool, outcome: Outcome) {
        let c = match (change, outcome) {
            (false, Outcome::Started) => &self.started,
            (false, Outcome::Committed) => &self.committed,
            (false, Outcome::Aborted) => &self.aborted,
            (false, Outcome::InDoubt) => &self.in_doubt,
            (true, Outcome::Started) => &self.changes.started,
            (true, Outcome::Committed) => &self.changes.committed,
            (true, Outcome::Aborted) => &self.changes.aborted,
            (true, Outcome::InDoubt) => &self.changes.in_doubt,
        };
        c.add(1);
    }
}

/// Runs writes through the cluster.
pub struct Coordinator {
    metrics: Arc<TxnMetrics>,
    key: Keypair,
    me: PeerId,
    repo: StorageRepo,
    net: Arc<OnceLock<Arc<dyn Peers>>>,
    members: Arc<MemberDirectory>,
    timeout: Duration,
    lanes: parking_lot::Mutex<HashMap<String, batch::Lane>>,
    catch_up: Arc<CatchUp>,
    configs: Arc<Configs>,
    /// Client writes being coordinated here now.
    running: AtomicUsize,
    /// The placement driver's memory between passes.
    placement: parking_lot::Mutex<driver::State>,
    /// Anti-entropy's memory between rounds.
    entropy: parking_lot::Mutex<entropy::State>,
    /// When each pending transaction here was first seen (stray sweeps).
    strays_seen: parking_lot::Mutex<strays::FirstSeen>,
    /// What anti-entropy did.
    repair_metrics: Arc<crate::repair::RepairMetrics>,
    /// The blocks found to compare and not settled yet.
    repair_queue: Arc<crate::repair::queue::RepairQueue>,
    /// Held by the hand-off pass running now.
    handing_off: tokio::sync::Mutex<()>,
}

impl Coordinator {
    /// A coordinator for this node; `net` is filled in once the swarm runs.
    pub fn new(
        key: Keypair,
        repo: StorageRepo,
        net: Arc<OnceLock<Arc<dyn Peers>>>,
        members: Arc<MemberDirectory>,
        timeout: Duration,
    ) -> Self {
        let me = key.public().to_peer_id();
        let configs = members.configs().clone();
        let catch_up = Arc::new(CatchUp::new(
            me,
            repo.clone(),
            net.clone(),
            members.freshness().clone(),
            configs.clone(),
        ));
        members.set_catch_up(catch_up.clone());
        Self {
            metrics: Arc::new(TxnMetrics::default()),
            key,
            me,
            repo,
            net,
            members,
            timeout,
            lanes: parking_lot::Mutex::new(HashMap::new()),
            catch_up,
            configs,
            running: AtomicUsize::new(0),
            placement: parking_lot::Mutex::default(),
            entropy: parking_lot::Mutex::default(),
            strays_seen: parking_lot::Mutex::default(),
            repair_metrics: Arc::default(),
            repair_queue: Arc::new(crate::repair::queue::RepairQueue::in_memory()),
            handing_off: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps the repair queue in `queue` (a file of the data directory), so a
    /// restart resumes the repairs it held.
    pub fn with_repair_queue(mut self, queue: crate::repair::queue::RepairQueue) -> Self {
        self.repair_metrics.queue_depth.set(queue.len() as i64);
        self.repair_queue = Arc::new(queue);
        self
    }

    /// Outcome counts and phase latencies.
    pub fn metrics(&self) -> &Arc<TxnMetrics> {
        &self.metrics
    }

    fn net(&self) -> Result<&dyn Peers, RepoError> {
        self.net
            .get()
            .map(|n| n.as_ref())
            .ok_or_else(|| RepoError::Unavailable("network not started".into()))
    }

    /// The live members of the network (connected, or within the member grace)
    /// by PeerId, with where to reach them; `None` before the network starts.
    fn live_by_name(
        &self,
    ) -> Option<std::collections::BTreeMap<String, (PeerId, Vec<libp2p::Multiaddr>)>> {
        let view = self.net().ok()?.member_view();
        Some(
            view.members
                .iter()
                .map(|p| (p.peer_id.to_string(), (p.peer_id, p.addrs.clone())))
                .collect(),
        )
    }

    /// A read: served by the local store; a block not compared with its cluster
    /// since this node started or its member set last changed is compared first (one
    /// round trip to its cluster peers), and restored from them when a majority
    /// holds a newer revision. A block the comparison could not confirm is
    /// answered with what this node holds or restores; if that is nothing, the
    /// read is `unavailable` rather than an empty block (it may exist where
    /// nobody answered). Reads with a context restore on their own.
    ///
    /// A quorum read (`"consistency":"quorum"`) compares every block with its
    /// cluster on every read and answers only what a majority holds: a block
    /// the comparison does not confirm makes it `unavailable`, whatever this
    /// node holds.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        let quorum = gets.consistency == Some(Consistency::Quorum);
        let unsure = match (&gets.context, quorum) {
            (_, true) => self.catch_up.confirm(&gets.block_ids).await,
            (None, false) => self.catch_up.catch_up(&gets.block_ids).await,
            (Some(_), false) => Vec::new(),
        };
        if quorum && !unsure.is_empty() {
            let blocks: Vec<String> = unsure.iter().map(ToString::to_string).collect();
            return Err(RepoError::Unavailable(format!(
                "no quorum: a majority of the cluster of {} did not report one latest revision",
                blocks.join(", ")
            )));
        }
        let results = self.repo.get(gets).await?;
        let unknown: Vec<String> = unsure
            .iter()
            .filter(|b| {
                results
                    .get(*b)
                    .is_none_or(|g| g.block.is_none() && g.state.latest.is_none())
            })
            .map(ToString::to_string)
            .collect();
        if !unknown.is_empty() {
            return Err(RepoError::Unavailable(format!(
                "no quorum: too few members of the cluster of {} answered to tell whether it exists",
                unknown.join(", ")
            )));
        }
        Ok(results)
    }

    /// Runs a write: grouped by its regions' configurations, each part forwarded,
    /// applied locally or agreed by its configuration. `forwarded` when another
    /// node handed it here (it is then never forwarded again). A member that holds
    /// another configuration answers `wrong_cluster` with its view: learned, and
    /// the write planned again (a few times).
    async fn run(
        self: &Arc<Self>,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        if let RepoOperation::PendCommit(pc) = &op {
            pc.check().map_err(RepoError::Invalid)?;
        }
        let r = self.run_retrying(&op, forwarded).await;
        if let RepoOperation::Cancel(c) = &op {
            tracing::debug!(trx = %c.trx_ref.trx_id, forwarded, result = ?r, "cancel coordinated");
        }
        r
    }

    pub(super) async fn run_once(
        self: &Arc<Self>,
        op: &RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        let groups = self.groups(crate::cluster::operation_blocks(op)).await?;
        if groups.is_empty() {
            // No block: nothing to agree on; the engine answers (an invalid
            // request, or an empty success) without changing anything.
            return self.local(op.clone()).await;
        }
        if let (RepoOperation::PendCommit(pc), true) = (op, groups.len() > 1) {
            let r = self
                .pend_commit_split(groups, pc.clone(), forwarded)
                .await?;
            return Ok(OpResult::PendCommit(r));
        }
        if groups.len() <= 1 {
            let (members, blocks) = groups.into_iter().next().unwrap_or_default();
            return self
                .run_part(&members, &blocks, op.clone(), forwarded)
                .await;
        }
        self.run_split(groups, op.clone(), forwarded).await
    }

    /// Applies a write to this node's store directly (a lone node).
    async fn local(&self, op: RepoOperation) -> Result<OpResult, RepoError> {
        op.run(&self.repo).await
    }
}
