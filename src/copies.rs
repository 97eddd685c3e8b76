//! Which peers hold which revision of one block (`GET /v1/blocks/{id}` on the
//! HTTP admin server, `optimystic inspect --block`; docs/OPERATIONS.md): the
//! node asks every member of the block's configuration, as it knows it, for
//! its `heads` of the block's region (cluster protocol, docs/PROTOCOL.md) and
//! reads its own. Nothing is repaired or caught up by asking.

use std::time::Duration;

use optimystic_actors::model::{BlockHead, BlockId, Config, Region, TrxId, TrxRev};
use optimystic_actors::net::{cluster_heads, NetClient};
use serde::Serialize;

use crate::node::NodeRepo;

/// The copies of one block.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copies {
    /// The block.
    pub block_id: BlockId,
    /// Its region.
    pub region: Region,
    /// Its configuration as this node knows it (absent: none known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    /// One per member, then this node if it is not one.
    pub copies: Vec<Copy>,
}

/// What one peer holds of the block.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copy {
    /// The peer.
    pub peer_id: String,
    /// Whether it is a member of the block's configuration.
    pub member: bool,
    /// Whether it stores the block at all (absent when it could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
    /// Its latest revision there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<TrxRev>,
    /// The transactions pending on its copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<TrxId>,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Asks every member of `block`'s configuration (each within `timeout`).
pub async fn copies(repo: &NodeRepo, net: &NetClient, block: BlockId, timeout: Duration) -> Copies {
    let region = Region::of(&block);
    let configs = repo.configs();
    let me = configs.me().to_string();
    let config = configs.config(region);
    let members: Vec<String> = config
        .as_ref()
        .map(|c| c.members.iter().cloned().collect())
        .unwrap_or_default();
    let mut peers = members.clone();
    if !peers.contains(&me) {
        peers.push(me.clone());
    }
    let asks = peers.iter().map(|p| {
        let (me, region) = (me.clone(), region);
        async move {
            if *p == me {
                return repo
                    .local()
                    .heads([region].into())
                    .await
                    .map_err(|e| e.to_string());
            }
            let peer = p.parse().map_err(|_| format!("{p} is not a PeerId"))?;
            let addrs = configs
                .peer(p)
                .map(|c| c.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect())
                .unwrap_or_default();
            cluster_heads(net, peer, addrs, vec![region], timeout)
                .await
                .map_err(|e| e.to_string())
        }
    });
    let answers = futures::future::join_all(asks).await;
    let copies = peers
        .into_iter()
        .zip(answers)
        .map(|(peer_id, answer)| {
            let member = members.contains(&peer_id);
            match answer {
                Ok(heads) => {
                    let head: Option<BlockHead> = heads.into_iter().find(|h| h.block_id == block);
                    Copy {
                        peer_id,
                        member,
                        stored: Some(head.is_some()),
                        latest: head.as_ref().and_then(|h| h.latest.clone()),
                        pending: head.map(|h| h.pending).unwrap_or_default(),
                        error: None,
                    }
                }
                Err(e) => Copy {
                    peer_id,
                    member,
                    stored: None,
                    latest: None,
                    pending: Vec::new(),
                    error: Some(e),
                },
            }
        })
        .collect();
    Copies {
        block_id: block,
        region,
        config,
        copies,
    }
}
