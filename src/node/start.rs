//! Starting a node: [`NodeHandle::start`] opens storage, the identity and the
//! repair queue, wires the block actors, consensus, RepoService and SwarmActor
//! together, then listens, forms or joins a network and serves HTTP.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use optimystic_actors::block::{BlockRegistry, StorageRepo};
use optimystic_actors::cluster::{Configs, MemberDirectory, TxnStore};
use optimystic_actors::coordinator::{Coordinator, CoordinatorHandle};
use optimystic_actors::metrics::process::ProcessCollector;
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::Peers;
use optimystic_actors::net::{
    build_swarm, load_or_create_identity, Dial, Listen, NetClient, NetError, NetMetrics,
    ProtocolIds, SwarmActor,
};
use optimystic_actors::repair::queue::RepairQueue;
use optimystic_actors::service::export::NodeCollector;
use optimystic_actors::service::{restore_from_peers, Consensus, RepoService};
use optimystic_actors::storage::{open_storage_with, EmbeddedOptions, RepoError, StorageKind};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::{NodeConfig, NodeError, NodeHandle, NodeRepo};

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
        // The same client, as the engine's layers below the network see it.
        let peers_cell: Arc<OnceLock<Arc<dyn Peers>>> = Arc::new(OnceLock::new());
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
                peers_cell.clone(),
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
        let peers: Arc<dyn Peers> = Arc::new(net.clone());
        let _ = peers_cell.set(peers.clone());
        members_for_net.set_net(peers);
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
}
