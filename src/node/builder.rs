//! [`NodeBuilder`]: a node's configuration, from [`Settings`](crate::config::Settings)
//! or call by call, with its mistakes held until [`NodeBuilder::start`].

use std::path::{Path, PathBuf};

use optimystic_actors::storage::StorageKind;

use super::{NodeConfig, NodeError, NodeHandle, DEFAULT_LISTEN};

/// Builds and starts a node.
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    cfg: NodeConfig,
    listen_set: bool,
    errors: Vec<String>,
}

impl NodeBuilder {
    /// Defaults: embedded storage in `./data`, listening on [`DEFAULT_LISTEN`], no HTTP.
    pub fn new() -> Self {
        Self::default()
    }

    /// From resolved [`Settings`](crate::config::Settings).
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        let mut b = Self::new()
            .data_dir(&s.data_dir)
            .protocol_prefix(&s.protocol_prefix)
            .max_live_blocks(s.max_live_blocks);
        b.cfg.listen.clear();
        for a in &s.listen {
            b = b.listen(a);
        }
        for a in &s.bootstrap {
            b = b.bootstrap(a);
        }
        b = match s.storage.parse() {
            Ok(k) => b.storage(k),
            Err(e) => b.error(e),
        };
        if !s.http.is_empty() {
            b = b.http(&s.http);
        }
        b = b.cluster_size(s.cluster_size);
        b.cfg.net.request_timeout = std::time::Duration::from_millis(s.request_timeout_ms);
        b.cfg.net.max_requests_per_peer_per_sec = s.max_requests_per_peer;
        b.cfg.registry.max_pending_per_block = s.max_pending_per_block;
        b.cfg.max_active_transactions = s.max_active_transactions;
        b.cfg.net.member_grace = std::time::Duration::from_millis(s.dead_peer_timeout_ms);
        b = b.anti_entropy((s.anti_entropy_interval_ms > 0).then(|| {
            optimystic_actors::coordinator::EntropySettings {
                interval: std::time::Duration::from_millis(s.anti_entropy_interval_ms),
                repair_rate: s.repair_rate,
            }
        }));
        if !s.network_key.is_empty() {
            b = b.network_key_file(Path::new(&s.network_key));
        }
        if !s.allow_peers.is_empty() {
            b = b.allow_peers_file(Path::new(&s.allow_peers));
        }
        b
    }

    /// A private network: only peers holding the pre-shared key in `path`
    /// (`swarm.key` format) can connect.
    pub fn network_key_file(mut self, path: &Path) -> Self {
        match optimystic_actors::net::read_network_key(path) {
            Ok(k) => self.cfg.net.network_key = Some(k),
            Err(e) => self.errors.push(e.to_string()),
        }
        self
    }

    /// A permissioned network: only the PeerIds listed in `path` (one per line,
    /// `#` comments) may be members of a configuration.
    pub fn allow_peers_file(mut self, path: &Path) -> Self {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| optimystic_actors::membership::parse_allow_list(&t));
        match read {
            Ok(list) => self.cfg.allow_peers = Some(list),
            Err(e) => self
                .errors
                .push(format!("allow-peers {}: {e}", path.display())),
        }
        self
    }

    fn error(mut self, e: String) -> Self {
        self.errors.push(e);
        self
    }

    /// Data directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.data_dir = dir.into();
        self
    }

    /// Storage backend.
    pub fn storage(mut self, kind: StorageKind) -> Self {
        self.cfg.storage = kind;
        self
    }

    /// Adds a listen address (the first call replaces the default).
    pub fn listen(mut self, addr: &str) -> Self {
        let default_only = self.cfg.listen.len() == 1
            && self.cfg.listen[0].to_string() == DEFAULT_LISTEN
            && !self.listen_set;
        if default_only {
            self.cfg.listen.clear();
        }
        self.listen_set = true;
        match addr.parse() {
            Ok(a) => self.cfg.listen.push(a),
            Err(e) => self.errors.push(format!("listen address {addr:?}: {e}")),
        }
        self
    }

    /// Adds a bootstrap peer (`…/p2p/<peerId>`).
    pub fn bootstrap(mut self, addr: &str) -> Self {
        match addr.parse() {
            Ok(a) => self.cfg.bootstrap.push(a),
            Err(e) => self.errors.push(format!("bootstrap address {addr:?}: {e}")),
        }
        self
    }

    /// Protocol prefix.
    pub fn protocol_prefix(mut self, p: &str) -> Self {
        self.cfg.protocol_prefix = p.to_string();
        self
    }

    /// Most block actors kept alive.
    pub fn max_live_blocks(mut self, n: usize) -> Self {
        self.cfg.registry.max_live = n;
        self
    }

    /// Peers per block cluster (default 3).
    pub fn cluster_size(mut self, k: usize) -> Self {
        self.cfg.cluster_size = k.max(1);
        self
    }

    /// Anti-entropy's pace (`None`: off; default [`DEFAULT_ANTI_ENTROPY`]).
    ///
    /// [`DEFAULT_ANTI_ENTROPY`]: super::DEFAULT_ANTI_ENTROPY
    pub fn anti_entropy(
        mut self,
        settings: Option<optimystic_actors::coordinator::EntropySettings>,
    ) -> Self {
        self.cfg.anti_entropy = settings;
        self
    }

    /// Serves the HTTP admin API on `addr` (e.g. `127.0.0.1:0`).
    pub fn http(mut self, addr: &str) -> Self {
        match addr.parse() {
            Ok(a) => self.cfg.http = Some(a),
            Err(e) => self.errors.push(format!("http address {addr:?}: {e}")),
        }
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Starts the node inside the current actix System.
    pub async fn start(self) -> Result<NodeHandle, NodeError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(NodeError::Config(e));
        }
        NodeHandle::start(self.cfg).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_listen_replaces_the_default_and_later_ones_add() {
        let b = NodeBuilder::new()
            .listen("/ip4/0.0.0.0/tcp/7000")
            .listen("/ip4/0.0.0.0/tcp/7001");
        let listen: Vec<String> = b.config().listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["/ip4/0.0.0.0/tcp/7000", "/ip4/0.0.0.0/tcp/7001"]);
        assert!(b.errors.is_empty());
    }

    #[test]
    fn bad_values_are_kept_as_errors_and_cluster_size_is_at_least_one() {
        let b = NodeBuilder::new()
            .listen("nonsense")
            .http("bad")
            .cluster_size(0);
        assert_eq!(b.errors.len(), 2, "{:?}", b.errors);
        assert!(b.errors[0].starts_with("listen address \"nonsense\""));
        assert!(b.errors[1].starts_with("http address \"bad\""));
        assert!(b.config().listen.is_empty());
        assert_eq!(b.config().http, None);
        assert_eq!(b.config().cluster_size, 1);
    }
}
