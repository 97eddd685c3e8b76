//! The libp2p side of a node: its behaviour (identify, ping, Kademlia, the repo and
//! block request-response protocols, connection limits), the swarm builder and the
//! persisted identity.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, identify, kad, noise, ping, request_response, tcp, yamux, Swarm,
    SwarmBuilder,
};

use super::frame::FrameCodec;
use super::protocol::{Encoding, ProtocolIds, BLOCK_FRAME_MAX, CONTROL_FRAME_MAX};
use super::NetError;

/// Network settings of a node or client.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Protocol ids (from the prefix).
    pub protocols: ProtocolIds,
    /// Cap on inbound control frames (requests).
    pub max_control_frame: usize,
    /// Cap on block-carrying frames (repo replies, archives).
    pub max_block_frame: usize,
    /// Per-request timeout (outbound wait, inbound handling).
    pub request_timeout: Duration,
    /// Inbound requests being served at once, from all peers.
    pub max_inbound_total: usize,
    /// Inbound requests being served at once, from one peer.
    pub max_inbound_per_peer: usize,
    /// Inbound requests accepted per second from one peer (a token bucket holding
    /// one second's worth); 0 = unlimited. Over it, requests get `rate_limited`.
    pub max_requests_per_peer_per_sec: u32,
    /// A peer refused by the rate limit more than a quarter of its limit (and at
    /// least 8) times within 250 ms (it sends at least twice its allowance) is
    /// disconnected and refused connections for this long.
    pub flood_ban: Duration,
    /// How long a consensus member whose connection closed stays in the clusters it
    /// belongs to (writes need its vote, or a majority without it) before the
    /// clusters re-form without it.
    pub member_grace: Duration,
    /// Concurrent streams per connection and protocol (libp2p's cap).
    pub max_streams_per_connection: usize,
    /// Established connections, in total.
    pub max_connections: u32,
    /// Established connections with one peer.
    pub max_connections_per_peer: u32,
    /// How long an idle connection is kept open.
    pub idle_timeout: Duration,
    /// Inbound connections accepted per second, in total, before their handshake
    /// (0 = unlimited); beyond it they are dropped unanswered.
    pub max_inbound_handshakes_per_sec: u32,
    /// Client mode: no inbound protocols, Kademlia as a client.
    pub client_only: bool,
    /// Use libp2p's in-process memory transport (`/memory/N` addresses) instead of
    /// TCP: for tests that run many nodes in one process.
    pub memory_transport: bool,
    /// A private network (`--network-key`): every TCP connection first runs
    /// libp2p's pre-shared-key handshake (`pnet`), so only peers holding the key
    /// connect at all. Its `Debug` shows the fingerprint, never the key.
    pub network_key: Option<libp2p::pnet::PreSharedKey>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            protocols: ProtocolIds::default(),
            max_control_frame: CONTROL_FRAME_MAX,
            max_block_frame: BLOCK_FRAME_MAX,
            request_timeout: Duration::from_secs(30),
            max_inbound_total: 1024,
            max_inbound_per_peer: 256,
            max_requests_per_peer_per_sec: 16_000,
            flood_ban: Duration::from_secs(10),
            member_grace: Duration::from_secs(60),
            max_streams_per_connection: 512,
            max_connections: 512,
            max_connections_per_peer: 4,
            idle_timeout: Duration::from_secs(300),
            max_inbound_handshakes_per_sec: 200,
            client_only: false,
            memory_transport: false,
            network_key: None,
        }
    }
}

/// Which request-response protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `{prefix}/repo/1.0.0`.
    RepoJson,
    /// `{prefix}/repo/mp/1.0.0`.
    RepoMp,
    /// `{prefix}/block/1.0.0`.
    Block,
    /// `{prefix}/cluster/1.0.0`.
    ClusterJson,
    /// `{prefix}/cluster/mp/1.0.0`.
    ClusterMp,
}

impl Proto {
    /// How the protocol encodes messages.
    pub fn encoding(self) -> Encoding {
        match self {
            Self::RepoMp | Self::ClusterMp => Encoding::MsgPack,
            Self::RepoJson | Self::Block | Self::ClusterJson => Encoding::Json,
        }
    }
}

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    pub(crate) handshakes: super::admit::HandshakeLimit,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) keep: super::keepalive::KeepAlive,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) repo_json: request_response::Behaviour<FrameCodec>,
    pub(crate) repo_mp: request_response::Behaviour<FrameCodec>,
    pub(crate) block: request_response::Behaviour<FrameCodec>,
    pub(crate) cluster_json: request_response::Behaviour<FrameCodec>,
    pub(crate) cluster_mp: request_response::Behaviour<FrameCodec>,
}

impl NodeBehaviour {
    pub(crate) fn rr(&mut self, p: Proto) -> &mut request_response::Behaviour<FrameCodec> {
        match p {
            Proto::RepoJson => &mut self.repo_json,
            Proto::RepoMp => &mut self.repo_mp,
            Proto::Block => &mut self.block,
            Proto::ClusterJson => &mut self.cluster_json,
            Proto::ClusterMp => &mut self.cluster_mp,
        }
    }

