//! The protocol handlers that join the network to a node's repo: the
//! RepoService answering inbound repo, block and cluster requests from the
//! StorageRepo, the coordinator and the member directory; restoration from
//! peers for the block layer; and the Prometheus export of every layer's
//! metrics. Above `net` (which knows nothing of storage,
//! blocks or clusters) and below the node that wires them together (`src/`).

pub mod export;
mod repo_service;
mod restore;
mod seed_results;

pub use repo_service::{repo_error, Consensus, RepoService, CLOCK_SKEW_TOLERANCE};
pub use restore::restore_from_peers;
