//! [`PendingIndex`]: the pending transactions' ids by block, kept in memory as
//! a mirror of the `pend` keyspace (loaded at open, updated per durable batch).

use std::collections::BTreeSet;

use dashmap::DashMap;
use fjall::Keyspace;

use super::encode::Encoded;
use super::engine;
use crate::model::{BlockId, TrxId};
use crate::storage::StorageError;

/// Ids of pending transactions by block, mirroring the `pend` keyspace.
pub(super) struct PendingIndex(pub(super) DashMap<BlockId, BTreeSet<TrxId>>);

impl PendingIndex {
    pub(super) fn load(pend: &Keyspace) -> Result<Self, StorageError> {
        let index = DashMap::new();
        for guard in pend.iter() {
            let k = guard.key().map_err(engine)?;
            let bad = || StorageError::corrupt(String::from_utf8_lossy(&k), "bad pending key");
            let text = std::str::from_utf8(&k).map_err(|_| bad())?;
            let (block, trx) = text.split_once('/').ok_or_else(bad)?;
            let block = BlockId::new(block).map_err(|_| bad())?;
            let trx = TrxId::new(trx).map_err(|_| bad())?;
            index.entry(block).or_insert_with(BTreeSet::new).insert(trx);
        }
        Ok(Self(index))
    }

    pub(super) fn apply(&self, op: &Encoded) {
        let Some((block, trx)) = &op.pend else {
            return;
        };
        if op.value.is_some() {
            self.0.entry(block.clone()).or_default().insert(trx.clone());
        } else {
            self.0.remove_if_mut(block, |_, set| {
                set.remove(trx);
                set.is_empty()
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dashmap::DashMap;

    use super::PendingIndex;
    use crate::model::{BlockId, TrxId};
    use crate::storage::embedded::encode::{Encoded, Space};

    fn pend(block: &BlockId, trx: &str, put: bool) -> Encoded {
        Encoded {
            space: Space::Pend,
            pend: Some((block.clone(), TrxId::new(trx).unwrap())),
            key: Vec::new(),
            value: put.then(Vec::new),
        }
    }

    fn ids(index: &PendingIndex, block: &BlockId) -> Vec<String> {
        index
            .0
            .get(block)
            .map(|set| set.iter().map(TrxId::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn puts_add_ids_in_order_and_the_last_deletion_forgets_the_block() {
        let index = PendingIndex(DashMap::new());
        let b = BlockId::new("b1").unwrap();
        index.apply(&pend(&b, "t2", true));
        index.apply(&pend(&b, "t1", true));
        assert_eq!(ids(&index, &b), ["t1", "t2"]);
        index.apply(&pend(&b, "t1", false));
        assert_eq!(ids(&index, &b), ["t2"]);
        index.apply(&pend(&b, "t2", false));
        assert!(!index.0.contains_key(&b));
    }

    #[test]
    fn a_record_of_another_keyspace_changes_nothing() {
        let index = PendingIndex(DashMap::new());
        index.apply(&Encoded {
            space: Space::Data,
            pend: None,
            key: b"b1/t/t1".to_vec(),
            value: Some(Vec::new()),
        });
        assert!(index.0.is_empty());
    }
}
