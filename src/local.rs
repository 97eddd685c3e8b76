//! Opening a node-local repo: a storage backend under a data directory and the
//! block actors that own its blocks.

use std::path::Path;
use std::sync::Arc;

use optimystic_actors::block::{BlockRegistry, RegistryOptions, StorageRepo};
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::storage::{open_storage, RepoError, StorageKind};

/// Opens `kind` storage in `data_dir` and starts its block actors. Must run inside
/// an actix System. Fails with a clear error when another process holds the dir.
pub fn open_repo(
    kind: StorageKind,
    data_dir: &Path,
    opts: RegistryOptions,
) -> Result<StorageRepo, RepoError> {
    let raw = open_storage(kind, data_dir)?;
    let registry = BlockRegistry::start(raw, Arc::new(EngineMetrics::default()), None, opts)?;
    Ok(StorageRepo::new(registry))
}
