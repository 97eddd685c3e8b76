//! Region digests: what a node holds in each region, compared in one round
//! trip per co-member rather than one per block (docs/PROTOCOL.md, `digests`).
//!
//! A region's digest is `sha256` over one line per block holding a committed
//! revision, in block-id order: the JSON array `[blockId, trxId, rev]` and a
//! newline (`["b1","t1",1]\n`). Blocks with only pending transactions are left
//! out: anti-entropy moves committed history.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::model::{BlockHead, BlockId, Region, RegionDigest};

/// Bytes of the digest sent (16: a collision between two honest nodes' views
/// is not a concern at that length; a lying peer can only hide a difference
/// from itself, and each member compares with every co-member in turn).
const DIGEST_BYTES: usize = 16;

/// The digest of every region `heads` hold a committed block in, by region.
/// `heads` may be in any order.
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
fn line(id: &BlockId, trx: &crate::model::TrxId, rev: crate::model::Rev) -> String {
    let mut s = serde_json::json!([id.as_str(), trx.as_str(), rev]).to_string();
    s.push('\n');
    s
}

/// The regions whose digests differ between `mine` and `theirs` (a region
/// only one side lists differs), in order.
pub fn differing(mine: &[RegionDigest], theirs: &[RegionDigest]) -> Vec<Region> {
    let index = |d: &[RegionDigest]| -> BTreeMap<Region, (u64, String)> {
        d.iter()
            .map(|d| (d.region, (d.blocks, d.digest.clone())))
            .collect()
    };
    let (a, b) = (index(mine), index(theirs));
    let mut out: Vec<Region> = a
        .iter()
        .filter(|(r, v)| b.get(r) != Some(v))
        .map(|(r, _)| *r)
        .chain(b.keys().filter(|r| !a.contains_key(r)).copied())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The blocks a peer (`theirs`) holds at another latest revision than this
/// node (`mine`) — missing here, behind, ahead or diverged — in id order. A
/// block only this node holds is left out: the peer pulls it in its own round.
pub fn to_compare(mine: &[BlockHead], theirs: &[BlockHead]) -> Vec<BlockId> {
    let here: BTreeMap<&BlockId, &BlockHead> = mine.iter().map(|h| (&h.block_id, h)).collect();
    let mut out: Vec<BlockId> = theirs
        .iter()
        .filter(|t| t.latest.is_some())
        .filter(|t| here.get(&t.block_id).is_none_or(|m| m.latest != t.latest))
        .map(|t| t.block_id.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TrxId, TrxRev};

    fn head(id: &str, trx: &str, rev: u64) -> BlockHead {
        BlockHead {
            block_id: BlockId::new(id).unwrap(),
            latest: Some(TrxRev {
                trx_id: TrxId::new(trx).unwrap(),
                rev,
            }),
            pending: Vec::new(),
        }
    }

    #[test]
    fn a_known_digest() {
        // sha256("[\"b1\",\"t1\",1]\n"), its first 16 bytes, computed by hand
        // with `printf '["b1","t1",1]\n' | sha256sum`.
        let d = region_digests(&[head("b1", "t1", 1)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].region, Region::of(&BlockId::new("b1").unwrap()));
        assert_eq!(d[0].blocks, 1);
        assert_eq!(d[0].digest, KNOWN_B1_T1_1);
    }

    /// See [`a_known_digest`].
    const KNOWN_B1_T1_1: &str = "2432355fdc8a9dbafb7d2c13372ea9f8";

    #[test]
    fn order_does_not_matter_and_content_does() {
        let ids: Vec<String> = (0..200).map(|i| format!("blk{i}")).collect();
        let heads: Vec<BlockHead> = ids.iter().map(|i| head(i, "t", 1)).collect();
        let mut reversed = heads.clone();
        reversed.reverse();
        let a = region_digests(&heads);
        assert_eq!(a, region_digests(&reversed));
        assert!(differing(&a, &a).is_empty());
        // Another transaction at the same revision of one block: only its
        // region differs.
        let mut other = heads.clone();
        other[7] = head(&ids[7], "u", 1);
        let b = region_digests(&other);
        assert_eq!(
            differing(&a, &b),
            vec![Region::of(&BlockId::new(&ids[7]).unwrap())]
        );
        assert_eq!(
            to_compare(&heads, &other),
            vec![BlockId::new(&ids[7]).unwrap()]
        );
    }

    #[test]
    fn missing_blocks_and_regions_differ() {
        let all = vec![head("x1", "t", 3), head("x2", "t", 1)];
        let some = vec![head("x1", "t", 3)];
        let d = differing(&region_digests(&some), &region_digests(&all));
        assert_eq!(d, vec![Region::of(&BlockId::new("x2").unwrap())]);
        // Pulled by the side that lacks it, not by the side that has it.
        assert_eq!(to_compare(&some, &all), vec![BlockId::new("x2").unwrap()]);
        assert!(to_compare(&all, &some).is_empty());
        // A block with only pending transactions is not part of any digest.
        let pending_only = BlockHead {
            latest: None,
            ..head("x3", "t", 1)
        };
        assert!(region_digests(std::slice::from_ref(&pending_only)).is_empty());
        assert!(to_compare(&[], &[pending_only]).is_empty());
    }
}
