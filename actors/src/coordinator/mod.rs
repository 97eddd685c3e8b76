//! The coordinator (the seed's CoordinatorRepo): runs a client's write as a
//! signed two-phase commit across the cluster of its blocks, and answers with
//! its own StorageRepo's result. Reads are not coordinated (served locally,
//! restored from peers when missing).
//!
//! The record's peer set is the union of the `cluster_size` peers closest to each
//! of the operation's blocks, plus this node (it always takes part, so it can
//! answer from its own store). A lone node (cluster of one) applies writes
//! directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use futures::future::join_all;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;

use crate::block::StorageRepo;
use crate::cluster::{
    closest_peers, majority, message_hash, operation_blocks, peer_entry, ClusterPeer,
    ClusterRecord, MemberDirectory, VoteType,
};
use crate::metrics::{ActorMetrics, Counter, Histogram};
use crate::model::{
    CancelOperation, CommitRequest, CommitResult, PendRequest, PendResult, RepoMessage,
    RepoOperation, TrxBlocks,
};
use crate::net::{cluster_update, now_ms, ErrorReply, NetClient, NetError};
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
    /// Phase 1 (promises) latency.
    pub phase1: Histogram,
    /// Phase 2 (commits) latency.
    pub phase2: Histogram,
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
}

/// The peers of one transaction and how to reach them.
struct Plan {
    peers: BTreeMap<String, ClusterPeer>,
    remote: Vec<(PeerId, Vec<Multiaddr>)>,
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
        Self {
            metrics: Arc::new(TxnMetrics::default()),
            key,
            me,
            repo,
            net,
            members,
            cluster_size: cluster_size.max(1),
            timeout,
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

    async fn plan(&self, op: &RepoOperation) -> Result<Plan, RepoError> {
        let status = self
            .net()?
            .status()
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))?;
        let infos: BTreeMap<PeerId, _> =
            status.members.into_iter().map(|p| (p.peer_id, p)).collect();
        let candidates: Vec<PeerId> = infos.keys().copied().chain([self.me]).collect();
        let mut chosen = BTreeSet::from([self.me]);
        for block in operation_blocks(op) {
            chosen.extend(closest_peers(
                &block,
                candidates.iter().copied(),
                self.cluster_size,
            ));
        }
        let my_addrs = status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut peers = BTreeMap::from([peer_entry(&self.key, my_addrs)]);
        let mut remote = Vec::new();
        for p in chosen.into_iter().filter(|p| *p != self.me) {
            let Some(info) = infos.get(&p) else { continue };
            peers.insert(
                p.to_string(),
                ClusterPeer {
                    multiaddrs: info.addrs.iter().map(ToString::to_string).collect(),
                    public_key: B64.encode(info.public_key.encode_protobuf()),
                },
            );
            remote.push((p, info.addrs.clone()));
        }
        Ok(Plan { peers, remote })
    }

    async fn run<T: DeserializeOwned>(&self, op: RepoOperation) -> Result<T, RepoError> {
        let plan = self.plan(&op).await?;
        if plan.remote.is_empty() {
            self.metrics.local.add(1);
            return self.local(op).await;
        }
        self.metrics.started.add(1);
        let expiration =
            now_ms().saturating_add(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        let message = RepoMessage {
            operations: vec![op],
            expiration: Some(expiration),
        };
        let mut record = ClusterRecord {
            message_hash: message_hash(&message),
            peers: plan.peers,
            message,
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
        };
        let hash = record.message_hash.clone();
        // Phase 1: every member promises (or refuses).
        let phase1 = Instant::now();
        let replies = self.fan_out(&record, &plan.remote).await;
        self.metrics.phase1.observe(phase1.elapsed());
        for (peer, reply) in &replies {
            if let Some(v) = reply.as_ref().ok().and_then(|r| r.promises.get(peer)) {
                record.promises.insert(peer.clone(), v.clone());
            }
        }
        let approvals = record
            .promises
            .values()
            .filter(|s| s.vote == VoteType::Approve)
            .count();
        let threshold = majority(record.peers.len());
        if approvals < threshold {
            self.metrics.aborted.add(1);
            // Tell members now so they release, not at expiry.
            let _ = self.fan_out(&record, &plan.remote).await;
            let mut reasons: Vec<String> = record
                .promises
                .values()
                .filter_map(|s| s.reject_reason.clone())
                .collect();
            reasons.extend(
                replies
                    .iter()
                    .filter_map(|(p, r)| r.as_ref().err().map(|e| format!("{p}: {e}"))),
            );
            let reason = format!(
                "cluster refused ({approvals}/{threshold} promises): {}",
                reasons.join(", ")
            );
            return stale(reason);
        }
        // Phase 2: the decision is commit; members execute and sign.
        self.metrics.committed.add(1);
        let phase2 = Instant::now();
        let replies = self.fan_out(&record, &plan.remote).await;
        self.metrics.phase2.observe(phase2.elapsed());
        let committed = replies
            .iter()
            .filter(|(p, r)| r.as_ref().is_ok_and(|r| r.commits.contains_key(p)))
            .count();
        if committed < threshold {
            self.metrics.in_doubt.add(1);
            tracing::warn!(%hash, committed, threshold, "commit decided but not yet acknowledged by a majority; members settle by recovery");
        }
        let result = self.members.result(&hash).ok_or_else(|| {
            RepoError::Unavailable(format!("transaction {hash} was not executed locally"))
        })?;
        decode_result(result)
    }

    /// Sends the record to this node's member and to every remote member, concurrently.
    async fn fan_out(
        &self,
        record: &ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) -> Vec<(String, Result<ClusterRecord, String>)> {
        let local = async {
            (
                self.me.to_string(),
                self.members
                    .update(record.clone())
                    .await
                    .map_err(|e| e.to_string()),
            )
        };
        let net = self.net.get().cloned();
        let remotes = remote.iter().map(|(p, addrs)| {
            let (net, rec) = (net.clone(), record.clone());
            async move {
                let r = match net {
                    Some(net) => cluster_update(&net, *p, addrs.clone(), rec, self.timeout)
                        .await
                        .map_err(|e: NetError| e.to_string()),
                    None => Err("network not started".to_string()),
                };
                (p.to_string(), r)
            }
        });
        let (mine, others) = futures::join!(local, join_all(remotes));
        std::iter::once(mine).chain(others).collect()
    }

    async fn local<T: DeserializeOwned>(&self, op: RepoOperation) -> Result<T, RepoError> {
        let v = match op {
            RepoOperation::Pend(p) => serde_json::to_value(self.repo.pend(p).await?),
            RepoOperation::Commit(c) => serde_json::to_value(self.repo.commit(c).await?),
            RepoOperation::Cancel(c) => {
                self.repo.cancel(c.trx_ref).await?;
                Ok(serde_json::json!({}))
            }
            RepoOperation::Get(g) => serde_json::to_value(self.repo.get(g).await?),
        }
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
        decode_result(v)
    }
}

