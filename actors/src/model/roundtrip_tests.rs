//! Wire round-trips of the data model through JSON and MessagePack.

use serde_json::json;

use super::*;

fn rich_block() -> Block {
    serde_json::from_value(json!({
        "header": {"id": "b1", "type": "leaf", "collectionId": "c1"},
        "nested": {"a": [1, {"b": null}], "deep": {"x": {"y": [true, false]}}},
        "maxSafe": 9_007_199_254_740_992u64,
        "negative": -9_007_199_254_740_991i64,
        "float": 1.5,
        "wholeFloat": 2.0,
        "tiny": 1e-300,
        "text": "ünïcødé ✓ 日本語 \u{1F600}",
        "empty": {},
        "list": [],
        "nil": null
    }))
    .unwrap()
}

fn json_rt<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

fn mp_rt<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    rmp_serde::from_slice(&rmp_serde::to_vec_named(v).unwrap()).unwrap()
}

#[test]
fn block_fields_roundtrip_in_both_encodings() {
    let b = rich_block();
    assert_eq!(json_rt(&b), b);
    assert_eq!(mp_rt(&b), b);
    let text = serde_json::to_string(&mp_rt(&b)).unwrap();
    assert!(text.contains("\"wholeFloat\":2.0"), "{text}");
    assert!(text.contains("9007199254740992"), "{text}");
}

#[test]
fn json_is_camel_case_and_omits_absent_optionals_but_never_a_transforms_field() {
    let req = PendRequest {
        trx_id: TrxId::new("t1").unwrap(),
        rev: None,
        transforms: Transforms {
            inserts: Some([(BlockId::new("b1").unwrap(), rich_block())].into()),
            ..Transforms::default()
        },
        policy: PendPolicy::Continue,
    };
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(v["trxId"], "t1");
    assert_eq!(v["policy"], "c");
    assert!(v.get("rev").is_none());
    // The seed's Transforms type requires all three fields.
    assert_eq!(v["transforms"]["updates"], json!({}));
    assert_eq!(v["transforms"]["deletes"], json!([]));
    assert_eq!(json_rt(&req), req);
    assert_eq!(mp_rt(&req), req);
}

#[test]
fn results_use_success_flag() {
    let ok = PendResult::Success(PendSuccess {
        pending: vec![],
        block_ids: vec![BlockId::new("b").unwrap()],
    });
    assert_eq!(
        serde_json::to_value(&ok).unwrap(),
        json!({"success": true, "pending": [], "blockIds": ["b"]})
    );
    assert_eq!(
        serde_json::to_value(CommitResult::Success).unwrap(),
        json!({"success": true})
    );
    let stale: CommitResult =
        serde_json::from_value(json!({"success": false, "reason": "x"})).unwrap();
    assert!(!stale.is_success());
    assert_eq!(mp_rt(&ok), ok);
    assert_eq!(mp_rt(&stale), stale);
}

#[test]
fn repo_message_matches_seed_shape() {
    let msg: RepoMessage = serde_json::from_value(json!({
        "operations": [
            {"get": {"blockIds": ["a"]}},
            {"pend": {"trxId": "t", "transforms": {"deletes": ["a"]}, "policy": "f"}},
            {"cancel": {"trxRef": {"trxId": "t", "blockIds": ["a"]}}},
            {"commit": {"trxId": "t", "blockIds": ["a"], "rev": 3}}
        ],
        "expiration": 1_700_000_000_000u64
    }))
    .unwrap();
    assert_eq!(msg.operations.len(), 4);
    assert_eq!(json_rt(&msg), msg);
    assert_eq!(mp_rt(&msg), msg);
}

#[test]
fn ids_are_validated_inside_requests() {
    let bad = json!({"blockIds": ["ok", "../../etc/passwd"]});
    let err = serde_json::from_value::<BlockGets>(bad).unwrap_err();
    assert!(err.to_string().contains("block id"), "{err}");
    let bad_key =
        json!({"inserts": {"a/b": {"header": {"id": "a", "type": "t", "collectionId": "c"}}}});
    assert!(serde_json::from_value::<Transforms>(bad_key).is_err());
}
