//! Pending a transaction: a plain pend, one its cluster agreed on, and a pend
//! committed in the same durable batch (pendCommit), over a shared per-block run.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::outcome::{gather, pend_outcome, stale};
use super::StorageRepo;
use crate::block::actor::{BlockOp, Prepared};
use crate::metrics::RepoOp;
use crate::model::{
    BlockId, CommitResult, PendCommitRequest, PendCommitResult, PendPolicy, PendRequest,
    PendResult, Transform, TrxId,
};
use crate::storage::RepoError;

impl StorageRepo {
    pub(super) async fn pend_commit_inner(
        &self,
        req: PendCommitRequest,
    ) -> Result<PendCommitResult, RepoError> {
        req.check().map_err(RepoError::Invalid)?;
        let rev = req.commit.rev;
        let (ids, prepared) = self
            .pend_blocks(&req.pend, |trx, transform| BlockOp::PendCommit {
                trx,
                transform,
                pend_rev: req.pend.rev,
                policy: req.pend.policy,
                rev,
            })
            .await?;
        let (commit_stale, pend_part): (Vec<Prepared>, Vec<Prepared>) =
            prepared.into_iter().partition(|p| p.commit_stale);
        let pend = pend_outcome(ids, pend_part, req.pend.policy);
        let PendResult::Success(mut ok) = pend else {
            return Ok(PendCommitResult { pend, commit: None });
        };
        let (pending, missing) = gather(commit_stale);
        ok.pending.extend(pending);
        let commit = if missing.is_empty() {
            CommitResult::Success
        } else {
            CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
        };
        Ok(PendCommitResult {
            pend: PendResult::Success(ok),
            commit: Some(commit),
        })
    }

    /// Runs `op(trx, transform)` on each block of `req` (joint when several): the
    /// blocks and their answers. Written only when no block is stale and, unless
    /// the policy is `c`, none has other pending transactions.
    async fn pend_blocks(
        &self,
        req: &PendRequest,
        op: impl Fn(TrxId, Arc<Transform>) -> BlockOp,
    ) -> Result<(BTreeSet<BlockId>, Vec<Prepared>), RepoError> {
        let ids = req.transforms.block_ids();
        if ids.is_empty() {
            return Err(RepoError::Invalid("pend names no block".into()));
        }
        let policy = req.policy;
        let ops = ids
            .iter()
            .map(|id| {
                let transform = Arc::new(req.transforms.for_block(id));
                (id.clone(), op(req.trx_id.clone(), transform))
            })
            .collect();
        let prepared = self
            .run(ops, move |p| {
                p.iter().all(|p| p.missing.is_empty())
                    && (policy == PendPolicy::Continue || p.iter().all(|p| p.pending.is_empty()))
            })
            .await?;
        Ok((ids, prepared))
    }

    /// A pend its cluster agreed on: the cluster decided its policy and stale
    /// check (docs/CONSENSUS.md, "The decided effect"), so it goes ahead whatever
    /// this copy's pending set holds, unbounded by the per-block limit.
    pub async fn pend_agreed(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        self.registry.metrics().repo.begin();
        let req = PendRequest {
            policy: PendPolicy::Continue,
            ..req
        };
        let r = self
            .pend_blocks(&req, |trx, transform| BlockOp::PendAgreed {
                trx,
                transform,
                rev: req.rev,
            })
            .await
            .map(|(ids, prepared)| pend_outcome(ids, prepared, PendPolicy::Continue));
        self.record(RepoOp::Pend, &r, |v| !v.is_success());
        r
    }

    pub(super) async fn pend_inner(&self, req: PendRequest) -> Result<PendResult, RepoError> {
        let (ids, prepared) = self
            .pend_blocks(&req, |trx, transform| BlockOp::Pend {
                trx,
                transform,
                rev: req.rev,
                policy: req.policy,
            })
            .await?;
        Ok(pend_outcome(ids, prepared, req.policy))
    }
}
