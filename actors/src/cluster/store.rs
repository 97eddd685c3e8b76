//! Durable transaction state of a member: one JSON file per transaction,
//! `{data_dir}/cluster/{messageHash}.json`, written atomically (temp, fsync,
//! rename, fsync of the directory) before the member acts on a new phase.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::phase::Phase;
use super::record::ClusterRecord;
use crate::model::validate_id;
use crate::storage::StorageError;

/// What a member keeps of one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnState {
    /// Where it stands.
    pub phase: Phase,
    /// The latest record, with this member's votes.
    pub record: ClusterRecord,
    /// The local result of executing the operation (JSON), once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// The directory of transaction files.
#[derive(Debug, Clone)]
pub struct TxnStore {
    dir: PathBuf,
}

impl TxnStore {
    /// Opens (creating) `{data_dir}/cluster`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let dir = data_dir.join("cluster");
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, hash: &str) -> Result<PathBuf, StorageError> {
        validate_id("message hash", hash).map_err(|e| StorageError::corrupt(hash, e))?;
        Ok(self.dir.join(format!("{hash}.json")))
    }

    /// Makes `state` durable under `hash`.
    pub fn save(&self, hash: &str, state: &TxnState) -> Result<(), StorageError> {
        let path = self.path(hash)?;
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(state).map_err(|e| StorageError::Encode {
            what: "txn state".into(),
            message: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| StorageError::io(&path, e))
    }

    /// The state saved under `hash`.
    pub fn load(&self, hash: &str) -> Result<Option<TxnState>, StorageError> {
        let path = self.path(hash)?;
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StorageError::corrupt(path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(path, e)),
        }
    }

    /// Every saved transaction (for resuming undecided ones after a restart).
    pub fn all(&self) -> Result<Vec<(String, TxnState)>, StorageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(state) = self.load(hash)? {
                out.push((hash.to_string(), state));
            }
        }
        Ok(out)
    }
}
