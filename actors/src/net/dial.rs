//! Why a dial failed, in words an operator can act on: a peer that answered with
//! another identity is named, a refused or unreachable address says so. The
//! SwarmActor keeps the last reason per peer so that a request which failed with
//! libp2p's bare "dial failure" can say why.

use std::collections::HashMap;

use libp2p::swarm::DialError;
use libp2p::PeerId;

/// Reasons kept at most; older ones are dropped wholesale past it (a reason is
/// only a diagnostic, and a fresh failure records a fresh one).
const KEPT: usize = 1024;

/// The last dial failure per peer, until a connection to it opens.
#[derive(Default)]
pub(crate) struct DialFailures(HashMap<PeerId, String>);

impl DialFailures {
    /// Records why dialing `peer` (if known) failed; returns the description.
    pub(crate) fn record(&mut self, peer: Option<PeerId>, error: &DialError) -> String {
        let why = describe(peer, error);
        if let Some(peer) = peer {
            if self.0.len() >= KEPT {
                self.0.clear();
            }
            self.0.insert(peer, why.clone());
        }
        why
    }

    /// A connection to `peer` opened: its old failure no longer applies.
    pub(crate) fn connected(&mut self, peer: &PeerId) {
        self.0.remove(peer);
    }

    /// "dial failed", with the recorded reason for `peer` when there is one.
    pub(crate) fn explain(&self, peer: &PeerId) -> String {
        match self.0.get(peer) {
            Some(why) => format!("dial failed: {why}"),
            None => "dial failed".into(),
        }
    }
}

/// One line for a failed dial of `expected` (when the dial named a peer).
pub(crate) fn describe(expected: Option<PeerId>, error: &DialError) -> String {
    match error {
        DialError::WrongPeerId { obtained, address } => match expected {
            Some(expected) => format!(
                "the peer at {address} is {obtained}, not {expected} (wrong /p2p/ id in the address?)"
            ),
            None => format!("the peer at {address} is {obtained}, not the one asked for"),
        },
        DialError::Transport(attempts) => attempts
            .iter()
            .map(|(addr, e)| format!("{addr}: {}", root_cause(e)))
            .collect::<Vec<_>>()
            .join("; "),
        DialError::NoAddresses => "no known address for the peer".into(),
        other => other.to_string(),
    }
}

/// The innermost error of a chain ("Connection refused (os error 111)" rather
/// than the transport's wrapping of it).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_peer_id_names_both_identities() {
        let (asked, answered) = (PeerId::random(), PeerId::random());
        let address: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let mut f = DialFailures::default();
        let e = DialError::WrongPeerId {
            obtained: answered,
            address,
        };
        f.record(Some(asked), &e);
        let why = f.explain(&asked);
        assert!(why.contains(&asked.to_string()), "{why}");
        assert!(why.contains(&answered.to_string()), "{why}");
        assert!(why.contains("/ip4/127.0.0.1/tcp/4001"), "{why}");
        f.connected(&asked);
        assert_eq!(f.explain(&asked), "dial failed");
    }
}
