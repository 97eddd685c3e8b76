//! Networking on libp2p 0.57: the SwarmActor (owner of the Swarm), the repo and
//! block-transfer protocols with their framing and encodings, and the clients
//! (RepoClient, archive fetch). Inbound requests go to a recipient the node
//! supplies (`crate::service`). `docs/PROTOCOL.md` specifies the wire exactly.

pub mod admit;
mod behaviour;
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
    Dial, Drain, Inbound, InboundKey, Listen, NetStatus, PeerInfo, Request, Respond, Status,
    SwarmActor,
};
pub use wire::{
    codes, decode, decode_op_result, decode_reply, decode_request, encode, BlockAsk, BlockRequest,
    BlocksRequest, ClusterRequest, ConfigsReply, DigestsReply, ErrorBody, ErrorReply, HeadsReply,
    StoreReply, ARCHIVES_REPLY_BYTES, BLOCKS_PER_REQUEST, HEADS_PER_REPLY,
};

use crate::metrics::ActorMetrics;

/// A network failure. Timeouts and lost connections after a request was sent are
/// **in doubt**: the remote may or may not have executed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Building the swarm, listening, or the identity file failed.
    #[error("network setup: {0}")]
    Setup(String),
    /// The peer could not be reached; the request was not sent.
    #[error("cannot reach peer: {0}")]
    Dial(String),
    /// No reply in time (in doubt).
    #[error("timed out waiting for the reply (the request may have been executed)")]
    Timeout,
    /// The connection closed before the reply (in doubt).
    #[error("connection closed before the reply (the request may have been executed)")]
    ConnectionClosed,
    /// The peer speaks none of the requested protocols.
    #[error("the peer does not support the protocol")]
    Unsupported,
    /// Stream I/O failed (in doubt).
    #[error("stream i/o: {0}")]
    Io(String),
    /// The reply frame was malformed or too large.
    #[error("bad reply frame: {0}")]
    BadFrame(String),
    /// The reply could not be decoded.
    #[error("cannot decode reply: {0}")]
    Decode(String),
    /// The peer answered with an error.
    #[error("{code}: {message}")]
    Remote {
        /// Error code (see [`codes`]).
        code: String,
        /// Detail.
        message: String,
    },
    /// The local network actor has stopped.
    #[error("network actor stopped")]
    Stopped,
    /// The peer is not in the cluster the request assumed; `view` is what it holds.
    #[error("wrong_cluster: {message}")]
    WrongCluster {
        /// Detail.
        message: String,
        /// The peer's configurations of the regions concerned.
        view: Vec<crate::model::RegionView>,
    },
}

impl NetError {
    /// Whether the remote may have executed the request.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectionClosed | Self::Io(_))
    }

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

impl From<NetError> for crate::model::RepoError {
    /// A remote error keeps its code; a request that may have run is in doubt;
    /// anything else means the peer could not serve it.
    fn from(e: NetError) -> Self {
        match e {
            NetError::Remote { code, message } => {
                crate::model::Failure::new(crate::model::ErrorCode::parse(&code), message).into()
            }
            NetError::WrongCluster { message, view } => Self::WrongCluster { message, view },
            e if e.is_in_doubt() => Self::InDoubt(e.to_string()),
            e => Self::Unavailable(e.to_string()),
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

/// Connected consensus members and this node's listen addresses.
#[derive(Debug, Clone, Default)]
pub struct MemberView {
    /// Peers that take part in consensus: connected ones, and those whose
    /// connection closed less than `member_grace` ago (still in their clusters).
    pub members: Vec<PeerInfo>,
    /// Those of `members` whose connection closed (within `member_grace`).
    pub departed: Vec<PeerId>,
    /// Addresses this node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// A hash of the members' PeerIds and connection states, and of how many came
    /// back: changes whenever a member joins, leaves, departs or returns.
    pub fingerprint: u64,
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
