//! Cluster members: one [`ClusterMember`] actor per in-flight transaction (keyed
//! by messageHash) runs the phase machine of [`super::phase`], persists each new
//! phase before it votes, reserves the transaction's blocks while it is
//! undecided, and applies a decision on the local StorageRepo exactly once.
//!
//! - [`directory`]: validation, routing, reservations, retention;
//! - [`reservations`]: who holds which block, and each proposer's share;
//! - [`execute`]: applying a decision on this copy;
//! - [`cancelled`]: the cancels applied here, so a late pend stays cancelled;
//! - [`deadlines`]: the deadlines of the pends applied here, for stray pendings;
//! - [`recovery`]: a promise whose decision never came.

mod cancelled;
mod deadlines;
mod directory;
mod execute;
mod recovery;
mod reservations;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use directory::{MemberDirectory, DEFAULT_MAX_ACTIVE, DEFAULT_MAX_LIFETIME, RETENTION};

use self::execute::Applied;
use self::reservations::{Claim, Refusal};
use super::decision::decide;
use super::phase::{Action, Event, Phase, TxnError};
use super::record::{abandoned, majority, quorum_of, voters, ClusterRecord, RecordError, VoteType};
use super::store::TxnState;
use super::votes::sign_commit;
use crate::metrics::HandlerTimer;
use crate::model::{BlockId, ErrorCode, OpOutcome, OpResult, RepoOperation};
use crate::storage::{StorageError, WriteFuture};

/// Why a member refused a record.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The record is invalid; nothing changed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record contradicts what this member decided.
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// Persisting the transaction failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The member actor is gone.
    #[error("cluster member unavailable: {0}")]
    Unavailable(String),
    /// Too many transactions are undecided here; retry later.
    #[error("busy: {0}")]
    Busy(String),
    /// The record's peer set is not the configuration this member holds of its
    /// regions (given): nothing was reserved or applied.
    #[error("wrong_cluster: the record's peers are not the configuration this member holds of its regions")]
    WrongCluster(Vec<crate::model::RegionView>),
    /// A configuration change adds a peer this network's allow list leaves out.
    #[error("not_allowed: {0} is not on this network's allow list of members")]
    NotAllowed(String),
}

impl ClusterError {
    /// The protocol error code (docs/PROTOCOL.md).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Record(RecordError::NotAMember) => ErrorCode::NotAMember,
            Self::Record(_) => ErrorCode::InvalidRecord,
            Self::Txn(_) => ErrorCode::Decided,
            Self::Storage(_) => ErrorCode::Storage,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Busy(_) => ErrorCode::Busy,
            Self::WrongCluster(_) => ErrorCode::WrongCluster,
            Self::NotAllowed(_) => ErrorCode::NotAllowed,
        }
    }

    /// The error as a code, a message and (for `wrong_cluster`) the member's view.
    pub fn to_failure(&self) -> crate::model::Failure {
        let mut f = crate::model::Failure::new(self.code(), self.to_string());
        if let Self::WrongCluster(view) = self {
            f.view = view.clone();
        }
        f
    }
}

/// The blocks an operation touches (reserved while undecided).
pub fn operation_blocks(op: &RepoOperation) -> BTreeSet<BlockId> {
    match op {
        RepoOperation::Pend(p) => p.transforms.block_ids(),
        RepoOperation::Commit(c) => c.block_ids.iter().cloned().collect(),
        RepoOperation::Cancel(c) => c.trx_ref.block_ids.iter().cloned().collect(),
        RepoOperation::PendCommit(pc) => {
            let mut blocks = pc.pend.transforms.block_ids();
            blocks.extend(pc.commit.block_ids.iter().cloned());
            blocks
        }
        RepoOperation::Get(_) => BTreeSet::new(),
    }
}

/// Each operation's kind and transaction, for logs.
fn op_names(ops: &[RepoOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            RepoOperation::Pend(p) => format!("pend {}", p.trx_id),
            RepoOperation::Commit(c) => format!("commit {} at {}", c.trx_id, c.rev),
            RepoOperation::Cancel(c) => format!("cancel {}", c.trx_ref.trx_id),
            RepoOperation::PendCommit(pc) => format!("pendCommit {}", pc.pend.trx_id),
            RepoOperation::Get(_) => "get".into(),
        })
        .collect()
}

