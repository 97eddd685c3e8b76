//! Archive fetches over the block protocol: [`fetch_archive`] asks one peer for
//! one block's archive, [`fetch_archives`] for many in as few requests as it can.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::NetClient;
use crate::model::{BlockArchive, BlockId, Rev};
use crate::net::behaviour::Proto;
use crate::net::wire::{decode_reply, encode, BlockRequest};
use crate::net::{Encoding, NetError};

/// Asks `peer` for `block`'s archive from `rev` (or its latest revision).
pub async fn fetch_archive(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    block: &BlockId,
    rev: Option<Rev>,
    timeout: Duration,
) -> Result<Option<BlockArchive>, NetError> {
    let req = BlockRequest {
        block_id: block.clone(),
        rev,
    };
    let bytes = encode(Encoding::Json, &req).map_err(NetError::Decode)?;
    let reply = net
        .request(peer, addrs, Proto::Block, bytes, timeout)
        .await?;
    decode_reply(Encoding::Json, &reply)
        .map_err(NetError::Decode)?
        .map_err(NetError::from)
}

/// Asks `peer` for the archive of each of `asks` (a block and the first
/// revision wanted, as in [`fetch_archive`]) in as few block requests as its
/// replies allow (at most [`crate::net::wire::BLOCKS_PER_REQUEST`] blocks each, the
/// rest of a reply cut short asked again). One entry per ask, in order: `None`
/// when the peer does not hold the block.
pub async fn fetch_archives(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    asks: &[(BlockId, Option<Rev>)],
    timeout: Duration,
) -> Result<Vec<Option<BlockArchive>>, NetError> {
    let mut out: Vec<Option<BlockArchive>> = Vec::with_capacity(asks.len());
    while out.len() < asks.len() {
        let rest = &asks[out.len()..];
        let chunk = &rest[..rest.len().min(crate::net::wire::BLOCKS_PER_REQUEST)];
        let req = crate::net::wire::BlocksRequest {
            blocks: chunk
                .iter()
                .map(|(block_id, rev)| BlockRequest {
                    block_id: block_id.clone(),
                    rev: *rev,
                })
                .collect(),
        };
        let bytes = encode(Encoding::Json, &req).map_err(NetError::Decode)?;
        let reply = net
            .request(peer, addrs.clone(), Proto::Block, bytes, timeout)
            .await?;
        let got: Vec<Option<BlockArchive>> = decode_reply(Encoding::Json, &reply)
            .map_err(NetError::Decode)?
            .map_err(NetError::from)?;
        if got.is_empty() || got.len() > chunk.len() {
            return Err(NetError::Decode(format!(
                "a reply of {} archives to a request for {}",
                got.len(),
                chunk.len()
            )));
        }
        out.extend(got);
    }
    Ok(out)
}
