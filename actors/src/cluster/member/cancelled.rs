//! Marks of the cancels this member applied (docs/CONSENSUS.md, "Applying a
//! decision"): a pend's decision may reach a member after the cancel of the same
//! transaction did — its coordinator re-sends decisions to stragglers, and a
//! member that promised recovers at the deadline — and applying it then would
//! leave a transaction pending here that the cluster cancelled. With policy `f`
//! every later pend of the block counts the pending transactions of every
//! approving member, so that one stray copy would block the block for good.
//!
//! A mark lives as long as the cancel's stored state (its deadline plus the
//! retention), longer than any pend proposed before the cancel can still be
//! delivered (a proposal's lifetime is bounded, the straggler window too).

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::cluster::record::ClusterRecord;
use crate::model::{BlockId, RepoOperation, TrxId};

/// `(block, transaction)` cancelled here → the messageHash of the cancel.
#[derive(Default)]
pub(super) struct CancelMarks {
    marks: Mutex<BTreeMap<(BlockId, TrxId), String>>,
}

impl CancelMarks {
    /// Marks every cancel of `record`, a decision this member applied.
    pub(super) fn note(&self, record: &ClusterRecord) {
        let mut marks = self.marks.lock();
        for op in &record.message.operations {
            if let RepoOperation::Cancel(c) = op {
                for b in &c.trx_ref.block_ids {
                    marks.insert(
                        (b.clone(), c.trx_ref.trx_id.clone()),
                        record.message_hash.clone(),
                    );
                }
            }
        }
    }

    /// Drops the marks of the pends `record` proposes, which this member has
    /// just promised: a transaction pended again after its cancel (a client
    /// retrying under the same id) is applied as any other.
    pub(super) fn promised(&self, record: &ClusterRecord) {
        let mut marks = self.marks.lock();
        if marks.is_empty() {
            return;
        }
        for op in &record.message.operations {
            let p = match op {
                RepoOperation::Pend(p) => p,
                RepoOperation::PendCommit(pc) => &pc.pend,
                _ => continue,
            };
            for b in p.transforms.block_ids() {
                marks.remove(&(b, p.trx_id.clone()));
            }
        }
    }

    /// Whether `trx` was cancelled here on every one of `blocks`.
    pub(super) fn covers<'a>(
        &self,
        trx: &TrxId,
        mut blocks: impl Iterator<Item = &'a BlockId>,
    ) -> bool {
        let marks = self.marks.lock();
        blocks.all(|b| marks.contains_key(&(b.clone(), trx.clone())))
    }

    /// Drops the marks of the cancels in `hashes` (their states were forgotten).
    pub(super) fn forget(&self, hashes: &[String]) {
        if hashes.is_empty() {
            return;
        }
        let gone: std::collections::BTreeSet<&String> = hashes.iter().collect();
        self.marks.lock().retain(|_, h| !gone.contains(h));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{CancelOperation, RepoMessage, TrxBlocks};

    fn cancel(hash: &str, trx: &str, blocks: &[&str]) -> ClusterRecord {
        let message = RepoMessage {
            operations: vec![RepoOperation::Cancel(CancelOperation {
                trx_ref: TrxBlocks {
                    trx_id: TrxId::new(trx).unwrap(),
                    block_ids: blocks.iter().map(|b| BlockId::new(*b).unwrap()).collect(),
                },
            })],
            expiration: Some(1),
            coordinator: Some("a".into()),
            epochs: Default::default(),
            change: None,
        };
        ClusterRecord {
            message_hash: hash.into(),
            peers: Default::default(),
            message: message.into(),
            promises: Default::default(),
            commits: Default::default(),
        }
    }

    #[test]
    fn a_cancel_marks_its_blocks_until_its_state_is_forgotten() {
        let marks = CancelMarks::default();
        let (x, y) = (TrxId::new("x").unwrap(), TrxId::new("y").unwrap());
        let (a, b, c) = (
            BlockId::new("a").unwrap(),
            BlockId::new("b").unwrap(),
            BlockId::new("c").unwrap(),
        );
        marks.note(&cancel("h1", "x", &["a", "b"]));
        assert!(marks.covers(&x, [&a, &b].into_iter()));
        // Another block, or another transaction, is not covered.
        assert!(!marks.covers(&x, [&a, &c].into_iter()));
        assert!(!marks.covers(&y, [&a].into_iter()));
        // Promising a pend of `x` again on `b` drops that mark only.
        let mut again = cancel("h3", "x", &["b"]);
        let transforms = crate::model::Transforms {
            deletes: Some(vec![b.clone()]),
            ..Default::default()
        };
        std::sync::Arc::make_mut(&mut again.message).operations =
            vec![RepoOperation::Pend(crate::model::PendRequest {
                trx_id: x.clone(),
                rev: None,
                transforms,
                policy: crate::model::PendPolicy::Fail,
            })];
        marks.promised(&again);
        assert!(marks.covers(&x, [&a].into_iter()));
        assert!(!marks.covers(&x, [&b].into_iter()));
        marks.note(&cancel("h1", "x", &["a", "b"]));
        marks.forget(&["h2".into()]);
        assert!(marks.covers(&x, [&a].into_iter()));
        marks.forget(&["h1".into()]);
        assert!(!marks.covers(&x, [&a].into_iter()));
    }
}
