//! The cluster record's wire types (DESIGN §7): the record a coordinator and the
//! members of a block's cluster pass back and forth, its votes, what an approving
//! promise reports of the blocks and what an approving commit says each operation
//! did. docs/CONSENSUS.md states the wire form and the rules; the cluster module
//! signs, checks and counts them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{BlockId, OpOutcome, RepoMessage, TrxId, TrxRev};

/// A member of the record's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPeer {
    /// Where to reach it.
    pub multiaddrs: Vec<String>,
    /// Its libp2p public key, protobuf-encoded, base64url without padding.
    pub public_key: String,
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteType {
    /// In favour.
    Approve,
    /// Against.
    Reject,
}

impl VoteType {
    /// As the signed payloads spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// What a promising member holds of one of the message's blocks when it promises
/// (the block is reserved from then until the member decides, so it stays exact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockState {
    /// Its latest committed revision; absent when it holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<TrxRev>,
    /// Transactions pending on it, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pendings: Vec<TrxId>,
}

/// A member's state of every block of a message.
pub type States = BTreeMap<BlockId, BlockState>;

/// One member's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// The vote.
    #[serde(rename = "type")]
    pub vote: VoteType,
    /// Ed25519 signature over the vote payload, base64url without padding.
    pub signature: String,
    /// Why it rejects (e.g. `conflict:<messageHash>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// An approving promise: the member's state of the message's blocks (signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<States>,
    /// An approving commit: what each of the message's operations did on the
    /// member, in order (signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Vec<EffectKind>>,
}

/// A cluster transaction as it travels between coordinator and members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    /// base64url(sha256(canonical JSON of `message`)).
    pub message_hash: String,
    /// The cluster, by PeerId (base58).
    pub peers: BTreeMap<String, ClusterPeer>,
    /// The repo operation being agreed (shared: copies of a record, one per
    /// member call and one per stored state, do not copy the operations).
    pub message: Arc<RepoMessage>,
    /// Phase-1 votes by PeerId.
    #[serde(default)]
    pub promises: BTreeMap<String, Signature>,
    /// Phase-2 votes by PeerId.
    #[serde(default)]
    pub commits: BTreeMap<String, Signature>,
}

impl ClusterRecord {
    /// The approving promises' states, by member.
    pub fn states(&self) -> BTreeMap<&str, &States> {
        self.promises
            .iter()
            .filter(|(_, s)| s.vote == VoteType::Approve)
            .filter_map(|(p, s)| Some((p.as_str(), s.state.as_ref()?)))
            .collect()
    }
}

/// What one operation did on a member, as its commit vote reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "code")]
pub enum EffectKind {
    /// Done (applied, or found already done).
    Ok,
    /// Not done: stale, or refused by the verdict.
    Refused,
    /// The operation failed with this error code (the same on every member with
    /// the same base).
    Failed(String),
}

impl EffectKind {
    /// The kind of a local outcome.
    pub fn of(outcome: &OpOutcome) -> Self {
        match outcome {
            Ok(r) if r.is_success() => Self::Ok,
            Ok(_) => Self::Refused,
            Err(f) => Self::Failed(f.code.as_str().to_string()),
        }
    }
}
