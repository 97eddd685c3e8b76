//! Durable transaction state of a member, kept in the node's storage backend
//! (one record per transaction, keyed by messageHash) so it shares the backend's
//! group commit: `{data_dir}/cluster/{messageHash}.json` on the file backend, a
//! `txn` keyspace on the embedded engine.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::phase::Phase;
use super::record::ClusterRecord;
use crate::storage::{RawStorage, StorageError, WriteFuture, WriteOp};

/// What a member keeps of one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnState {
    /// Where it stands.
    pub phase: Phase,
    /// The latest record, with this member's votes.
    pub record: ClusterRecord,
    /// The local outcome of each of the message's operations, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Vec<crate::model::OpOutcome>>,
}

/// Transaction states in a storage backend.
#[derive(Clone)]
pub struct TxnStore {
    raw: Arc<dyn RawStorage>,
}

impl TxnStore {
    /// Transaction states kept in `raw`.
    pub fn new(raw: Arc<dyn RawStorage>) -> Self {
        Self { raw }
    }

    /// Starts writing `state`; durable when the future resolves.
    pub fn save(&self, hash: &str, state: &TxnState) -> Result<WriteFuture, StorageError> {
        self.save_with(hash, state, false)
    }

    /// Saves `state`, lazily when `lazy` (see `RawStorage::write_lazy`): for a
    /// state that recovery can rebuild if a power loss drops it.
    pub fn save_with(
        &self,
        hash: &str,
        state: &TxnState,
        lazy: bool,
    ) -> Result<WriteFuture, StorageError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StorageError::Encode {
            what: "txn state".into(),
            message: e.to_string(),
        })?;
        let batch = vec![WriteOp::PutTxn {
            hash: hash.to_string(),
            bytes: Arc::new(bytes),
        }];
        Ok(if lazy {
            self.raw.write_lazy(batch)
        } else {
            self.raw.write(batch)
        })
    }

    /// Starts forgetting the states under `hashes` (one durable write).
    pub fn delete(&self, hashes: Vec<String>) -> WriteFuture {
        self.raw.write(
            hashes
                .into_iter()
                .map(|hash| WriteOp::DeleteTxn { hash })
                .collect(),
        )
    }

    /// The state saved under `hash`.
    pub fn load(&self, hash: &str) -> Result<Option<TxnState>, StorageError> {
        match self.raw.get_txn(hash)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StorageError::corrupt(format!("txn {hash}"), e)),
            None => Ok(None),
        }
    }

    /// Every saved transaction (for resuming undecided ones after a restart).
    pub fn all(&self) -> Result<Vec<(String, TxnState)>, StorageError> {
        self.raw
            .list_txns()?
            .into_iter()
            .filter(|(h, _)| !super::configs::is_node_key(h))
            .map(|(h, b)| {
                let s = serde_json::from_slice(&b)
                    .map_err(|e| StorageError::corrupt(format!("txn {h}"), e))?;
                Ok((h, s))
            })
            .collect()
    }
}
