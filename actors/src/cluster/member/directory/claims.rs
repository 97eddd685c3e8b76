//! What transactions hold on this member: reserving, conflicts and releasing
//! of their claims, the claim a record makes, and whether a pend is settled.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::MemberDirectory;
use crate::cluster::member::recovery::RECOVERY_GRACE;
use crate::cluster::member::reservations::{Claim, Refusal};
use crate::cluster::message_blocks;
use crate::cluster::record::ClusterRecord;
use crate::model::{BlockId, Region};

/// How far past a pend's deadline (and the recovery grace) its pending copies
/// are first judged as strays: the margin for a clock here running ahead of
/// the coordinator's.
const STRAY_MARGIN: Duration = Duration::from_secs(10);

impl MemberDirectory {
    /// Whether `trx`'s pend on `block` is settled here at `now_ms`: the
    /// deadline of the pend record this member applied has passed (with the
    /// recovery grace); for one it took otherwise, it has been seen for longer
    /// than a proposal may live (`seen_for`). An undecided transaction holding
    /// the block here keeps every pending transaction of it unsettled.
    pub fn pend_settled(
        &self,
        block: &BlockId,
        trx: &crate::model::TrxId,
        now_ms: u64,
        seen_for: Duration,
    ) -> bool {
        if self.reservations.lock().holds(block) {
            return false;
        }
        let grace = u64::try_from((RECOVERY_GRACE + STRAY_MARGIN).as_millis()).unwrap_or(0);
        match self.pend_deadlines.get(block, trx) {
            Some(deadline) => now_ms > deadline.saturating_add(grace),
            None => {
                let lifetime = self
                    .max_lifetime_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(grace);
                u64::try_from(seen_for.as_millis()).unwrap_or(u64::MAX) > lifetime
            }
        }
    }

    /// Whether an undecided configuration change this member promised holds
    /// `region` (its copies there must stay: the change may make it a member).
    pub fn changing(&self, region: Region) -> bool {
        self.reservations.lock().changing(region)
    }

    /// Reserves `claim` for `hash` (proposed by `proposer`).
    pub(in crate::cluster::member) fn reserve(
        &self,
        claim: &Claim,
        hash: &str,
        proposer: &str,
        share: bool,
    ) -> Result<(), Refusal> {
        let share = share.then(|| self.share());
        self.reservations
            .lock()
            .reserve(claim, hash, proposer, share)
    }

    /// The undecided transaction other than `hash` holding part of `claim`.
    pub(in crate::cluster::member) fn conflict(&self, claim: &Claim, hash: &str) -> Option<String> {
        self.reservations.lock().conflict(claim, hash)
    }

    /// Releases what `hash` holds of `claim`.
    pub(in crate::cluster::member) fn release(&self, claim: &Claim, hash: &str) {
        self.reservations.lock().release(claim, hash);
    }

    /// What a record holds while undecided: its blocks, or a change's regions.
    pub(in crate::cluster::member) fn claim_of(record: &ClusterRecord) -> Claim {
        Claim {
            blocks: message_blocks(&record.message.operations),
            regions: record
                .message
                .change
                .as_ref()
                .map(|c| c.regions.iter().copied().collect())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    /// A record of these operations, each given as its JSON.
    fn record(ops: &[&str]) -> ClusterRecord {
        crate::cluster::member::test_record(1, ops)
    }

    #[test]
    fn a_writes_claim_is_every_block_of_its_operations_and_no_region() {
        let r = record(&[
            r#"{"pend": {"trxId": "x", "transforms": {"deletes": ["b"]}, "policy": "f"}}"#,
            r#"{"commit": {"trxId": "y", "blockIds": ["a", "b"], "rev": 2}}"#,
        ]);
        let blocks: BTreeSet<BlockId> = ["a", "b"]
            .into_iter()
            .map(|b| BlockId::new(b).unwrap())
            .collect();
        assert_eq!(
            MemberDirectory::claim_of(&r),
            Claim {
                blocks,
                regions: BTreeSet::new(),
            }
        );
    }

    #[test]
    fn a_record_without_operations_claims_nothing() {
        let r = record(&[]);
        assert_eq!(MemberDirectory::claim_of(&r), Claim::default());
    }
}
