//! Writing again (docs/CONSENSUS.md, "Coordinator"): after a member answered
//! `wrong_cluster` (its view is learned each time, so the write is planned
//! anew), and — for a commit or a cancel — after the cluster refused it because
//! another record held one of its blocks or regions for the moment (a
//! configuration change in flight, or another write's round). A commit or
//! cancel races with nobody: the transaction's pend already holds its blocks,
//! so refusing it to the client would only leave that pend in the way of every
//! later write. Each try is a new record, planned afresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Coordinator;
use crate::model::{CommitResult, ErrorCode, OpResult, RepoError, RepoOperation};

/// How many times a write is planned again after a member answered
/// `wrong_cluster` (its view learned each time).
const WRONG_CLUSTER_RETRIES: usize = 3;

/// The first wait before a refused commit or cancel is proposed again; it
/// doubles up to [`CONFLICT_BACKOFF_MAX`].
const CONFLICT_BACKOFF: Duration = Duration::from_millis(20);
const CONFLICT_BACKOFF_MAX: Duration = Duration::from_millis(320);

impl Coordinator {
    /// [`Self::run_once`], again after a `wrong_cluster`, and a commit or cancel
    /// again after a conflict for up to half the request timeout.
    pub(super) async fn run_retrying(
        self: &Arc<Self>,
        op: &RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        let started = Instant::now();
        let (mut wrong_cluster, mut backoff) = (0, CONFLICT_BACKOFF);
        loop {
            let r = self.run_once(op, forwarded).await;
            match &r {
                // The view was learned from the member that gave it.
                Err(RepoError::WrongCluster { .. }) => {
                    wrong_cluster += 1;
                    if wrong_cluster >= WRONG_CLUSTER_RETRIES {
                        return r;
                    }
                }
                r if refused_by_conflict(op, r)
                    && started.elapsed() + backoff < self.timeout / 2 =>
                {
                    tracing::debug!(kind = ?op.kind(), ?backoff, "refused by a conflict; proposing again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(CONFLICT_BACKOFF_MAX);
                }
                _ => return r,
            }
        }
    }
}

/// Whether `r` is the cluster refusing commit or cancel `op` for too few
/// promises with some member naming a conflicting record (`conflict:<hash>`,
/// docs/CONSENSUS.md "Coordinator", step 2).
fn refused_by_conflict(op: &RepoOperation, r: &Result<OpResult, RepoError>) -> bool {
    let names_conflict =
        |reason: &str| reason.starts_with("cluster refused") && reason.contains("conflict:");
    match (op, r) {
        (RepoOperation::Commit(_), Ok(OpResult::Commit(CommitResult::Stale(s)))) => {
            s.reason.as_deref().is_some_and(names_conflict)
        }
        (
            RepoOperation::Cancel(_),
            Err(RepoError::Remote {
                code: ErrorCode::Conflict,
                message,
            }),
        ) => names_conflict(message),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{
        BlockId, CancelOperation, CommitRequest, PendRequest, StaleFailure, TrxBlocks, TrxId,
    };

    fn trx() -> TrxBlocks {
        TrxBlocks {
            trx_id: TrxId::new("t").unwrap(),
            block_ids: vec![BlockId::new("b").unwrap()],
        }
    }

    fn commit() -> RepoOperation {
        RepoOperation::Commit(CommitRequest {
            trx_id: TrxId::new("t").unwrap(),
            block_ids: vec![BlockId::new("b").unwrap()],
            rev: 2,
            header_id: None,
            tail_id: None,
        })
    }

    fn stale(reason: &str) -> StaleFailure {
        StaleFailure {
            reason: Some(reason.into()),
            ..StaleFailure::default()
        }
    }

    const CONFLICT: &str = "cluster refused (1/3 promises): conflict:abc, conflict:abc";

    #[test]
    fn a_commit_or_cancel_refused_by_a_conflict_is_tried_again() {
        let cancel = RepoOperation::Cancel(CancelOperation { trx_ref: trx() });
        assert!(refused_by_conflict(
            &commit(),
            &Ok(OpResult::Commit(CommitResult::Stale(stale(CONFLICT))))
        ));
        assert!(refused_by_conflict(
            &cancel,
            &Err(RepoError::Remote {
                code: ErrorCode::Conflict,
                message: CONFLICT.into()
            })
        ));
    }

    #[test]
    fn other_answers_are_final() {
        // The engine's own refusal (behind, not pending) and refusals without a
        // conflict (members unreachable) are answered as they are.
        for reason in [
            "commit rev 2 is behind latest rev 3",
            "cluster refused (0/3 promises): dial failed, dial failed",
        ] {
            assert!(!refused_by_conflict(
                &commit(),
                &Ok(OpResult::Commit(CommitResult::Stale(stale(reason))))
            ));
        }
        assert!(!refused_by_conflict(
            &commit(),
            &Err(RepoError::InDoubt("x".into()))
        ));
        // A pend that lost a race is the client's to retry or not.
        let pend = RepoOperation::Pend(PendRequest {
            trx_id: TrxId::new("t").unwrap(),
            rev: Some(2),
            transforms: Default::default(),
            policy: crate::model::PendPolicy::Fail,
        });
        assert!(!refused_by_conflict(
            &pend,
            &Ok(OpResult::Pend(crate::model::PendResult::Stale(stale(
                CONFLICT
            ))))
        ));
    }
}
