//! The embedding API: [`NodeBuilder`] starts a whole node — storage, block actors,
//! RepoService, SwarmActor and (optionally) the HTTP admin server — inside the
//! caller's actix System or actix-web app (no second runtime, no blocking of the
//! caller's thread), and returns a [`NodeHandle`]; [`NodeHandle::shutdown`] stops it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), optimystic::node::NodeError> {
//! use optimystic::node::NodeBuilder;
//! let node = NodeBuilder::new().data_dir("./data").listen("/ip4/127.0.0.1/tcp/0").start().await?;
//! let reply = node.repo().get(serde_json::from_str(r#"{"blockIds":["b1"]}"#).unwrap()).await;
//! println!("{} {:?}", node.peer_id(), reply);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};
use optimystic_actors::block::{BlockRegistry, RegistryOptions, StorageRepo};
use optimystic_actors::cluster::{Configs, MemberDirectory, TxnStore};
use optimystic_actors::coordinator::{Coordinator, CoordinatorHandle, LeaveProgress};
use optimystic_actors::metrics::process::ProcessCollector;
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::{
    BlockGets, BlockId, CommitRequest, CommitResult, GetBlockResults, PendCommitRequest,
    PendCommitResult, PendRequest, PendResult, TrxBlocks,
};
use optimystic_actors::net::{
    build_swarm, load_or_create_identity, Dial, Drain, Listen, NetClient, NetConfig, NetError,
    NetEvent, NetMetrics, ProtocolIds, SwarmActor,
};
use optimystic_actors::repair::queue::RepairQueue;
use optimystic_actors::service::export::NodeCollector;
use optimystic_actors::service::{restore_from_peers, Consensus, RepoService};
use optimystic_actors::storage::{
    open_storage_with, EmbeddedOptions, RawStorage, RepoError, StorageKind,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

/// Default listen address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/7410";

/// Anti-entropy by default: a round every 30 s, repairs at 200 blocks/s.
pub const DEFAULT_ANTI_ENTROPY: optimystic_actors::coordinator::EntropySettings =
    optimystic_actors::coordinator::EntropySettings {
        interval: Duration::from_secs(30),
        repair_rate: 200,
    };

/// How long shutdown waits for in-flight requests.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory (storage, identity).
    pub data_dir: PathBuf,
    /// Storage backend.
    pub storage: StorageKind,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start (with `/p2p/<peerId>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Protocol prefix (default `/db-p2p`).
    pub protocol_prefix: String,
    /// Block actor settings.
    pub registry: RegistryOptions,
    /// Network limits and timeouts (its `protocols` are rebuilt from the prefix).
    pub net: NetConfig,
    /// HTTP admin address; `None` = no HTTP server.
    pub http: Option<SocketAddr>,
    /// Peers per block cluster (reported now, used by consensus).
    pub cluster_size: usize,
    /// Most cluster transactions in progress at once on this node as a member.
    pub max_active_transactions: usize,
    /// A permissioned network's allow list (`--allow-peers`): the PeerIds that may
    /// be members of a configuration; `None` = anyone. It must name this node.
    pub allow_peers: Option<std::collections::BTreeSet<String>>,
    /// Anti-entropy (`--anti-entropy-interval-ms`, `--repair-rate`); `None` = off.
    pub anti_entropy: Option<optimystic_actors::coordinator::EntropySettings>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            storage: StorageKind::Embedded,
            listen: DEFAULT_LISTEN.parse().into_iter().collect(),
            bootstrap: Vec::new(),
            protocol_prefix: optimystic_actors::net::DEFAULT_PREFIX.to_string(),
            registry: RegistryOptions::default(),
            net: NetConfig::default(),
            http: None,
            cluster_size: 3,
            max_active_transactions: optimystic_actors::cluster::DEFAULT_MAX_ACTIVE,
            allow_peers: None,
            anti_entropy: Some(DEFAULT_ANTI_ENTROPY),
        }
    }
}

/// Builds and starts a node.
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    cfg: NodeConfig,
    listen_set: bool,
    errors: Vec<String>,
}

impl NodeBuilder {
    /// Defaults: embedded storage in `./data`, listening on [`DEFAULT_LISTEN`], no HTTP.
    pub fn new() -> Self {
        Self::default()
    }

    /// From resolved [`Settings`](crate::config::Settings).
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        let mut b = Self::new()
            .data_dir(&s.data_dir)
            .protocol_prefix(&s.protocol_prefix)
            .max_live_blocks(s.max_live_blocks);
        b.cfg.listen.clear();
        for a in &s.listen {
            b = b.listen(a);
        }
        for a in &s.bootstrap {
            b = b.bootstrap(a);
        }
        b = match s.storage.parse() {
            Ok(k) => b.storage(k),
            Err(e) => b.error(e),
        };
        if !s.http.is_empty() {
            b = b.http(&s.http);
        }
        b = b.cluster_size(s.cluster_size);
        b.cfg.net.request_timeout = std::time::Duration::from_millis(s.request_timeout_ms);
        b.cfg.net.max_requests_per_peer_per_sec = s.max_requests_per_peer;
        b.cfg.registry.max_pending_per_block = s.max_pending_per_block;
        b.cfg.max_active_transactions = s.max_active_transactions;
        b.cfg.net.member_grace = std::time::Duration::from_millis(s.dead_peer_timeout_ms);
        b = b.anti_entropy((s.anti_entropy_interval_ms > 0).then(|| {
            optimystic_actors::coordinator::EntropySettings {
                interval: std::time::Duration::from_millis(s.anti_entropy_interval_ms),
                repair_rate: s.repair_rate,
            }
        }));
        if !s.network_key.is_empty() {
            b = b.network_key_file(Path::new(&s.network_key));
        }
        if !s.allow_peers.is_empty() {
            b = b.allow_peers_file(Path::new(&s.allow_peers));
        }
        b
    }

    /// A private network: only peers holding the pre-shared key in `path`
    /// (`swarm.key` format) can connect.
    pub fn network_key_file(mut self, path: &Path) -> Self {
        match optimystic_actors::net::read_network_key(path) {
            Ok(k) => self.cfg.net.network_key = Some(k),
            Err(e) => self.errors.push(e.to_string()),
        }
        self
    }

    /// A permissioned network: only the PeerIds listed in `path` (one per line,
    /// `#` comments) may be members of a configuration.
    pub fn allow_peers_file(mut self, path: &Path) -> Self {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| optimystic_actors::membership::parse_allow_list(&t));
        match read {
            Ok(list) => self.cfg.allow_peers = Some(list),
            Err(e) => self
                .errors
                .push(format!("allow-peers {}: {e}", path.display())),
        }
        self
    }

    fn error(mut self, e: String) -> Self {
        self.errors.push(e);
        self
    }

    /// Data directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.data_dir = dir.into();
        self
    }

    /// Storage backend.
    pub fn storage(mut self, kind: StorageKind) -> Self {
        self.cfg.storage = kind;
        self
    }

    /// Adds a listen address (the first call replaces the default).
    pub fn listen(mut self, addr: &str) -> Self {
        let default_only = self.cfg.listen.len() == 1
            && self.cfg.listen[0].to_string() == DEFAULT_LISTEN
            && !self.listen_set;
        if default_only {
            self.cfg.listen.clear();
        }
        self.listen_set = true;
        match addr.parse() {
            Ok(a) => self.cfg.listen.push(a),
            Err(e) => self.errors.push(format!("listen address {addr:?}: {e}")),
        }
        self
    }

    /// Adds a bootstrap peer (`…/p2p/<peerId>`).
    pub fn bootstrap(mut self, addr: &str) -> Self {
        match addr.parse() {
            Ok(a) => self.cfg.bootstrap.push(a),
            Err(e) => self.errors.push(format!("bootstrap address {addr:?}: {e}")),
        }
        self
    }

    /// Protocol prefix.
    pub fn protocol_prefix(mut self, p: &str) -> Self {
        self.cfg.protocol_prefix = p.to_string();
        self
    }

    /// Most block actors kept alive.
    pub fn max_live_blocks(mut self, n: usize) -> Self {
        self.cfg.registry.max_live = n;
        self
    }

    /// Peers per block cluster (default 3).
    pub fn cluster_size(mut self, k: usize) -> Self {
        self.cfg.cluster_size = k.max(1);
        self
    }

    /// Anti-entropy's pace (`None`: off; default [`DEFAULT_ANTI_ENTROPY`]).
    pub fn anti_entropy(
        mut self,
        settings: Option<optimystic_actors::coordinator::EntropySettings>,
    ) -> Self {
        self.cfg.anti_entropy = settings;
        self
    }

    /// Serves the HTTP admin API on `addr` (e.g. `127.0.0.1:0`).
    pub fn http(mut self, addr: &str) -> Self {
        match addr.parse() {
            Ok(a) => self.cfg.http = Some(a),
            Err(e) => self.errors.push(format!("http address {addr:?}: {e}")),
        }
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Starts the node inside the current actix System.
    pub async fn start(self) -> Result<NodeHandle, NodeError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(NodeError::Config(e));
        }
        NodeHandle::start(self.cfg).await
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage or actors.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Network.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
}

