//! The coordinator (the seed's CoordinatorRepo): runs a client's write as a
//! signed two-phase commit across the cluster of its blocks, and answers with
//! its own StorageRepo's result. Reads are not coordinated (served locally,
//! restored from peers when missing).
//!
//! The record's peer set is the union of the `cluster_size` peers closest to each
//! of the operation's blocks, plus this node (it always takes part, so it can
//! answer from its own store). A lone node (cluster of one) applies writes
//! directly.
//!
//! A node runs two [`CoordinatorActor`]s over one [`Coordinator`]: one on the
//! node's system arbiter, and one beside the swarm that takes a write arriving
//! while no other is running (fewer thread hops for a lone write; writes under
//! load stay off the swarm's thread). docs/BENCHMARKS.md has the measurements.

mod fault;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;

use crate::block::StorageRepo;
use crate::cluster::record::tally;
use crate::cluster::{
    closest_peers, majority, message_hash, operation_blocks, peer_entry, sign_commit, CatchUp,
    ClusterPeer, ClusterRecord, MemberDirectory, VoteType,
};
use crate::metrics::{ActorMetrics, Counter, Histogram};
use crate::model::{
    BlockGets, BlockId, CancelOperation, CommitRequest, CommitResult, GetBlockResults, PendRequest,
    PendResult, RepoMessage, RepoOperation, TrxBlocks,
};
use crate::net::{cluster_coordinate, cluster_update, now_ms, ErrorReply, NetClient, NetError};
use crate::storage::RepoError;

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
    lanes: parking_lot::Mutex<HashMap<String, Lane>>,
    fault: fault::Fault,
    catch_up: Arc<CatchUp>,
    /// Client writes being coordinated here now.
    running: std::sync::atomic::AtomicUsize,
}

/// The peers this node can take into a cluster.
struct View {
    infos: BTreeMap<PeerId, crate::net::PeerInfo>,
    /// Those peers and this node.
    candidates: Vec<PeerId>,
    my_addrs: Vec<String>,
}

/// The peers of one transaction and how to reach them.
#[derive(Clone)]
struct Plan {
    peers: BTreeMap<String, ClusterPeer>,
    remote: Vec<(PeerId, Vec<Multiaddr>)>,
    /// This node is in none of the blocks' clusters: the closest peer of the first
    /// block, to forward the write to.
    forward_to: Option<(PeerId, Vec<Multiaddr>)>,
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
            running: std::sync::atomic::AtomicUsize::new(0),
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

    /// Who this node can reach and take into a cluster right now.
    async fn view(&self) -> Result<View, RepoError> {
        let status = self.net()?.member_view();
        let infos: BTreeMap<PeerId, _> = status
            .members
            .iter()
            .map(|p| (p.peer_id, p.clone()))
            .collect();
        let candidates = infos.keys().copied().chain([self.me]).collect();
        let my_addrs = status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(View {
            infos,
            candidates,
            my_addrs,
        })
    }

    /// The operation's blocks grouped by cluster (the `cluster_size` closest peers).
    fn groups(
        &self,
        view: &View,
        blocks: BTreeSet<BlockId>,
    ) -> BTreeMap<BTreeSet<PeerId>, BTreeSet<BlockId>> {
        let mut groups: BTreeMap<BTreeSet<PeerId>, BTreeSet<BlockId>> = BTreeMap::new();
        for block in blocks {
            let cluster: BTreeSet<PeerId> =
                closest_peers(&block, view.candidates.iter().copied(), self.cluster_size)
                    .into_iter()
                    .collect();
            groups.entry(cluster).or_default().insert(block);
        }
        groups
    }

