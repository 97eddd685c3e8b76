//! Graceful leave (docs/OPERATIONS.md, "Leaving the network"; docs/CONSENSUS.md,
//! "Leaving"): a node that leaves retires itself, durably. From then on it is a
//! candidate for no region, so the placement driver — its own, which leads
//! every region it is a member of — replaces it wherever it is a member, one
//! agreed change at a time, handing each newcomer the blocks first. The changes
//! retire it on their members too: that is how its departure is announced, and
//! why nobody waits out the dead-peer timeout.
//!
//! While leaving, hand-off runs every [`LEAVE_HAND_OFF`] (not only after an
//! anti-entropy round), and forgets a copy only once *every* member of the
//! block's configuration holds it at or past this copy's revision (not just a
//! majority). So the leave is over — nothing this node held is under-replicated
//! — exactly when it is a member of no configuration and holds no copy.

use std::time::Duration;

use serde::Serialize;

use super::Coordinator;
use crate::model::RepoError;

/// How often a leaving node runs a hand-off pass.
pub(super) const LEAVE_HAND_OFF: Duration = Duration::from_secs(1);

/// How far a leave has come.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaveProgress {
    /// Whether this node is leaving (it retired itself).
    pub leaving: bool,
    /// Regions whose configuration still has this node as a member.
    pub regions: usize,
    /// Blocks this node still stores: each waits until every member of its
    /// configuration holds it.
    pub copies: usize,
    /// Live peers placement could put in this node's place (this node not
    /// counted); fewer than the cluster size means the regions cannot shrink
    /// without it, and the leave cannot finish.
    pub replacements: usize,
    /// Members wanted per region.
    pub cluster_size: usize,
    /// Whether the leave is over: a member of no configuration, no copy kept.
    pub done: bool,
}

impl Coordinator {
    /// Starts leaving (idempotent): retires this node durably, and returns the
    /// progress so far.
    pub(super) async fn leave(&self) -> Result<LeaveProgress, RepoError> {
        let me = self.me.to_string();
        if let Some(w) = self.configs.retire(&me)? {
            w.await?;
            tracing::info!(
                regions = self.configs.regions_with(&me),
                "leaving the network"
            );
        }
        self.leave_progress().await
    }

    /// Whether this node is leaving.
    pub(super) fn leaving(&self) -> bool {
        self.configs.is_retired(&self.me.to_string())
    }

    /// How far the leave has come.
    pub(super) async fn leave_progress(&self) -> Result<LeaveProgress, RepoError> {
        let leaving = self.leaving();
        let regions = self.configs.regions_with(&self.me.to_string());
        let copies = self.stored_blocks().await?.len();
        let replacements = match self.net() {
            Ok(net) => self
                .candidates(&net.member_view(), &self.configs.retired())
                .len(),
            Err(_) => 0,
        };
        Ok(LeaveProgress {
            leaving,
            regions,
            copies,
            replacements,
            cluster_size: self.configs.cluster_size(),
            done: leaving && regions == 0 && copies == 0,
        })
    }
}