/// The blocks of every operation of a message.
pub fn message_blocks(ops: &[RepoOperation]) -> BTreeSet<BlockId> {
    ops.iter().flat_map(operation_blocks).collect()
}

/// First wait before a member that holds a decision it could not apply yet (its
/// copy is behind) tries again; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One transaction's member.
pub struct ClusterMember {
    dir: Arc<MemberDirectory>,
    hash: String,
    state: Option<TxnState>,
    /// Next wait before retrying a decision this copy could not apply yet.
    retry: Duration,
    /// Started from a stored state, or retrying: it may have applied before.
    again: bool,
    /// Counted toward `max-active-transactions` (a write, not a change).
    counted: bool,
}

impl ClusterMember {
    fn new(
        dir: Arc<MemberDirectory>,
        hash: String,
        state: Option<TxnState>,
        counted: bool,
    ) -> Self {
        if counted {
            dir.active.fetch_add(1, Ordering::Relaxed);
        }
        let again = state.is_some();
        Self {
            dir,
            hash,
            state,
            retry: RETRY_FIRST,
            again,
            counted,
        }
    }

    fn phase(&self) -> Phase {
        self.state.as_ref().map_or(Phase::Idle, |s| s.phase.clone())
    }

    fn claim(&self) -> Claim {
        self.state
            .as_ref()
            .map(|s| MemberDirectory::claim_of(&s.record))
            .unwrap_or_default()
    }

    /// Sets the new state in memory and returns the write that makes it durable;
    /// the reply waits for that write.
    fn stage(
        &mut self,
        phase: Phase,
        record: ClusterRecord,
        outcomes: Option<Vec<OpOutcome>>,
    ) -> Result<WriteFuture, ClusterError> {
        self.stage_with(phase, record, outcomes, false)
    }

    /// [`Self::stage`], lazily written when `lazy`.
    fn stage_with(
        &mut self,
        phase: Phase,
        record: ClusterRecord,
        outcomes: Option<Vec<OpOutcome>>,
        lazy: bool,
    ) -> Result<WriteFuture, ClusterError> {
        let outcomes = outcomes.or_else(|| self.state.as_ref().and_then(|s| s.outcomes.clone()));
        let state = TxnState {
            phase,
            record,
            outcomes,
        };
        let write = self.dir.store.save_with(&self.hash, &state, lazy)?;
        self.state = Some(state);
        Ok(write)
    }

    /// Keeps `phase` in memory only (a refusal changes nothing durable).
    fn remember(&mut self, phase: Phase, record: ClusterRecord) {
        self.state = Some(TxnState {
            phase,
            record,
            outcomes: None,
        });
    }

    /// Gives back this transaction's slot of `max-active-transactions`, once.
    fn free_slot(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.dir.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The proposer of the stored (or given) record.
    fn proposer(record: &ClusterRecord) -> String {
        record.message.coordinator.clone().unwrap_or_default()
    }
}

impl Actor for ClusterMember {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.free_slot();
        if let Some(s) = self.state.as_ref().filter(|s| s.phase.is_decided()) {
            self.dir
                .retire(&self.hash, s.record.message.expiration.unwrap_or(0));
        }
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        let Some(state) = self.state.as_ref() else {
            return;
        };
        if !state.phase.holds() {
            return;
        }
        // Resumed after a restart: hold the blocks again until decided.
        let (claim, proposer) = (self.claim(), Self::proposer(&state.record));
        if let Err(holder) = self.dir.reserve(&claim, &self.hash, &proposer, false) {
            tracing::warn!(hash = %self.hash, ?holder, "resumed transaction overlaps another");
        }
        match state.phase {
            // The decision may be known already (this member was down while it was
            // taken): ask the other members soon, not only at the deadline.
            Phase::Promised => {
                ctx.run_later(recovery::RESUME_QUERY_DELAY, |act, ctx| act.recover(ctx));
                self.arm_recovery(ctx);
            }
            _ => self.arm_retry(ctx),
        }
    }
}

