//! Ending a pending transaction: committing it (as asked, or as its cluster
//! agreed with stand-in transforms) or cancelling it on each of its blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::outcome::{gather, stale};
use super::StorageRepo;
use crate::block::actor::BlockOp;
use crate::metrics::RepoOp;
use crate::model::{BlockId, CommitRequest, CommitResult, Transform, TrxBlocks};
use crate::storage::RepoError;

impl StorageRepo {
    /// A commit its cluster agreed on; `transforms` stand in for the pending
    /// records of blocks this copy never got the pend of (they came from a member
    /// that holds them).
    pub async fn commit_with(
        &self,
        req: CommitRequest,
        transforms: BTreeMap<BlockId, Transform>,
    ) -> Result<CommitResult, RepoError> {
        self.registry.metrics().repo.begin();
        let ids: BTreeSet<BlockId> = req.block_ids.iter().cloned().collect();
        let ops = ids
            .into_iter()
            .map(|id| {
                let op = match transforms.get(&id) {
                    Some(t) => BlockOp::CommitWith {
                        trx: req.trx_id.clone(),
                        rev: req.rev,
                        transform: Arc::new(t.clone()),
                    },
                    None => BlockOp::Commit {
                        trx: req.trx_id.clone(),
                        rev: req.rev,
                    },
                };
                (id, op)
            })
            .collect();
        let r = self
            .run(ops, |p| p.iter().all(|p| p.missing.is_empty()))
            .await
            .map(|prepared| {
                let (_, missing) = gather(prepared);
                if missing.is_empty() {
                    CommitResult::Success
                } else {
                    CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
                }
            });
        self.record(RepoOp::Commit, &r, |v| !v.is_success());
        r
    }

    pub(super) async fn commit_inner(&self, req: CommitRequest) -> Result<CommitResult, RepoError> {
        let ids: BTreeSet<BlockId> = req.block_ids.iter().cloned().collect();
        if ids.is_empty() {
            return Err(RepoError::Invalid("commit names no block".into()));
        }
        let ops = ids
            .into_iter()
            .map(|id| {
                let op = BlockOp::Commit {
                    trx: req.trx_id.clone(),
                    rev: req.rev,
                };
                (id, op)
            })
            .collect();
        let prepared = self
            .run(ops, |p| p.iter().all(|p| p.missing.is_empty()))
            .await?;
        let (_, missing) = gather(prepared);
        Ok(if missing.is_empty() {
            CommitResult::Success
        } else {
            CommitResult::Stale(stale(missing, "stale: a newer revision is committed"))
        })
    }

    pub(super) async fn cancel_inner(&self, trx: TrxBlocks) -> Result<(), RepoError> {
        let ops = trx
            .block_ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|id| {
                let op = BlockOp::Cancel {
                    trx: trx.trx_id.clone(),
                };
                (id.clone(), op)
            })
            .collect();
        self.run(ops, |_| true).await.map(|_| ())
    }
}
