//! The write rules of DESIGN §4 as plans: pend, pendCommit, commit, cancel and
//! the drop of a diverged revision, each checked against the cached state.

#[allow(clippy::wildcard_imports)]
use super::*;

impl BlockStorage {
    /// Checks a pend of `transform` under `trx` (DESIGN §4 "pend").
    pub fn plan_pend(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
        policy: PendPolicy,
    ) -> Result<PendPlan, RepoError> {
        self.check_pend(trx, transform, rev, policy, true)
    }

    /// A pend its cluster agreed on: the policy and the stale check were decided
    /// by the cluster (docs/CONSENSUS.md, "The decided effect"), so it goes ahead
    /// whatever this copy's own pending set holds, and the per-block limit (a local
    /// setting) does not apply.
    pub fn plan_pend_agreed(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
    ) -> Result<PendPlan, RepoError> {
        self.check_pend(trx, transform, rev, PendPolicy::Continue, false)
    }

    /// [`Self::plan_pend`]; `limit` enforces the most pending transactions (a
    /// pendCommit leaves nothing pending, so it does not).
    pub(super) fn check_pend(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        rev: Option<Rev>,
        policy: PendPolicy,
        limit: bool,
    ) -> Result<PendPlan, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        let pending = self
            .state
            .pending
            .iter()
            .filter(|(id, _)| *id != trx)
            .map(|(id, t)| TrxPending {
                block_id: self.id.clone(),
                trx_id: id.clone(),
                transform: (policy == PendPolicy::Return).then(|| (**t).clone()),
            })
            .collect();
        let mut plan = PendPlan {
            pending,
            missing: Vec::new(),
            ops: Vec::new(),
            effect: Effect::None,
        };
        if rev.is_some() || transform.insert.is_some() {
            let from = rev.unwrap_or(0);
            if self.latest().is_some_and(|l| l.rev >= from) {
                plan.missing = self.missing_from(from)?;
                return Ok(plan);
            }
        }
        if let Some(existing) = self.state.pending.get(trx) {
            if existing == transform {
                return Ok(plan);
            }
            return Err(RepoError::PendConflict {
                block: self.id.clone(),
                trx: trx.clone(),
            });
        }
        if limit && self.state.pending.len() >= self.max_pending {
            return Err(RepoError::TooManyPending {
                block: self.id.clone(),
                limit: self.max_pending,
            });
        }
        apply_transform(&self.id, self.state.latest_block.as_deref(), transform)?;
        plan.ops.push(WriteOp::PutPending {
            block: self.id.clone(),
            trx: trx.clone(),
            transform: transform.clone(),
        });
        plan.effect = Effect::Pended(trx.clone(), transform.clone());
        Ok(plan)
    }

    /// Checks a pend of `transform` under `trx` followed at once by its commit as
    /// `rev`, written as one batch with no pending record in between (a
    /// pendCommit): the pend's rules, then the commit's.
    pub fn plan_pend_commit(
        &self,
        trx: &TrxId,
        transform: &Arc<Transform>,
        pend_rev: Option<Rev>,
        policy: PendPolicy,
        rev: Rev,
    ) -> Result<PendCommitPlan, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        let past = self.latest().is_some_and(|l| l.rev >= rev);
        if past && self.raw.get_revision(&self.id, rev)?.as_ref() == Some(trx) {
            return Ok(PendCommitPlan::AlreadyCommitted);
        }
        let pend = self.check_pend(trx, transform, pend_rev, policy, false)?;
        if !pend.missing.is_empty() || (!pend.pending.is_empty() && policy != PendPolicy::Continue)
        {
            return Ok(PendCommitPlan::PendBlocked(pend));
        }
        if past {
            return Ok(PendCommitPlan::CommitStale {
                pending: pend.pending,
                missing: self.missing_from(rev)?,
            });
        }
        let (ops, effect) = self.commit_ops(trx, rev, transform)?;
        Ok(PendCommitPlan::Apply {
            pending: pend.pending,
            ops,
            effect,
        })
    }

    /// Records are keyed by transaction, so a transaction that already committed
    /// another revision of this block must not commit again: it would overwrite
    /// that revision's transform and materialization. Records identical to the
    /// ones about to be written (a commit retried after a crash part-way through a
    /// non-atomic batch) change nothing and are allowed. One point read when the
    /// transaction is new here.
    pub(super) fn check_trx_unused(
        &self,
        trx: &TrxId,
        transform: &Transform,
        block: Option<&Block>,
    ) -> Result<(), RepoError> {
        if self.state.meta.is_none() {
            return Ok(());
        }
        let Some(existing) = self.raw.get_transaction(&self.id, trx)? else {
            return Ok(());
        };
        let same_block = || -> Result<bool, StorageError> {
            Ok(match self.raw.get_materialized(&self.id, trx)? {
                Some(m) => m.as_ref() == block,
                None => true,
            })
        };
        if existing == *transform && same_block()? {
            return Ok(());
        }
        Err(RepoError::Invalid(format!(
            "transaction {trx} already committed another revision of block {}; a transaction commits a block once",
            self.id
        )))
    }

    /// Checks a commit of pending `trx` as `rev` (DESIGN §4 "commit").
    pub fn plan_commit(&self, trx: &TrxId, rev: Rev) -> Result<CommitPlan, RepoError> {
        if let Some(plan) = self.commit_taken(trx, rev)? {
            return Ok(plan);
        }
        let transform = self
            .state
            .pending
            .get(trx)
            .ok_or_else(|| RepoError::NotPending {
                block: self.id.clone(),
                trx: trx.clone(),
            })?;
        let (ops, effect) = self.commit_ops(trx, rev, transform)?;
        Ok(CommitPlan::Apply(ops, effect))
    }

    /// Checks a commit of `trx` as `rev` whose transform this copy may not hold
    /// pending (it missed the pend; the cluster agreed the commit and `transform`
    /// came from a member that held it): as [`Self::plan_commit`], with `transform`
    /// standing in for a missing pending record.
    pub fn plan_commit_with(
        &self,
        trx: &TrxId,
        rev: Rev,
        transform: Arc<Transform>,
    ) -> Result<CommitPlan, RepoError> {
        if self.state.pending.contains_key(trx) {
            return self.plan_commit(trx, rev);
        }
        if let Some(plan) = self.commit_taken(trx, rev)? {
            return Ok(plan);
        }
        let (ops, effect) = self.commit_ops(trx, rev, &transform)?;
        Ok(CommitPlan::Apply(ops, effect))
    }

    /// A commit of `trx` as `rev` on a copy already at or past `rev`: done before
    /// (the same transaction there) or stale. Refused on a damaged copy.
    fn commit_taken(&self, trx: &TrxId, rev: Rev) -> Result<Option<CommitPlan>, RepoError> {
        if let Some(e) = self.damaged_error() {
            return Err(e.into());
        }
        match self.latest() {
            Some(latest) if latest.rev >= rev => {
                if self.raw.get_revision(&self.id, rev)?.as_ref() == Some(trx) {
                    Ok(Some(CommitPlan::AlreadyCommitted))
                } else {
                    Ok(Some(CommitPlan::Stale(self.missing_from(rev)?)))
                }
            }
            _ => Ok(None),
        }
    }

    /// The writes and cache change of committing `transform` as (`trx`, `rev`) on
    /// top of the latest revision (checked newer by the caller).
    pub(super) fn commit_ops(
        &self,
        trx: &TrxId,
        rev: Rev,
        transform: &Arc<Transform>,
    ) -> Result<(WriteBatch, Effect), RepoError> {
        let block =
            apply_transform(&self.id, self.state.latest_block.as_deref(), transform)?.map(Arc::new);
        self.check_trx_unused(trx, transform, block.as_deref())?;
        let mut meta = self.state.meta.clone().unwrap_or_else(|| BlockMeta {
            ranges: vec![RevRange::ALL],
            latest: None,
        });
        let trx_rev = TrxRev {
            trx_id: trx.clone(),
            rev,
        };
        meta.latest = Some(trx_rev.clone());
        let id = &self.id;
        let mut ops: Vec<WriteOp> = self
            .state
            .orphans
            .iter()
            .filter(|r| **r != rev)
            .map(|r| WriteOp::DeleteRevision {
                block: id.clone(),
                rev: *r,
            })
            .collect();
        ops.extend([
            WriteOp::PutTransaction {
                block: id.clone(),
                trx: trx.clone(),
                transform: transform.clone(),
            },
            WriteOp::PutMaterialized {
                block: id.clone(),
                trx: trx.clone(),
                value: block.clone(),
            },
            WriteOp::PutRevision {
                block: id.clone(),
                rev,
                trx: trx.clone(),
            },
            WriteOp::PutMeta {
                block: id.clone(),
                meta: meta.clone(),
            },
            WriteOp::DeletePending {
                block: id.clone(),
                trx: trx.clone(),
            },
        ]);
        Ok((
            ops,
            Effect::Committed {
                trx_rev,
                block,
                meta,
            },
        ))
    }

    /// Plans dropping pending `trx`; `None` when it is not pending.
    pub fn plan_cancel(&self, trx: &TrxId) -> Option<(WriteBatch, Effect)> {
        self.state.pending.contains_key(trx).then(|| {
            (
                vec![WriteOp::DeletePending {
                    block: self.id.clone(),
                    trx: trx.clone(),
                }],
                Effect::Cancelled(trx.clone()),
            )
        })
    }

    /// Plans forgetting this copy (hand-off: the block's configuration holds it
    /// and this node is no longer a member): every record of the block, its
    /// metadata first. `None` — nothing to do — unless the copy still ends at
    /// `expected` (no revision at all: `None`) with exactly `pending` pending (it
    /// changed since the check).
    pub fn plan_drop(
        &self,
        expected: Option<&TrxRev>,
        pending: &[TrxId],
    ) -> Result<Option<(WriteBatch, Effect)>, RepoError> {
        if self.latest() != expected || !self.state.pending.keys().eq(pending.iter()) {
            return Ok(None);
        }
        let id = &self.id;
        let mut ops = vec![WriteOp::DeleteMeta { block: id.clone() }];
        for trx in pending {
            ops.push(WriteOp::DeletePending {
                block: id.clone(),
                trx: trx.clone(),
            });
        }
        let revisions = match expected {
            Some(e) => self.raw.list_revisions(id, 0, e.rev)?,
            None => Vec::new(),
        };
        for tr in revisions {
            ops.push(WriteOp::DeleteRevision {
                block: id.clone(),
                rev: tr.rev,
            });
            ops.push(WriteOp::DeleteTransaction {
                block: id.clone(),
                trx: tr.trx_id.clone(),
            });
            ops.push(WriteOp::DeleteMaterialized {
                block: id.clone(),
                trx: tr.trx_id,
            });
        }
        for rev in &self.state.orphans {
            ops.push(WriteOp::DeleteRevision {
                block: id.clone(),
                rev: *rev,
            });
        }
        Ok(Some((ops, Effect::Restored(Box::default()))))
    }
}
