//! Restoring a block from a peer's archive: what to write, and the cached state
//! it leaves.

#[allow(clippy::wildcard_imports)]
use super::*;

impl BlockStorage {
    /// Plans storing a peer's archive: its revisions, range and pending transactions.
    pub fn plan_restore(&self, archive: BlockArchive) -> Result<(WriteBatch, Effect), RepoError> {
        self.plan_restore_with(archive, false, false)
    }

    /// [`Self::plan_restore`]; `authoritative` when a majority of the block's
    /// cluster is known to hold the archive's history (docs/CONSENSUS.md,
    /// "Repairing a diverged copy"): a revision this copy holds under another
    /// transaction is replaced, and revisions past the archive's latest — writes
    /// that can no longer reach a majority — are dropped, so the copy ends exactly
    /// at the archive's latest. `pending_exact` when the archive's pending
    /// transactions are the whole set this copy must hold (a hand-over to a
    /// peer about to join, docs/CONSENSUS.md "Handing over"): any other pending
    /// transaction here goes.
    pub fn plan_restore_with(
        &self,
        archive: BlockArchive,
        authoritative: bool,
        pending_exact: bool,
    ) -> Result<(WriteBatch, Effect), RepoError> {
        if archive.block_id != self.id {
            return Err(RepoError::Restore {
                block: self.id.clone(),
                message: format!("archive is for block {}", archive.block_id),
            });
        }
        let mut state = self.state.clone();
        // Every record the archive covers is rewritten (sealed afresh).
        state.damaged = None;
        let meta = state.meta.get_or_insert_with(BlockMeta::default);
        let mut ops = Vec::new();
        let id = &self.id;
        let restored: std::collections::BTreeSet<TrxId> = archive
            .revisions
            .iter()
            .map(|r| r.trx_rev.trx_id.clone())
            .collect();
        if let (true, Some(last), Some(local)) = (
            authoritative,
            archive.revisions.last().map(|r| r.trx_rev.clone()),
            meta.latest.clone(),
        ) {
            // Everything this copy holds past the archive's latest goes.
            for tr in self
                .raw
                .list_revisions(id, last.rev.saturating_add(1), local.rev)?
            {
                ops.push(WriteOp::DeleteRevision {
                    block: id.clone(),
                    rev: tr.rev,
                });
            }
            meta.latest = Some(last);
        }
        for r in archive.revisions {
            let newer = meta.latest.as_ref().is_none_or(|l| r.trx_rev.rev > l.rev);
            if newer {
                meta.latest = Some(r.trx_rev.clone());
            }
            let trx = r.trx_rev.trx_id;
            let materialized = match r.block {
                Some(b) => Some(Some(b)),
                None if r.transform.delete == Some(true) => Some(None),
                None => None,
            };
            if let Some(m) = materialized {
                ops.push(WriteOp::PutMaterialized {
                    block: id.clone(),
                    trx: trx.clone(),
                    value: m.map(Arc::new),
                });
            }
            ops.push(WriteOp::PutTransaction {
                block: id.clone(),
                trx: trx.clone(),
                transform: Arc::new(r.transform),
            });
            ops.push(WriteOp::PutRevision {
                block: id.clone(),
                rev: r.trx_rev.rev,
                trx: trx.clone(),
            });
            // Committed now: its pending record (if this node had pended it) goes
            // too, or a reload would bring it back as pending.
            if state.pending.remove(&trx).is_some() {
                ops.push(WriteOp::DeletePending {
                    block: id.clone(),
                    trx: trx.clone(),
                });
            }
        }
        meta.add_range(archive.range);
        if pending_exact {
            let handed: std::collections::BTreeSet<&TrxId> =
                archive.pending.iter().map(|(t, _)| t).collect();
            let stale: Vec<TrxId> = state
                .pending
                .keys()
                .filter(|t| !handed.contains(t))
                .cloned()
                .collect();
            for trx in stale {
                state.pending.remove(&trx);
                ops.push(WriteOp::DeletePending {
                    block: id.clone(),
                    trx,
                });
            }
        }
        for (trx, t) in archive.pending {
            if restored.contains(&trx) {
                continue;
            }
            let t = Arc::new(t);
            ops.push(WriteOp::PutPending {
                block: id.clone(),
                trx: trx.clone(),
                transform: t.clone(),
            });
            state.pending.insert(trx, t);
        }
        ops.push(WriteOp::PutMeta {
            block: id.clone(),
            meta: meta.clone(),
        });
        Ok((ops, Effect::Restored(Box::new(state))))
    }
}
