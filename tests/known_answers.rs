//! The code against known answers computed without it: `scripts/vectors.py`
//! derives regions, placement, canonical JSON, `messageHash`, the digests and
//! the signed vote payloads (and Ed25519 signatures over them) from
//! docs/CONSENSUS.md and docs/PROTOCOL.md alone, into
//! `tests/vectors/known-answers.json`. Every figure here must match it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libp2p::identity::Keypair;
use libp2p::PeerId;
use optimystic_actors::cluster::votes::promise_payload_of;
use optimystic_actors::cluster::{
    canonical_json, digest, message_hash, sign_commit, sign_promise, validate_with, Checks,
    ClusterRecord, KeyCache, Signature, VoteType,
};
use optimystic_actors::membership::target;
use optimystic_actors::model::{BlockId, Region};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/known-answers.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn keypair(seed_hex: &str) -> Keypair {
    let mut seed: Vec<u8> = (0..seed_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed_hex[i..i + 2], 16).unwrap())
        .collect();
    Keypair::ed25519_from_bytes(&mut seed).unwrap()
}

/// Each peer's key, by PeerId.
fn keys(v: &Value) -> Vec<(String, Keypair)> {
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = keypair(p["seedHex"].as_str().unwrap());
            (p["peerId"].as_str().unwrap().to_string(), key)
        })
        .collect()
}

#[test]
fn identities_regions_and_placement() {
    let v = vectors();
    let mut ids = Vec::new();
    for (p, (id, key)) in v["peers"].as_array().unwrap().iter().zip(keys(&v)) {
        assert_eq!(key.public().to_peer_id().to_string(), id);
        use base64::Engine as _;
        let public =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public().encode_protobuf());
        assert_eq!(public, p["publicKey"].as_str().unwrap());
        ids.push(id.parse::<PeerId>().unwrap());
    }
    for case in v["placement"].as_array().unwrap() {
        let block = BlockId::new(case["blockId"].as_str().unwrap()).unwrap();
        let region = Region::of(&block);
        assert_eq!(
            u64::from(region.index()),
            case["region"].as_u64().unwrap(),
            "{case}"
        );
        let hex: String = region
            .midpoint()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, case["midpoint"].as_str().unwrap(), "{case}");
        let chosen: Vec<String> = target(region, &ids, 3)
            .iter()
            .map(ToString::to_string)
            .collect();
        let want: Vec<String> = serde_json::from_value(case["target3"].clone()).unwrap();
        assert_eq!(chosen, want, "{case}");
    }
}

#[test]
fn canonical_json_message_hash_and_digests() {
    let v = vectors();
    let r: ClusterRecord = serde_json::from_value(v["record"].clone()).unwrap();
    let message = serde_json::to_value(&*r.message).unwrap();
    let canonical = String::from_utf8(canonical_json(&message)).unwrap();
    assert_eq!(canonical, v["canonicalMessage"].as_str().unwrap());
    assert_eq!(
        message_hash(&r.message),
        v["record"]["messageHash"].as_str().unwrap()
    );
    assert_eq!(digest(&r.peers), v["peersDigest"].as_str().unwrap());
    let signatures: std::collections::BTreeMap<&String, &String> =
        r.promises.iter().map(|(p, s)| (p, &s.signature)).collect();
    assert_eq!(digest(&signatures), v["promisesDigest"].as_str().unwrap());
    let any = r.commits.values().next().unwrap();
    assert_eq!(digest(&any.effect), v["effectDigest"].as_str().unwrap());
    let state = r.promises.values().next().unwrap().state.clone().unwrap();
    assert_eq!(
        optimystic_actors::cluster::votes::state_digest(&state),
        v["stateDigest"].as_str().unwrap()
    );
}

#[test]
fn vote_payloads_and_signatures() {
    let v = vectors();
    let record: ClusterRecord = serde_json::from_value(v["record"].clone()).unwrap();
    // The whole record, signed by Python, validates here.
    let checks = Checks {
        now_ms: 1_732_429_990_000,
        proposal: false,
        max_lifetime_ms: 120_000,
        own: &|_, _, _| false,
        hash_known: false,
        keys: &KeyCache::default(),
    };
    let tally = validate_with(&record, &checks).unwrap();
    assert_eq!((tally.approvals, tally.commits), (3, 3));
    let keys = keys(&v);
    let key_of = |id: &str| &keys.iter().find(|(p, _)| p == id).unwrap().1;
    let bare = ClusterRecord {
        promises: Default::default(),
        commits: Default::default(),
        ..record.clone()
    };
    for (id, promise) in &record.promises {
        let want = v["promisePayloads"][id].as_str().unwrap();
        assert_eq!(
            promise_payload_of(&record, promise),
            want.as_bytes(),
            "{id}"
        );
        let mine = sign_promise(
            key_of(id),
            &bare,
            VoteType::Approve,
            None,
            promise.state.clone(),
        );
        assert_eq!(
            &mine, promise,
            "{id}: the same payload signs to the same signature"
        );
    }
    let promised = ClusterRecord {
        commits: Default::default(),
        ..record.clone()
    };
    for (id, commit) in &record.commits {
        let mine = sign_commit(
            key_of(id),
            &promised,
            VoteType::Approve,
            None,
            commit.effect.clone(),
        );
        assert_eq!(&mine, commit, "{id}");
    }
    let rejecting = &v["rejectingPromise"];
    let id = rejecting["peerId"].as_str().unwrap();
    let reason = rejecting["reason"].as_str().unwrap().to_string();
    let mine = sign_promise(key_of(id), &bare, VoteType::Reject, Some(reason), None);
    let vote: Signature = mine.clone();
    assert_eq!(
        promise_payload_of(&record, &vote),
        rejecting["payload"].as_str().unwrap().as_bytes()
    );
    assert_eq!(mine.signature, rejecting["signature"].as_str().unwrap());
}
