//! Node configuration: built-in defaults, then a TOML file (`--config`), then
//! `OPTIMYSTIC_*` environment variables, then flags — each overriding the last.
//! `optimystic node --print-config` shows the result.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every setting of a node, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Data directory: storage, identity key, lock.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Peers to connect to at start (with `/p2p/<peerId>`).
    pub bootstrap: Vec<String>,
    /// Prefix of every protocol id.
    pub protocol_prefix: String,
    /// Storage backend: `embedded` or `file`.
    pub storage: String,
    /// HTTP admin address (`/metrics`, `/status`, `/v1/repo/*`); empty = off.
    pub http: String,
    /// Most block actors kept in memory.
    pub max_live_blocks: usize,
    /// Peers per block cluster (used by consensus).
    pub cluster_size: usize,
    /// Log format: `text` or `json` (level from `RUST_LOG`).
    pub log_format: String,
    /// Deadline of each network request and cluster transaction, ms.
    pub request_timeout_ms: u64,
    /// Inbound requests accepted per second from one peer (0 = unlimited).
    pub max_requests_per_peer: u32,
    /// Most pending transactions one block may hold.
    pub max_pending_per_block: usize,
    /// Most cluster transactions in progress at once on this node as a member.
    pub max_active_transactions: usize,
    /// How long a member may be unreachable before placement replaces it with the
    /// next live peer of its regions' targets, ms.
    pub dead_peer_timeout_ms: u64,
    /// Pause between anti-entropy rounds (this node's copies compared with one
    /// co-member's by region digests), ms; 0 = off.
    pub anti_entropy_interval_ms: u64,
    /// Most blocks anti-entropy repairs per second.
    pub repair_rate: u32,
    /// Pre-shared key file of a private network (`swarm.key` format); empty = an
    /// open network.
    pub network_key: String,
    /// File of the PeerIds that may be members (one per line); empty = anyone.
    pub allow_peers: String,
    /// On SIGINT/SIGTERM, leave the network gracefully (`optimystic leave`)
    /// before stopping.
    pub leave_on_shutdown: bool,
    /// Longest wait for that leave, ms; past it the node stops anyway and
    /// exits 1.
    pub leave_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: vec![crate::node::DEFAULT_LISTEN.to_string()],
            bootstrap: Vec::new(),
            protocol_prefix: optimystic_actors::net::DEFAULT_PREFIX.to_string(),
            storage: "embedded".into(),
            http: String::new(),
            max_live_blocks: 10_000,
            cluster_size: 3,
            log_format: "text".into(),
            request_timeout_ms: 30_000,
            max_requests_per_peer: 16_000,
            max_pending_per_block: 256,
            max_active_transactions: optimystic_actors::cluster::DEFAULT_MAX_ACTIVE,
            dead_peer_timeout_ms: 60_000,
            anti_entropy_interval_ms: crate::node::DEFAULT_ANTI_ENTROPY.interval.as_millis() as u64,
            repair_rate: crate::node::DEFAULT_ANTI_ENTROPY.repair_rate,
            network_key: String::new(),
            allow_peers: String::new(),
            leave_on_shutdown: false,
            leave_timeout_ms: 300_000,
        }
    }
}

/// Values given on the command line or in the environment (clap fills both:
/// a flag wins over its variable); `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir` / `OPTIMYSTIC_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `OPTIMYSTIC_LISTEN` (comma-separated).
    pub listen: Option<Vec<String>>,
    /// `--bootstrap` / `OPTIMYSTIC_BOOTSTRAP` (comma-separated).
    pub bootstrap: Option<Vec<String>>,
    /// `--protocol-prefix` / `OPTIMYSTIC_PROTOCOL_PREFIX`.
    pub protocol_prefix: Option<String>,
    /// `--storage` / `OPTIMYSTIC_STORAGE`.
    pub storage: Option<String>,
    /// `--http` / `OPTIMYSTIC_HTTP`.
    pub http: Option<String>,
    /// `--max-live-blocks` / `OPTIMYSTIC_MAX_LIVE_BLOCKS`.
    pub max_live_blocks: Option<usize>,
    /// `--cluster-size` / `OPTIMYSTIC_CLUSTER_SIZE`.
    pub cluster_size: Option<usize>,
    /// `--log-format` / `OPTIMYSTIC_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `--request-timeout-ms` / `OPTIMYSTIC_REQUEST_TIMEOUT_MS`.
    pub request_timeout_ms: Option<u64>,
    /// `--max-requests-per-peer` / `OPTIMYSTIC_MAX_REQUESTS_PER_PEER`.
    pub max_requests_per_peer: Option<u32>,
    /// `--max-pending-per-block` / `OPTIMYSTIC_MAX_PENDING_PER_BLOCK`.
    pub max_pending_per_block: Option<usize>,
    /// `--max-active-transactions` / `OPTIMYSTIC_MAX_ACTIVE_TRANSACTIONS`.
    pub max_active_transactions: Option<usize>,
    /// `--dead-peer-timeout-ms` / `OPTIMYSTIC_DEAD_PEER_TIMEOUT_MS`.
    pub dead_peer_timeout_ms: Option<u64>,
    /// `--anti-entropy-interval-ms` / `OPTIMYSTIC_ANTI_ENTROPY_INTERVAL_MS`.
    pub anti_entropy_interval_ms: Option<u64>,
    /// `--repair-rate` / `OPTIMYSTIC_REPAIR_RATE`.
    pub repair_rate: Option<u32>,
    /// `--network-key` / `OPTIMYSTIC_NETWORK_KEY`.
    pub network_key: Option<String>,
    /// `--allow-peers` / `OPTIMYSTIC_ALLOW_PEERS`.
    pub allow_peers: Option<String>,
    /// `--leave-on-shutdown` / `OPTIMYSTIC_LEAVE_ON_SHUTDOWN`.
    pub leave_on_shutdown: Option<bool>,
    /// `--leave-timeout-ms` / `OPTIMYSTIC_LEAVE_TIMEOUT_MS`.
    pub leave_timeout_ms: Option<u64>,
}

