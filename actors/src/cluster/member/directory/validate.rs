//! Validating records for this member: their signatures, hash and deadline,
//! and their peer set against the configurations this node holds.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::MemberDirectory;
use crate::cluster::member::ClusterError;
use crate::cluster::message_blocks;
use crate::cluster::record::{quorum_of, voters, ClusterRecord, RecordError, VoteType};
use crate::cluster::votes::{validate_with, Checks};
use crate::membership::Mismatch;
use crate::model::{now_ms, Region, RegionView};

impl MemberDirectory {
    /// Checks `record`'s peer set against the configurations this node holds: a
    /// write names, for each of its blocks' regions, this member's configuration
    /// (its epoch and exactly its members); a change starts from the
    /// configuration this member holds (or adds it), is proposed by a member of
    /// that configuration, and adds no peer the allow list leaves out
    /// (`not_allowed`). Otherwise `wrong_cluster`, carrying what
    /// this member holds.
    pub(in crate::cluster::member) fn check_config(
        &self,
        record: &ClusterRecord,
    ) -> Result<(), ClusterError> {
        let peers: BTreeSet<&str> = record.peers.keys().map(String::as_str).collect();
        let t = self.configs.table();
        let regions: BTreeSet<Region> = match &record.message.change {
            Some(c) => c.regions.iter().copied().collect(),
            None => message_blocks(&record.message.operations)
                .iter()
                .map(Region::of)
                .collect(),
        };
        let found = match &record.message.change {
            Some(change)
                if change
                    .peers()
                    .iter()
                    .map(String::as_str)
                    .ne(peers.iter().copied()) =>
            {
                Err(vec![Mismatch::Regions])
            }
            Some(change) => {
                if let Some(p) = change.added().filter(|p| !self.configs.may_be_member(p)) {
                    return Err(ClusterError::NotAllowed(p.clone()));
                }
                let proposer = record.message.coordinator.as_deref().unwrap_or_default();
                if !change.from.members.contains(proposer) {
                    // Only a member of the configuration proposes its change: a
                    // peer it would add cannot admit itself.
                    Err(vec![Mismatch::Regions])
                } else if quorum_of(record).met_by(&voters(&record.promises, VoteType::Approve)) {
                    // Decided: a joint majority promised it; what this member
                    // holds at the new epoch already stays.
                    t.check_decided_change(change)
                } else {
                    t.check_change(change)
                }
            }
            None => t.check(&regions, &record.message.epochs, &peers),
        };
        found.map_err(|_| {
            let view = regions
                .iter()
                .map(|r| RegionView {
                    region: *r,
                    config: t.get(*r).cloned(),
                })
                .collect();
            ClusterError::WrongCluster(view)
        })
    }

    /// Validates `record` (see docs/CONSENSUS.md, "Validation") for this member.
    pub(super) fn check(
        &self,
        record: &ClusterRecord,
        proposal: bool,
        own: crate::cluster::votes::OwnVote<'_>,
        hash_known: bool,
    ) -> Result<(), ClusterError> {
        validate_with(
            record,
            &Checks {
                now_ms: now_ms(),
                proposal,
                max_lifetime_ms: self.max_lifetime_ms.load(Ordering::Relaxed),
                own,
                hash_known,
                keys: &self.keys,
            },
        )?;
        if !record.peers.contains_key(&self.me) {
            return Err(RecordError::NotAMember.into());
        }
        Ok(())
    }
}
