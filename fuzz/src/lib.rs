//! The fuzz targets' checks, one module per target (fuzz_targets/ calls them
//! under libFuzzer; `tests/fuzz_corpus.rs` in the main workspace replays every
//! seed and saved input through them on stable). Every check is deterministic:
//! the same input always takes the same path and verdict.

pub mod cluster_record;
pub mod frame;
pub mod storage_meta;
pub mod transform;

use optimystic_actors::model::RepoMessage;
use optimystic_actors::net::{codes, decode_request, encode, Encoding};

/// Decodes `data` as a repo request in `enc`. A request that decodes must
/// re-encode, in either encoding, to bytes that decode to the same operation and
/// expiration; a refusal must carry one of the two request-decoding error codes
/// and a message.
pub fn check_request(enc: Encoding, data: &[u8]) {
    match decode_request(enc, data) {
        Ok((op, expiration)) => {
            let msg = RepoMessage {
                operations: vec![op.clone()],
                expiration,
                coordinator: None,
                epochs: Default::default(),
                change: None,
            };
            for again in [Encoding::Json, Encoding::MsgPack] {
                let bytes = encode(again, &msg).expect("a decoded request encodes");
                let (op2, exp2) = decode_request(again, &bytes)
                    .unwrap_or_else(|e| panic!("re-encoded request refused in {again:?}: {e:?}"));
                assert_eq!(op2, op, "operation changed by a {again:?} round trip");
                assert_eq!(
                    exp2, expiration,
                    "expiration changed by a {again:?} round trip"
                );
            }
        }
        Err(e) => {
            assert!(
                e.error.code == codes::BAD_REQUEST || e.error.code == codes::UNKNOWN_OPERATION,
                "unexpected error code {:?}",
                e.error.code
            );
            assert!(!e.error.message.is_empty(), "error reply without a message");
        }
    }
}
