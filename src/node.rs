//! A running node: storage, block actors, RepoService and the SwarmActor, wired
//! together; started inside an actix System and stopped with [`Node::shutdown`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use libp2p::{Multiaddr, PeerId};
use optimystic_actors::block::{BlockRegistry, RegistryOptions, StorageRepo};
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::net::{
    build_swarm, load_or_create_identity, restore_from_peers, Dial, Drain, Listen, NetClient,
    NetConfig, NetError, NetEvent, NetMetrics, ProtocolIds, RepoService, SwarmActor,
};
use optimystic_actors::storage::{open_storage, RawStorage, RepoError, StorageKind};
use tokio::sync::{mpsc, oneshot};

/// Default listen address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/7410";

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
        }
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

/// A running node.
pub struct Node {
    peer_id: PeerId,
    repo: StorageRepo,
    net: NetClient,
    events: mpsc::Receiver<NetEvent>,
    raw: Arc<dyn RawStorage>,
    swarm_arbiter: Arbiter,
    engine_metrics: Arc<EngineMetrics>,
    net_metrics: Arc<NetMetrics>,
}

impl Node {
    /// Opens storage, starts the actors and listens. Must run inside an actix System.
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        let raw = open_storage(cfg.storage, &cfg.data_dir).map_err(RepoError::from)?;
        let key = load_or_create_identity(&cfg.data_dir)?;
        let peer_id = key.public().to_peer_id();
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
        let (events_tx, events) = mpsc::channel(256);
        let swarm_arbiter = Arbiter::try_new()
            .map_err(|e| NodeError::Config(format!("cannot start arbiter: {e}")))?;
        // Beside the swarm: an inbound request and its reply cross no thread there.
        let (service_repo, service_metrics) = (repo.clone(), net_metrics.clone());
        let service = RepoService::start_in_arbiter(&swarm_arbiter.handle(), move |_| {
            RepoService::new(service_repo, service_metrics)
        });
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
        for addr in &cfg.listen {
            swarm
                .send(Listen(addr.clone()))
                .await
                .map_err(|_| NetError::Stopped)??;
        }
        for addr in &cfg.bootstrap {
            if let Err(e) = swarm
                .send(Dial(addr.clone()))
                .await
                .map_err(|_| NetError::Stopped)?
            {
                tracing::warn!(%addr, error = %e, "bootstrap dial failed");
            }
        }
        tracing::info!(%peer_id, "node started");
        Ok(Self {
            peer_id,
            repo,
            net,
            events,
            raw,
            swarm_arbiter,
            engine_metrics,
            net_metrics,
        })
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node-local repo.
    pub fn repo(&self) -> &StorageRepo {
        &self.repo
    }

    /// A client of this node's swarm (for requests to other peers).
    pub fn net(&self) -> &NetClient {
        &self.net
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
        if self
            .net
            .swarm()
            .send(Drain { grace: DRAIN_GRACE })
            .await
            .is_err()
        {
            tracing::warn!("swarm already stopped");
        }
        self.repo.registry().shutdown();
        if let Err(e) = self.raw.flush() {
            tracing::error!(error = %e, "final storage flush failed");
        }
        self.swarm_arbiter.stop();
    }
}
