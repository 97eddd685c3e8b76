//! The two-phase commit of one cluster member for one transaction, as a pure
//! state machine: [`Phase::next`] maps (phase, event) to (phase, action). The
//! member actor persists the new phase before it performs the action, so a
//! restart resumes exactly where it was.
//!
//! A decided record's outcome is what a majority of its members durably did:
//! each member either **applies** the decision (an approving commit vote) or
//! **fences** it (a rejecting commit vote: it never will), never both. Commit
//! needs a majority of applications, abort a majority of fences (or the
//! coordinator's abort, which it signs only when no decision was ever sent), so
//! the two cannot both happen. docs/CONSENSUS.md has the argument.

use serde::{Deserialize, Serialize};

/// Where a member stands on one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Phase {
    /// Nothing seen yet.
    Idle,
    /// Promised to approve; its blocks are reserved until this member decides.
    Promised,
    /// Refused to promise (e.g. a conflicting transaction holds a block). Not
    /// persisted: a refusal changes nothing.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Holds the commit decision but could not apply it yet (its copy of a block
    /// is behind and no peer restored it): blocks stay reserved, and it keeps
    /// trying.
    Decided,
    /// Applied the decision (exactly once) and signed an approving commit.
    Committed,
    /// Will never apply it: the coordinator aborted, or this member fenced it.
    Aborted,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A valid phase-1 record: `conflict` names an undecided transaction on an
    /// overlapping block, if any.
    Proposed {
        /// The conflicting transaction's messageHash.
        conflict: Option<String>,
    },
    /// A valid record carrying promises (phase 2, or a peer's answer in recovery):
    /// `decided` when its approving promises meet the record's quorum (the
    /// decision), `doomed` when its rejections leave the quorum out of reach.
    Votes {
        /// The approvals meet the quorum.
        decided: bool,
        /// The rejections leave the quorum out of reach.
        doomed: bool,
    },
    /// The record's coordinator signed a rejecting commit: it decided abort (too
    /// few promises) and never sent a decision.
    Abandoned,
    /// Recovery past the deadline: `decision` when some member holds the commit
    /// decision (threshold approving promises), which this member then applies;
    /// otherwise it fences.
    Expired {
        /// Whether a peer showed the commit decision.
        decision: bool,
    },
}

/// What the member must do after persisting the new phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Reserve the blocks and sign an approving promise.
    PromiseApprove,
    /// Sign a rejecting promise with this reason.
    PromiseReject(String),
    /// Send again the vote already given (duplicate delivery).
    Repeat,
    /// Apply the decision on the local repo (catching up first), then sign an
    /// approving commit; or fence when this copy holds another write.
    Apply,
    /// Release the reserved blocks.
    Release,
    /// Sign a rejecting commit (never apply) and release the blocks.
    Fence,
    /// Nothing (waiting for more votes).
    Wait,
}

/// A transition that cannot happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not valid in phase {phase}")]
pub struct TxnError {
    /// The phase.
    pub phase: String,
    /// The event.
    pub event: String,
}

impl Phase {
    /// Whether this member has decided (applied or fenced; reservations released).
    pub fn is_decided(&self) -> bool {
        matches!(
            self,
            Self::Committed | Self::Aborted | Self::Rejected { .. }
        )
    }

    /// Whether this member still holds the transaction's blocks.
    pub fn holds(&self) -> bool {
        matches!(self, Self::Promised | Self::Decided)
    }

