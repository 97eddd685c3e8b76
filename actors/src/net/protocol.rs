//! Protocol ids (under a configurable prefix), encodings and frame limits.

use libp2p::StreamProtocol;

/// Default protocol prefix, as in the seed.
pub const DEFAULT_PREFIX: &str = "/db-p2p";
/// Frame cap of control protocols (repo requests, cluster records).
pub const CONTROL_FRAME_MAX: usize = 1 << 20;
/// Frame cap of block-carrying protocols (repo replies, block archives).
pub const BLOCK_FRAME_MAX: usize = 8 << 20;

/// How a protocol encodes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON, exactly as the seed (`JSON.stringify`).
    Json,
    /// MessagePack with named fields (rmp-serde).
    MsgPack,
}

/// Why a protocol prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protocol prefix {0:?}: it must start with '/', not end with '/', and contain only printable ASCII without spaces")]
pub struct BadPrefix(pub String);

/// Every protocol id of one node, built once from its prefix.
#[derive(Debug, Clone)]
pub struct ProtocolIds {
    /// `{prefix}/repo/1.0.0` (JSON).
    pub repo_json: StreamProtocol,
    /// `{prefix}/repo/mp/1.0.0` (MessagePack).
    pub repo_mp: StreamProtocol,
    /// `{prefix}/block/1.0.0` (JSON): restoration.
    pub block: StreamProtocol,
    /// `{prefix}/cluster/1.0.0` (JSON): consensus records.
    pub cluster_json: StreamProtocol,
    /// `{prefix}/cluster/mp/1.0.0` (MessagePack): consensus records.
    pub cluster_mp: StreamProtocol,
    /// `{prefix}/kad/1.0.0`: the DHT.
    pub kad: StreamProtocol,
}

impl ProtocolIds {
    /// Validates `prefix` and builds the ids.
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = prefix.starts_with('/')
            && prefix.len() > 1
            && !prefix.ends_with('/')
            && prefix.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(BadPrefix(prefix.to_string()));
        }
        let id = |suffix: &str| {
            StreamProtocol::try_from_owned(format!("{prefix}{suffix}"))
                .map_err(|_| BadPrefix(prefix.to_string()))
        };
        Ok(Self {
            repo_json: id("/repo/1.0.0")?,
            repo_mp: id("/repo/mp/1.0.0")?,
            block: id("/block/1.0.0")?,
            cluster_json: id("/cluster/1.0.0")?,
            cluster_mp: id("/cluster/mp/1.0.0")?,
            kad: id("/kad/1.0.0")?,
        })
    }
}

impl Default for ProtocolIds {
    fn default() -> Self {
        // The default prefix is valid; building its ids cannot fail.
        Self::new(DEFAULT_PREFIX).unwrap_or_else(|_| unreachable!("default prefix is valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            ProtocolIds::default().repo_json.as_ref(),
            "/db-p2p/repo/1.0.0"
        );
        assert_eq!(
            ProtocolIds::new("/x").unwrap().repo_mp.as_ref(),
            "/x/repo/mp/1.0.0"
        );
        for bad in ["", "/", "x", "/a/", "/a b", "/é"] {
            assert!(ProtocolIds::new(bad).is_err(), "{bad:?}");
        }
    }
}
