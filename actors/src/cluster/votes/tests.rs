//! Unit tests of vote signing and record validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;
use crate::cluster::record::{message_hash, peer_entry, BlockState};
use crate::model::{BlockId, CommitRequest, RepoMessage, RepoOperation, TrxId, TrxRev};

fn commit_op(block: &str) -> RepoOperation {
    RepoOperation::Commit(CommitRequest {
        trx_id: TrxId::new("t").unwrap(),
        block_ids: vec![BlockId::new(block).unwrap()],
        rev: 2,
        header_id: None,
        tail_id: None,
    })
}

fn record(keys: &[&Keypair], expiration: u64) -> ClusterRecord {
    let message = RepoMessage {
        operations: vec![commit_op("b")],
        expiration: Some(expiration),
        coordinator: Some(id(keys[0])),
        epochs: Default::default(),
        change: None,
    };
    ClusterRecord {
        message_hash: message_hash(&message),
        peers: keys.iter().map(|k| peer_entry(k, vec![])).collect(),
        message: message.into(),
        promises: BTreeMap::new(),
        commits: BTreeMap::new(),
    }
}

fn id(k: &Keypair) -> String {
    k.public().to_peer_id().to_string()
}

fn state(rev: u64) -> States {
    BTreeMap::from([(
        BlockId::new("b").unwrap(),
        BlockState {
            latest: Some(TrxRev {
                trx_id: TrxId::new("x").unwrap(),
                rev,
            }),
            pendings: vec![TrxId::new("t").unwrap()],
        },
    )])
}

fn approve(k: &Keypair, r: &ClusterRecord) -> Signature {
    sign_promise(k, r, VoteType::Approve, None, Some(state(1)))
}

fn checks(now_ms: u64, proposal: bool, max_lifetime_ms: u64, keys: &KeyCache) -> Checks<'_> {
    Checks {
        now_ms,
        proposal,
        max_lifetime_ms,
        own: &|_, _, _| false,
        hash_known: false,
        keys,
    }
}

#[test]
fn signed_votes_validate_and_count() {
    let (a, b, c) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let mut r = record(&[&a, &b, &c], u64::MAX);
    r.promises.insert(id(&a), approve(&a, &r));
    r.promises.insert(
        id(&b),
        sign_promise(&b, &r, VoteType::Reject, Some("conflict:x".into()), None),
    );
    r.promises.insert(id(&c), approve(&c, &r));
    r.commits.insert(
        id(&a),
        sign_commit(
            &a,
            &r,
            VoteType::Approve,
            None,
            Some(vec![crate::cluster::EffectKind::Ok]),
        ),
    );
    r.commits.insert(
        id(&c),
        sign_commit(&c, &r, VoteType::Reject, Some("fenced".into()), None),
    );
    let t = validate(&r).unwrap();
    assert_eq!(
        (t.members, t.approvals, t.rejections, t.commits, t.fences),
        (3, 2, 1, 1, 1)
    );
    // Round-trips through both encodings unchanged and still validates.
    let json: ClusterRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(validate(&json).unwrap(), t);
    let mp: ClusterRecord = rmp_serde::from_slice(&rmp_serde::to_vec_named(&r).unwrap()).unwrap();
    assert_eq!(validate(&mp).unwrap(), t);
}

