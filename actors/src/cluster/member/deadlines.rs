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
    /// Notes the pends of `record`, a decision this member applied.
    pub(super) fn note(&self, record: &ClusterRecord) {
        let deadline = record.message.expiration.unwrap_or(0);
        let mut d = self.deadlines.lock();
        for op in &record.message.operations {
            if let RepoOperation::Pend(p) = op {
                for b in p.transforms.block_ids() {
                    let slot = d.entry((b, p.trx_id.clone())).or_insert(deadline);
                    *slot = (*slot).max(deadline);
                }
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

    /// Forgets the deadlines that passed before `cutoff` (ms).
    pub(super) fn forget_before(&self, cutoff: u64) {
        self.deadlines.lock().retain(|_, d| *d >= cutoff);
    }
}