impl Settings {
    /// Reads a TOML file; unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Defaults, overlaid by `file` (if any), then by `o`.
    pub fn resolve(file: Option<&Path>, o: Overrides) -> Result<Self, String> {
        let mut s = match file {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = o.$f { s.$f = v; } )* };
        }
        take!(
            data_dir,
            listen,
            bootstrap,
            protocol_prefix,
            storage,
            http,
            max_live_blocks,
            cluster_size,
            log_format,
            request_timeout_ms,
            max_requests_per_peer,
            max_pending_per_block,
            max_active_transactions,
            dead_peer_timeout_ms,
            anti_entropy_interval_ms,
            repair_rate,
            network_key,
            allow_peers,
            leave_on_shutdown,
            leave_timeout_ms
        );
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if !matches!(self.storage.as_str(), "embedded" | "file") {
            return Err(format!(
                "storage must be embedded or file, not {:?}",
                self.storage
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log-format must be text or json, not {:?}",
                self.log_format
            ));
        }
        if self.cluster_size == 0
            || self.max_live_blocks == 0
            || self.max_pending_per_block == 0
            || self.max_active_transactions == 0
        {
            return Err("cluster-size, max-live-blocks, max-pending-per-block and max-active-transactions must be at least 1".into());
        }
        if self.repair_rate == 0 {
            return Err("repair-rate must be at least 1".into());
        }
        if self.anti_entropy_interval_ms != 0 && self.anti_entropy_interval_ms < 100 {
            return Err(format!(
                "anti-entropy-interval-ms must be 0 (off) or at least 100, not {}",
                self.anti_entropy_interval_ms
            ));
        }
        if self.leave_timeout_ms < 1_000 {
            return Err(format!(
                "leave-timeout-ms must be at least 1000, not {}",
                self.leave_timeout_ms
            ));
        }
        if !(100..=3_600_000).contains(&self.request_timeout_ms) {
            return Err(format!(
                "request-timeout-ms must be between 100 and 3600000, not {}",
                self.request_timeout_ms
            ));
        }
        if !self.http.is_empty() {
            self.http
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("http {:?}: {e}", self.http))?;
        }
        for a in self.listen.iter().chain(&self.bootstrap) {
            a.parse::<libp2p::Multiaddr>()
                .map_err(|e| format!("multiaddr {a:?}: {e}"))?;
        }
        Ok(())
    }

    /// The settings as TOML (what `--print-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "storage = \"file\"\ncluster-size = 5\nhttp = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let s = Settings::resolve(
            Some(&path),
            Overrides {
                cluster_size: Some(7),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            (s.storage.as_str(), s.cluster_size, s.http.as_str()),
            ("file", 7, "127.0.0.1:9000")
        );
        assert_eq!(s.max_live_blocks, 10_000);
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        assert!(Settings::resolve(Some(&path), Overrides::default()).is_err());
        let bad = Overrides {
            storage: Some("memory".into()),
            ..Overrides::default()
        };
        assert!(Settings::resolve(None, bad).is_err());
    }

    #[test]
    fn anti_entropy_settings_are_checked() {
        let with = |interval: u64, rate: u32| {
            Settings::resolve(
                None,
                Overrides {
                    anti_entropy_interval_ms: Some(interval),
                    repair_rate: Some(rate),
                    ..Overrides::default()
                },
            )
        };
        assert!(with(0, 1).is_ok(), "0 turns it off");
        assert!(with(1_000, 50).is_ok());
        let e = with(10, 50).unwrap_err();
        assert!(e.contains("anti-entropy-interval-ms"), "{e}");
        let e = with(1_000, 0).unwrap_err();
        assert!(e.contains("repair-rate"), "{e}");
    }
}
