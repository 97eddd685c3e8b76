//! A record's peers as this member dials them: PeerIds parsed from the
//! record's text, with the addresses that parse.

use std::collections::BTreeMap;

use super::MemberDirectory;
use crate::cluster::record::ClusterRecord;

impl MemberDirectory {
    /// Peer `id` of a record with its addresses.
    pub(in crate::cluster::member) fn addrs_of_peer(
        record: &ClusterRecord,
        id: &str,
    ) -> Option<(libp2p::PeerId, Vec<libp2p::Multiaddr>)> {
        let p = record.peers.get(id)?;
        let peer: libp2p::PeerId = id.parse().ok()?;
        Some((
            peer,
            p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect(),
        ))
    }

    /// Peers of a record with their addresses, by PeerId text.
    pub(in crate::cluster::member) fn addrs_of(
        record: &ClusterRecord,
    ) -> BTreeMap<String, (libp2p::PeerId, Vec<libp2p::Multiaddr>)> {
        record
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let peer: libp2p::PeerId = id.parse().ok()?;
                let addrs = p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((id.clone(), (peer, addrs)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use libp2p::{Multiaddr, PeerId};

    use super::*;
    use crate::cluster::record::ClusterPeer;
    use crate::model::RepoMessage;

    const ADDR: &str = "/ip4/127.0.0.1/tcp/4001";

    fn peer(multiaddrs: &[&str]) -> ClusterPeer {
        ClusterPeer {
            multiaddrs: multiaddrs.iter().map(|a| String::from(*a)).collect(),
            public_key: String::new(),
        }
    }

    fn record(peers: BTreeMap<String, ClusterPeer>) -> ClusterRecord {
        let message = RepoMessage {
            operations: Vec::new(),
            expiration: Some(1),
            coordinator: None,
            epochs: Default::default(),
            change: None,
        };
        ClusterRecord {
            message_hash: "h".into(),
            peers,
            message: message.into(),
            promises: Default::default(),
            commits: Default::default(),
        }
    }

    #[test]
    fn a_peer_comes_with_the_addresses_that_parse() {
        let id = PeerId::random();
        let key = id.to_string();
        let mut peers = BTreeMap::new();
        peers.insert(key.clone(), peer(&[ADDR, "not an address"]));
        let r = record(peers);
        let (peer_id, addrs) = MemberDirectory::addrs_of_peer(&r, &key).unwrap();
        assert_eq!(peer_id, id);
        assert_eq!(addrs, vec![ADDR.parse::<Multiaddr>().unwrap()]);
        let stranger = PeerId::random().to_string();
        assert!(MemberDirectory::addrs_of_peer(&r, &stranger).is_none());
    }

    #[test]
    fn a_peer_whose_id_does_not_parse_is_left_out() {
        let id = PeerId::random();
        let mut peers = BTreeMap::new();
        peers.insert(id.to_string(), peer(&[]));
        peers.insert("not-a-peer".to_string(), peer(&[ADDR]));
        let r = record(peers);
        let all = MemberDirectory::addrs_of(&r);
        assert_eq!(all.len(), 1);
        assert_eq!(all.get(&id.to_string()), Some(&(id, Vec::new())));
        assert!(MemberDirectory::addrs_of_peer(&r, "not-a-peer").is_none());
    }
}
