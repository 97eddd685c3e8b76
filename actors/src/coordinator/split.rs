//! Writes whose blocks belong to several clusters: one part per cluster, each
//! agreed by its own cluster only, and one answer merged from the parts'.

use std::sync::Arc;

use super::plan::{Groups, Plan, View};
use super::Coordinator;
use crate::model::{
    CancelOperation, CommitResult, OpResult, PendCommitRequest, PendCommitResult, PendResult,
    PendSuccess, RepoError, RepoOperation, StaleFailure, TrxBlocks,
};

impl Coordinator {
    /// A pendCommit whose blocks belong to several clusters cannot be one record:
    /// it runs as its pend, then its commit (tail first, as any commit), each split
    /// by cluster; a commit that fails cancels the pend everywhere, so the outcome
    /// is the same all-or-nothing one as within a cluster.
    pub(super) async fn pend_commit_split(
        self: &Arc<Self>,
        view: &View,
        groups: Groups,
        pc: PendCommitRequest,
        forwarded: bool,
    ) -> Result<PendCommitResult, RepoError> {
        let trx_ref = TrxBlocks {
            trx_id: pc.commit.trx_id.clone(),
            block_ids: pc.commit.block_ids.clone(),
        };
        let cancel_groups = groups.clone();
        let cancel = |this: Arc<Self>| async move {
            let op = RepoOperation::Cancel(CancelOperation { trx_ref });
            this.run_split(view, cancel_groups, op, forwarded).await
        };
        let pend = self
            .run_split(
                view,
                groups.clone(),
                RepoOperation::Pend(pc.pend),
                forwarded,
            )
            .await?
            .into_pend()?;
        if !pend.is_success() {
            // Parts that did pend are dropped, as after any failed pend.
            cancel(self.clone()).await?;
            return Ok(PendCommitResult { pend, commit: None });
        }
        let commit = self
            .run_split(view, groups, RepoOperation::Commit(pc.commit), forwarded)
            .await?
            .into_commit()?;
        if !commit.is_success() {
            cancel(self.clone()).await?;
        }
        Ok(PendCommitResult {
            pend,
            commit: Some(commit),
        })
    }

    /// A write whose blocks belong to several clusters: one part per cluster, each
    /// agreed by its own cluster only. A commit naming a `tailId` commits the tail's
    /// part first (the collection's commit point) and the other parts only if that
    /// succeeded; all other parts run concurrently. The answer merges the parts'.
    pub(super) async fn run_split(
        self: &Arc<Self>,
        view: &View,
        groups: Groups,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        let mut parts: Vec<(Plan, RepoOperation, bool)> = groups
            .iter()
            .map(|(cluster, blocks)| {
                let first = match &op {
                    RepoOperation::Commit(c) => {
                        c.tail_id.as_ref().is_some_and(|t| blocks.contains(t))
                    }
                    _ => false,
                };
                (
                    self.plan(view, cluster, blocks),
                    op.restricted_to(blocks),
                    first,
                )
            })
            .collect();
        let mut results = Vec::new();
        if let Some(i) = parts.iter().position(|(_, _, first)| *first) {
            let (plan, part, _) = parts.remove(i);
            let r = self.run_part(plan, part, forwarded).await?;
            if !r.is_success() {
                return Ok(r);
            }
            results.push(r);
        }
        let rest = parts
            .into_iter()
            .map(|(plan, part, _)| self.run_part(plan, part, forwarded));
        for r in futures::future::join_all(rest).await {
            results.push(r?);
        }
        merge_results(&op, results)
    }
}

/// The answer to a split write from its parts' answers: success when every part
/// succeeded; otherwise a stale failure gathering every failed part's reasons,
/// missing transactions and conflicting pendings (parts that succeeded stay
/// pended, and a client cancels them as after any failed pend).
fn merge_results(op: &RepoOperation, parts: Vec<OpResult>) -> Result<OpResult, RepoError> {
    let mut stale: Option<StaleFailure> = None;
    let mut fold = |s: StaleFailure| {
        let into = stale.get_or_insert_with(Default::default);
        into.reason = match (into.reason.take(), s.reason) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        if let Some(m) = s.missing {
            into.missing.get_or_insert_with(Vec::new).extend(m);
        }
        if let Some(p) = s.pending {
            into.pending.get_or_insert_with(Vec::new).extend(p);
        }
    };
    Ok(match op {
        RepoOperation::Pend(_) => {
            let mut ok = PendSuccess {
                pending: Vec::new(),
                block_ids: Vec::new(),
            };
            for part in parts {
                match part.into_pend()? {
                    PendResult::Success(s) => {
                        ok.pending.extend(s.pending);
                        ok.block_ids.extend(s.block_ids);
                    }
                    PendResult::Stale(s) => fold(s),
                }
            }
            OpResult::Pend(match stale {
                Some(s) => PendResult::Stale(s),
                None => PendResult::Success(ok),
            })
        }
        RepoOperation::Commit(_) => {
            for part in parts {
                if let CommitResult::Stale(s) = part.into_commit()? {
                    fold(s);
                }
            }
            OpResult::Commit(match stale {
                Some(s) => CommitResult::Stale(s),
                None => CommitResult::Success,
            })
        }
        RepoOperation::Cancel(_) => OpResult::Cancel,
        other => {
            return Err(RepoError::Invalid(format!(
                "a {} does not run split by cluster",
                other.name()
            )))
        }
    })
}