#[test]
fn every_kind_of_tampering_is_refused() {
    let (a, b, outsider) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let mut r = record(&[&a, &b], u64::MAX);
    r.promises.insert(id(&a), approve(&a, &r));

    // Forged: b's slot signed by a.
    let mut forged = r.clone();
    forged.promises.insert(id(&b), approve(&a, &r));
    assert!(matches!(
        validate(&forged),
        Err(RecordError::BadSignature {
            kind: "promise",
            ..
        })
    ));
    // Vote type flipped after signing (and its state dropped, to keep the shape).
    let mut flipped = r.clone();
    let v = flipped.promises.get_mut(&id(&a)).unwrap();
    v.vote = VoteType::Reject;
    v.state = None;
    assert!(matches!(
        validate(&flipped),
        Err(RecordError::BadSignature { .. })
    ));
    // The reported state changed after signing.
    let mut restated = r.clone();
    restated.promises.get_mut(&id(&a)).unwrap().state = Some(state(7));
    assert!(matches!(
        validate(&restated),
        Err(RecordError::BadSignature { .. })
    ));
    // An approval without a state, or with a state of another block.
    let mut stateless = r.clone();
    stateless.promises.get_mut(&id(&a)).unwrap().state = None;
    assert!(matches!(
        validate(&stateless),
        Err(RecordError::BadVote(..))
    ));
    let mut foreign = r.clone();
    let mut other = state(1);
    other.insert(BlockId::new("zz").unwrap(), BlockState::default());
    foreign.promises.insert(
        id(&a),
        sign_promise(&a, &r, VoteType::Approve, None, Some(other)),
    );
    assert!(matches!(validate(&foreign), Err(RecordError::BadVote(..))));
    // A non-member's vote.
    let mut non_member = r.clone();
    non_member
        .promises
        .insert(id(&outsider), approve(&outsider, &r));
    assert_eq!(
        validate(&non_member),
        Err(RecordError::NonMember(id(&outsider)))
    );
    // Altered message under the same hash.
    let mut altered = r.clone();
    Arc::make_mut(&mut altered.message).expiration = Some(u64::MAX - 1);
    assert_eq!(validate(&altered), Err(RecordError::AlteredMessage));
    // Peer set changed after voting: the vote no longer verifies.
    let mut moved = r.clone();
    moved
        .peers
        .insert(id(&outsider), peer_entry(&outsider, vec![]).1);
    assert!(matches!(
        validate(&moved),
        Err(RecordError::BadSignature { .. })
    ));
    // A peer entry whose key is someone else's.
    let mut wrong_key = r.clone();
    wrong_key.peers.get_mut(&id(&b)).unwrap().public_key = peer_entry(&a, vec![]).1.public_key;
    assert!(matches!(
        validate(&wrong_key),
        Err(RecordError::BadPeer(..))
    ));
    // A commit signed before more promises arrived no longer verifies.
    let mut late = r.clone();
    late.commits.insert(
        id(&a),
        sign_commit(
            &a,
            &r,
            VoteType::Approve,
            None,
            Some(vec![crate::cluster::EffectKind::Ok]),
        ),
    );
    late.promises.insert(id(&b), approve(&b, &r));
    assert!(matches!(
        validate(&late),
        Err(RecordError::BadSignature { kind: "commit", .. })
    ));
    // A commit whose effect changed after signing.
    let mut effect = r.clone();
    let mut v = sign_commit(
        &a,
        &r,
        VoteType::Approve,
        None,
        Some(vec![crate::cluster::EffectKind::Ok]),
    );
    v.effect = Some(vec![crate::cluster::EffectKind::Refused]);
    effect.commits.insert(id(&a), v);
    assert!(matches!(
        validate(&effect),
        Err(RecordError::BadSignature { kind: "commit", .. })
    ));
    // No coordinator, or one outside the peer set.
    let mut nobody = record(&[&a, &b], u64::MAX);
    Arc::make_mut(&mut nobody.message).coordinator = None;
    nobody.message_hash = message_hash(&nobody.message);
    assert_eq!(validate(&nobody), Err(RecordError::Coordinator(None)));
    let mut stranger = record(&[&a, &b], u64::MAX);
    Arc::make_mut(&mut stranger.message).coordinator = Some(id(&outsider));
    stranger.message_hash = message_hash(&stranger.message);
    assert!(matches!(
        validate(&stranger),
        Err(RecordError::Coordinator(Some(_)))
    ));
}

#[test]
fn proposals_are_bounded_in_time_and_decisions_are_not() {
    let a = Keypair::generate_ed25519();
    let keys = KeyCache::default();
    let old = record(&[&a], 5);
    assert_eq!(
        validate_with(&old, &checks(6, true, 1000, &keys)),
        Err(RecordError::Expired(5))
    );
    // A decided record is valid past its deadline.
    assert!(validate_with(&old, &checks(6, false, 1000, &keys)).is_ok());
    let far = record(&[&a], 10_000);
    assert!(matches!(
        validate_with(&far, &checks(5, true, 1000, &keys)),
        Err(RecordError::TooFarAhead { .. })
    ));
    assert!(validate_with(&far, &checks(9_500, true, 1000, &keys)).is_ok());
    let forever = record(&[&a], u64::MAX);
    assert!(matches!(
        validate_with(&forever, &checks(5, true, 60_000, &keys)),
        Err(RecordError::TooFarAhead { .. })
    ));
}

