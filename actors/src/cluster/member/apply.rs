//! A decided record applied on this copy: the commit vote signed over the
//! effect, the `Committed` state written lazily, a decision this copy cannot
//! apply fenced, one it is behind on retried; and a change fenced here but
//! shown applied by a joint majority.

use actix::prelude::*;
use tracing::Instrument;

use super::super::decision::decide;
use super::super::phase::Phase;
use super::super::record::{majority, ClusterRecord, VoteType};
use super::super::votes::sign_commit;
use super::execute::Applied;
use super::{blocks::op_names, ready, ClusterError, ClusterMember, MemberDirectory, Staged};
use crate::metrics::HandlerTimer;
use crate::model::{OpOutcome, OpResult, RepoOperation};

impl ClusterMember {
    /// Applies the decision carried by `record` (a phase-2 record, or one a peer
    /// showed in recovery): commits, fences, or waits with the blocks reserved.
    pub(super) fn apply(
        &mut self,
        record: ClusterRecord,
        timer: HandlerTimer,
    ) -> ResponseActFuture<Self, Result<ClusterRecord, ClusterError>> {
        let decision = decide(&record, majority(record.peers.len()));
        let dir = self.dir.clone();
        // A member that promised in this actor's lifetime has not applied it yet.
        let again = self.again || self.phase() == Phase::Decided;
        let work = {
            let (record, decision) = (record.clone(), decision.clone());
            async move { dir.apply(&record, &decision, again).await }.instrument(self.span.clone())
        };
        let claim = MemberDirectory::claim_of(&record);
        let held = claim.clone();
        Box::pin(fut::wrap_future::<_, Self>(work).then(move |applied, act, ctx| {
            let _span = act.span.clone().entered();
            let staged: Staged = match applied {
                Applied::Done { outcomes, effect } => {
                    drop(timer);
                    tracing::debug!(hash = %act.hash, ops = ?op_names(&record.message.operations), ?effect, "applied a decision");
                    let mut r = record;
                    let vote = sign_commit(&act.dir.key, &r, VoteType::Approve, None, Some(effect));
                    r.commits.insert(act.dir.me.clone(), vote);
                    act.dir.release(&claim, &act.hash);
                    act.dir.decided(&act.hash);
                    act.dir.cancelled.note(&r);
                    act.dir.pend_deadlines.note(&r);
                    mark_fresh(&act.dir, &r.message.operations, &outcomes);
                    if act.dir.results.len() < 65_536 {
                        act.dir.results.insert(act.hash.clone(), outcomes.clone());
                    }
                    // The application is durable already; the commit vote does not
                    // wait for the Committed state, which is written lazily (it
                    // survives a crash of this process at once, a power loss within
                    // LAZY_SYNC). If it is lost, this member restarts in its
                    // previous phase, learns the decision again and re-applies,
                    // which the repo's idempotent operations absorb.
                    let write =
                        match act.stage_with(Phase::Committed, r.clone(), Some(outcomes), true) {
                            Ok(w) => w,
                            Err(e) => return ready(Err(e)),
                        };
                    let hash = act.hash.clone();
                    ctx.spawn(fut::wrap_future::<_, Self>(write).map(move |written, _, ctx| {
                        if let Err(e) = written {
                            tracing::error!(%hash, error = %e, "cannot persist committed state; recovery will settle it");
                        }
                        ctx.stop();
                    }));
                    return ready(Ok(r));
                }
                Applied::Fence(reason) => {
                    tracing::warn!(hash = %act.hash, ops = ?op_names(&record.message.operations), %reason, "fencing a decision this copy cannot apply");
                    act.fence(record, reason)
                }
                Applied::Unwritten | Applied::Behind(_) => {
                    tracing::debug!(hash = %act.hash, "decision not applied here yet; retrying");
                    let proposer = Self::proposer(&record);
                    let _ = act.dir.reserve(&claim, &act.hash, &proposer, false);
                    let staged = act
                        .stage(Phase::Decided, record.clone(), None)
                        .map(|w| (record, Some(w)));
                    act.arm_retry(ctx);
                    staged
                }
            };
            Self::finish(staged, held, timer)
        }))
    }

    /// A change this member fenced, shown applied by a joint majority: its
    /// regions move to the new configuration all the same (this member's own
    /// vote stays its fence).
    pub(super) fn apply_proven_change(
        &mut self,
        record: ClusterRecord,
        timer: HandlerTimer,
    ) -> ResponseActFuture<Self, Result<ClusterRecord, ClusterError>> {
        let dir = self.dir.clone();
        let work = async move {
            let Some(change) = record.message.change.clone() else {
                return Err(ClusterError::Unavailable(
                    "not a configuration change".into(),
                ));
            };
            dir.apply_proven_change(&record, &change)
                .await
                .map(|()| record)
        };
        Box::pin(fut::wrap_future::<_, Self>(work).map(move |r, _, ctx| {
            drop(timer);
            ctx.stop();
            r
        }))
    }
}

/// Blocks an agreed commit just succeeded on are current here.
fn mark_fresh(dir: &MemberDirectory, ops: &[RepoOperation], outcomes: &[OpOutcome]) {
    let Some(net) = dir.net.get() else {
        return;
    };
    let members =
        crate::cluster::fresh::epoch(net.member_view().fingerprint, dir.configs.generation());
    for (op, r) in ops.iter().zip(outcomes) {
        let blocks = match (op, r) {
            (RepoOperation::Commit(c), Ok(OpResult::Commit(res))) if res.is_success() => {
                &c.block_ids
            }
            (RepoOperation::PendCommit(pc), Ok(OpResult::PendCommit(res))) if res.is_success() => {
                &pc.commit.block_ids
            }
            _ => continue,
        };
        dir.fresh.written(members, blocks.iter().cloned());
    }
}
