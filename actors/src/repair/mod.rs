//! Data that follows configurations (docs/CONSENSUS.md, "Anti-entropy").
//!
//! - [`digest`]: pure: one digest per region over the blocks a node holds there,
//!   and which blocks two nodes' heads disagree on.
//! - [`queue`]: the blocks found to compare and not settled yet, kept on disk
//!   so a restart resumes them.
//! - [`strays`]: pure: which pending transactions only a minority holds.
//!
//! The rounds that use it run in the coordinator (`coordinator/entropy.rs`,
//! and the hand-off of copies a node no longer needs, `coordinator/handoff.rs`):
//! they need the network and the catch-up that moves a copy to what a majority
//! holds.

pub mod digest;
pub mod queue;
pub mod strays;

use crate::metrics::{Counter, Gauge};

/// What anti-entropy did on this node (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct RepairMetrics {
    /// Rounds run (one co-member compared per round).
    pub rounds: Counter,
    /// Regions whose digests differed from the co-member's.
    pub regions_differing: Counter,
    /// Blocks compared with their cluster because the co-member's head differed.
    pub blocks_checked: Counter,
    /// Blocks whose copy here moved to what a majority of the cluster holds.
    pub blocks_repaired: Counter,
    /// Copies forgotten because their configuration, which this node left,
    /// holds them (hand-off).
    pub blocks_handed_off: Counter,
    /// Pending transactions dropped because fewer than a majority of their
    /// configuration hold them (a cancel this node missed).
    pub stray_pendings_dropped: Counter,
    /// Blocks in the repair queue (found to compare, not settled yet).
    pub queue_depth: Gauge,
    /// Blocks this node is a member for that are not on every member of their
    /// configuration as far as it knows: queued here for repair, or in a
    /// configuration with a member that is not connected (updated each round).
    pub under_replicated: Gauge,
    /// 1 once the start-up catch-up compared this node with enough co-members
    /// of each of its configurations (0 while it runs, and if it gave up).
    pub caught_up: Gauge,
}
