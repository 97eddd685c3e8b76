//! ClusterRecord decoded from the input as JSON and as MessagePack, then
//! validated as a proposal at a fixed time and as a decided record, as received
//! and with its messageHash recomputed
//! (so the peer and vote checks are reached). Never panics; the verdict is
//! deterministic and survives a JSON round trip; an accepted record is consistent.

use optimystic_actors::cluster::record::tally;
use optimystic_actors::cluster::{
    abandoned, message_hash, validate_with, Checks, ClusterRecord, KeyCache, RecordError, Tally,
    MAX_OPERATIONS,
};

/// The fixed "now" of every validation: 2023-11-14T22:13:20Z.
const NOW_MS: u64 = 1_700_000_000_000;

/// A record validated as a proposal at [`NOW_MS`] (deadline within 2 minutes).
fn validate(r: &ClusterRecord, proposal: bool) -> Result<Tally, RecordError> {
    validate_with(
        r,
        &Checks {
            now_ms: NOW_MS,
            proposal,
            max_lifetime_ms: 120_000,
            own: &|_, _, _| false,
            hash_known: false,
            keys: &KeyCache::default(),
        },
    )
}

fn check(r: &ClusterRecord) {
    let decided = validate(r, false);
    let verdict = validate(r, true);
    assert_eq!(
        validate(r, true),
        verdict,
        "validation is not deterministic"
    );
    if verdict.is_ok() {
        assert_eq!(decided, verdict, "a valid proposal is a valid record");
    }
    let json = serde_json::to_vec(r).expect("a record encodes");
    let back: ClusterRecord = serde_json::from_slice(&json).expect("an encoded record decodes");
    assert_eq!(&back, r, "record changes through JSON");
    assert_eq!(
        validate(&back, true),
        verdict,
        "verdict changes through JSON"
    );
    if let Ok(t) = verdict {
        assert_eq!(t, tally(r));
        assert_eq!(t.members, r.peers.len());
        assert_eq!(t.approvals + t.rejections, r.promises.len());
        assert!(t.commits <= r.commits.len());
        assert_eq!(message_hash(&r.message), r.message_hash);
        assert!(r
            .message
            .expiration
            .is_some_and(|e| e >= NOW_MS && e - NOW_MS <= 120_000));
        assert!((1..=MAX_OPERATIONS).contains(&r.message.operations.len()));
        assert!(r
            .promises
            .keys()
            .chain(r.commits.keys())
            .all(|p| r.peers.contains_key(p)));
        let _ = abandoned(r);
    }
}

/// One input (the fuzz target and the corpus replay in `tests/fuzz_corpus.rs` both call it).
pub fn run(data: &[u8]) {
    let decoded = [
        serde_json::from_slice::<ClusterRecord>(data).ok(),
        rmp_serde::from_slice::<ClusterRecord>(data).ok(),
    ];
    for r in decoded.into_iter().flatten() {
        check(&r);
        let mut fixed = r;
        fixed.message_hash = message_hash(&fixed.message);
        if validate(&fixed, false) == Err(RecordError::AlteredMessage) {
            panic!("a record with its own messageHash refused as altered");
        }
        check(&fixed);
    }
}
