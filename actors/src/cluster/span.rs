//! The tracing span of one transaction — its messageHash and the transaction ids
//! of the operations it carries — entered by the coordinator for both rounds and
//! by every member for each record it handles, so one write can be followed
//! through every node's logs (`RUST_LOG=info`; filter on `trx` or `hash`).

use std::fmt;

use super::record::ClusterRecord;
use crate::model::RepoOperation;

/// The `txn` span of `record`.
pub(crate) fn txn_span(record: &ClusterRecord) -> tracing::Span {
    let kind = if record.message.change.is_some() {
        "change"
    } else {
        "write"
    };
    tracing::info_span!(
        "txn",
        hash = %record.message_hash,
        trx = %TrxIds(&record.message.operations),
        kind,
    )
}

/// The transaction ids of `ops`, comma-separated in order, each once (a get has
/// none): formatted only when a subscriber records the span.
struct TrxIds<'a>(&'a [RepoOperation]);

impl fmt::Display for TrxIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen: Vec<&str> = Vec::new();
        for op in self.0 {
            let id = match op {
                RepoOperation::Pend(p) => p.trx_id.as_str(),
                RepoOperation::Commit(c) => c.trx_id.as_str(),
                RepoOperation::Cancel(c) => c.trx_ref.trx_id.as_str(),
                RepoOperation::PendCommit(pc) => pc.pend.trx_id.as_str(),
                RepoOperation::Get(_) => continue,
            };
            if seen.contains(&id) {
                continue;
            }
            if !seen.is_empty() {
                f.write_str(",")?;
            }
            f.write_str(id)?;
            seen.push(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{
        BlockGets, BlockId, CommitRequest, PendCommitRequest, PendPolicy, PendRequest, Transforms,
        TrxId,
    };

    fn pend(trx: &str) -> PendRequest {
        PendRequest {
            trx_id: TrxId::new(trx).unwrap(),
            rev: Some(1),
            transforms: Transforms::default(),
            policy: PendPolicy::Fail,
        }
    }

    fn commit(trx: &str) -> CommitRequest {
        CommitRequest {
            trx_id: TrxId::new(trx).unwrap(),
            block_ids: vec![BlockId::new("b").unwrap()],
            rev: 1,
            header_id: None,
            tail_id: None,
        }
    }

    #[test]
    fn trx_ids_are_listed_once_each_in_order_without_gets() {
        let ops = vec![
            RepoOperation::Get(BlockGets {
                block_ids: vec![BlockId::new("b").unwrap()],
                context: None,
                consistency: None,
            }),
            RepoOperation::Pend(pend("t2")),
            RepoOperation::Commit(commit("t1")),
            RepoOperation::PendCommit(PendCommitRequest {
                pend: pend("t2"),
                commit: commit("t2"),
            }),
        ];
        assert_eq!(TrxIds(&ops).to_string(), "t2,t1");
        assert_eq!(TrxIds(&[]).to_string(), "");
    }
}
