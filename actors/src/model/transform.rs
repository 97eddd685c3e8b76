//! Pure transform application. Every function works on a copy, so an operation
//! that cannot apply leaves the input untouched and returns an error value.

use serde_json::Value;

use super::block::{Block, BlockOperation, Transform};
use super::ids::BlockId;

/// Why a transform could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// Updates or a delete on a block that has no committed (or inserted) base.
    #[error("block {0} has no committed base to update or delete")]
    NoBase(BlockId),
    /// An insert whose header names another block.
    #[error("inserted block's header id {found} does not match block {expected}")]
    HeaderMismatch {
        /// The block being written.
        expected: BlockId,
        /// The id found in the inserted header.
        found: BlockId,
    },
    /// An operation on the reserved `header` field.
    #[error("operation {op} on block {block} targets the reserved field \"header\"")]
    HeaderField {
        /// The block being written.
        block: BlockId,
        /// Position of the operation in the update list.
        op: usize,
    },
    /// A splice on a field that is absent or not an array.
    #[error("operation {op} on block {block}: field {entity:?} is not an array")]
    NotAnArray {
        /// The block being written.
        block: BlockId,
        /// Position of the operation in the update list.
        op: usize,
        /// The field named by the operation.
        entity: String,
    },
    /// A splice whose range falls outside the array.
    #[error(
        "operation {op} on block {block}: splice at {index} removing {delete_count} is outside {entity:?} (length {len})"
    )]
    OutOfRange {
        /// The block being written.
        block: BlockId,
        /// Position of the operation in the update list.
        op: usize,
        /// The field named by the operation.
        entity: String,
        /// Requested start.
        index: u64,
        /// Requested removal count.
        delete_count: u64,
        /// Actual array length.
        len: usize,
    },
}

/// Applies `t` to `prior` (the committed block, if any) and returns the new block,
/// `None` when the result is deleted.
pub fn apply_transform(
    id: &BlockId,
    prior: Option<&Block>,
    t: &Transform,
) -> Result<Option<Block>, TransformError> {
    let mut block = match &t.insert {
        Some(inserted) => {
            check_header(id, inserted)?;
            Some(inserted.clone())
        }
        None => prior.cloned(),
    };
    if let Some(ops) = t.updates.as_ref().filter(|ops| !ops.is_empty()) {
        let target = block
            .as_mut()
            .ok_or_else(|| TransformError::NoBase(id.clone()))?;
        for (i, op) in ops.iter().enumerate() {
            apply_operation(id, i, target, op)?;
        }
    }
    if t.delete.unwrap_or(false) {
        if block.is_none() {
            return Err(TransformError::NoBase(id.clone()));
        }
        block = None;
    }
    Ok(block)
}

/// Checks that a transform could apply to `prior` without building the result.
pub fn check_transform(
    id: &BlockId,
    prior: Option<&Block>,
    t: &Transform,
) -> Result<(), TransformError> {
    apply_transform(id, prior, t).map(|_| ())
}

fn check_header(id: &BlockId, inserted: &Block) -> Result<(), TransformError> {
    if &inserted.header.id != id {
        return Err(TransformError::HeaderMismatch {
            expected: id.clone(),
            found: inserted.header.id.clone(),
        });
    }
    Ok(())
}

