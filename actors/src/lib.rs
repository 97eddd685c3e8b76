//! The Optimystic engine.
//!
//! # Layout
//! - [`model`]: ids, blocks, transforms, repo request/reply types and the pure
//!   transform functions (DESIGN §3).
//! - [`storage`]: the [`storage::RawStorage`] trait and its backends (files, embedded
//!   engine, memory), [`storage::BlockStorage`] with the per-block rules of DESIGN §4.
//!   No actors in here.
//! - [`block`]: the BlockActor that owns one active block, the BlockRegistry that
//!   activates and passivates them, and [`block::StorageRepo`], the node-local repo.
//! - [`net`]: the SwarmActor on libp2p, the repo/block/cluster protocols and the
//!   clients. It imports only `model` and `metrics`.
//! - [`service`]: the RepoService answering inbound requests from the node's
//!   repo, coordinator and members, and restoration from peers.
//! - [`cluster`]: ClusterRecord, signed votes, the member 2PC state machine and the
//!   key-space arithmetic of clusters.
//! - [`repair`]: data that follows configurations (region digests for
//!   anti-entropy).
//! - [`metrics`]: mailbox and handler instrumentation shared by every actor kind.
//! - [`watch`]: a block's committed revisions as a stream.

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