#[test]
fn an_own_vote_is_trusted_only_for_the_exact_payload_and_signature() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut r = record(&[&a, &b], u64::MAX);
    let sig = approve(&a, &r);
    let signed = (promise_payload_of(&r, &sig), sig.clone());
    let me = id(&a);
    let own = |peer: &str, payload: &[u8], vote: &Signature| {
        peer == me && signed.0 == payload && signed.1 == *vote
    };
    let keys = KeyCache::default();
    let trusting = Checks {
        own: &own,
        ..checks(0, false, u64::MAX, &keys)
    };
    r.promises.insert(id(&a), sig.clone());
    assert_eq!(validate_with(&r, &trusting).unwrap().approvals, 1);
    // Nor moved to another peer set (the payload covers it).
    let c = Keypair::generate_ed25519();
    let mut moved = r.clone();
    moved.peers.extend([peer_entry(&c, vec![])]);
    assert!(matches!(
        validate_with(&moved, &trusting),
        Err(RecordError::BadSignature { .. })
    ));
    // Nor claimed for another peer.
    let mut stolen = r.clone();
    stolen.promises.clear();
    stolen.promises.insert(id(&b), sig);
    assert!(matches!(
        validate_with(&stolen, &trusting),
        Err(RecordError::BadSignature { .. })
    ));
}

#[test]
fn only_the_coordinators_rejecting_commit_abandons() {
    use crate::cluster::record::abandoned;
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let r = record(&[&a, &b], u64::MAX);
    assert!(!abandoned(&r));
    let mut by_member = r.clone();
    let vote = sign_commit(&b, &by_member, VoteType::Reject, Some("no".into()), None);
    by_member.commits.insert(id(&b), vote);
    assert!(validate(&by_member).is_ok());
    assert!(
        !abandoned(&by_member),
        "a member cannot abort for the coordinator"
    );
    let mut by_coordinator = r.clone();
    let vote = sign_commit(
        &a,
        &by_coordinator,
        VoteType::Reject,
        Some("refused".into()),
        None,
    );
    by_coordinator.commits.insert(id(&a), vote);
    assert!(validate(&by_coordinator).is_ok());
    assert!(abandoned(&by_coordinator));
    // Naming another coordinator after signing alters the message: refused.
    let mut renamed = by_coordinator.clone();
    Arc::make_mut(&mut renamed.message).coordinator = Some(id(&b));
    assert!(matches!(
        validate(&renamed),
        Err(RecordError::AlteredMessage)
    ));
}

#[test]
fn a_message_carries_one_to_max_operations() {
    let a = Keypair::generate_ed25519();
    let with = |n: usize| {
        let mut r = record(&[&a], u64::MAX);
        let op = r.message.operations[0].clone();
        Arc::make_mut(&mut r.message).operations = vec![op; n];
        r.message_hash = message_hash(&r.message);
        validate(&r)
    };
    assert!(matches!(with(0), Err(RecordError::Operations(0))));
    assert!(with(1).is_ok());
    assert!(with(MAX_OPERATIONS).is_ok());
    assert!(matches!(
        with(MAX_OPERATIONS + 1),
        Err(RecordError::Operations(n)) if n == MAX_OPERATIONS + 1
    ));
}

#[test]
fn the_state_digest_is_the_canonical_json_digest() {
    use crate::cluster::canonical::digest;
    let mut s = state(7);
    s.insert(BlockId::new("a-0").unwrap(), BlockState::default());
    s.insert(
        BlockId::new("z_9").unwrap(),
        BlockState {
            latest: None,
            pendings: vec![TrxId::new("p1").unwrap(), TrxId::new("p2").unwrap()],
        },
    );
    assert_eq!(state_digest(&s), digest(&s));
    assert_eq!(state_digest(&States::new()), digest(&States::new()));
}
