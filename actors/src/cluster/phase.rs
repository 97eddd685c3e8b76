//! The two-phase commit of one cluster member for one transaction, as a pure
//! state machine: [`Phase::next`] maps (phase, event) to (phase, action). The
//! member actor persists the new phase before it performs the action, so a
//! restart resumes exactly where it was.

use serde::{Deserialize, Serialize};

use super::record::Tally;

/// Where a member stands on one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Phase {
    /// Nothing seen yet.
    Idle,
    /// Promised to approve; its blocks are reserved until a decision or expiry.
    Promised,
    /// Refused to promise (e.g. a conflicting transaction holds a block).
    Rejected {
        /// Why.
        reason: String,
    },
    /// Decided commit and executed locally (exactly once).
    Committed,
    /// Decided abort (or expired without proof of commit); blocks released.
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
    /// A valid record carrying promises (phase 2, or a peer's answer in recovery).
    Votes(Tally),
    /// The record's coordinator signed a rejecting commit: it decided abort (too
    /// few promises) and will never send a commit decision.
    Abandoned,
    /// The deadline passed; `commit_proven` when some member's record shows
    /// threshold promises and at least one commit.
    Expired {
        /// Whether the commit decision is proven.
        commit_proven: bool,
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
    /// Execute the operation on the local repo, then sign the commit.
    ExecuteAndCommit,
    /// Release the reserved blocks.
    Release,
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
    /// Whether the transaction is decided (and its reservations released).
    pub fn is_decided(&self) -> bool {
        matches!(
            self,
            Self::Committed | Self::Aborted | Self::Rejected { .. }
        )
    }

    /// The next phase and the action to take, for `threshold` approvals.
    pub fn next(&self, ev: &Event, threshold: usize) -> Result<(Phase, Action), TxnError> {
        use Action as A;
        let decided_commit = |t: &Tally| t.approvals >= threshold;
        // Threshold unreachable: too many rejections for the rest to make it.
        let doomed = |t: &Tally| t.members.saturating_sub(t.rejections) < threshold;
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
            (Phase::Idle, Event::Votes(t)) if decided_commit(t) => {
                (Phase::Committed, A::ExecuteAndCommit)
            }
            (Phase::Idle, Event::Votes(_)) => (Phase::Idle, A::Wait),
            // Remembered, so a proposal arriving late is not promised.
            (Phase::Idle, Event::Abandoned) => (Phase::Aborted, A::Wait),
            (Phase::Idle, Event::Expired { .. }) => (Phase::Aborted, A::Wait),

            (Phase::Promised, Event::Proposed { .. }) => (Phase::Promised, A::Repeat),
            (Phase::Promised, Event::Votes(t)) if decided_commit(t) => {
                (Phase::Committed, A::ExecuteAndCommit)
            }
            (Phase::Promised, Event::Votes(t)) if doomed(t) => (Phase::Aborted, A::Release),
            (Phase::Promised, Event::Votes(_)) => (Phase::Promised, A::Wait),
            (Phase::Promised, Event::Abandoned) => (Phase::Aborted, A::Release),
            (
                Phase::Promised,
                Event::Expired {
                    commit_proven: true,
                },
            ) => (Phase::Committed, A::ExecuteAndCommit),
            (
                Phase::Promised,
                Event::Expired {
                    commit_proven: false,
                },
            ) => (Phase::Aborted, A::Release),

            (Phase::Rejected { .. }, Event::Votes(t)) if decided_commit(t) => {
                (Phase::Committed, A::ExecuteAndCommit)
            }
            (p @ Phase::Rejected { .. }, Event::Proposed { .. }) => (p.clone(), A::Repeat),
            (p @ Phase::Rejected { .. }, _) => (p.clone(), A::Wait),

            // Decided: duplicates get the same answer; nothing runs twice.
            (Phase::Committed, Event::Proposed { .. } | Event::Votes(_)) => {
                (Phase::Committed, A::Repeat)
            }
            (Phase::Committed, Event::Expired { .. } | Event::Abandoned) => {
                (Phase::Committed, A::Wait)
            }
            (Phase::Aborted, Event::Votes(t)) if decided_commit(t) => {
                return Err(TxnError {
                    phase: "aborted".into(),
                    event: format!("commit decision {t:?}"),
                })
            }
            (Phase::Aborted, _) => (Phase::Aborted, A::Wait),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(members: usize, approvals: usize, rejections: usize) -> Event {
        Event::Votes(Tally {
            members,
            approvals,
            rejections,
            commits: 0,
        })
    }

    #[test]
    fn normal_path() {
        let (p, a) = Phase::Idle
            .next(&Event::Proposed { conflict: None }, 2)
            .unwrap();
        assert_eq!((p.clone(), a), (Phase::Promised, Action::PromiseApprove));
        let (p, a) = p.next(&votes(3, 1, 0), 2).unwrap();
        assert_eq!((p.clone(), a), (Phase::Promised, Action::Wait));
        let (p, a) = p.next(&votes(3, 2, 0), 2).unwrap();
        assert_eq!((p.clone(), a), (Phase::Committed, Action::ExecuteAndCommit));
        // Redelivery never executes twice.
        assert_eq!(
            p.next(&votes(3, 3, 0), 2).unwrap(),
            (Phase::Committed, Action::Repeat)
        );
        assert_eq!(
            p.next(&Event::Proposed { conflict: None }, 2).unwrap(),
            (Phase::Committed, Action::Repeat)
        );
    }

    #[test]
    fn conflict_rejects_and_abort_releases() {
        let (p, a) = Phase::Idle
            .next(
                &Event::Proposed {
                    conflict: Some("h1".into()),
                },
                2,
            )
            .unwrap();
        assert_eq!(a, Action::PromiseReject("conflict:h1".into()));
        assert!(p.is_decided());
        let (p, a) = Phase::Promised.next(&votes(3, 1, 2), 2).unwrap();
        assert_eq!((p, a), (Phase::Aborted, Action::Release));
    }

    #[test]
    fn expiry_needs_proof_to_commit() {
        assert_eq!(
            Phase::Promised
                .next(
                    &Event::Expired {
                        commit_proven: false
                    },
                    2
                )
                .unwrap(),
            (Phase::Aborted, Action::Release)
        );
        assert_eq!(
            Phase::Promised
                .next(
                    &Event::Expired {
                        commit_proven: true
                    },
                    2
                )
                .unwrap(),
            (Phase::Committed, Action::ExecuteAndCommit)
        );
        assert_eq!(
            Phase::Committed
                .next(
                    &Event::Expired {
                        commit_proven: false
                    },
                    2
                )
                .unwrap()
                .0,
            Phase::Committed
        );
    }

    #[test]
    fn a_member_that_missed_phase_one_follows_the_decision() {
        assert_eq!(
            Phase::Idle.next(&votes(3, 2, 1), 2).unwrap(),
            (Phase::Committed, Action::ExecuteAndCommit)
        );
        assert_eq!(
            Phase::Idle.next(&votes(3, 1, 0), 2).unwrap(),
            (Phase::Idle, Action::Wait)
        );
        let rejected = Phase::Rejected {
            reason: "conflict:x".into(),
        };
        assert_eq!(
            rejected.next(&votes(3, 2, 1), 2).unwrap().1,
            Action::ExecuteAndCommit
        );
    }

    #[test]
    fn an_aborted_member_refuses_a_commit_decision() {
        assert!(Phase::Aborted.next(&votes(3, 2, 0), 2).is_err());
    }

    #[test]
    fn the_coordinators_abort_releases_and_blocks_late_promises() {
        assert_eq!(
            Phase::Promised.next(&Event::Abandoned, 2).unwrap(),
            (Phase::Aborted, Action::Release)
        );
        let (p, _) = Phase::Idle.next(&Event::Abandoned, 2).unwrap();
        assert_eq!(p, Phase::Aborted);
        // A proposal that arrives after the abort gets no promise.
        assert_eq!(
            p.next(&Event::Proposed { conflict: None }, 2).unwrap(),
            (Phase::Aborted, Action::Wait)
        );
        // A committed member stays committed.
        assert_eq!(
            Phase::Committed.next(&Event::Abandoned, 2).unwrap(),
            (Phase::Committed, Action::Wait)
        );
    }
}
