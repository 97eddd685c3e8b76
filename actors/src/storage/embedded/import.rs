//! Restoring a backup: [`EmbeddedRawStorage::import`] fills an empty store with
//! a backup's records, in batches, then makes them durable.

use fjall::PersistMode;

use super::{engine, EmbeddedRawStorage};
use crate::storage::{backup, StorageError};

impl EmbeddedRawStorage {
    /// Fills this store, which must be empty and not yet serving, with a
    /// backup's records (`records` yields them in order) in batches, then makes
    /// them durable. Close the store afterwards: its in-memory index of pending
    /// transactions was built before the import.
    pub fn import(
        &self,
        records: impl FnOnce(&mut backup::ImportSink<'_>) -> Result<u64, StorageError>,
    ) -> Result<u64, StorageError> {
        const BATCH: usize = 4096;
        if self.meta.approximate_len() > 0 || self.data.approximate_len() > 0 {
            return Err(StorageError::Unsupported(
                "a backup is restored only into an empty store".into(),
            ));
        }
        let spaces = [&self.meta, &self.pend, &self.data];
        let mut batch = self.db.batch();
        let mut held = 0;
        let n = records(&mut |space, k, v| {
            let ks = spaces
                .get(usize::from(space))
                .ok_or_else(|| StorageError::corrupt("backup", format!("keyspace {space}")))?;
            batch.insert(ks, k, v);
            held += 1;
            if held >= BATCH {
                std::mem::replace(&mut batch, self.db.batch())
                    .commit()
                    .map_err(engine)?;
                held = 0;
            }
            Ok(())
        })?;
        batch.commit().map_err(engine)?;
        self.db.persist(PersistMode::SyncAll).map_err(engine)?;
        Ok(n)
    }
}
