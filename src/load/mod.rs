//! The load generator of `optimystic bench`, of `optimystic devnet`'s sample
//! workload and of the hand-rolled benches: building requests, one operation on a
//! node, and lanes of operations in flight.
//!
//! - `requests`: blocks with a payload, insert and update transforms, a
//!   transaction's pend + commit or pendCommit ([`Txn`]), reads, fresh
//!   transaction ids ([`new_trx_id`]), which block a lane works on.
//! - `op`: a write or a read through a [`RepoClient`], a failure named by its
//!   [`kind`].
//! - `lanes`: N lanes in flight for a count or until a deadline ([`drive()`]),
//!   each operation timed, failures counted by kind.
//!
//! [`RepoClient`]: optimystic_actors::net::RepoClient

mod lanes;
mod op;
mod requests;

pub use lanes::{drive, Counts, Outcome, Slot, Until};
pub use op::{kind, read, write, STALE};
pub use requests::{
    block, block_id, gets, insert, lane_block, new_trx_id, payload, set_field, Txn,
};
