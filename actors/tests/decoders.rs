//! Robustness of every decoder against arbitrary input: no panic, a clear error or
//! a valid value, and nothing else. (The bounded fuzzing scripts go further.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::executor::block_on;
use optimystic_actors::cluster::{validate, ClusterRecord};
use optimystic_actors::model::*;
use optimystic_actors::net::{decode_request, read_frame, Encoding, Frame};
use optimystic_actors::storage::BlockMeta;
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON values, to build plausible-but-wrong messages.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9_/.\\-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("operations".to_string()),
                    Just("get".to_string()),
                    Just("pend".to_string()),
                    Just("blockIds".to_string()),
                    Just("trxId".to_string()),
                    Just("transforms".to_string()),
                    Just("header".to_string()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn frame_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..32) {
        let r = block_on(read_frame(&mut futures::io::Cursor::new(bytes.clone()), max)).unwrap();
        if let Frame::Data(d) = r {
            prop_assert!(d.len() <= max && d.len() < bytes.len());
        }
    }

    #[test]
    fn request_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Encoding::Json, &bytes);
        let _ = decode_request(Encoding::MsgPack, &bytes);
    }

    #[test]
    fn structured_garbage_gets_an_error_or_a_valid_request(v in json_value()) {
        let json = serde_json::to_vec(&v).unwrap();
        let mp = rmp_serde::to_vec_named(&v).unwrap();
        for (enc, bytes) in [(Encoding::Json, &json), (Encoding::MsgPack, &mp)] {
            match decode_request(enc, bytes) {
                Ok((op, _)) => {
                    // Whatever decoded is a fully valid request: every id validated.
                    let back = serde_json::to_value(&op).unwrap();
                    prop_assert!(serde_json::from_value::<RepoOperation>(back).is_ok());
                }
                Err(e) => prop_assert!(!e.error.code.is_empty() && !e.error.message.is_empty()),
            }
        }
    }

    #[test]
    fn transform_application_never_panics(block in json_value(), ops in json_value()) {
        let id = BlockId::new("b").unwrap();
        let mut base = serde_json::json!({"header": {"id": "b", "type": "t", "collectionId": "c"}});
        if let (Some(m), Value::Object(extra)) = (base.as_object_mut(), block) {
            m.extend(extra.into_iter().filter(|(k, _)| k != "header"));
        }
        let base: Block = serde_json::from_value(base).unwrap();
        if let Ok(updates) = serde_json::from_value::<Vec<BlockOperation>>(ops) {
            let t = Transform { updates: Some(updates), ..Transform::default() };
            let _ = apply_transform(&id, Some(&base), &t);
            let _ = apply_transform(&id, None, &t);
        }
    }

    #[test]
    fn record_validation_never_panics(v in json_value(), now in any::<u64>()) {
        if let Ok(r) = serde_json::from_value::<ClusterRecord>(v) {
            let _ = (now, validate(&r));
        }
    }

    #[test]
    fn metadata_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128), v in json_value()) {
        let _ = serde_json::from_slice::<BlockMeta>(&bytes);
        let _ = rmp_serde::from_slice::<BlockMeta>(&bytes);
        let _ = serde_json::from_value::<BlockMeta>(v);
    }
}
