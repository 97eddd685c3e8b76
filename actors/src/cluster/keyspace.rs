//! The key network's arithmetic: a block's cluster is the `k` peers whose
//! Kademlia keys (sha256 of the PeerId) are closest, by XOR distance, to
//! sha256(utf8(blockId)); its coordinator is the closest of them.

use libp2p::kad::KBucketKey;
use libp2p::PeerId;

use crate::model::BlockId;

/// The `k` peers of `candidates` closest to `block`, closest first.
pub fn closest_peers(
    block: &BlockId,
    candidates: impl IntoIterator<Item = PeerId>,
    k: usize,
) -> Vec<PeerId> {
    let target = KBucketKey::new(block.as_str().as_bytes().to_vec());
    let mut peers: Vec<(libp2p::kad::KBucketDistance, PeerId)> = candidates
        .into_iter()
        .map(|p| (KBucketKey::from(p).distance(&target), p))
        .collect();
    peers.sort();
    peers.dedup_by(|a, b| a.1 == b.1);
    peers.into_iter().take(k).map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn clusters_are_the_k_closest_and_stable() {
        let peers: Vec<PeerId> = (0..20)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect();
        let b = BlockId::new("some-block").unwrap();
        let c = closest_peers(&b, peers.clone(), 3);
        assert_eq!(c.len(), 3);
        // Order of candidates does not matter; duplicates are ignored.
        let mut shuffled = peers.clone();
        shuffled.reverse();
        shuffled.extend(peers.iter().take(5).copied());
        assert_eq!(closest_peers(&b, shuffled, 3), c);
        // Every other peer is at least as far as the farthest member.
        let key = KBucketKey::new(b.as_str().as_bytes().to_vec());
        let far = KBucketKey::from(c[2]).distance(&key);
        for p in peers.iter().filter(|p| !c.contains(p)) {
            assert!(KBucketKey::from(*p).distance(&key) >= far);
        }
        assert_eq!(closest_peers(&b, peers.iter().take(2).copied(), 3).len(), 2);
    }

    #[test]
    fn blocks_spread_over_all_peers() {
        let peers: Vec<PeerId> = (0..20)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect();
        let mut used = std::collections::HashSet::new();
        for i in 0..1_000 {
            let b = BlockId::new(format!("b{i}")).unwrap();
            used.extend(closest_peers(&b, peers.clone(), 3));
        }
        assert_eq!(used.len(), 20, "every peer holds some blocks");
    }
}