/// A record for this member's transaction.
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
struct Update(ClusterRecord);

/// What a handler decided: the reply, and the write it waits for (if any).
type Staged = Result<(ClusterRecord, Option<WriteFuture>), ClusterError>;

impl ClusterMember {
    /// Replies once `staged`'s write is durable; on a failed write, releases the
    /// blocks and stops (the next delivery reloads what is on disk).
    fn finish(
        staged: Staged,
        claim: Claim,
        timer: HandlerTimer,
    ) -> ResponseActFuture<Self, Result<ClusterRecord, ClusterError>> {
        let (record, write) = match staged {
            Ok(x) => x,
            Err(e) => return refuse(e),
        };
        let write = async move {
            match write {
                Some(w) => w.await,
                None => Ok(()),
            }
        };
        Box::pin(
            fut::wrap_future::<_, Self>(write).map(move |written, act, ctx| {
                drop(timer);
                match written {
                    Ok(()) => {
                        // Decided: the next delivery reloads the decided state. Never
                        // promised (votes below threshold from a member that missed
                        // phase 1): nothing to keep.
                        if act.phase().is_decided() || act.state.is_none() {
                            ctx.stop();
                        }
                        Ok(record)
                    }
                    Err(e) => {
                        act.dir.release(&claim, &act.hash);
                        ctx.stop();
                        Err(ClusterError::Storage(e))
                    }
                }
            }),
        )
    }

    /// Signs a rejecting commit on `record` (this member will never apply it),
    /// releases the blocks and persists `Aborted` before the vote leaves.
    fn fence(&mut self, mut record: ClusterRecord, reason: String) -> Staged {
        let vote = sign_commit(&self.dir.key, &record, VoteType::Reject, Some(reason), None);
        record.commits.insert(self.dir.me.clone(), vote);
        let claim = MemberDirectory::claim_of(&record);
        self.dir.release(&claim, &self.hash);
        self.dir.decided(&self.hash);
        self.stage(Phase::Aborted, record.clone(), None)
            .map(|w| (record, Some(w)))
    }

