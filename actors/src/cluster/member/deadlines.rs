//! The deadline of the pend record behind each transaction this member took
//! pending (docs/CONSENSUS.md, "Stray pending transactions"): once it has
//! passed, whether a majority applied that pend can no longer change, and a
//! copy a majority does not hold may be dropped as a stray. In memory; a
//! pending transaction whose deadline is unknown here (it came with a block
//! transfer, or before a restart) is judged by how long it has been seen.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::cluster::record::ClusterRecord;
use crate::model::{BlockId, RepoOperation, TrxId};

/// `(block, transaction)` → the deadline (ms) of the pend record applied here.
#[derive(Default)]
pub(super) struct PendDeadlines {
    deadlines: Mutex<BTreeMap<(BlockId, TrxId), u64>>,
}

impl PendDeadlines {
    /// Notes the pends of `record`, a decision this member applied, and
    /// forgets the transactions it commits or cancels (so what is kept is about
    /// what is pending here, not about every pend of the last minutes).
    pub(super) fn note(&self, record: &ClusterRecord) {
        let deadline = record.message.expiration.unwrap_or(0);
        let mut d = self.deadlines.lock();
        for op in &record.message.operations {
            match op {
                RepoOperation::Pend(p) => {
                    for b in p.transforms.block_ids() {
                        let slot = d.entry((b, p.trx_id.clone())).or_insert(deadline);
                        *slot = (*slot).max(deadline);
                    }
                }
                RepoOperation::Commit(c) => {
                    for b in &c.block_ids {
                        d.remove(&(b.clone(), c.trx_id.clone()));
                    }
                }
                RepoOperation::Cancel(c) => {
                    for b in &c.trx_ref.block_ids {
                        d.remove(&(b.clone(), c.trx_ref.trx_id.clone()));
                    }
                }
                RepoOperation::PendCommit(_) | RepoOperation::Get(_) => {}
            }
        }
    }

    /// The deadline noted for `trx` on `block`.
    pub(super) fn get(&self, block: &BlockId, trx: &TrxId) -> Option<u64> {
        self.deadlines
            .lock()
            .get(&(block.clone(), trx.clone()))
            .copied()
    }

    /// Forgets the deadlines that passed before `cutoff` (ms): a pending
    /// transaction older than that is judged as one whose deadline is unknown.
    pub(super) fn forget_before(&self, cutoff: u64) {
        self.deadlines.lock().retain(|_, d| *d >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A record of one operation, given as its JSON.
    fn record(expiration: u64, op: &str) -> ClusterRecord {
        super::super::test_record(expiration, &[op])
    }

    #[test]
    fn a_pend_is_kept_until_its_commit_or_cancel_or_the_cutoff() {
        let d = PendDeadlines::default();
        let (b, x) = (BlockId::new("b").unwrap(), TrxId::new("x").unwrap());
        let pend = r#"{"pend": {"trxId": "x", "transforms": {"deletes": ["b"]}, "policy": "f"}}"#;
        d.note(&record(50, pend));
        assert_eq!(d.get(&b, &x), Some(50));
        d.note(&record(40, pend));
        assert_eq!(d.get(&b, &x), Some(50), "the later deadline stands");
        d.note(&record(
            60,
            r#"{"commit": {"trxId": "x", "blockIds": ["b"], "rev": 2}}"#,
        ));
        assert_eq!(d.get(&b, &x), None);
        d.note(&record(50, pend));
        d.note(&record(
            60,
            r#"{"cancel": {"trxRef": {"trxId": "x", "blockIds": ["b"]}}}"#,
        ));
        assert_eq!(d.get(&b, &x), None);
        d.note(&record(50, pend));
        d.forget_before(51);
        assert_eq!(d.get(&b, &x), None);
    }
}
