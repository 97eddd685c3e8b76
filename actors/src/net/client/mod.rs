//! Clients: [`NetClient`] sends one request through the SwarmActor; [`RepoClient`]
//! is the repo API over the network (MessagePack preferred, JSON fallback);
//! [`fetch_archive`] asks one peer for a block's archive.
//!
//! One file each: [`NetClient`] here, [`RepoClient`] in `repo`, the cluster
//! protocol's requests in `cluster`, archive fetches in `blocks`.

mod blocks;
mod cluster;
mod peers;
mod repo;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use libp2p::{Multiaddr, PeerId};

use super::behaviour::Proto;
use super::swarm::{Request, Status, SwarmActor};
use super::{NetError, NetMetrics, NetStatus};

pub use blocks::{fetch_archive, fetch_archives};
pub use cluster::{
    cluster_block_heads, cluster_configs, cluster_coordinate, cluster_digests, cluster_heads,
    cluster_query, cluster_store, cluster_update,
};
pub use repo::RepoClient;

/// Sends requests through a SwarmActor.
#[derive(Clone)]
pub struct NetClient {
    swarm: Addr<SwarmActor>,
    metrics: Arc<NetMetrics>,
}

impl NetClient {
    /// Starts a client-only swarm (fresh identity, no listening, no inbound
    /// protocols) on the current arbiter and returns its client.
    pub fn start_client(cfg: super::NetConfig) -> Result<Self, NetError> {
        Self::start_client_as(cfg, libp2p::identity::Keypair::generate_ed25519())
    }

    /// [`Self::start_client`] with the identity `key`.
    pub fn start_client_as(
        mut cfg: super::NetConfig,
        key: libp2p::identity::Keypair,
    ) -> Result<Self, NetError> {
        use actix::Actor as _;
        cfg.client_only = true;
        let swarm = super::build_swarm(key, &cfg)?;
        let metrics = Arc::new(NetMetrics::default());
        Ok(Self::new(
            SwarmActor::new(swarm, cfg, None, None, metrics.clone()).start(),
            metrics,
        ))
    }

    /// A client of the given swarm.
    pub fn new(swarm: Addr<SwarmActor>, metrics: Arc<NetMetrics>) -> Self {
        Self { swarm, metrics }
    }

    /// The swarm actor.
    pub fn swarm(&self) -> &Addr<SwarmActor> {
        &self.swarm
    }

    /// Sends `bytes` to `peer` on `proto` and waits up to `timeout` for the reply.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        proto: Proto,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        match crate::faults::outbound(&peer) {
            crate::faults::Outbound::Send => {}
            crate::faults::Outbound::Drop => {
                return Err(NetError::Dial(format!(
                    "{peer}: dropped by an injected fault"
                )))
            }
            crate::faults::Outbound::Delay(d) => tokio::time::sleep(d).await,
        }
        self.metrics.swarm_actor.enqueued();
        let rx = match self
            .swarm
            .send(Request {
                peer,
                addrs,
                proto,
                bytes,
            })
            .await
        {
            Ok(rx) => rx,
            Err(_) => {
                self.metrics.swarm_actor.dropped();
                return Err(NetError::Stopped);
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(NetError::Timeout),
            Ok(Err(_)) => Err(NetError::Stopped),
            Ok(Ok(r)) => r,
        }
    }

    /// The swarm's state.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.call(Status).await
    }

    /// Connected consensus members and listen addresses, without a mailbox trip
    /// (as the SwarmActor last published them).
    pub fn member_view(&self) -> Arc<super::MemberView> {
        self.metrics.view()
    }

    /// Sends any SwarmActor message (counted in its mailbox metrics).
    pub async fn call<M>(&self, msg: M) -> Result<M::Result, NetError>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        SwarmActor: actix::Handler<M>,
    {
        self.metrics.swarm_actor.enqueued();
        self.swarm.send(msg).await.map_err(|_| {
            self.metrics.swarm_actor.dropped();
            NetError::Stopped
        })
    }
}
