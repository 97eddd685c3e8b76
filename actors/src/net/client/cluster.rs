//! The cluster protocol's requests to one peer: records of a transaction
//! (`update`, `query`), forwarded writes (`coordinate`), configurations, block
//! hand-overs (`store`), heads and digests — each MessagePack, JSON if the peer
//! lacks it.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::NetClient;
use crate::model::{BlockArchive, BlockId, OpResult, RepoMessage};
use crate::net::behaviour::Proto;
use crate::net::wire::{decode_op_result, decode_reply, encode, ErrorReply};
use crate::net::{Encoding, NetError};

/// Sends a cluster record to `peer` (MessagePack, JSON if the peer lacks it).
pub async fn cluster_update(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    cluster_call(net, peer, addrs, "update", record, timeout).await
}

/// Asks `peer` for its stored record of the same transaction (recovery; the record
/// may be past its deadline; nothing changes on the peer).
pub async fn cluster_query(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    cluster_call(net, peer, addrs, "query", record, timeout).await
}

async fn cluster_call(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    operation: &str,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    let req = crate::net::wire::ClusterRequest {
        record: Some(record),
        ..crate::net::wire::ClusterRequest::new(operation)
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Hands a write to `peer`, the coordinator of its blocks, which runs it without
/// forwarding again; returns that node's result.
pub async fn cluster_coordinate(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    message: RepoMessage,
    timeout: Duration,
) -> Result<OpResult, NetError> {
    let Some(op) = message.operations.first().cloned() else {
        return Err(NetError::Decode(
            "a forwarded write needs one operation".into(),
        ));
    };
    let req = crate::net::wire::ClusterRequest {
        message: Some(message),
        ..crate::net::wire::ClusterRequest::new("coordinate")
    };
    cluster_send(net, peer, addrs, &req, timeout, |enc, bytes| {
        decode_op_result(enc, &op, bytes)
    })
    .await
}

/// Asks `peer` which configurations it holds of `regions`.
pub async fn cluster_configs(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<crate::net::wire::ConfigsReply, NetError> {
    let req = crate::net::wire::ClusterRequest {
        regions: Some(regions),
        ..crate::net::wire::ClusterRequest::new("configs")
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Hands `archives` to `peer` to store (it is about to join their regions).
pub async fn cluster_store(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    archives: Vec<BlockArchive>,
    pending_exact: bool,
    timeout: Duration,
) -> Result<crate::net::wire::StoreReply, NetError> {
    let req = crate::net::wire::ClusterRequest {
        archives: Some(archives),
        pending_exact,
        ..crate::net::wire::ClusterRequest::new("store")
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Asks `peer` which blocks it stores in `regions`, and their latest
/// revisions: every page, from the first.
pub async fn cluster_heads(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<Vec<crate::model::BlockHead>, NetError> {
    let mut req = crate::net::wire::ClusterRequest {
        regions: Some(regions),
        ..crate::net::wire::ClusterRequest::new("heads")
    };
    let mut out = Vec::new();
    loop {
        let page: crate::net::wire::HeadsReply =
            cluster_send(net, peer, addrs.clone(), &req, timeout, decode_reply).await?;
        let last = page.heads.last().map(|h| h.block_id.clone());
        out.extend(page.heads);
        match last {
            Some(l) if page.more => req.after = Some(l),
            _ => return Ok(out),
        }
    }
}

/// Asks `peer` for the latest revision and pending transactions of each block
/// of `blocks` it stores (`blockHeads`; a block it does not store is left out
/// of the reply). At most [`crate::net::wire::HEADS_PER_REPLY`] blocks per request:
/// more are asked in several.
pub async fn cluster_block_heads(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    blocks: &[BlockId],
    timeout: Duration,
) -> Result<Vec<crate::model::BlockHead>, NetError> {
    let mut out = Vec::new();
    for chunk in blocks.chunks(crate::net::wire::HEADS_PER_REPLY) {
        let req = crate::net::wire::ClusterRequest {
            blocks: Some(chunk.to_vec()),
            ..crate::net::wire::ClusterRequest::new("blockHeads")
        };
        let page: crate::net::wire::HeadsReply =
            cluster_send(net, peer, addrs.clone(), &req, timeout, decode_reply).await?;
        out.extend(page.heads);
    }
    Ok(out)
}

/// Asks `peer` for its digest of each region of `regions` it holds committed
/// blocks in (anti-entropy; docs/PROTOCOL.md, `digests`).
pub async fn cluster_digests(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<Vec<crate::model::RegionDigest>, NetError> {
    let req = crate::net::wire::ClusterRequest {
        regions: Some(regions),
        ..crate::net::wire::ClusterRequest::new("digests")
    };
    let reply: crate::net::wire::DigestsReply =
        cluster_send(net, peer, addrs, &req, timeout, decode_reply).await?;
    Ok(reply.digests)
}

/// Sends a cluster request (MessagePack, JSON if the peer lacks it) and decodes
/// the reply with `decode`.
async fn cluster_send<T>(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    req: &crate::net::wire::ClusterRequest,
    timeout: Duration,
    decode: impl Fn(Encoding, &[u8]) -> Result<Result<T, ErrorReply>, String>,
) -> Result<T, NetError> {
    for proto in [Proto::ClusterMp, Proto::ClusterJson] {
        let enc = proto.encoding();
        let bytes = encode(enc, req).map_err(NetError::Decode)?;
        match net
            .request(peer, addrs.clone(), proto, bytes, timeout)
            .await
        {
            Err(NetError::Unsupported) => continue,
            Err(e) => return Err(e),
            Ok(reply) => {
                return decode(enc, &reply)
                    .map_err(NetError::Decode)?
                    .map_err(NetError::from)
            }
        }
    }
    Err(NetError::Unsupported)
}