    /// The record's peers for one cluster: the cluster plus this node (it always
    /// takes part, so it can answer from its own store), and where to forward the
    /// write when this node is not in the cluster.
    fn plan(&self, view: &View, cluster: &BTreeSet<PeerId>, blocks: &BTreeSet<BlockId>) -> Plan {
        let forward_to = match blocks.first() {
            // The cluster's coordinator: its member closest to the first block.
            Some(first) if !cluster.contains(&self.me) => {
                closest_peers(first, cluster.iter().copied(), cluster.len())
                    .into_iter()
                    .find_map(|p| view.infos.get(&p).map(|i| (p, i.addrs.clone())))
            }
            _ => None,
        };
        let mut peers = BTreeMap::from([peer_entry(&self.key, view.my_addrs.clone())]);
        let mut remote = Vec::new();
        for p in cluster.iter().filter(|p| **p != self.me) {
            let Some(info) = view.infos.get(p) else {
                continue;
            };
            peers.insert(
                p.to_string(),
                ClusterPeer {
                    multiaddrs: info.addrs.iter().map(ToString::to_string).collect(),
                    public_key: B64.encode(info.public_key.encode_protobuf()),
                },
            );
            remote.push((*p, info.addrs.clone()));
        }
        Plan {
            peers,
            remote,
            forward_to,
        }
    }

