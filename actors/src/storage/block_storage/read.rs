//! Reading a block: at a revision (materialized from the nearest stored block
//! and the transforms after it), what a requester missed, and the archive a
//! restoring peer gets.

#[allow(clippy::wildcard_imports)]
use super::*;

impl BlockStorage {
    /// The block at `rev` (or the latest): the revision read and the block
    /// (`None` = deleted). `None` when the block did not exist at that revision.
    pub fn read(&self, rev: Option<Rev>) -> Result<Option<(TrxRev, Option<Block>)>, StorageError> {
        if let Some(e) = self.damaged_error() {
            return Err(e);
        }
        let Some(latest) = self.latest() else {
            return Ok(None);
        };
        match rev {
            Some(rev) if rev < latest.rev => self.materialize_at(rev),
            _ => Ok(Some((
                latest.clone(),
                self.state.latest_block.as_deref().cloned(),
            ))),
        }
    }

    /// Materializes at `rev`: the newest stored materialization at or below it,
    /// then the later transforms in order.
    pub(super) fn materialize_at(
        &self,
        rev: Rev,
    ) -> Result<Option<(TrxRev, Option<Block>)>, StorageError> {
        let start = self
            .state
            .meta
            .as_ref()
            .and_then(|m| {
                m.ranges
                    .iter()
                    .filter(|r| r.start <= rev)
                    .map(|r| r.start)
                    .max()
            })
            .unwrap_or(0);
        let revs = self.raw.list_revisions(&self.id, start, rev)?;
        let Some(read) = revs.last().cloned() else {
            return Ok(None);
        };
        let mut base: Option<Block> = None;
        let mut from = 0;
        for (i, tr) in revs.iter().enumerate().rev() {
            if let Some(m) = self.materialized(&tr.trx_id)? {
                base = m;
                from = i + 1;
                break;
            }
        }
        for tr in &revs[from..] {
            let t = self.committed_transform(tr)?;
            base = apply_transform(&self.id, base.as_ref(), &t).map_err(|e| {
                StorageError::corrupt(format!("block {} rev {}", self.id, tr.rev), e)
            })?;
        }
        Ok(Some((read, base)))
    }

    /// The transform of a published revision; its absence means a damaged store.
    pub(super) fn committed_transform(&self, tr: &TrxRev) -> Result<Transform, StorageError> {
        self.raw
            .get_transaction(&self.id, &tr.trx_id)?
            .ok_or_else(|| {
                StorageError::corrupt(
                    format!("block {} rev {}", self.id, tr.rev),
                    "transform missing",
                )
            })
    }

    /// Committed transactions in `from..=latest`, as reported in `missing`.
    pub(super) fn missing_from(&self, from: Rev) -> Result<Vec<TrxTransforms>, StorageError> {
        let Some(latest) = self.latest() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for tr in self.raw.list_revisions(&self.id, from, latest.rev)? {
            let t = self
                .raw
                .get_transaction(&self.id, &tr.trx_id)?
                .unwrap_or_default();
            out.push(TrxTransforms {
                trx_id: tr.trx_id,
                rev: Some(tr.rev),
                transforms: Transforms::from_block(&self.id, &t),
            });
        }
        Ok(out)
    }

    /// What a peer needs to restore this block: from `from` (whole history up to
    /// the latest) or, without `from`, just the latest revision. `None` when the
    /// block has no committed revision here.
    pub fn archive(&self, from: Option<Rev>) -> Result<Option<BlockArchive>, StorageError> {
        if let Some(e) = self.damaged_error() {
            return Err(e);
        }
        let (Some(meta), Some(latest)) = (&self.state.meta, self.latest()) else {
            // No revision here, but transactions pending: they are what a member
            // that missed their pend needs to apply an agreed commit.
            if self.state.pending.is_empty() {
                return Ok(None);
            }
            return Ok(Some(BlockArchive {
                block_id: self.id.clone(),
                revisions: Vec::new(),
                range: RevRange {
                    start: 0,
                    end: Some(0),
                },
                pending: self.pending_list(),
            }));
        };
        let start = match from {
            Some(r) if meta.covers(r) && r <= latest.rev => r,
            _ => latest.rev,
        };
        let mut revisions = Vec::new();
        for tr in self.raw.list_revisions(&self.id, start, latest.rev)? {
            let transform = self.committed_transform(&tr)?;
            let block = self.materialized(&tr.trx_id)?.flatten();
            revisions.push(ArchiveRevision {
                trx_rev: tr,
                transform,
                block,
            });
        }
        Ok(Some(BlockArchive {
            block_id: self.id.clone(),
            revisions,
            range: RevRange { start, end: None },
            pending: self.pending_list(),
        }))
    }

    /// The pending transactions with their transforms, as an archive carries them.
    pub(super) fn pending_list(&self) -> Vec<(TrxId, Transform)> {
        self.state
            .pending
            .iter()
            .map(|(t, tf)| (t.clone(), (**tf).clone()))
            .collect()
    }
}
