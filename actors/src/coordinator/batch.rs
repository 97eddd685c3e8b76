//! Lanes and batches: client writes whose blocks have the same peer set share a
//! lane; a write starts a record at once when none of its lane is running,
//! otherwise it joins the oldest waiting batch whose blocks are disjoint from its
//! own. One record then carries many writes: one round of votes and one storage
//! sync per member for all of them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::agree::Agreement;
use super::plan::Plan;
use super::Coordinator;
use crate::cluster::operation_blocks;
use crate::model::{
    BlockId, CommitResult, ErrorCode, OpResult, PendCommitResult, PendResult, RepoError,
    RepoOperation, StaleFailure,
};

/// Most records running at once per peer set; further writes wait in batches.
/// One: on the 3-nodes-on-2-cores bench, 1 round gave 2,173 txn/s with 64 in
/// flight, 2 rounds 1,671 and 4 rounds 1,435 (larger batches spread each record's
/// signatures, verifications and syncs over more writes); a lone writer never
/// waits either way.
const MAX_ROUNDS: usize = 1;
/// Most operations in one batch (one record).
const MAX_BATCH: usize = 64;
/// Most JSON bytes of operations in one batch, so a record stays well inside the
/// 1 MiB cluster frame (a single larger write still runs, alone).
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The clients waiting on one peer set: rounds running, batches waiting.
#[derive(Default)]
pub(super) struct Lane {
    running: usize,
    waiting: VecDeque<Batch>,
}

/// Where a client's answer goes.
type Reply = tokio::sync::oneshot::Sender<Result<OpResult, RepoError>>;

/// Writes that will share one record.
struct Batch {
    plan: Plan,
    bytes: usize,
    blocks: BTreeSet<BlockId>,
    ops: Vec<RepoOperation>,
    replies: Vec<Reply>,
}

impl Batch {
    fn new(plan: Plan, op: RepoOperation, blocks: BTreeSet<BlockId>, reply: Reply) -> Self {
        Self {
            plan,
            bytes: 0,
            blocks,
            ops: vec![op],
            replies: vec![reply],
        }
    }

    fn push(&mut self, op: RepoOperation, blocks: BTreeSet<BlockId>, size: usize, reply: Reply) {
        self.bytes += size;
        self.blocks.extend(blocks);
        self.ops.push(op);
        self.replies.push(reply);
    }
}

impl Coordinator {
    /// Queues `op` for a round with its peer set: it starts one at once while fewer
    /// than [`MAX_ROUNDS`] run for that peer set, otherwise it joins the oldest
    /// waiting batch it fits in (disjoint blocks, fewer than [`MAX_BATCH`]
    /// operations). Sequential writes therefore never wait, and under load one
    /// record carries many writes.
    pub(super) async fn submit(
        self: &Arc<Self>,
        plan: Plan,
        op: RepoOperation,
    ) -> Result<OpResult, RepoError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = plan.peers.keys().cloned().collect::<Vec<_>>().join(",");
        let blocks = operation_blocks(&op);
        let start = {
            let mut lanes = self.lanes.lock();
            let lane = lanes.entry(key.clone()).or_default();
            if lane.running < MAX_ROUNDS {
                lane.running += 1;
                Some(Batch::new(plan, op, blocks, tx))
            } else {
                let size = serde_json::to_vec(&op).map_or(MAX_BATCH_BYTES, |v| v.len());
                match lane.waiting.iter_mut().find(|b| {
                    b.ops.len() < MAX_BATCH
                        && b.bytes + size <= MAX_BATCH_BYTES
                        && b.blocks.is_disjoint(&blocks)
                }) {
                    Some(b) => b.push(op, blocks, size, tx),
                    None => {
                        let mut b = Batch::new(plan, op, blocks, tx);
                        b.bytes = size;
                        lane.waiting.push_back(b);
                    }
                }
                None
            }
        };
        if let Some(batch) = start {
            actix_rt::spawn(self.clone().drive(key, batch));
        }
        rx.await
            .map_err(|_| RepoError::Unavailable("coordinator stopped".into()))?
    }

    /// Runs `batch`, then the batches that waited for it, until the lane is idle.
    async fn drive(self: Arc<Self>, key: String, mut batch: Batch) {
        loop {
            self.round(batch).await;
            let next = {
                let mut lanes = self.lanes.lock();
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                match lane.waiting.pop_front() {
                    Some(b) => b,
                    None => {
                        lane.running = lane.running.saturating_sub(1);
                        if lane.running == 0 {
                            lanes.remove(&key);
                        }
                        return;
                    }
                }
            };
            batch = next;
        }
    }

    /// One record for the whole batch; every waiting client gets its operation's
    /// result. A refused batch of several is retried one operation per record, so
    /// one conflicting write does not fail the others with it.
    async fn round(&self, batch: Batch) {
        let Batch {
            plan, ops, replies, ..
        } = batch;
        match self.agree(&plan, ops.clone()).await {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r.map_err(RepoError::from));
                }
            }
            Err(Agreement::Refused(reason)) if ops.len() > 1 => {
                tracing::debug!(ops = ops.len(), %reason, "batch refused; retrying one by one");
                let solo = ops.into_iter().map(|op| {
                    let plan = &plan;
                    async move {
                        match self.agree(plan, vec![op.clone()]).await {
                            Ok(mut r) => match r.pop() {
                                Some(r) => r.map_err(RepoError::from),
                                None => Err(RepoError::Unavailable(
                                    "no result for the operation".into(),
                                )),
                            },
                            Err(Agreement::Refused(reason)) => refused(&op, reason),
                            Err(Agreement::WrongCluster(view)) => Err(wrong_cluster(view)),
                            Err(Agreement::Failed(e)) => Err(e),
                        }
                    }
                });
                let results = futures::future::join_all(solo).await;
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(Agreement::Refused(reason)) => {
                for (reply, op) in replies.into_iter().zip(&ops) {
                    let _ = reply.send(refused(op, reason.clone()));
                }
            }
            Err(Agreement::WrongCluster(view)) => {
                for r in replies {
                    let _ = r.send(Err(wrong_cluster(view.clone())));
                }
            }
            Err(Agreement::Failed(e)) => {
                let failure = e.to_failure();
                for r in replies {
                    let _ = r.send(Err(failure.clone().into()));
                }
            }
        }
    }
}

/// A write refused because a member holds another configuration.
fn wrong_cluster(view: Vec<crate::model::RegionView>) -> RepoError {
    RepoError::WrongCluster {
        message: "a member holds another configuration of the blocks' regions".into(),
        view,
    }
}

/// A refused write's answer: `{"success":false,"reason"}` for pend and commit (a
/// retryable stale result, as the seed reports it); an error for a cancel.
pub(super) fn refused(op: &RepoOperation, reason: String) -> Result<OpResult, RepoError> {
    let stale = || StaleFailure {
        reason: Some(reason.clone()),
        missing: None,
        pending: None,
    };
    match op {
        RepoOperation::Pend(_) => Ok(OpResult::Pend(PendResult::Stale(stale()))),
        RepoOperation::Commit(_) => Ok(OpResult::Commit(CommitResult::Stale(stale()))),
        RepoOperation::PendCommit(_) => Ok(OpResult::PendCommit(PendCommitResult {
            pend: PendResult::Stale(stale()),
            commit: None,
        })),
        _ => Err(RepoError::Remote {
            code: ErrorCode::Conflict,
            message: reason,
        }),
    }
}
