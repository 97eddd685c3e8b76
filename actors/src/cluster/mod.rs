//! Cluster consensus (DESIGN §7): the ClusterRecord with its canonical hash and
//! signed votes, the decision every member computes from a record, the member's
//! two-phase-commit state machine and actors, and the key-space arithmetic that
//! picks each block's cluster. docs/CONSENSUS.md states the rules.

pub mod canonical;
pub mod catchup;
pub mod changelog;
pub mod configs;
pub mod decision;
pub mod fresh;
pub mod keyspace;
pub mod member;
pub mod phase;
pub mod record;
pub(crate) mod span;
pub mod store;
pub mod votes;

pub use canonical::{canonical_json, digest};
pub use catchup::{BaseCheck, CatchUp};
pub use configs::Configs;
pub use decision::{decide, implied_outcome, refusal, Decision, EffectKind, Verdict};
pub use fresh::Freshness;
pub use keyspace::closest_peers;
pub use member::{
    message_blocks, operation_blocks, ClusterError, MemberDirectory, DEFAULT_MAX_ACTIVE,
    DEFAULT_MAX_LIFETIME, RETENTION,
};
pub use phase::{Action, Event, Phase, TxnError};
pub use record::{
    abandoned, majority, message_hash, peer_entry, quorum_of, voters, BlockState, ClusterPeer,
    ClusterRecord, RecordError, Signature, States, Tally, VoteType, MAX_OPERATIONS,
};
pub(crate) use span::txn_span;
pub use store::{TxnState, TxnStore};
pub use votes::{sign_commit, sign_promise, validate, validate_with, Checks, KeyCache};
