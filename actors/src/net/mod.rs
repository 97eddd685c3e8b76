//! Networking on libp2p 0.57: the SwarmActor (owner of the Swarm), the repo and
//! block-transfer protocols with their framing and encodings, and the clients
//! (RepoClient, archive fetch). Inbound requests go to a recipient the node
//! supplies (`crate::service`). `docs/PROTOCOL.md` specifies the wire exactly.

pub mod admit;
mod behaviour;
mod bucket;
mod client;
mod dial;
mod frame;
pub mod keepalive;
mod listen;
mod protocol;
mod swarm;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundFailure;
use libp2p::{Multiaddr, PeerId};
use parking_lot::Mutex;

pub use crate::model::{MemberView, NetError, PeerInfo};
pub use behaviour::{
    build_swarm, load_or_create_identity, read_network_key, NetConfig, NodeBehaviour, Proto,
};
pub use client::{
    cluster_block_heads, cluster_configs, cluster_coordinate, cluster_digests, cluster_heads,
    cluster_query, cluster_store, cluster_update, fetch_archive, fetch_archives, NetClient,
    RepoClient,
};
pub use frame::{read_frame, write_frame, Frame, FrameCodec};
pub use protocol::{
    BadPrefix, Encoding, ProtocolIds, BLOCK_FRAME_MAX, CONTROL_FRAME_MAX, DEFAULT_PREFIX,
};
pub use swarm::{
    Dial, Drain, Inbound, InboundKey, Listen, NetStatus, Request, Respond, Status, SwarmActor,
};
pub use wire::{
    codes, decode, decode_op_result, decode_reply, decode_request, encode, BlockAsk, BlockRequest,
    BlocksRequest, ClusterRequest, ConfigsReply, DigestsReply, ErrorBody, ErrorReply, HeadsReply,
    StoreReply, ARCHIVES_REPLY_BYTES, BLOCKS_PER_REQUEST, HEADS_PER_REPLY,
};

use crate::metrics::ActorMetrics;

impl NetError {
    /// The failure of an outbound request as libp2p reports it.
    pub(crate) fn from_outbound(e: OutboundFailure) -> Self {
        match e {
            OutboundFailure::DialFailure => Self::Dial("dial failed".into()),
            OutboundFailure::Timeout => Self::Timeout,
            OutboundFailure::ConnectionClosed => Self::ConnectionClosed,
            OutboundFailure::UnsupportedProtocols => Self::Unsupported,
            OutboundFailure::Io(e) => Self::Io(e.to_string()),
        }
    }
}

impl From<ErrorReply> for NetError {
    fn from(e: ErrorReply) -> Self {
        if e.error.code == codes::WRONG_CLUSTER {
            return Self::WrongCluster {
                message: e.error.message,
                view: e.error.view,
            };
        }
        Self::Remote {
            code: e.error.code,
            message: e.error.message,
        }
    }
}

/// Things the network reports as they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// Listening on this address (with `/p2p/<peerId>`).
    Listening(Multiaddr),
    /// A connection to this peer opened.
    Connected(PeerId),
    /// The last connection to this peer closed.
    Disconnected(PeerId),
}

/// Network figures: the swarm and repo-service actors, and rejected frames by reason.
#[derive(Debug)]
pub struct NetMetrics {
    /// SwarmActor mailbox and handlers.
    pub swarm_actor: Arc<ActorMetrics>,
    /// RepoService mailbox and handlers.
    pub repo_service: Arc<ActorMetrics>,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// The consensus members and listen addresses, as the SwarmActor last published
    /// them (read without a trip through its mailbox).
    view: parking_lot::RwLock<Arc<MemberView>>,
    /// Peers with at least one open connection (members and clients).
    connected: std::sync::atomic::AtomicI64,
}

impl Default for NetMetrics {
    fn default() -> Self {
        Self {
            swarm_actor: Arc::new(ActorMetrics::new("swarm")),
            repo_service: Arc::new(ActorMetrics::new("repo_service")),
            rejected: Mutex::new(BTreeMap::new()),
            view: parking_lot::RwLock::new(Arc::default()),
            connected: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl NetMetrics {
    /// Counts an inbound frame or request rejected for `reason`.
    pub fn count_rejected(&self, reason: &str) {
        *self.rejected.lock().entry(reason.to_string()).or_default() += 1;
    }

    /// The latest published member view.
    pub fn view(&self) -> Arc<MemberView> {
        self.view.read().clone()
    }

    /// Publishes a new member view (the SwarmActor, on every change).
    pub fn publish_view(&self, view: MemberView) {
        *self.view.write() = Arc::new(view);
    }

    /// A peer's first connection opened (`+1`) or its last closed (`-1`).
    pub(crate) fn count_connected(&self, change: i64) {
        self.connected
            .fetch_add(change, std::sync::atomic::Ordering::Relaxed);
    }

    /// Peers with at least one open connection now.
    pub fn connected(&self) -> i64 {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rejections so far, by reason.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().clone()
    }
}

/// The PeerId in a multiaddr's `/p2p/…` component.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
