//! Why a member refused a record, and the protocol error code each reason
//! answers with (docs/PROTOCOL.md).

use super::super::phase::TxnError;
use super::super::record::RecordError;
use crate::model::ErrorCode;
use crate::storage::StorageError;

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

impl From<ClusterError> for crate::model::RepoError {
    /// A member's refusal as a repo error, by its protocol code.
    fn from(e: ClusterError) -> Self {
        e.to_failure().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RepoError;

    #[test]
    fn a_refusal_becomes_the_repo_error_of_its_code() {
        let busy: RepoError = ClusterError::Busy("4096 transactions in progress".into()).into();
        let f = busy.to_failure();
        assert_eq!(f.code, ErrorCode::Busy);
        assert!(f.message.contains("4096 transactions"), "{}", f.message);
        let wrong: RepoError = ClusterError::WrongCluster(Vec::new()).into();
        assert_eq!(wrong.to_failure().code, ErrorCode::WrongCluster);
        assert!(matches!(wrong, RepoError::WrongCluster { .. }), "{wrong:?}");
    }
}
