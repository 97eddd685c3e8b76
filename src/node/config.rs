//! What a node starts with: [`NodeConfig`], and the defaults it falls back on
//! ([`DEFAULT_LISTEN`], [`DEFAULT_ANTI_ENTROPY`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use optimystic_actors::block::RegistryOptions;
use optimystic_actors::net::NetConfig;
use optimystic_actors::storage::StorageKind;

/// Default listen address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/7410";

/// Anti-entropy by default: a round every 30 s, repairs at 200 blocks/s.
pub const DEFAULT_ANTI_ENTROPY: optimystic_actors::coordinator::EntropySettings =
    optimystic_actors::coordinator::EntropySettings {
        interval: Duration::from_secs(30),
        repair_rate: 200,
    };

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_listens_on_loopback_only_without_http() {
        let cfg = NodeConfig::default();
        let listen: Vec<String> = cfg.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, [DEFAULT_LISTEN]);
        assert!(listen[0].starts_with("/ip4/127.0.0.1/"));
        assert_eq!(cfg.http, None);
        assert!(cfg.bootstrap.is_empty());
        assert_eq!(cfg.cluster_size, 3);
    }

    #[test]
    fn anti_entropy_is_on_by_default_every_30_seconds() {
        let settings = NodeConfig::default().anti_entropy.expect("on by default");
        assert_eq!(settings.interval, Duration::from_secs(30));
        assert_eq!(settings.repair_rate, 200);
    }
}
