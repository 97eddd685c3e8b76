//! What is known about a ClusterRecord (DESIGN §7) beyond its wire form (the
//! types are in `model::record`): why one is refused, its `messageHash`, the
//! peer entry of a key, and counting its votes. [`super::votes`] signs and checks
//! them.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libp2p::identity::Keypair;

use super::canonical::digest;
use crate::model::RepoMessage;
pub use crate::model::{BlockState, ClusterPeer, ClusterRecord, Signature, States, VoteType};

/// Why a record was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// An approving promise's state does not cover exactly the message's blocks,
    /// or a vote carries a field its kind does not have.
    #[error("vote of {0}: {1}")]
    BadVote(String, String),
    /// `messageHash` does not match the message.
    #[error("messageHash does not match the message")]
    AlteredMessage,
    /// The message carries no `expiration`.
    #[error("a cluster message needs an expiration")]
    NoExpiration,
    /// The deadline has passed.
    #[error("record expired at {0} ms")]
    Expired(u64),
    /// The deadline lies further ahead than a member accepts.
    #[error("record expires at {deadline} ms, more than {max_ms} ms from now")]
    TooFarAhead {
        /// The record's deadline.
        deadline: u64,
        /// The longest lifetime accepted.
        max_ms: u64,
    },
    /// A peer entry is malformed or its key is not its PeerId's.
    #[error("peer {0}: {1}")]
    BadPeer(String, String),
    /// A vote filed under a peer outside the record's peer set.
    #[error("vote from {0}, which is not a member of the record's cluster")]
    NonMember(String),
    /// A vote whose signature does not verify under its peer's key.
    #[error("{kind} of {peer} does not verify")]
    BadSignature {
        /// `promise` or `commit`.
        kind: &'static str,
        /// The voter.
        peer: String,
    },
    /// A record with no peers.
    #[error("a record needs at least one peer")]
    NoPeers,
    /// This node is not in the record's cluster.
    #[error("this node is not a member of the record's cluster")]
    NotAMember,
    /// A message with no operations, or more than [`MAX_OPERATIONS`] (a change
    /// carries none).
    #[error("a cluster message carries 1 to {MAX_OPERATIONS} operations (a configuration change none), not {0}")]
    Operations(usize),
    /// A configuration change that is not one member added or removed, one
    /// epoch on.
    #[error("configuration change: {0}")]
    BadChange(String),
    /// The message names no coordinator, or one outside the peer set.
    #[error("the message's coordinator {0:?} is not a member of the record's cluster")]
    Coordinator(Option<String>),
}

/// Most operations one record may carry (a coordinator batches concurrent client
/// writes on one cluster into one record).
pub const MAX_OPERATIONS: usize = 256;

/// The `messageHash` of a message.
pub fn message_hash(message: &RepoMessage) -> String {
    digest(message)
}

/// The entry for this node in a record's peer set.
pub fn peer_entry(key: &Keypair, multiaddrs: Vec<String>) -> (String, ClusterPeer) {
    let public_key = B64.encode(key.public().encode_protobuf());
    (
        key.public().to_peer_id().to_string(),
        ClusterPeer {
            multiaddrs,
            public_key,
        },
    )
}

/// The outcome of counting a validated record's votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Members in the record.
    pub members: usize,
    /// Approving promises.
    pub approvals: usize,
    /// Rejecting promises.
    pub rejections: usize,
    /// Approving commits (members that applied the decision).
    pub commits: usize,
    /// Rejecting commits (members that will never apply it).
    pub fences: usize,
}

/// Counts a record's votes without checking them (for records already validated).
pub fn tally(r: &ClusterRecord) -> Tally {
    let count = |votes: &BTreeMap<String, Signature>, v: VoteType| {
        votes.values().filter(|s| s.vote == v).count()
    };
    Tally {
        members: r.peers.len(),
        approvals: count(&r.promises, VoteType::Approve),
        rejections: count(&r.promises, VoteType::Reject),
        commits: count(&r.commits, VoteType::Approve),
        fences: count(&r.commits, VoteType::Reject),
    }
}

/// Whether the record's coordinator (named in the message) has signed a rejecting
/// commit: it decided abort. Only meaningful on a validated record.
pub fn abandoned(r: &ClusterRecord) -> bool {
    r.message
        .coordinator
        .as_ref()
        .and_then(|c| r.commits.get(c))
        .is_some_and(|v| v.vote == VoteType::Reject)
}

/// The votes `r` needs: a majority of its peers (a region's configuration), or,
/// for a configuration change, a majority of the old configuration and of the new.
pub fn quorum_of(r: &ClusterRecord) -> crate::membership::Quorum {
    match &r.message.change {
        Some(c) => crate::membership::Quorum::Joint(Box::new(c.clone())),
        None => crate::membership::Quorum::majority(r.peers.keys()),
    }
}

/// The peers of `votes` that voted `vote`.
pub fn voters(
    votes: &BTreeMap<String, Signature>,
    vote: VoteType,
) -> std::collections::BTreeSet<&str> {
    votes
        .iter()
        .filter(|(_, s)| s.vote == vote)
        .map(|(p, _)| p.as_str())
        .collect()
}

/// Simple majority of `members`: the default threshold.
pub fn majority(members: usize) -> usize {
    members / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_threshold() {
        assert_eq!(
            (
                majority(1),
                majority(2),
                majority(3),
                majority(4),
                majority(5)
            ),
            (1, 2, 2, 3, 3)
        );
    }
}
