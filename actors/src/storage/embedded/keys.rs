//! Key layout: `{blockId}/{trxId}` in the `pend` keyspace and
//! `{blockId}/{tag}/{suffix}` in `data` (revisions big-endian, so they sort).

use crate::model::{BlockId, TrxId};

pub(super) fn key(block: &BlockId, tag: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = prefix(block, tag);
    k.extend_from_slice(suffix);
    k
}

pub(super) fn pend_key(block: &BlockId, trx: &TrxId) -> Vec<u8> {
    format!("{block}/{trx}").into_bytes()
}

pub(super) fn prefix(block: &BlockId, tag: u8) -> Vec<u8> {
    let id = block.as_str().as_bytes();
    let mut k = Vec::with_capacity(id.len() + 3 + 16);
    k.extend_from_slice(id);
    k.extend_from_slice(&[b'/', tag, b'/']);
    k
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{key, pend_key, prefix};
    use crate::model::{BlockId, TrxId};

    fn block(id: &str) -> BlockId {
        BlockId::new(id).unwrap()
    }

    #[test]
    fn a_record_key_is_the_tag_prefix_then_the_suffix() {
        let b = block("b1");
        assert_eq!(prefix(&b, b't'), b"b1/t/".to_vec());
        assert_eq!(key(&b, b't', b"x9"), b"b1/t/x9".to_vec());
        assert!(key(&b, b'b', b"x9").starts_with(&prefix(&b, b'b')));
        assert!(!key(&b, b'b', b"x9").starts_with(&prefix(&b, b't')));
    }

    #[test]
    fn revision_keys_sort_by_revision_and_a_pending_key_is_block_slash_trx() {
        let b = block("b1");
        let rev_key = |rev: u64| key(&b, b'r', &rev.to_be_bytes());
        assert!(rev_key(1) < rev_key(2));
        assert!(rev_key(255) < rev_key(256));
        assert!(rev_key(u64::MAX - 1) < rev_key(u64::MAX));
        let trx = TrxId::new("t1").unwrap();
        assert_eq!(pend_key(&b, &trx), b"b1/t1".to_vec());
    }
}
