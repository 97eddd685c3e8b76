//! A [`WriteOp`] as a keyspace record: which keyspace, which key, what value
//! (sealed MessagePack, `None` to remove) and which pending id it touches.

use serde::Serialize;

use super::keys::{key, pend_key};
use super::EmbeddedRawStorage;
use crate::model::{BlockId, TrxId};
use crate::storage::{seal, StorageError, WriteOp};

#[derive(Clone, Copy)]
pub(super) enum Space {
    Meta = 0,
    Pend = 1,
    Data = 2,
    Txn = 3,
}

pub(super) struct Encoded {
    pub(super) space: Space,
    /// For pending records: which (block, trx) the pending index must update.
    pub(super) pend: Option<(BlockId, TrxId)>,
    pub(super) key: Vec<u8>,
    pub(super) value: Option<Vec<u8>>,
}

impl EmbeddedRawStorage {
    pub(super) fn encode(op: &WriteOp) -> Result<Encoded, StorageError> {
        fn val<T: Serialize + ?Sized>(v: &T) -> Result<Option<Vec<u8>>, StorageError> {
            rmp_serde::to_vec_named(v)
                .map(|v| Some(seal::seal_value(&v)))
                .map_err(|e| StorageError::Encode {
                    what: "messagepack record".into(),
                    message: e.to_string(),
                })
        }
        let data = |key: Vec<u8>, value| Encoded {
            space: Space::Data,
            pend: None,
            key,
            value,
        };
        let txn = |hash: &str, value| -> Result<Encoded, StorageError> {
            crate::model::validate_id("message hash", hash).map_err(|e| StorageError::Encode {
                what: "txn key".into(),
                message: e.to_string(),
            })?;
            Ok(Encoded {
                space: Space::Txn,
                pend: None,
                key: hash.as_bytes().to_vec(),
                value,
            })
        };
        let pend = |block: &BlockId, trx: &TrxId, value| Encoded {
            space: Space::Pend,
            pend: Some((block.clone(), trx.clone())),
            key: pend_key(block, trx),
            value,
        };
        Ok(match op {
            WriteOp::PutPending {
                block,
                trx,
                transform,
            } => pend(block, trx, val(&**transform)?),
            WriteOp::DeletePending { block, trx } => pend(block, trx, None),
            WriteOp::PutTransaction {
                block,
                trx,
                transform,
            } => data(
                key(block, b't', trx.as_str().as_bytes()),
                val(&**transform)?,
            ),
            WriteOp::PutMaterialized { block, trx, value } => data(
                key(block, b'b', trx.as_str().as_bytes()),
                val(&value.as_deref())?,
            ),
            WriteOp::DeleteRevision { block, rev } => {
                data(key(block, b'r', &rev.to_be_bytes()), None)
            }
            WriteOp::DeleteTransaction { block, trx } => {
                data(key(block, b't', trx.as_str().as_bytes()), None)
            }
            WriteOp::DeleteMaterialized { block, trx } => {
                data(key(block, b'b', trx.as_str().as_bytes()), None)
            }
            WriteOp::PutRevision { block, rev, trx } => {
                data(key(block, b'r', &rev.to_be_bytes()), val(trx)?)
            }
            WriteOp::PutTxn { hash, bytes } => txn(hash, Some(seal::seal_value(bytes)))?,
            WriteOp::DeleteTxn { hash } => txn(hash, None)?,
            WriteOp::PutMeta { block, meta } => Encoded {
                space: Space::Meta,
                pend: None,
                key: block.as_str().as_bytes().to_vec(),
                value: val(meta)?,
            },
            WriteOp::DeleteMeta { block } => Encoded {
                space: Space::Meta,
                pend: None,
                key: block.as_str().as_bytes().to_vec(),
                value: None,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Space;
    use crate::model::{BlockId, TrxId};
    use crate::storage::embedded::EmbeddedRawStorage;
    use crate::storage::WriteOp;

    #[test]
    fn a_pending_deletion_is_a_pend_key_that_names_its_block_and_trx() {
        let block = BlockId::new("b1").unwrap();
        let trx = TrxId::new("t1").unwrap();
        let op = WriteOp::DeletePending {
            block: block.clone(),
            trx: trx.clone(),
        };
        let e = EmbeddedRawStorage::encode(&op).unwrap();
        assert!(matches!(e.space, Space::Pend));
        assert_eq!(e.key, b"b1/t1".to_vec());
        assert_eq!(e.pend, Some((block, trx)));
        assert!(e.value.is_none());
    }

    #[test]
    fn a_revision_deletion_is_a_data_key_and_a_bad_txn_hash_is_refused() {
        let op = WriteOp::DeleteRevision {
            block: BlockId::new("b1").unwrap(),
            rev: 258,
        };
        let e = EmbeddedRawStorage::encode(&op).unwrap();
        assert!(matches!(e.space, Space::Data));
        let mut want = b"b1/r/".to_vec();
        want.extend_from_slice(&258u64.to_be_bytes());
        assert_eq!(e.key, want);
        assert!(e.pend.is_none());
        assert!(e.value.is_none());
        let bad = WriteOp::DeleteTxn {
            hash: "not/an/id".into(),
        };
        assert!(EmbeddedRawStorage::encode(&bad).is_err());
    }
}
