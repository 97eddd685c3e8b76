//! The blocks a message's operations touch (what a member reserves while a
//! record is undecided), and their names for logs.

use std::collections::BTreeSet;

use crate::model::{BlockId, RepoOperation};

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
pub(super) fn op_names(ops: &[RepoOperation]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn op(json: &str) -> RepoOperation {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_operation_reserves_the_blocks_it_names() {
        let pend = op(
            r#"{"pend": {"trxId": "t1", "rev": 2, "policy": "f", "transforms": {
            "inserts": {"a": {"header": {"id": "a", "type": "T", "collectionId": "c"}}},
            "updates": {"b": []}, "deletes": ["c"]}}}"#,
        );
        let commit = op(r#"{"commit": {"trxId": "t1", "blockIds": ["a", "d"], "rev": 2}}"#);
        let names =
            |s: BTreeSet<BlockId>| s.iter().map(|b| b.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(names(operation_blocks(&pend)), ["a", "b", "c"]);
        assert_eq!(names(operation_blocks(&commit)), ["a", "d"]);
        assert_eq!(
            names(message_blocks(&[pend.clone(), commit.clone()])),
            ["a", "b", "c", "d"]
        );
        assert_eq!(op_names(&[pend, commit]), ["pend t1", "commit t1 at 2"]);
    }
}
