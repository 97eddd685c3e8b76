//! A region's digest: what a node holds in one region of the key space, in a
//! few bytes, so two members compare a region in one round trip (anti-entropy,
//! docs/CONSENSUS.md). Apart from [`super::region`] because it reads block
//! heads, which the configuration types below them must not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{BlockId, TrxId};
use super::region::Region;
use super::repo::{BlockHead, Rev};

/// What a node holds in one region, in a few bytes (`digests` on the cluster
/// protocol; docs/PROTOCOL.md): how many blocks with a committed revision, and a
/// digest over their latest `(trxId, rev)`. Two nodes with equal digests hold
/// the same latest revisions of the same blocks there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionDigest {
    /// The region.
    pub region: Region,
    /// Blocks with a committed revision.
    pub blocks: u64,
    /// Lowercase hex of the first 16 bytes of the digest.
    pub digest: String,
}

/// Bytes of the digest sent (16: a collision between two honest nodes' views
/// is not a concern at that length; a lying peer can only hide a difference
/// from itself, and each member compares with every co-member in turn).
const DIGEST_BYTES: usize = 16;

/// The digest of every region `heads` hold a committed block in, by region.
/// `heads` may be in any order.
///
/// A region's digest is `sha256` over one line per block holding a committed
/// revision, in block-id order: the JSON array `[blockId, trxId, rev]` and a
/// newline (`["b1","t1",1]\n`). Blocks with only pending transactions are left
/// out: anti-entropy moves committed history.
pub fn region_digests(heads: &[BlockHead]) -> Vec<RegionDigest> {
    let mut by_region: BTreeMap<Region, Vec<(&BlockId, &BlockHead)>> = BTreeMap::new();
    for h in heads.iter().filter(|h| h.latest.is_some()) {
        by_region
            .entry(Region::of(&h.block_id))
            .or_default()
            .push((&h.block_id, h));
    }
    by_region
        .into_iter()
        .map(|(region, mut blocks)| {
            blocks.sort_by(|a, b| a.0.cmp(b.0));
            let mut hash = Sha256::new();
            for (id, h) in &blocks {
                if let Some(l) = &h.latest {
                    hash.update(line(id, &l.trx_id, l.rev).as_bytes());
                }
            }
            let digest = hash.finalize()[..DIGEST_BYTES]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            RegionDigest {
                region,
                blocks: blocks.len() as u64,
                digest,
            }
        })
        .collect()
}

/// One block's line: `[blockId, trxId, rev]` as JSON, then a newline.
fn line(id: &BlockId, trx: &TrxId, rev: Rev) -> String {
    let mut s = serde_json::json!([id.as_str(), trx.as_str(), rev]).to_string();
    s.push('\n');
    s
}
