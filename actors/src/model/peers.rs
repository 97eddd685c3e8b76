//! What the cluster and the coordinator need from the network, as a trait the
//! network layer implements ([`crate::net::NetClient`]): the consensus members in
//! view, and one call per cluster-protocol operation and block fetch
//! (docs/PROTOCOL.md). Code below the network reaches peers only through
//! [`Peers`], so it never imports `net`, and a test can stand in for the network.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::{
    BlockArchive, BlockHead, BlockId, ClusterPeer, ClusterRecord, OpResult, Region, RegionDigest,
    RegionView, RepoMessage, Rev,
};

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
        /// Error code (see [`super::codes`]).
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
        view: Vec<RegionView>,
    },
}

impl NetError {
    /// Whether the remote may have executed the request.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectionClosed | Self::Io(_))
    }
}

impl From<NetError> for super::RepoError {
    /// A remote error keeps its code; a request that may have run is in doubt;
    /// anything else means the peer could not serve it.
    fn from(e: NetError) -> Self {
        match e {
            NetError::Remote { code, message } => {
                super::Failure::new(super::ErrorCode::parse(&code), message).into()
            }
            NetError::WrongCluster { message, view } => Self::WrongCluster { message, view },
            e if e.is_in_doubt() => Self::InDoubt(e.to_string()),
            e => Self::Unavailable(e.to_string()),
        }
    }
}

/// What identify told us of a peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Its public key.
    pub public_key: libp2p::identity::PublicKey,
    /// Addresses it listens on.
    pub addrs: Vec<Multiaddr>,
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

/// The answer to `configs`: the configurations the peer holds of the regions
/// asked, and the entries (keys, addresses) of their members it knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigsReply {
    /// One per region asked.
    pub view: Vec<RegionView>,
    /// Members' entries, by PeerId.
    #[serde(default)]
    pub peers: BTreeMap<String, ClusterPeer>,
}

/// The answer to `store`: how many archives were stored, and how many refused
/// (their region's configuration, as the receiver knows it, does not have the
/// sender as a member, or already has the receiver).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReply {
    /// Archives stored.
    pub stored: usize,
    /// Archives refused.
    #[serde(default)]
    pub refused: usize,
}

/// One call to a peer: its answer, or why there is none.
pub type PeerCall<T> = BoxFuture<'static, Result<T, NetError>>;

/// The network as the cluster and the coordinator use it. Each call goes to
/// `peer` (dialled at `addrs` when not connected; empty = known addresses) and
/// gives up after `timeout`.
pub trait Peers: Send + Sync {
    /// The consensus members in view now.
    fn member_view(&self) -> Arc<MemberView>;

    /// `update`: hands `record` to a member; its answer carries its vote.
    fn update(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        record: ClusterRecord,
        timeout: Duration,
    ) -> PeerCall<ClusterRecord>;

    /// `query`: what a member holds of `record` (recovery).
    fn query(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        record: ClusterRecord,
        timeout: Duration,
    ) -> PeerCall<ClusterRecord>;

    /// `coordinate`: asks a member of the blocks' cluster to run `message`'s
    /// (one) operation.
    fn coordinate(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: RepoMessage,
        timeout: Duration,
    ) -> PeerCall<OpResult>;

    /// `configs`: the configurations the peer holds of `regions`.
    fn configs(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<ConfigsReply>;

    /// `store`: hands the peer whole block archives (`pending_exact`: their
    /// pending transactions are the whole set the peer must hold of them).
    fn store(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        archives: Vec<BlockArchive>,
        pending_exact: bool,
        timeout: Duration,
    ) -> PeerCall<StoreReply>;

    /// `heads`: every block the peer stores in `regions`, with its latest revision.
    fn heads(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<Vec<BlockHead>>;

    /// `blockHeads`: the latest revisions of `blocks` on the peer, in order.
    fn block_heads(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        blocks: Vec<BlockId>,
        timeout: Duration,
    ) -> PeerCall<Vec<BlockHead>>;

    /// `digests`: the peer's digests of `regions`.
    fn digests(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<Vec<RegionDigest>>;

    /// The block protocol: `block`'s archive from `rev` (`None`: its latest
    /// revision).
    fn fetch_archive(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        block: BlockId,
        rev: Option<Rev>,
        timeout: Duration,
    ) -> PeerCall<Option<BlockArchive>>;

    /// The block protocol, many blocks: one answer per ask, in order.
    fn fetch_archives(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        asks: Vec<(BlockId, Option<Rev>)>,
        timeout: Duration,
    ) -> PeerCall<Vec<Option<BlockArchive>>>;
}