/// The repo API of a node, as clients of the node see it.
#[derive(Clone)]
pub struct NodeRepo {
    local: StorageRepo,
    coordinator: CoordinatorHandle,
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
    pub fn watch(
        &self,
        block: BlockId,
        from: Option<u64>,
    ) -> impl futures::Stream<Item = Result<optimystic_actors::watch::Revision, RepoError>> {
        let wake = self.local.registry().changes().subscribe();
        optimystic_actors::watch::watch(
            crate::watch::NodeHistory(self.clone()),
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

/// A running node.
pub struct NodeHandle {
    peer_id: PeerId,
    repo: NodeRepo,
    net: NetClient,
    events: mpsc::Receiver<NetEvent>,
    raw: Arc<dyn RawStorage>,
    swarm_arbiter: Arbiter,
    engine_metrics: Arc<EngineMetrics>,
    net_metrics: Arc<NetMetrics>,
    registry: Arc<Registry>,
    http: Option<(actix_web::dev::ServerHandle, SocketAddr)>,
}

/// The repair queue's file in the data directory.
const REPAIR_QUEUE_FILE: &str = "repair-queue";

impl NodeHandle {
    /// Opens storage, starts the actors and listens. Must run inside an actix System.
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        // Opening storage and the identity file touch the disk: off the caller's thread.
        let (kind, dir) = (cfg.storage, cfg.data_dir.clone());
        let opened = actix_web::rt::task::spawn_blocking(move || {
            let raw = open_storage_with(kind, &dir, EmbeddedOptions::cluster_node())
                .map_err(RepoError::from)?;
            let key = load_or_create_identity(&dir)?;
            // The repair queue lives beside the data it repairs (volatile
            // storage keeps a volatile queue).
            let queue = match kind {
                StorageKind::Memory => RepairQueue::in_memory(),
                _ => RepairQueue::open(&dir.join(REPAIR_QUEUE_FILE)).map_err(|e| {
                    NodeError::Config(format!(
                        "cannot open the repair queue {}: {e}",
                        dir.join(REPAIR_QUEUE_FILE).display()
                    ))
                })?,
            };
            Ok::<_, NodeError>((raw, key, queue))
        })
        .await
        .map_err(|e| NodeError::Config(format!("start-up task failed: {e}")))?;
        let (raw, key, queue) = opened?;
        let peer_id = key.public().to_peer_id();
        let key_for_configs = key.clone();
        let mut net_cfg = cfg.net.clone();
        net_cfg.protocols =
            ProtocolIds::new(&cfg.protocol_prefix).map_err(|e| NodeError::Config(e.to_string()))?;

        let engine_metrics = Arc::new(EngineMetrics::default());
        let net_metrics = Arc::new(NetMetrics::default());
        let net_cell = Arc::new(OnceLock::new());
        let restore = restore_from_peers(net_cell.clone(), net_cfg.request_timeout);
        let registry = BlockRegistry::start(
            raw.clone(),
            engine_metrics.clone(),
            Some(restore),
            cfg.registry.clone(),
        )?;
        let repo = StorageRepo::new(registry);
        let configs = Configs::open(&peer_id.to_string(), cfg.cluster_size, raw.clone())
            .map_err(RepoError::from)?;
        if let Some(allowed) = cfg.allow_peers.clone() {
            if !allowed.contains(&peer_id.to_string()) {
                return Err(NodeError::Config(format!(
                    "this node ({peer_id}) is not on its own --allow-peers list"
                )));
            }
            configs.restrict_members(allowed);
        }
        let members = MemberDirectory::new(
            key.clone(),
            repo.clone(),
            TxnStore::new(raw.clone()),
            configs.clone(),
        );
        members.set_max_active(cfg.max_active_transactions);
        // A proposal may ask for at most a few request timeouts: a record that
        // never expires would hold its blocks for good.
        members.set_max_lifetime(net_cfg.request_timeout * 4);
        let swarm_arbiter = Arbiter::try_new()
            .map_err(|e| NodeError::Config(format!("cannot start arbiter: {e}")))?;
        let coordinator = CoordinatorHandle::start(
            Coordinator::new(
                key.clone(),
                repo.clone(),
                net_cell.clone(),
                members.clone(),
                net_cfg.request_timeout,
            )
            .with_repair_queue(queue),
        )
        .with_idle_actor(&swarm_arbiter.handle());
        let cluster_actors = vec![
            members.metrics().clone(),
            coordinator.actor_metrics().clone(),
        ];
        let txn_metrics = coordinator.txn_metrics().clone();
        let repair_metrics = coordinator.repair_metrics().clone();
        let expired = members.expired().clone();
        let members_for_net = members.clone();
        let node_repo = NodeRepo {
            local: repo.clone(),
            coordinator: coordinator.clone(),
        };
        let placement = coordinator.clone();
        let consensus = Consensus {
            members,
            coordinator,
            repo: repo.clone(),
        };
        let (events_tx, events) = mpsc::channel(256);
        // Beside the swarm: an inbound request and its reply cross no thread there.
        let (service_repo, service_metrics) = (repo.clone(), net_metrics.clone());
        let service = RepoService::start_in_arbiter(&swarm_arbiter.handle(), move |_| {
            RepoService::new(service_repo, service_metrics).with_consensus(consensus)
        });
        let mut registry = Registry::default();
        let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
        registry.register_collector(Box::new(NodeCollector {
            engine: engine_metrics.clone(),
            net: net_metrics.clone(),
            storage: raw.clone(),
            actors: cluster_actors,
            txns: Some(txn_metrics),
            expired: Some(expired),
            repair: Some(repair_metrics),
        }));
        registry.register_collector(Box::new(ProcessCollector::new(env!("CARGO_PKG_VERSION"))));
        let registry = Arc::new(registry);
        let (tx, rx) = oneshot::channel();
        let metrics = net_metrics.clone();
        let spawned = swarm_arbiter.spawn(async move {
            // Built on its own arbiter so its listeners register with that runtime.
            let started = build_swarm(key, &net_cfg).map(|swarm| {
                SwarmActor::new(
                    swarm,
                    net_cfg,
                    Some(service.recipient()),
                    Some(events_tx),
                    metrics,
                )
                .with_libp2p_metrics(libp2p_metrics)
                .start()
            });
            let _ = tx.send(started);
        });
        if !spawned {
            return Err(NodeError::Config("swarm arbiter stopped".into()));
        }
        let swarm = rx.await.map_err(|_| NetError::Stopped)??;
        let net = NetClient::new(swarm.clone(), net_metrics.clone());
        let _ = net_cell.set(net.clone());
        members_for_net.set_net(net.clone());
        match members_for_net.resume() {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "resumed undecided cluster transactions"),
            Err(e) => tracing::error!(error = %e, "cannot resume cluster transactions"),
        }
        // Decided transactions are forgotten RETENTION after their deadline, so the
        // transaction store (and the next start's scan of it) stays bounded.
        let prunable = Arc::downgrade(&members_for_net);
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(dir) = prunable.upgrade() else {
                    return;
                };
                if let Err(e) = dir.prune(optimystic_actors::model::now_ms()).await {
                    tracing::warn!(error = %e, "cannot prune decided cluster transactions");
                }
            }
        });
        for addr in &cfg.listen {
            net.call(Listen(addr.clone())).await??;
        }
        // A node that never had peers, and was given none to join, starts a
        // network of its own: every region configured with itself alone.
        let me = optimystic_actors::cluster::peer_entry(&key_for_configs, Vec::new()).1;
        match configs
            .genesis_if_alone(me, !cfg.bootstrap.is_empty())
            .await
        {
            Ok(true) => {
                tracing::info!(%peer_id, "started a new network: this node holds every region")
            }
            Ok(false) => {}
            Err(e) => return Err(NodeError::Repo(e.into())),
        }
        placement.start_placement();
        if let Some(settings) = cfg.anti_entropy {
            placement.start_anti_entropy(settings);
        }
        for addr in &cfg.bootstrap {
            if let Err(e) = net.call(Dial(addr.clone())).await? {
                tracing::warn!(%addr, error = %e, "bootstrap dial failed");
            }
        }
        let started = Instant::now();
        let http = match cfg.http {
            Some(addr) => {
                let state = crate::admin::AdminState {
                    repo: node_repo.clone(),
                    net: net.clone(),
                    registry: registry.clone(),
                    storage: raw.clone(),
                    engine: engine_metrics.clone(),
                    started,
                    cluster_size: cfg.cluster_size,
                };
                let server = crate::admin::serve(addr, state)
                    .map_err(|e| NodeError::Config(format!("http {addr}: {e}")))?;
                Some(server)
            }
            None => None,
        };
        tracing::info!(%peer_id, "node started");
        Ok(Self {
            peer_id,
            repo: node_repo,
            net,
            events,
            raw,
            swarm_arbiter,
            engine_metrics,
            net_metrics,
            registry,
            http,
        })
    }

    /// The metrics registry (Prometheus text via [`NodeHandle::render_metrics`]),
    /// so a host application can serve it on its own `/metrics`.
    pub fn metrics_registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Every metric in Prometheus (OpenMetrics) text format.
    pub fn render_metrics(&self) -> String {
        crate::admin::render(&self.registry)
    }

    /// Where the HTTP admin server listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, a)| *a)
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The repo: reads are local; with peers, writes are agreed by each block's
    /// cluster (signed two-phase commit), alone they apply directly.
    pub fn repo(&self) -> &NodeRepo {
        &self.repo
    }

    /// The configurations this node holds: which peers replicate each region
    /// (docs/CONSENSUS.md, "Configurations").
    pub fn configs(&self) -> &Arc<Configs> {
        self.repo.coordinator.configs()
    }

    /// A client of this node's swarm (for requests to other peers).
    pub fn net(&self) -> &NetClient {
        &self.net
    }

    /// Every committed revision of `block`, in order, as it commits: after
    /// revision `from`, or from the current one (docs/PROTOCOL.md, "Watching a
    /// block"). Reads go through this node as clients' reads do.
    pub fn watch(
        &self,
        block: BlockId,
        from: Option<u64>,
    ) -> impl futures::Stream<Item = Result<optimystic_actors::watch::Revision, RepoError>> {
        self.repo.watch(block, from)
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn RawStorage> {
        &self.raw
    }

    /// Engine metrics (block actors, storage).
    pub fn engine_metrics(&self) -> &Arc<EngineMetrics> {
        &self.engine_metrics
    }

    /// Network metrics (swarm and repo-service actors, rejected frames).
    pub fn net_metrics(&self) -> &Arc<NetMetrics> {
        &self.net_metrics
    }

    /// The next network event (listen addresses, connections).
    pub async fn next_event(&mut self) -> Option<NetEvent> {
        self.events.recv().await
    }

    /// Stops accepting requests, answers those in flight, stops the actors and
    /// flushes storage.
    pub async fn shutdown(self) {
        if let Some((server, _)) = &self.http {
            server.stop(true).await;
        }
        if self.net.call(Drain { grace: DRAIN_GRACE }).await.is_err() {
            tracing::warn!("swarm already stopped");
        }
        self.repo.local.registry().shutdown();
        if let Err(e) = self.raw.flush() {
            tracing::error!(error = %e, "final storage flush failed");
        }
        self.swarm_arbiter.stop();
    }
}

/// Waits (at most `limit`) until the placement drivers of `nodes` — one network
/// of nodes all in this process — have given every region its configuration: the
/// same `min(cluster size, nodes)` members on each of them (docs/CONSENSUS.md,
/// "Configurations"). Devnets and benchmarks wait for it so their first writes do
/// not race the network forming.
pub async fn wait_configured(
    nodes: &[&NodeHandle],
    limit: std::time::Duration,
) -> Result<(), String> {
    let Some(first) = nodes.first() else {
        return Ok(());
    };
    let k = first.configs().cluster_size().min(nodes.len());
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let formed = optimystic_actors::model::Region::all().all(|r| {
            // The configurations its members hold: one, of k members, on each.
            let mine: Vec<_> = nodes
                .iter()
                .filter_map(|n| {
                    let me = n.peer_id().to_string();
                    n.configs().config(r).filter(|c| c.members.contains(&me))
                })
                .collect();
            mine.len() == k && mine.iter().all(|c| c.members.len() == k && *c == mine[0])
        });
        if formed {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the nodes did not agree their configurations within {limit:?}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
