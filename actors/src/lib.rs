//! The Optimystic engine.
//!
//! # Layout
//! The layers point one way — each uses only those above it in this list
//! (`tests/layers.rs` checks it, and that no two files import each other):
//! - [`faults`], [`metrics`]: test-only fault rules (debug builds) and actor
//!   instrumentation; they use nothing of the crate.
//! - [`model`]: ids, blocks, transforms, repo requests and replies, the record and
//!   archive wire types, errors and codes, the clock, the [`model::Repo`] trait,
//!   and the [`model::Peers`] trait through which everything below the network
//!   reaches other peers (DESIGN §3).
//! - [`storage`]: the [`storage::RawStorage`] trait and its backends (files,
//!   embedded engine, memory), [`storage::BlockStorage`] with the per-block rules
//!   of DESIGN §4. No actors in here.
//! - [`block`]: the BlockActor that owns one active block, the BlockRegistry that
//!   activates and passivates them, and [`block::StorageRepo`], the node-local
//!   repo. [`watch`]: a block's committed revisions as a stream. [`membership`]:
//!   pure rules of who is in a block's cluster (placement, quorums, the table).
//! - [`cluster`]: ClusterRecord signing and validation, the member 2PC state
//!   machine and actors, configurations, catch-up from peers.
//! - [`repair`]: data that follows configurations (region digests, the repair
//!   queue, strays).
//! - [`coordinator`]: the CoordinatorActor running writes as signed two-phase
//!   commits, placement, hand-over, anti-entropy.
//! - [`net`]: the SwarmActor on libp2p, the repo/block/cluster protocols and the
//!   clients; [`net::NetClient`] implements [`model::Peers`]. It uses only
//!   `model`, `metrics` and `faults`.
//! - [`service`]: the RepoService answering inbound requests from the node's
//!   repo, coordinator and members; restoration from peers; Prometheus export.

pub mod block;
pub mod cluster;
pub mod coordinator;
pub mod faults;
pub mod membership;
pub mod metrics;
pub mod model;
pub mod net;
pub mod repair;
pub mod service;
pub mod storage;
pub mod watch;