    /// Applies the decision carried by `record` (a phase-2 record, or one a peer
    /// showed in recovery): commits, fences, or waits with the blocks reserved.
    fn apply(
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
            async move { dir.apply(&record, &decision, again).await }
        };
        let claim = MemberDirectory::claim_of(&record);
        let held = claim.clone();
        Box::pin(fut::wrap_future::<_, Self>(work).then(move |applied, act, ctx| {
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
}

impl ClusterMember {
    /// A change this member fenced, shown applied by a joint majority: its
    /// regions move to the new configuration all the same (this member's own
    /// vote stays its fence).
    fn apply_proven_change(
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

/// A reply ready now.
fn ready(
    r: Result<ClusterRecord, ClusterError>,
) -> ResponseActFuture<ClusterMember, Result<ClusterRecord, ClusterError>> {
    Box::pin(fut::ready(r))
}

/// A refusal, ready now. A member left holding nothing (it never promised, or it
/// has decided) stops: a refused record must not keep a slot of
/// `max-active-transactions`, or a peer sending records that are refused
/// (`wrong_cluster`, `busy` past its share) would fill every slot.
fn refuse(
    e: ClusterError,
) -> ResponseActFuture<ClusterMember, Result<ClusterRecord, ClusterError>> {
    Box::pin(fut::ready(Err(e)).map(|r, act: &mut ClusterMember, ctx| {
        if !act.phase().holds() {
            // Free before the reply leaves: the peer's next record finds it.
            act.free_slot();
            ctx.stop();
        }
        r
    }))
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

impl Handler<Update> for ClusterMember {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;

    fn handle(&mut self, Update(incoming): Update, ctx: &mut Context<Self>) -> Self::Result {
        let timer = self.dir.metrics.start();
        // A member that has not decided checks the record against the
        // configurations it holds now: it reserves nothing and applies nothing
        // for another configuration (one it left, or never had).
        if !matches!(self.phase(), Phase::Committed | Phase::Aborted) {
            if let Err(e) = self.dir.check_config(&incoming) {
                return AtomicResponse::new(refuse(e));
            }
        }
        let claim = MemberDirectory::claim_of(&incoming);
        let quorum = quorum_of(&incoming);
        if incoming.message.change.is_some()
            && quorum.met_by(&voters(&incoming.commits, VoteType::Approve))
        {
            // Proof that a joint majority applied a change: kept to show members
            // that missed it; a member that fenced it takes it all the same.
            match self.phase() {
                Phase::Aborted => {
                    return AtomicResponse::new(self.apply_proven_change(incoming, timer))
                }
                Phase::Committed => self.dir.configs.changes().note(&incoming),
                _ => {}
            }
        }
        let event = if abandoned(&incoming) {
            Event::Abandoned
        } else if incoming.promises.is_empty() {
            Event::Proposed {
                conflict: self.dir.conflict(&claim, &self.hash),
            }
        } else {
            Event::Votes {
                decided: quorum.met_by(&voters(&incoming.promises, VoteType::Approve)),
                doomed: quorum.lost_to(&voters(&incoming.promises, VoteType::Reject)),
            }
        };
        let (next, action) = match self.phase().next(&event) {
            Ok(x) => x,
            Err(e) => return AtomicResponse::new(refuse(e.into())),
        };
        let me = self.dir.me.clone();
        let staged: Staged = match action {
            Action::PromiseApprove => {
                let proposer = Self::proposer(&incoming);
                match self.dir.reserve(&claim, &self.hash, &proposer, true) {
                    Ok(()) => {
                        let mut r = incoming;
                        // A pend proposed anew after a cancel of its transaction.
                        self.dir.cancelled.promised(&r);
                        // Held by the reservation from here: exact until decided.
                        let state = self.dir.states(&claim.blocks);
                        let vote = self.dir.promise(&r, VoteType::Approve, None, Some(state));
                        r.promises.insert(me, vote);
                        let staged = self.stage(next, r.clone(), None).map(|w| (r, Some(w)));
                        self.arm_recovery(ctx);
                        staged
                    }
                    Err(Refusal::Held(holder)) => {
                        let reason = format!("conflict:{holder}");
                        let mut r = incoming;
                        let vote =
                            self.dir
                                .promise(&r, VoteType::Reject, Some(reason.clone()), None);
                        r.promises.insert(me, vote);
                        self.remember(Phase::Rejected { reason }, r.clone());
                        Ok((r, None))
                    }
                    Err(Refusal::OverShare { held }) => Err(ClusterError::Busy(format!(
                        "proposer {proposer} holds {held} undecided transactions here; retry later"
                    ))),
                }
            }
            Action::PromiseReject(reason) => {
                let mut r = incoming;
                let vote = self.dir.promise(&r, VoteType::Reject, Some(reason), None);
                r.promises.insert(me, vote);
                self.remember(next, r.clone());
                Ok((r, None))
            }
            Action::Release => {
                self.dir.release(&claim, &self.hash);
                self.dir.decided(&self.hash);
                self.stage(next, incoming.clone(), None)
                    .map(|w| (incoming, Some(w)))
            }
            Action::Fence => {
                let r = self.state.as_ref().map_or(incoming, |s| s.record.clone());
                self.dir.fenced();
                self.fence(r, "fenced: no decision found past the deadline".into())
            }
            Action::Repeat | Action::Wait => {
                // The stored record as signed (votes over it stay verifiable).
                let r = self.state.as_ref().map_or(incoming, |s| s.record.clone());
                if next != self.phase() && !matches!(next, Phase::Rejected { .. }) {
                    self.stage(next, r.clone(), None).map(|w| (r, Some(w)))
                } else {
                    Ok((r, None))
                }
            }
            Action::Apply => return AtomicResponse::new(self.apply(incoming, timer)),
        };
        AtomicResponse::new(Self::finish(staged, claim, timer))
    }
}
