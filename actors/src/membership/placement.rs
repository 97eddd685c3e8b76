//! Placement: where a region's blocks should live (its **target**), and the one
//! step that moves a configuration toward it. Pure; the same inputs give the same
//! answer on every node.
//!
//! The target of a region is the `k` candidate peers closest, by Kademlia XOR
//! distance between `sha256(PeerId bytes)` and the region's midpoint key, to the
//! region. Candidates are the live peers a node knows (dead and removed ones
//! excluded), so a configuration follows joins, and replaces a member that stayed
//! away past the dead-peer timeout once a live peer can take its place.

use std::collections::BTreeSet;

use libp2p::PeerId;
use sha2::{Digest, Sha256};

use crate::model::{Config, Region};

/// A peer's point in the key space: `sha256(PeerId bytes)` (libp2p's `KBucketKey`).
pub fn peer_key(peer: &PeerId) -> [u8; 32] {
    Sha256::digest(peer.to_bytes()).into()
}

/// The XOR distance between two points, comparable as big-endian bytes.
pub fn distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, x) in d.iter_mut().enumerate() {
        *x = a[i] ^ b[i];
    }
    d
}

/// The `k` peers of `candidates` closest to `point`, closest first.
pub fn closest_to(
    point: &[u8; 32],
    candidates: impl IntoIterator<Item = PeerId>,
    k: usize,
) -> Vec<PeerId> {
    let mut peers: Vec<([u8; 32], PeerId)> = candidates
        .into_iter()
        .map(|p| (distance(&peer_key(&p), point), p))
        .collect();
    peers.sort();
    peers.dedup_by(|a, b| a.1 == b.1);
    peers.into_iter().take(k).map(|(_, p)| p).collect()
}

/// The target of `region`: the `k` candidates closest to its midpoint.
pub fn target(region: Region, candidates: &[PeerId], k: usize) -> Vec<PeerId> {
    let keyed: Vec<([u8; 32], PeerId)> = candidates.iter().map(|p| (peer_key(p), *p)).collect();
    target_keyed(region, &keyed, k)
}

/// [`target`] over candidates whose [`peer_key`]s are already known.
pub fn target_keyed(region: Region, candidates: &[([u8; 32], PeerId)], k: usize) -> Vec<PeerId> {
    let point = region.midpoint();
    let mut peers: Vec<([u8; 32], PeerId)> = candidates
        .iter()
        .map(|(key, p)| (distance(key, &point), *p))
        .collect();
    peers.sort();
    peers.dedup_by(|a, b| a.1 == b.1);
    peers.into_iter().take(k).map(|(_, p)| p).collect()
}

/// The next configuration of a region holding `config` on its way to `target`
/// (closest first), with `k` members wanted; `None` when there is nothing to do.
/// One member at a time: first add the closest target peer missing (the
/// configuration then holds `k + 1`), then remove the member farthest from the
/// target — a member that is not in the target at all — never going below `k`
/// members (vanished peers do not shrink a configuration).
pub fn next_step(config: &Config, target: &[PeerId], k: usize) -> Option<Config> {
    let wanted: Vec<String> = target.iter().map(ToString::to_string).collect();
    let missing = wanted.iter().find(|p| !config.members.contains(*p));
    let outside: BTreeSet<&String> = config
        .members
        .iter()
        .filter(|m| !wanted.contains(m))
        .collect();
    if let Some(p) = missing {
        if config.members.len() <= k {
            return Some(config.with(p));
        }
    }
    if config.members.len() > k {
        if let Some(worst) = outside.iter().next() {
            return Some(config.without(worst));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use libp2p::identity::Keypair;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect()
    }

    #[test]
    fn the_target_is_the_k_closest_to_the_midpoint() {
        let ps = peers(10);
        let r = Region::new(0x5a5);
        let t = target(r, &ps, 3);
        assert_eq!(t.len(), 3);
        let d = |p: &PeerId| distance(&peer_key(p), &r.midpoint());
        for p in ps.iter().filter(|p| !t.contains(p)) {
            assert!(d(p) > d(&t[2]));
        }
        // Order of candidates does not matter.
        let mut rev = ps.clone();
        rev.reverse();
        assert_eq!(target(r, &rev, 3), t);
        // Fewer candidates than k: all of them.
        assert_eq!(target(r, &ps[..2], 3).len(), 2);
    }

    #[test]
    fn steps_add_then_remove_and_never_shrink_below_k() {
        let ps = peers(5);
        let id = |p: &PeerId| p.to_string();
        let c = Config {
            epoch: 4,
            members: ps[..3].iter().map(id).collect(),
        };
        // Already the target: nothing.
        assert_eq!(next_step(&c, &ps[..3], 3), None);
        // A closer peer: add it first (four members), then drop the one outside.
        let t = vec![ps[0], ps[3], ps[1]];
        let added = next_step(&c, &t, 3).unwrap();
        assert_eq!(added.epoch, 5);
        assert!(added.members.contains(&id(&ps[3])) && added.members.len() == 4);
        let removed = next_step(&added, &t, 3).unwrap();
        assert_eq!(removed.members, t.iter().map(id).collect());
        assert_eq!(next_step(&removed, &t, 3), None);
        // A dead member and no live replacement: the configuration stays.
        let live_only = vec![ps[0], ps[1]];
        assert_eq!(next_step(&c, &live_only, 3), None);
        // Growing a small network: add up to k.
        let one = Config::genesis(&id(&ps[0]));
        let two = next_step(&one, &ps[..2], 3).unwrap();
        assert_eq!(two.members.len(), 2);
        assert_eq!(next_step(&two, &ps[..2], 3), None);
    }
}
