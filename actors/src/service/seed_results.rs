//! Refusals as the seed's JSON clients read them. The seed's `PendResult` and
//! `CommitResult` express a write that was not done as `{"success":false,
//! "reason"}`; its client takes any other reply for a result, so an error frame
//! for a commit of a transaction no longer pending resolves as a result with no
//! `success` and breaks the caller. On the JSON repo protocol, a pend or commit
//! refused for a reason those types can carry — not pending, already pending
//! differently, too many pending, held by another transaction — is answered as
//! such a result, its reason `"<code>: <message>"`. Everything else stays an
//! error frame: malformed requests, and failures that are not an outcome of the
//! write (busy, unavailable, in doubt, storage), and every error on the
//! MessagePack protocol.

use crate::model::{
    CommitResult, ErrorCode, OpKind, OpResult, PendResult, RepoError, StaleFailure,
};

/// The result the seed's client expects for an operation of `kind` refused with
/// `e`, when it can express it.
pub(crate) fn as_seed_result(kind: OpKind, e: &RepoError) -> Option<OpResult> {
    let f = e.to_failure();
    let expressible = matches!(
        f.code,
        ErrorCode::NotPending
            | ErrorCode::PendConflict
            | ErrorCode::TooManyPending
            | ErrorCode::Conflict
    );
    if !expressible {
        return None;
    }
    let refused = StaleFailure {
        reason: Some(format!("{}: {}", f.code.as_str(), f.message)),
        ..StaleFailure::default()
    };
    match kind {
        OpKind::Pend => Some(OpResult::Pend(PendResult::Stale(refused))),
        OpKind::Commit => Some(OpResult::Commit(CommitResult::Stale(refused))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    #[test]
    fn only_refusals_of_pends_and_commits_become_results() {
        let not_pending: RepoError = Failure::new(ErrorCode::NotPending, "t on b").into();
        let result = as_seed_result(OpKind::Commit, &not_pending).unwrap();
        assert_eq!(
            serde_json::to_value(result.wire()).unwrap(),
            serde_json::json!({"success": false, "reason": "not_pending: t on b"})
        );
        let busy: RepoError = Failure::new(ErrorCode::Busy, "full").into();
        assert!(as_seed_result(OpKind::Commit, &busy).is_none());
        assert!(as_seed_result(OpKind::Cancel, &not_pending).is_none());
        assert!(as_seed_result(OpKind::PendCommit, &not_pending).is_none());
    }
}