/// Applies one operation in place. On error `block` may be partly changed, so
/// callers apply to a copy (as [`apply_transform`] does).
fn apply_operation(
    id: &BlockId,
    op_index: usize,
    block: &mut Block,
    op: &BlockOperation,
) -> Result<(), TransformError> {
    if op.entity == "header" {
        return Err(TransformError::HeaderField {
            block: id.clone(),
            op: op_index,
        });
    }
    let Value::Array(inserted) = &op.inserted else {
        block.fields.insert(op.entity.clone(), op.inserted.clone());
        return Ok(());
    };
    let not_array = || TransformError::NotAnArray {
        block: id.clone(),
        op: op_index,
        entity: op.entity.clone(),
    };
    let Some(Value::Array(target)) = block.fields.get_mut(&op.entity) else {
        return Err(not_array());
    };
    let len = target.len();
    let start = usize::try_from(op.index).ok().filter(|s| *s <= len);
    let end = start.and_then(|s| {
        usize::try_from(op.delete_count)
            .ok()
            .and_then(|d| s.checked_add(d))
            .filter(|e| *e <= len)
    });
    let (Some(start), Some(end)) = (start, end) else {
        return Err(TransformError::OutOfRange {
            block: id.clone(),
            op: op_index,
            entity: op.entity.clone(),
            index: op.index,
            delete_count: op.delete_count,
            len,
        });
    };
    target.splice(start..end, inserted.iter().cloned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::block::BlockHeader;
    use serde_json::json;

    fn id(s: &str) -> BlockId {
        BlockId::new(s).unwrap()
    }

    fn block(items: Value) -> Block {
        Block {
            header: BlockHeader {
                id: id("b"),
                block_type: "T".into(),
                collection_id: id("c"),
            },
            fields: serde_json::from_value(json!({ "items": items, "n": 1 })).unwrap(),
        }
    }

    fn op(entity: &str, index: u64, del: u64, ins: Value) -> BlockOperation {
        BlockOperation {
            entity: entity.into(),
            index,
            delete_count: del,
            inserted: ins,
        }
    }

    fn updates(ops: Vec<BlockOperation>) -> Transform {
        Transform {
            updates: Some(ops),
            ..Transform::default()
        }
    }

    #[test]
    fn splice_and_replace() {
        let b = block(json!([1, 2, 3]));
        let t = updates(vec![
            op("items", 1, 1, json!([9, 8])),
            op("n", 0, 0, json!("x")),
        ]);
        let out = apply_transform(&id("b"), Some(&b), &t).unwrap().unwrap();
        assert_eq!(out.fields["items"], json!([1, 9, 8, 3]));
        assert_eq!(out.fields["n"], json!("x"));
        assert_eq!(b.fields["items"], json!([1, 2, 3]), "input untouched");
    }

    #[test]
    fn insert_then_updates_then_delete() {
        let t = Transform {
            insert: Some(block(json!([]))),
            updates: Some(vec![op("items", 0, 0, json!([1]))]),
            delete: None,
        };
        let out = apply_transform(&id("b"), None, &t).unwrap().unwrap();
        assert_eq!(out.fields["items"], json!([1]));
        let del = Transform {
            delete: Some(true),
            ..t
        };
        assert_eq!(apply_transform(&id("b"), None, &del).unwrap(), None);
    }

    #[test]
    fn errors_leave_block_unchanged() {
        let b = block(json!([1, 2]));
        let cases = [
            op("n", 0, 0, json!([1])),
            op("missing", 0, 0, json!([1])),
            op("items", 4, 0, json!([1])),
            op("items", 2, 2, json!([])),
            op("items", u64::MAX, u64::MAX, json!([])),
            op("header", 0, 0, json!(1)),
        ];
        for bad in cases {
            let t = updates(vec![op("items", 0, 0, json!([0])), bad.clone()]);
            assert!(apply_transform(&id("b"), Some(&b), &t).is_err(), "{bad:?}");
        }
        assert_eq!(b, block(json!([1, 2])));
    }

    #[test]
    fn update_or_delete_without_base_is_error() {
        let t = updates(vec![op("n", 0, 0, json!(2))]);
        assert_eq!(
            apply_transform(&id("b"), None, &t),
            Err(TransformError::NoBase(id("b")))
        );
        let d = Transform {
            delete: Some(true),
            ..Transform::default()
        };
        assert!(apply_transform(&id("b"), None, &d).is_err());
    }

    #[test]
    fn insert_header_must_match() {
        let t = Transform {
            insert: Some(block(json!([]))),
            ..Transform::default()
        };
        assert!(matches!(
            apply_transform(&id("other"), None, &t),
            Err(TransformError::HeaderMismatch { .. })
        ));
    }
}
