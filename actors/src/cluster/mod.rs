//! Cluster consensus (DESIGN §7): the ClusterRecord with its canonical hash and
//! signed votes, the member's two-phase-commit state machine, and the key-space
//! arithmetic that picks each block's cluster. docs/CONSENSUS.md states the rules.

pub mod catchup;
pub mod fresh;
pub mod keyspace;
pub mod member;
pub mod phase;
pub mod record;
pub mod store;

pub use catchup::CatchUp;
pub use fresh::Freshness;
pub use keyspace::closest_peers;
pub use member::{
    message_blocks, operation_blocks, ClusterError, MemberDirectory, DEFAULT_MAX_ACTIVE, RETENTION,
};
pub use phase::{Action, Event, Phase, TxnError};
pub use record::{
    abandoned, canonical_json, majority, message_hash, peer_entry, sign_commit, sign_promise,
    validate, ClusterPeer, ClusterRecord, RecordError, Signature, Tally, VoteType, MAX_OPERATIONS,
};
pub use store::{TxnState, TxnStore};
