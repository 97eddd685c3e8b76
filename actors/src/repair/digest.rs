//! Region digests: what a node holds in each region, compared in one round
//! trip per co-member rather than one per block (docs/PROTOCOL.md, `digests`).
//! How a digest is computed is in [`crate::model::region_digests`]; this is
//! how two nodes' digests and heads are compared.

use std::collections::BTreeMap;

pub use crate::model::region_digests;
use crate::model::{BlockHead, BlockId, Region, RegionDigest};

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