    /// The next phase and the action to take.
    pub fn next(&self, ev: &Event) -> Result<(Phase, Action), TxnError> {
        use Action as A;
        let decision = |e: &Event| matches!(e, Event::Votes { decided: true, .. });
        let doomed = |e: &Event| matches!(e, Event::Votes { doomed: true, .. });
        Ok(match (self, ev) {
            (Phase::Idle, Event::Proposed { conflict: None }) => {
                (Phase::Promised, A::PromiseApprove)
            }
            (Phase::Idle, Event::Proposed { conflict: Some(h) }) => {
                let reason = format!("conflict:{h}");
                (
                    Phase::Rejected {
                        reason: reason.clone(),
                    },
                    A::PromiseReject(reason),
                )
            }
            // A member that missed phase 1, or refused it, follows the decision.
            (
                Phase::Idle | Phase::Promised | Phase::Rejected { .. } | Phase::Decided,
                e @ Event::Votes { .. },
            ) if decision(e) => (Phase::Decided, A::Apply),
            (Phase::Idle, Event::Votes { .. }) => (Phase::Idle, A::Wait),
            // Remembered, so a proposal arriving late is not promised.
            (Phase::Idle | Phase::Rejected { .. }, Event::Abandoned) => (Phase::Aborted, A::Wait),
            (Phase::Idle, Event::Expired { .. }) => (Phase::Aborted, A::Wait),

            (Phase::Promised, Event::Proposed { .. }) => (Phase::Promised, A::Repeat),
            (Phase::Promised, e @ Event::Votes { .. }) if doomed(e) => (Phase::Aborted, A::Release),
            (Phase::Promised, Event::Votes { .. }) => (Phase::Promised, A::Wait),
            (Phase::Promised, Event::Abandoned) => (Phase::Aborted, A::Release),
            (Phase::Promised, Event::Expired { decision: true }) => (Phase::Decided, A::Apply),
            (Phase::Promised, Event::Expired { decision: false }) => (Phase::Aborted, A::Fence),

            (Phase::Decided, Event::Expired { .. }) => (Phase::Decided, A::Apply),
            (Phase::Decided, _) => (Phase::Decided, A::Wait),

            (p @ Phase::Rejected { .. }, Event::Proposed { .. }) => (p.clone(), A::Repeat),
            (p @ Phase::Rejected { .. }, _) => (p.clone(), A::Wait),

            // Decided: duplicates get the same answer; nothing runs twice.
            (Phase::Committed, Event::Proposed { .. } | Event::Votes { .. }) => {
                (Phase::Committed, A::Repeat)
            }
            (Phase::Committed, Event::Expired { .. } | Event::Abandoned) => {
                (Phase::Committed, A::Wait)
            }
            (Phase::Aborted, e @ Event::Votes { .. }) if decision(e) => {
                return Err(TxnError {
                    phase: "aborted".into(),
                    event: "commit decision".into(),
                })
            }
            (Phase::Aborted, _) => (Phase::Aborted, A::Wait),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Votes of a record of `members` with `approvals` and `rejections`, counted
    /// against a simple majority.
    fn votes(members: usize, approvals: usize, rejections: usize) -> Event {
        let threshold = members / 2 + 1;
        Event::Votes {
            decided: approvals >= threshold,
            doomed: members.saturating_sub(rejections) < threshold,
        }
    }

    #[test]
    fn normal_path() {
        let (p, a) = Phase::Idle
            .next(&Event::Proposed { conflict: None })
            .unwrap();
        assert_eq!((p.clone(), a), (Phase::Promised, Action::PromiseApprove));
        let (p, a) = p.next(&votes(3, 1, 0)).unwrap();
        assert_eq!((p.clone(), a), (Phase::Promised, Action::Wait));
        let (p, a) = p.next(&votes(3, 2, 0)).unwrap();
        assert_eq!((p, a), (Phase::Decided, Action::Apply));
        // Once applied, redelivery never applies twice.
        assert_eq!(
            Phase::Committed.next(&votes(3, 3, 0)).unwrap(),
            (Phase::Committed, Action::Repeat)
        );
        assert_eq!(
            Phase::Committed
                .next(&Event::Proposed { conflict: None })
                .unwrap(),
            (Phase::Committed, Action::Repeat)
        );
    }

    #[test]
    fn conflict_rejects_and_abort_releases() {
        let (p, a) = Phase::Idle
            .next(&Event::Proposed {
                conflict: Some("h1".into()),
            })
            .unwrap();
        assert_eq!(a, Action::PromiseReject("conflict:h1".into()));
        assert!(p.is_decided());
        let (p, a) = Phase::Promised.next(&votes(3, 1, 2)).unwrap();
        assert_eq!((p, a), (Phase::Aborted, Action::Release));
    }

    #[test]
    fn expiry_applies_a_decision_found_and_otherwise_fences() {
        assert_eq!(
            Phase::Promised
                .next(&Event::Expired { decision: false })
                .unwrap(),
            (Phase::Aborted, Action::Fence)
        );
        assert_eq!(
            Phase::Promised
                .next(&Event::Expired { decision: true })
                .unwrap(),
            (Phase::Decided, Action::Apply)
        );
        // A member holding the decision keeps trying; it never fences.
        assert_eq!(
            Phase::Decided
                .next(&Event::Expired { decision: false })
                .unwrap(),
            (Phase::Decided, Action::Apply)
        );
        assert_eq!(
            Phase::Committed
                .next(&Event::Expired { decision: false })
                .unwrap()
                .0,
            Phase::Committed
        );
    }

    #[test]
    fn a_member_that_missed_phase_one_follows_the_decision() {
        assert_eq!(
            Phase::Idle.next(&votes(3, 2, 1)).unwrap(),
            (Phase::Decided, Action::Apply)
        );
        assert_eq!(
            Phase::Idle.next(&votes(3, 1, 0)).unwrap(),
            (Phase::Idle, Action::Wait)
        );
        let rejected = Phase::Rejected {
            reason: "conflict:x".into(),
        };
        assert_eq!(rejected.next(&votes(3, 2, 1)).unwrap().1, Action::Apply);
    }

    #[test]
    fn an_aborted_member_refuses_a_commit_decision() {
        assert!(Phase::Aborted.next(&votes(3, 2, 0)).is_err());
    }

    #[test]
    fn the_coordinators_abort_releases_and_blocks_late_promises() {
        assert_eq!(
            Phase::Promised.next(&Event::Abandoned).unwrap(),
            (Phase::Aborted, Action::Release)
        );
        let (p, _) = Phase::Idle.next(&Event::Abandoned).unwrap();
        assert_eq!(p, Phase::Aborted);
        // A proposal that arrives after the abort gets no promise.
        assert_eq!(
            p.next(&Event::Proposed { conflict: None }).unwrap(),
            (Phase::Aborted, Action::Wait)
        );
        // A committed member stays committed.
        assert_eq!(
            Phase::Committed.next(&Event::Abandoned).unwrap(),
            (Phase::Committed, Action::Wait)
        );
    }
}
