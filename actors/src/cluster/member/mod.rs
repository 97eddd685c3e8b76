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
//! - [`recovery`]: a promise whose decision never came;
//! - [`apply`]: a decided record's application and the commit vote over it;
//! - [`error`]: why a member refuses a record;
//! - [`blocks`]: the blocks a message's operations touch.

mod apply;
mod blocks;
mod cancelled;
mod deadlines;
mod directory;
mod error;
mod execute;
mod recovery;
mod reservations;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use blocks::{message_blocks, operation_blocks};
pub use directory::{MemberDirectory, DEFAULT_MAX_ACTIVE, DEFAULT_MAX_LIFETIME, RETENTION};
pub use error::ClusterError;

use self::reservations::{Claim, Refusal};
use super::phase::{Action, Event, Phase};
use super::record::{abandoned, quorum_of, voters, ClusterRecord, VoteType};
use super::span::txn_span;
use super::store::TxnState;
use super::votes::sign_commit;
use crate::metrics::HandlerTimer;
use crate::model::OpOutcome;
use crate::storage::WriteFuture;

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
    /// The transaction's span ([`super::span`]), once its record is known.
    span: tracing::Span,
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
        let span = state
            .as_ref()
            .map_or_else(tracing::Span::none, |s| txn_span(&s.record));
        Self {
            dir,
            hash,
            state,
            retry: RETRY_FIRST,
            again,
            counted,
            span,
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
        // Named from a record that passed the check (or this member's own).
        if self.span.is_none() {
            self.span = txn_span(&incoming);
        }
        let _span = self.span.clone().entered();
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

/// A record of `ops` (each given as its JSON, as a peer sends it) expiring at
/// `expiration`, for the unit tests of the member's parts.
#[cfg(test)]
fn test_record(expiration: u64, ops: &[&str]) -> ClusterRecord {
    #![allow(clippy::unwrap_used)]
    let message = crate::model::RepoMessage {
        operations: ops
            .iter()
            .map(|op| serde_json::from_str(op).unwrap())
            .collect(),
        expiration: Some(expiration),
        coordinator: Some("a".into()),
        epochs: Default::default(),
        change: None,
    };
    ClusterRecord {
        message_hash: "h".into(),
        peers: Default::default(),
        message: message.into(),
        promises: Default::default(),
        commits: Default::default(),
    }
}