    async fn run(
        self: &Arc<Self>,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<serde_json::Value, RepoError> {
        if let RepoOperation::PendCommit(pc) = &op {
            pc.check().map_err(RepoError::Invalid)?;
        }
        let view = self.view().await?;
        let groups = self.groups(&view, operation_blocks(&op));
        if let (RepoOperation::PendCommit(pc), true) = (&op, groups.len() > 1) {
            return checked(
                self.pend_commit_split(&view, groups, pc.clone(), forwarded)
                    .await?,
            );
        }
        if groups.len() <= 1 {
            let (cluster, blocks) = groups.into_iter().next().unwrap_or_default();
            let plan = self.plan(&view, &cluster, &blocks);
            return checked(self.run_part(plan, op, forwarded).await?);
        }
        checked(self.run_split(&view, groups, op, forwarded).await?)
    }

    /// A pendCommit whose blocks belong to several clusters cannot be one record:
    /// it runs as its pend, then its commit (tail first, as any commit), each split
    /// by cluster; a commit that fails cancels the pend everywhere, so the outcome
    /// is the same all-or-nothing one as within a cluster.
    async fn pend_commit_split(
        self: &Arc<Self>,
        view: &View,
        groups: BTreeMap<BTreeSet<PeerId>, BTreeSet<BlockId>>,
        pc: crate::model::PendCommitRequest,
        forwarded: bool,
    ) -> Result<serde_json::Value, RepoError> {
        let trx_ref = TrxBlocks {
            trx_id: pc.commit.trx_id.clone(),
            block_ids: pc.commit.block_ids.clone(),
        };
        let cancel_groups = groups.clone();
        let cancel = |this: Arc<Self>| async move {
            let op = RepoOperation::Cancel(CancelOperation { trx_ref });
            this.run_split(view, cancel_groups, op, forwarded).await
        };
        let pend: PendResult = decode_result(
            self.run_split(
                view,
                groups.clone(),
                RepoOperation::Pend(pc.pend),
                forwarded,
            )
            .await?,
        )?;
        if !pend.is_success() {
            // Parts that did pend are dropped, as after any failed pend.
            cancel(self.clone()).await?;
            return to_json(&crate::model::PendCommitResult { pend, commit: None });
        }
        let commit = self
            .run_split(view, groups, RepoOperation::Commit(pc.commit), forwarded)
            .await
            .and_then(decode_result::<CommitResult>);
        match commit {
            Ok(c) => {
                if !c.is_success() {
                    cancel(self.clone()).await?;
                }
                to_json(&crate::model::PendCommitResult {
                    pend,
                    commit: Some(c),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A write whose blocks belong to several clusters: one part per cluster, each
    /// agreed by its own cluster only. A commit naming a `tailId` commits the tail's
    /// part first (the collection's commit point) and the other parts only if that
    /// succeeded; all other parts run concurrently. The answer merges the parts'.
    async fn run_split(
        self: &Arc<Self>,
        view: &View,
        groups: BTreeMap<BTreeSet<PeerId>, BTreeSet<BlockId>>,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<serde_json::Value, RepoError> {
        let mut parts: Vec<(Plan, RepoOperation, bool)> = groups
            .iter()
            .map(|(cluster, blocks)| {
                let first = match &op {
                    RepoOperation::Commit(c) => {
                        c.tail_id.as_ref().is_some_and(|t| blocks.contains(t))
                    }
                    _ => false,
                };
                (
                    self.plan(view, cluster, blocks),
                    op.restricted_to(blocks),
                    first,
                )
            })
            .collect();
        let mut results = Vec::new();
        if let Some(i) = parts.iter().position(|(_, _, first)| *first) {
            let (plan, part, _) = parts.remove(i);
            let r = self.run_part(plan, part, forwarded).await?;
            let committed =
                serde_json::from_value::<CommitResult>(r.clone()).is_ok_and(|c| c.is_success());
            if !committed {
                return Ok(r);
            }
            results.push(r);
        }
        let rest = parts
            .into_iter()
            .map(|(plan, part, _)| self.run_part(plan, part, forwarded));
        for r in futures::future::join_all(rest).await {
            results.push(r?);
        }
        merge_results(&op, results)
    }

    /// One cluster's part: forwarded to the cluster's coordinator when this node is
    /// not a member (unless it was itself forwarded here), applied directly on a lone
    /// node, or agreed by the cluster.
    async fn run_part(
        self: &Arc<Self>,
        mut plan: Plan,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<serde_json::Value, RepoError> {
        if let Some((peer, addrs)) = plan.forward_to.take().filter(|_| !forwarded) {
            // Not in the cluster: the block's coordinator runs it (and never forwards
            // again). If it cannot be reached, coordinate here instead.
            let expiration = now_ms()
                .saturating_add(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
            let message = RepoMessage {
                operations: vec![op.clone()],
                expiration: Some(expiration),
                coordinator: None,
            };
            match cluster_coordinate(self.net()?, peer, addrs, message, self.timeout).await {
                Ok(v) => {
                    self.metrics.forwarded.add(1);
                    return decode_result(v);
                }
                Err(NetError::Remote { code, message }) => {
                    return Err(RepoError::Coded { code, message })
                }
                Err(e) if e.is_in_doubt() => {
                    return Err(RepoError::Unavailable(format!("forwarded to {peer}: {e}")))
                }
                Err(e) => tracing::warn!(%peer, error = %e, "cannot forward; coordinating here"),
            }
        }
        if plan.remote.is_empty() {
            self.metrics.local.add(1);
            return self.local(op).await;
        }
        self.submit(plan, op).await
    }

    /// Queues `op` for a round with its peer set: it starts one at once while fewer
    /// than [`MAX_ROUNDS`] run for that peer set, otherwise it joins the oldest
    /// waiting batch it fits in (disjoint blocks, fewer than [`MAX_BATCH`]
    /// operations). Sequential writes therefore never wait, and under load one
    /// record carries many writes: one round of votes and one storage sync per
    /// member for all of them.
    async fn submit(
        self: &Arc<Self>,
        plan: Plan,
        op: RepoOperation,
    ) -> Result<serde_json::Value, RepoError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = plan.peers.keys().cloned().collect::<Vec<_>>().join(",");
        let blocks = operation_blocks(&op);
        let start = {
            let mut lanes = self.lanes.lock();
            let lane = lanes.entry(key.clone()).or_default();
            if lane.running < MAX_ROUNDS {
                lane.running += 1;
                Some(Batch::new(plan, op, blocks, tx))
            } else {
                let size = serde_json::to_vec(&op).map_or(MAX_BATCH_BYTES, |v| v.len());
                match lane.waiting.iter_mut().find(|b| {
                    b.ops.len() < MAX_BATCH
                        && b.bytes + size <= MAX_BATCH_BYTES
                        && b.blocks.is_disjoint(&blocks)
                }) {
                    Some(b) => b.push(op, blocks, size, tx),
                    None => {
                        let mut b = Batch::new(plan, op, blocks, tx);
                        b.bytes = size;
                        lane.waiting.push_back(b);
                    }
                }
                None
            }
        };
        if let Some(batch) = start {
            actix_rt::spawn(self.clone().drive(key, batch));
        }
        rx.await
            .map_err(|_| RepoError::Unavailable("coordinator stopped".into()))?
    }

    /// Runs `batch`, then the batches that waited for it, until the lane is idle.
    async fn drive(self: Arc<Self>, key: String, mut batch: Batch) {
        loop {
            self.round(batch).await;
            let next = {
                let mut lanes = self.lanes.lock();
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                match lane.waiting.pop_front() {
                    Some(b) => b,
                    None => {
                        lane.running = lane.running.saturating_sub(1);
                        if lane.running == 0 {
                            lanes.remove(&key);
                        }
                        return;
                    }
                }
            };
            batch = next;
        }
    }

    /// One record for the whole batch; every waiting client gets its operation's
    /// result. A refused batch of several is retried one operation per record, so
    /// one conflicting write does not fail the others with it.
    async fn round(&self, batch: Batch) {
        let Batch {
            plan, ops, replies, ..
        } = batch;
        match self.agree(&plan, ops.clone()).await {
            Ok(results) => answer(replies, results),
            Err(Agreement::Refused(reason)) if ops.len() > 1 => {
                tracing::debug!(ops = ops.len(), %reason, "batch refused; retrying one by one");
                let solo = ops.into_iter().map(|op| {
                    let plan = &plan;
                    async move {
                        match self.agree(plan, vec![op.clone()]).await {
                            Ok(mut r) => r.pop().ok_or_else(|| {
                                RepoError::Unavailable("no result for the operation".into())
                            }),
                            Err(Agreement::Refused(reason)) => refused(&op, reason),
                            Err(Agreement::Failed(e)) => Err(e),
                        }
                    }
                });
                let results = futures::future::join_all(solo).await;
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(Agreement::Refused(reason)) => {
                for (reply, op) in replies.into_iter().zip(&ops) {
                    let _ = reply.send(refused(op, reason.clone()));
                }
            }
            Err(Agreement::Failed(e)) => {
                let reply = crate::net::repo_error(e);
                for r in replies {
                    let _ = r.send(Err(RepoError::Coded {
                        code: reply.error.code.clone(),
                        message: reply.error.message.clone(),
                    }));
                }
            }
        }
    }

    /// Runs one record over `plan`'s peers: promises, then (at threshold) commits.
    /// The local execution's results, one per operation.
    async fn agree(
        &self,
        plan: &Plan,
        operations: Vec<RepoOperation>,
    ) -> Result<Vec<serde_json::Value>, Agreement> {
        self.metrics.started.add(1);
        self.metrics.operations.add(operations.len() as u64);
        let expiration =
            now_ms().saturating_add(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        let count = operations.len();
        let message = RepoMessage {
            operations,
            expiration: Some(expiration),
            coordinator: Some(self.me.to_string()),
        };
        let mut record = ClusterRecord {
            message_hash: message_hash(&message),
            peers: plan.peers.clone(),
            message: message.into(),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
            heads: BTreeMap::new(),
        };
        let hash = record.message_hash.clone();
        self.members.note_message(&hash, &record.message);
        let threshold = majority(record.peers.len());
        let members = record.peers.len();
        // Phase 1: collect promises until the decision is known either way.
        let phase1 = Instant::now();
        let mut calls = self.calls(&record, &plan.remote);
        let mut failures = Vec::new();
        while let Some((peer, reply)) = calls.next().await {
            match reply {
                Ok(mut r) => {
                    if let Some(v) = r.promises.get(&peer) {
                        record.promises.insert(peer.clone(), v.clone());
                    }
                    if let Some(h) = r.heads.remove(&peer) {
                        record.heads.insert(peer, h);
                    }
                }
                Err(e) => failures.push(format!("{peer}: {e}")),
            }
            let t = tally(&record);
            let unreachable = members.saturating_sub(t.rejections + failures.len()) < threshold;
            if t.approvals >= threshold || unreachable {
                break;
            }
        }
        self.metrics.phase1.observe(phase1.elapsed());
        let approvals = tally(&record).approvals;
        if approvals < threshold {
            // Let the promise requests still in flight land first: a member that
            // heard the refusal before the proposal would promise afterwards and hold
            // the blocks until the deadline.
            let _ = tokio::time::timeout(self.timeout, async {
                while calls.next().await.is_some() {}
            })
            .await;
            self.metrics.aborted.add(1);
            // Decided abort, signed: members release at once (an unreachable
            // member is a failure, not a rejection, so without it the approving
            // ones could not tell the threshold is out of reach).
            let reason = "refused: too few promises".to_string();
            let vote = sign_commit(&self.key, &record, VoteType::Reject, Some(reason));
            record.commits.insert(self.me.to_string(), vote);
            // Tell members now so they release, not at expiry; wait for it, so a
            // retry of the same writes does not find its own blocks still held.
            let mut release = self.calls(&record, &plan.remote);
            let _ = tokio::time::timeout(self.timeout, async {
                while release.next().await.is_some() {}
            })
            .await;
            let mut reasons: Vec<String> = record
                .promises
                .values()
                .filter_map(|s| s.reject_reason.clone())
                .collect();
            reasons.extend(failures);
            return Err(Agreement::Refused(format!(
                "cluster refused ({approvals}/{threshold} promises): {}",
                reasons.join(", ")
            )));
        }
        finish_in_background(calls);
        // Phase 2: the decision is commit; members execute and sign. Answer once a
        // majority (this node included) has committed; retry the rest in the background.
        self.metrics.committed.add(1);
        if self.fault.hits(&record) {
            self.inject(&record, &plan.remote).await;
        }
        let phase2 = Instant::now();
        let me = self.me.to_string();
        let mut calls = self.calls(&record, &plan.remote);
        let (mut committed, mut local_done, mut stragglers) = (0, false, Vec::new());
        while let Some((peer, reply)) = calls.next().await {
            local_done |= peer == me;
            match reply {
                Ok(r) if r.commits.contains_key(&peer) => committed += 1,
                _ => stragglers.push(peer),
            }
            if local_done && committed >= threshold {
                break;
            }
        }
        self.metrics.phase2.observe(phase2.elapsed());
        if committed < threshold {
            self.metrics.in_doubt.add(1);
            tracing::warn!(%hash, committed, threshold, "commit decided but not yet acknowledged by a majority; retrying");
        }
        // Shared, not copied: read again once the results are in.
        let message = record.message.clone();
        self.retry_stragglers(calls, stragglers, record, &plan.remote);
        let in_doubt = || {
            Agreement::Failed(RepoError::Unavailable(format!(
                "transaction {hash} was not executed locally (in doubt)"
            )))
        };
        match self.members.result(&hash) {
            Some(serde_json::Value::Array(mut results)) if results.len() == count => {
                self.settle_local(&message.operations, &mut results).await;
                Ok(results)
            }
            _ => Err(in_doubt()),
        }
    }

    /// Replaces a false `not_pending` result of a decided commit. This node found
    /// no pending transaction because it has not applied the pend's decision yet:
    /// the pend went through another node, which answered once a majority without
    /// this one had it. Any two majorities share a member, so a member that
    /// committed this record had the pend and applied the commit before replying:
    /// the blocks are restored from the cluster and the commit is answered from
    /// the restored copy (a success, or the `stale` it really is). A commit of a
    /// transaction pended nowhere finds nothing newer and stays `not_pending`.
    async fn settle_local(&self, operations: &[RepoOperation], results: &mut [serde_json::Value]) {
        for (op, result) in operations.iter().zip(results.iter_mut()) {
            let RepoOperation::Commit(c) = op else {
                continue;
            };
            let not_pending = result
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(serde_json::Value::as_str)
                == Some(crate::net::codes::NOT_PENDING);
            if !not_pending || !self.catch_up.reach_commit(c).await {
                continue;
            }
            match self.repo.commit(c.clone()).await {
                Ok(r) => *result = serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
                Err(e) => {
                    tracing::warn!(trx = %c.trx_id, error = %e, "commit restored from the cluster but not readable here")
                }
            }
        }
    }

    /// Test-only: stops between the phases (see [`fault`]).
    async fn inject(&self, record: &ClusterRecord, remote: &[(PeerId, Vec<Multiaddr>)]) {
        if self.fault == fault::Fault::HangAfterOneCommit {
            if let (Some(net), Some((peer, addrs))) = (self.net.get(), remote.first()) {
                let r = cluster_update(net, *peer, addrs.clone(), record.clone(), self.timeout);
                if let Err(e) = r.await {
                    tracing::warn!(error = %e, "fault injection: phase 2 to one member failed");
                }
            }
        }
        self.fault.hang(record).await;
    }

    /// One call per member (this node locally, the others over the network), each
    /// independent of `self` so unfinished ones can run on after a decision.
    fn calls(
        &self,
        record: &ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) -> FuturesUnordered<MemberCall> {
        let calls = FuturesUnordered::new();
        let (members, rec, me) = (self.members.clone(), record.clone(), self.me.to_string());
        calls.push(Box::pin(
            async move { (me, members.update(rec).await.map_err(|e| e.to_string())) },
        ) as MemberCall);
        let net = self.net.get().cloned();
        for (p, addrs) in remote {
            let (net, rec, addrs, peer, timeout) =
                (net.clone(), record.clone(), addrs.clone(), *p, self.timeout);
            calls.push(Box::pin(async move {
                let r = match net {
                    Some(net) => cluster_update(&net, peer, addrs, rec, timeout)
                        .await
                        .map_err(|e: NetError| e.to_string()),
                    None => Err("network not started".to_string()),
                };
                (peer.to_string(), r)
            }));
        }
        calls
    }

    /// Lets unfinished calls complete, then re-sends the decided record to members
    /// that have not committed, with backoff, until the record expires.
    fn retry_stragglers(
        &self,
        rest: FuturesUnordered<MemberCall>,
        mut stragglers: Vec<String>,
        record: ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) {
        let net = self.net.get().cloned();
        let remote: BTreeMap<String, (PeerId, Vec<Multiaddr>)> = remote
            .iter()
            .map(|(p, a)| (p.to_string(), (*p, a.clone())))
            .collect();
        let timeout = self.timeout;
        actix_rt::spawn(async move {
            let mut rest = rest;
            while let Some((peer, reply)) = rest.next().await {
                if !reply.is_ok_and(|r| r.commits.contains_key(&peer)) {
                    stragglers.push(peer);
                }
            }
            let Some(net) = net else { return };
            let deadline = record.message.expiration.unwrap_or(0);
            let mut backoff = Duration::from_millis(100);
            while !stragglers.is_empty() && now_ms() < deadline {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let mut still = Vec::new();
                for peer in stragglers {
                    let Some((id, addrs)) = remote.get(&peer) else {
                        continue;
                    };
                    let ok = cluster_update(&net, *id, addrs.clone(), record.clone(), timeout)
                        .await
                        .is_ok_and(|r| r.commits.contains_key(&peer));
                    if !ok {
                        still.push(peer);
                    }
                }
                stragglers = still;
            }
        });
    }

    async fn local(&self, op: RepoOperation) -> Result<serde_json::Value, RepoError> {
        let v = match op {
            RepoOperation::Pend(p) => serde_json::to_value(self.repo.pend(p).await?),
            RepoOperation::Commit(c) => serde_json::to_value(self.repo.commit(c).await?),
            RepoOperation::Cancel(c) => {
                self.repo.cancel(c.trx_ref).await?;
                Ok(serde_json::json!({}))
            }
            RepoOperation::PendCommit(pc) => serde_json::to_value(self.repo.pend_commit(pc).await?),
            RepoOperation::Get(g) => serde_json::to_value(self.repo.get(g).await?),
        }
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
        Ok(v)
    }
}

/// Most records running at once per peer set; further writes wait in batches.
/// One: on the 3-nodes-on-2-cores bench, 1 round gave 2,173 txn/s with 64 in
/// flight, 2 rounds 1,671 and 4 rounds 1,435 (larger batches spread each record's
/// signatures, verifications and syncs over more writes); a lone writer never
/// waits either way.
const MAX_ROUNDS: usize = 1;
/// Most operations in one batch (one record).
const MAX_BATCH: usize = 64;
/// Most JSON bytes of operations in one batch, so a record stays well inside the
/// 1 MiB cluster frame (a single larger write still runs, alone).
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How a record ended, short of a result.
enum Agreement {
    /// Fewer than threshold promises: nothing was applied anywhere.
    Refused(String),
    /// The coordinator could not run or finish the record.
    Failed(RepoError),
}

/// The clients waiting on one peer set: rounds running, batches waiting.
#[derive(Default)]
struct Lane {
    running: usize,
    waiting: VecDeque<Batch>,
}

/// Writes that will share one record.
struct Batch {
    plan: Plan,
    bytes: usize,
    blocks: BTreeSet<BlockId>,
    ops: Vec<RepoOperation>,
    replies: Vec<Reply>,
}

type Reply = tokio::sync::oneshot::Sender<Result<serde_json::Value, RepoError>>;

impl Batch {
    fn new(plan: Plan, op: RepoOperation, blocks: BTreeSet<BlockId>, reply: Reply) -> Self {
        Self {
            plan,
            bytes: 0,
            blocks,
            ops: vec![op],
            replies: vec![reply],
        }
    }

    fn push(&mut self, op: RepoOperation, blocks: BTreeSet<BlockId>, size: usize, reply: Reply) {
        self.bytes += size;
        self.blocks.extend(blocks);
        self.ops.push(op);
        self.replies.push(reply);
    }
}

/// The answer to a split write from its parts' answers: success when every part
/// succeeded; otherwise a stale failure gathering every failed part's reasons,
/// missing transactions and conflicting pendings (parts that succeeded stay
/// pended, and a client cancels them as after any failed pend).
fn merge_results(
    op: &RepoOperation,
    parts: Vec<serde_json::Value>,
) -> Result<serde_json::Value, RepoError> {
    if let Some(e) = parts.iter().find_map(decode_error) {
        return Err(e);
    }
    let bad = |e: serde_json::Error| RepoError::Invalid(format!("unexpected part result: {e}"));
    let mut stale: Option<crate::model::StaleFailure> = None;
    let mut fold = |s: crate::model::StaleFailure| {
        let into = stale.get_or_insert_with(Default::default);
        into.reason = match (into.reason.take(), s.reason) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        if let Some(m) = s.missing {
            into.missing.get_or_insert_with(Vec::new).extend(m);
        }
        if let Some(p) = s.pending {
            into.pending.get_or_insert_with(Vec::new).extend(p);
        }
    };
    let v = match op {
        RepoOperation::Pend(_) => {
            let mut ok = crate::model::PendSuccess {
                pending: Vec::new(),
                block_ids: Vec::new(),
            };
            for part in parts {
                match serde_json::from_value::<PendResult>(part).map_err(bad)? {
                    PendResult::Success(s) => {
                        ok.pending.extend(s.pending);
                        ok.block_ids.extend(s.block_ids);
                    }
                    PendResult::Stale(s) => fold(s),
                }
            }
            match stale {
                Some(s) => serde_json::to_value(PendResult::Stale(s)),
                None => serde_json::to_value(PendResult::Success(ok)),
            }
        }
        RepoOperation::Commit(_) => {
            for part in parts {
                if let CommitResult::Stale(s) =
                    serde_json::from_value::<CommitResult>(part).map_err(bad)?
                {
                    fold(s);
                }
            }
            match stale {
                Some(s) => serde_json::to_value(CommitResult::Stale(s)),
                None => serde_json::to_value(CommitResult::Success),
            }
        }
        _ => Ok(serde_json::json!({})),
    };
    v.map_err(|e| RepoError::Invalid(e.to_string()))
}

/// An error reply carried as a result.
fn decode_error(v: &serde_json::Value) -> Option<RepoError> {
    let e = serde_json::from_value::<ErrorReply>(v.clone()).ok()?;
    Some(RepoError::Coded {
        code: e.error.code,
        message: e.error.message,
    })
}

/// Hands each client its operation's result.
fn answer(replies: Vec<Reply>, results: Vec<serde_json::Value>) {
    for (reply, v) in replies.into_iter().zip(results) {
        let _ = reply.send(Ok(v));
    }
}

/// A refused write's answer: `{"success":false,"reason"}` for pend and commit (a
/// retryable stale result, as the seed reports it); an error for a cancel.
fn refused(op: &RepoOperation, reason: String) -> Result<serde_json::Value, RepoError> {
    match op {
        RepoOperation::Pend(_) | RepoOperation::Commit(_) => {
            Ok(serde_json::json!({"success": false, "reason": reason}))
        }
        RepoOperation::PendCommit(_) => {
            Ok(serde_json::json!({"pend": {"success": false, "reason": reason}}))
        }
        _ => Err(RepoError::Coded {
            code: crate::net::codes::CONFLICT.into(),
            message: reason,
        }),
    }
}

/// A member's answer: its PeerId and the record it returned.
type MemberCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = (String, Result<ClusterRecord, String>)> + Send>,
>;

/// Lets the calls still running finish (their members still get the record).
fn finish_in_background(mut calls: FuturesUnordered<MemberCall>) {
    actix_rt::spawn(async move { while calls.next().await.is_some() {} });
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, RepoError> {
    serde_json::to_value(v).map_err(|e| RepoError::Invalid(e.to_string()))
}

/// The local execution's JSON back into a result (or the error it recorded).
fn decode_result<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, RepoError> {
    serde_json::from_value(checked(v)?)
        .map_err(|e| RepoError::Invalid(format!("unexpected local result: {e}")))
}

/// The result unchanged, or the error it recorded. Only a value with an `error`
/// member is tried as an error reply (no result type has one), so a result is
/// neither copied nor re-built here.
fn checked(v: serde_json::Value) -> Result<serde_json::Value, RepoError> {
    if v.get("error").is_some() {
        if let Ok(e) = serde_json::from_value::<ErrorReply>(v.clone()) {
            return Err(RepoError::Coded {
                code: e.error.code,
                message: e.error.message,
            });
        }
    }
    Ok(v)
}

/// The coordinator as an actor: one mailbox (bounded, metered) in front of the
/// shared logic; each write runs as its own future.
pub struct CoordinatorActor {
    inner: Arc<Coordinator>,
    metrics: Arc<ActorMetrics>,
}

impl actix::Actor for CoordinatorActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// A client write to coordinate.
#[derive(actix::Message)]
#[rtype(result = "Result<serde_json::Value, RepoError>")]
struct Coordinate(RepoOperation, bool);

impl actix::Handler<Coordinate> for CoordinatorActor {
    type Result = actix::ResponseFuture<Result<serde_json::Value, RepoError>>;

    fn handle(
        &mut self,
        Coordinate(op, forwarded): Coordinate,
        _: &mut Self::Context,
    ) -> Self::Result {
        let timer = self.metrics.start();
        let inner = self.inner.clone();
        inner
            .running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            let r = inner.run(op, forwarded).await;
            inner
                .running
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
            Some(idle)
                if self
                    .inner
                    .running
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0 =>
            {
                idle
            }
            _ => &self.addr,
        }
    }

    /// Mailbox metrics.
    pub fn actor_metrics(&self) -> &Arc<ActorMetrics> {
        &self.metrics
    }

    /// Transaction outcomes.
    pub fn txn_metrics(&self) -> &Arc<TxnMetrics> {
        &self.txns
    }

    async fn call<T: DeserializeOwned>(&self, op: RepoOperation) -> Result<T, RepoError> {
        self.metrics.enqueued();
        let v = self
            .next_actor()
            .send(Coordinate(op, false))
            .await
            .map_err(|e| {
                self.metrics.dropped();
                RepoError::Unavailable(format!("coordinator: {e}"))
            })??;
        decode_result(v)
    }

    /// Runs a write another node forwarded here: coordinated by this node (which
    /// takes part even if it is not in the cluster), never forwarded again.
    pub async fn coordinate_forwarded(
        &self,
        op: RepoOperation,
    ) -> Result<serde_json::Value, RepoError> {
        self.metrics.enqueued();
        self.next_actor()
            .send(Coordinate(op, true))
            .await
            .map_err(|e| {
                self.metrics.dropped();
                RepoError::Unavailable(format!("coordinator: {e}"))
            })?
    }

    /// Reads (see [`Coordinator::get`]): local, caught up with the cluster first
    /// when this node may be behind. Not queued behind writes.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        self.inner.get(gets).await
    }

    /// Pends through the cluster.
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.call(RepoOperation::Pend(req)).await
    }

    /// Commits through the cluster.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        self.call(RepoOperation::Commit(req)).await
    }

    /// Pends and commits one transaction through the cluster in one round.
    pub async fn pend_commit(
        &self,
        req: crate::model::PendCommitRequest,
    ) -> Result<crate::model::PendCommitResult, RepoError> {
        self.call(RepoOperation::PendCommit(req)).await
    }

    /// Cancels through the cluster.
    pub async fn cancel(&self, trx_ref: TrxBlocks) -> Result<(), RepoError> {
        self.call::<serde_json::Value>(RepoOperation::Cancel(CancelOperation { trx_ref }))
            .await
            .map(|_| ())
    }
}