    fn new(key: &Keypair, cfg: &NetConfig) -> Self {
        let peer_id = key.public().to_peer_id();
        let support = if cfg.client_only {
            request_response::ProtocolSupport::Outbound
        } else {
            request_response::ProtocolSupport::Full
        };
        let rr_cfg = request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(cfg.max_streams_per_connection);
        let rr = move |id: &libp2p::StreamProtocol, max_request: usize, max_response: usize| {
            let codec = FrameCodec {
                max_request,
                max_response,
            };
            request_response::Behaviour::with_codec(
                codec,
                [(id.clone(), support.clone())],
                rr_cfg.clone(),
            )
        };
        let ids = &cfg.protocols;
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(ids.kad.clone()),
        );
        kad.set_mode(Some(if cfg.client_only {
            kad::Mode::Client
        } else {
            kad::Mode::Server
        }));
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(cfg.max_connections))
            .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
            .with_max_pending_incoming(Some(128));
        Self {
            handshakes: super::admit::HandshakeLimit::new(cfg.max_inbound_handshakes_per_sec),
            limits: connection_limits::Behaviour::new(limits),
            blocked: Default::default(),
            identify: identify::Behaviour::new(
                identify::Config::new("optimystic/1.0.0".into(), key.public())
                    .with_agent_version(format!("optimystic/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            keep: super::keepalive::KeepAlive::new(cfg.client_only),
            kad,
            repo_json: rr(&ids.repo_json, cfg.max_control_frame, cfg.max_block_frame),
            repo_mp: rr(&ids.repo_mp, cfg.max_control_frame, cfg.max_block_frame),
            block: rr(&ids.block, cfg.max_control_frame, cfg.max_block_frame),
            cluster_json: rr(
                &ids.cluster_json,
                cfg.max_control_frame,
                cfg.max_control_frame,
            ),
            cluster_mp: rr(
                &ids.cluster_mp,
                cfg.max_control_frame,
                cfg.max_control_frame,
            ),
        }
    }
}

/// Builds a TCP + Noise + Yamux swarm for `key`. Call it on the arbiter that will
/// own the swarm, so its listeners register with that runtime.
pub fn build_swarm(key: Keypair, cfg: &NetConfig) -> Result<Swarm<NodeBehaviour>, NetError> {
    let net = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    if cfg.memory_transport {
        return build_memory_swarm(key, cfg);
    }
    if let Some(psk) = cfg.network_key {
        return build_private_swarm(key, psk, cfg);
    }
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net(&e))?
        .with_behaviour(|key| NodeBehaviour::new(key, cfg))
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| swarm_config(c, cfg))
        .build();
    Ok(swarm)
}

/// Idle timeout, and lazy protocol negotiation on outbound streams: the request is
/// sent with the protocol proposal instead of after the peer confirmed it, saving a
/// round trip per request (every protocol we open, the peer announced in Identify;
/// a peer that refuses it just fails the stream).
fn swarm_config(c: libp2p::swarm::Config, cfg: &NetConfig) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(cfg.idle_timeout)
        .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
}

/// TCP, then the pre-shared-key handshake (a peer without the key fails it: its
/// bytes decrypt to garbage and the Noise handshake after it fails), then Noise
/// and Yamux as usual.
fn build_private_swarm(
    key: Keypair,
    psk: libp2p::pnet::PreSharedKey,
    cfg: &NetConfig,
) -> Result<Swarm<NodeBehaviour>, NetError> {
    use libp2p::core::transport::Transport as _;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default())
        .and_then(move |socket, _| libp2p::pnet::PnetConfig::new(psk).handshake(socket));
    build_over(key, cfg, tcp, libp2p::core::upgrade::Version::V1Lazy)
}

/// A swarm over `base`, secured with Noise and multiplexed with Yamux.
fn build_over<T>(
    key: Keypair,
    cfg: &NetConfig,
    base: T,
    version: libp2p::core::upgrade::Version,
) -> Result<Swarm<NodeBehaviour>, NetError>
where
    T: libp2p::core::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let net = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                base.upgrade(version)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .boxed(),
            )
        })
        .map_err(|e| net(&e))?
        .with_behaviour(|key| NodeBehaviour::new(key, cfg))
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| swarm_config(c, cfg))
        .build();
    Ok(swarm)
}

/// Reads a private network's pre-shared key: the go-libp2p / IPFS `swarm.key`
/// format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).
pub fn read_network_key(path: &Path) -> Result<libp2p::pnet::PreSharedKey, NetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NetError::Setup(format!("network key {}: {e}", path.display())))?;
    text.parse().map_err(|e| {
        NetError::Setup(format!(
            "network key {}: {e} (expected /key/swarm/psk/1.0.0/, /base16/, then 64 hex digits)",
            path.display()
        ))
    })
}

fn build_memory_swarm(key: Keypair, cfg: &NetConfig) -> Result<Swarm<NodeBehaviour>, NetError> {
    let memory = libp2p::core::transport::MemoryTransport::default();
    build_over(key, cfg, memory, libp2p::core::upgrade::Version::V1)
}

/// Loads the node's Ed25519 identity from `{data_dir}/identity.key`, creating it
/// (mode 0600) on first start, so the PeerId is stable across restarts.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Keypair, NetError> {
    let path = data_dir.join("identity.key");
    let err =
        |e: &dyn std::fmt::Display| NetError::Setup(format!("identity {}: {e}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => return Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(&e)),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| err(&e))?;
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(|e| err(&e))?;
    let tmp = data_dir.join("identity.key.tmp");
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| err(&e))?;
    Ok(key)
}
