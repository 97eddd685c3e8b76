//! Writes whose blocks belong to several clusters: one part per cluster, each
//! agreed by its own cluster only, and one answer merged from the parts'.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::Groups;
use super::Coordinator;
use crate::model::{
    CancelOperation, CommitRequest, CommitResult, OpResult, PendCommitRequest, PendCommitResult,
    PendResult, PendSuccess, RepoError, RepoOperation, StaleFailure, TrxBlocks,
};

impl Coordinator {
    /// A pendCommit whose blocks belong to several clusters cannot be one record:
    /// it runs as its pend, then its commit, each split by cluster. A pend that
    /// fails anywhere is cancelled everywhere, and so is a commit refused at its
    /// commit point (nothing committed then); once the commit point committed, the
    /// transaction is committed: it is never cancelled (see [`Self::commit_split`]).
    pub(super) async fn pend_commit_split(
        self: &Arc<Self>,
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
            this.run_split(cancel_groups, op, forwarded).await
        };
        let pend = self
            .run_split(groups.clone(), RepoOperation::Pend(pc.pend), forwarded)
            .await?
            .into_pend()?;
        if !pend.is_success() {
            // Parts that did pend are dropped, as after any failed pend.
            cancel(self.clone()).await?;
            return Ok(PendCommitResult { pend, commit: None });
        }
        let commit = self
            .commit_split(groups, pc.commit, forwarded)
            .await?
            .into_commit()?;
        if !commit.is_success() {
            // Refused at the commit point: nothing is committed anywhere.
            cancel(self.clone()).await?;
        }
        Ok(PendCommitResult {
            pend,
            commit: Some(commit),
        })
    }

    /// A write whose blocks belong to several clusters: one part per cluster, each
    /// agreed by its own cluster only; a commit runs by [`Self::commit_split`],
    /// other writes run their parts concurrently. The answer merges the parts'.
    pub(super) async fn run_split(
        self: &Arc<Self>,
        groups: Groups,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        if let RepoOperation::Commit(c) = op {
            return self.commit_split(groups, c, forwarded).await;
        }
        let parts = groups.iter().map(|(members, blocks)| {
            self.run_part(members, blocks, op.restricted_to(blocks), forwarded)
        });
        let mut results = Vec::new();
        for r in futures::future::join_all(parts).await {
            results.push(r?);
        }
        merge_results(&op, results)
    }

    /// A commit across clusters. Its **commit point** is the part holding the
    /// `tailId` (the collection's log tail), or else the part holding its first
    /// block: that part commits first, and the commit stands or falls with it. A
    /// refused commit point committed nothing. Past it, every other part must land:
    /// a part refused for now (its block held by another transaction) is retried
    /// with backoff; one still missing when the request's time is up, or stale
    /// (its block moved past the revision), makes the answer in doubt, never a
    /// cancellation (docs/CONSENSUS.md, "Writes across clusters").
    async fn commit_split(
        self: &Arc<Self>,
        groups: Groups,
        c: CommitRequest,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        let op = RepoOperation::Commit(c.clone());
        let point = c
            .tail_id
            .clone()
            .filter(|t| c.block_ids.contains(t))
            .or_else(|| c.block_ids.iter().min().cloned());
        let (first, mut rest): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(_, blocks)| point.as_ref().is_some_and(|p| blocks.contains(p)));
        for (members, blocks) in first {
            let r = self
                .run_part(&members, &blocks, op.restricted_to(&blocks), forwarded)
                .await?;
            if !r.is_success() {
                return Ok(r);
            }
        }
        crate::faults::after_commit_point(c.trx_id.as_str()).await;
        let until = Instant::now() + self.timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            let runs = rest.iter().map(|(members, blocks)| {
                self.run_part(members, blocks, op.restricted_to(blocks), forwarded)
            });
            let results = futures::future::join_all(runs).await;
            let mut again = Vec::new();
            for (part, r) in rest.into_iter().zip(results) {
                match r {
                    Ok(r) if r.is_success() => {}
                    Ok(OpResult::Commit(CommitResult::Stale(s))) if s.missing.is_some() => {
                        return Err(RepoError::InDoubt(format!(
                            "transaction {} committed at its commit point, but blocks {:?} moved past revision {}: that part cannot land",
                            c.trx_id, part.1, c.rev
                        )))
                    }
                    r => {
                        tracing::debug!(trx = %c.trx_id, blocks = ?part.1, result = ?r, "a part past the commit point has not landed yet");
                        again.push(part)
                    }
                }
            }
            if again.is_empty() {
                return Ok(OpResult::Commit(CommitResult::Success));
            }
            if Instant::now() >= until {
                let left: Vec<_> = again.iter().map(|(_, b)| b).collect();
                return Err(RepoError::InDoubt(format!(
                    "transaction {} committed at its commit point; blocks {left:?} have not committed yet: retry the commit",
                    c.trx_id
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
            rest = again;
        }
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
