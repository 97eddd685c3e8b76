//! Catching a block up with its cluster.
//!
//! - Before a member applies a decision: [`CatchUp::reach_base`] brings its copy
//!   to the decided base (held by a threshold of the approvals, so final) from
//!   the members that hold it, or reports that the copy holds another write.
//! - Before a plain read: [`CatchUp::catch_up`] compares the copy with the
//!   block's cluster and takes a revision only when a majority of the cluster
//!   reports it as its latest (never a write that only one member holds: it may
//!   still be fenced by the others).
//!
//! Revisions are compared by (rev, trxId), never by number alone: a copy that
//! holds another write at some revision than a majority does is repaired
//! (docs/CONSENSUS.md, "Repairing a diverged copy").
//!
//! A member's copy takes the holders' revisions only, never their pending
//! transactions: a member holds pending what it applied itself (or was handed
//! as a newcomer), so no commit or cancel it will never hear of leaves a pend
//! behind on it.
//!
//! Peers answer the archive requests straight from storage, never behind a
//! BlockActor that may itself be restoring, so two nodes catching the same block
//! up at once never wait on each other.
//!
//! Layout: `base` brings a copy to a decided base; `compare` compares copies
//! with their cluster; `judge` is the pure verdict of one comparison; `moves`
//! moves copies to what a majority holds; `archive` holds the archive helpers.

mod archive;
mod base;
mod compare;
mod judge;
mod moves;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::Freshness;
use crate::block::StorageRepo;
use crate::model::Peers;
use crate::model::{BlockId, TrxRev};

/// Per-peer wait when comparing a block with its cluster or fetching from it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// How this copy of a block stands against a decided base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseCheck {
    /// At the base.
    Equal,
    /// Behind it, and no holder could bring it there now.
    Behind,
    /// Holds a write the base does not (ahead of it, or another write at its
    /// revision): this member cannot apply the decision.
    Conflict,
}

/// A peer and where to reach it.
pub type PeerAddrs = (PeerId, Vec<Multiaddr>);

/// What catching up needs from the node.
pub struct CatchUp {
    me: PeerId,
    repo: StorageRepo,
    net: Arc<OnceLock<Arc<dyn Peers>>>,
    fresh: Arc<Freshness>,
    configs: Arc<super::Configs>,
}

impl CatchUp {
    /// Catch-up for the node `me`, whose block clusters are its configurations.
    pub fn new(
        me: PeerId,
        repo: StorageRepo,
        net: Arc<OnceLock<Arc<dyn Peers>>>,
        fresh: Arc<Freshness>,
        configs: Arc<super::Configs>,
    ) -> Self {
        Self {
            me,
            repo,
            net,
            fresh,
            configs,
        }
    }

    /// A block's cluster: its region's configuration when this node knows it,
    /// else the target of its region among `candidates`.
    fn cluster_of(&self, block: &BlockId, candidates: &[PeerId]) -> Vec<PeerId> {
        match self.configs.config(crate::model::Region::of(block)) {
            Some(c) => c.members.iter().filter_map(|m| m.parse().ok()).collect(),
            None => crate::membership::target(
                crate::model::Region::of(block),
                candidates,
                self.configs.cluster_size(),
            ),
        }
    }

    /// This copy's latest revision of `block` (what is durable).
    pub fn local_latest(&self, block: &BlockId) -> Option<TrxRev> {
        self.repo
            .registry()
            .raw()
            .get_meta(block)
            .ok()
            .flatten()
            .and_then(|m| m.latest)
    }
}

/// Archives and revisions for the unit tests of this module's parts.
#[cfg(test)]
mod fixtures {
    #![allow(clippy::unwrap_used)]
    use crate::model::{
        ArchiveRevision, BlockArchive, BlockId, RevRange, Transform, TrxId, TrxRev,
    };

    /// `trx` at `rev`.
    pub(super) fn at(trx: &str, rev: u64) -> TrxRev {
        TrxRev {
            trx_id: TrxId::new(trx).unwrap(),
            rev,
        }
    }

    /// The block the archives are of.
    pub(super) fn block() -> BlockId {
        BlockId::new("b1").unwrap()
    }

    /// An archive of [`block`] from `start`, holding `revs` and one pending
    /// transaction (`p1`).
    pub(super) fn archive(start: u64, revs: &[TrxRev]) -> BlockArchive {
        BlockArchive {
            block_id: block(),
            revisions: revs
                .iter()
                .map(|r| ArchiveRevision {
                    trx_rev: r.clone(),
                    transform: Transform::default(),
                    block: None,
                })
                .collect(),
            range: RevRange { start, end: None },
            pending: vec![(TrxId::new("p1").unwrap(), Transform::default())],
        }
    }
}
