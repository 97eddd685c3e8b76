//! [`NodeHandle`]: a running node — its PeerId, repo, network client, storage,
//! metrics and events — and how it shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use libp2p::PeerId;
use optimystic_actors::cluster::Configs;
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::BlockId;
use optimystic_actors::net::{Drain, NetClient, NetEvent, NetMetrics};
use optimystic_actors::storage::{RawStorage, RepoError};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::NodeRepo;

/// How long shutdown waits for in-flight requests.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A running node.
pub struct NodeHandle {
    pub(super) peer_id: PeerId,
    pub(super) repo: NodeRepo,
    pub(super) net: NetClient,
    pub(super) events: mpsc::Receiver<NetEvent>,
    pub(super) raw: Arc<dyn RawStorage>,
    pub(super) swarm_arbiter: Arbiter,
    pub(super) engine_metrics: Arc<EngineMetrics>,
    pub(super) net_metrics: Arc<NetMetrics>,
    pub(super) registry: Arc<Registry>,
    pub(super) http: Option<(actix_web::dev::ServerHandle, SocketAddr)>,
}

impl NodeHandle {
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