fn stale<T: DeserializeOwned>(reason: String) -> Result<T, RepoError> {
    let failure = serde_json::json!({"success": false, "reason": reason});
    serde_json::from_value(failure).map_err(|_| RepoError::Unavailable(reason))
}

/// The local execution's JSON back into a result (or the error it recorded).
fn decode_result<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, RepoError> {
    if let Ok(e) = serde_json::from_value::<ErrorReply>(v.clone()) {
        return Err(RepoError::Coded {
            code: e.error.code,
            message: e.error.message,
        });
    }
    serde_json::from_value(v)
        .map_err(|e| RepoError::Invalid(format!("unexpected local result: {e}")))
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
struct Coordinate(RepoOperation);

impl actix::Handler<Coordinate> for CoordinatorActor {
    type Result = actix::ResponseFuture<Result<serde_json::Value, RepoError>>;

    fn handle(&mut self, Coordinate(op): Coordinate, _: &mut Self::Context) -> Self::Result {
        let timer = self.metrics.start();
        let inner = self.inner.clone();
        Box::pin(async move {
            let r = inner.run::<serde_json::Value>(op).await;
            drop(timer);
            r
        })
    }
}

/// Typed handle to the [`CoordinatorActor`].
#[derive(Clone)]
pub struct CoordinatorHandle {
    addr: actix::Addr<CoordinatorActor>,
    metrics: Arc<ActorMetrics>,
    txns: Arc<TxnMetrics>,
}

impl CoordinatorHandle {
    /// Starts the actor (on the current arbiter).
    pub fn start(inner: Coordinator) -> Self {
        use actix::Actor as _;
        let metrics = Arc::new(ActorMetrics::new("coordinator"));
        let txns = inner.metrics.clone();
        let addr = CoordinatorActor {
            inner: Arc::new(inner),
            metrics: metrics.clone(),
        }
        .start();
        Self {
            addr,
            metrics,
            txns,
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
        let v = self.addr.send(Coordinate(op)).await.map_err(|e| {
            self.metrics.dropped();
            RepoError::Unavailable(format!("coordinator: {e}"))
        })??;
        decode_result(v)
    }

    /// Pends through the cluster.
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.call(RepoOperation::Pend(req)).await
    }

    /// Commits through the cluster.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        self.call(RepoOperation::Commit(req)).await
    }

    /// Cancels through the cluster.
    pub async fn cancel(&self, trx_ref: TrxBlocks) -> Result<(), RepoError> {
        self.call::<serde_json::Value>(RepoOperation::Cancel(CancelOperation { trx_ref }))
            .await
            .map(|_| ())
    }
}
