//! Properties over valid inputs, each driving the real validator or reader: a
//! generated cluster record that is valid in every respect (its `messageHash`,
//! every vote signed by its member over the documented payload) validates, and
//! each single mutation of it is refused with the error that names it; updates
//! of non-empty operations apply exactly as a reference splice says; metadata in
//! the checksummed envelopes of docs/PROTOCOL.md's storage section (built here
//! from that description, not by the crate) reads back, and any one damaged or
//! missing byte is refused or reads back the same value — never another one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use libp2p::identity::Keypair;
use optimystic_actors::cluster::{
    message_blocks, message_hash, peer_entry, sign_commit, sign_promise, validate, validate_with,
    BlockState, Checks, ClusterRecord, EffectKind, KeyCache, RecordError, VoteType,
};
use optimystic_actors::model::*;
use optimystic_actors::storage::{read_embedded_meta, read_file_meta, BlockMeta, RevRange};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One operation of a generated message.
#[derive(Debug, Clone)]
enum Op {
    Insert {
        trx: u16,
        block: u8,
    },
    Update {
        trx: u16,
        block: u8,
        rev: u8,
        values: Vec<i32>,
    },
    Commit {
        trx: u16,
        blocks: Vec<u8>,
        rev: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(trx, block)| Op::Insert { trx, block }),
        (
            any::<u16>(),
            any::<u8>(),
            1u8..,
            proptest::collection::vec(any::<i32>(), 1..4)
        )
            .prop_map(|(trx, block, rev, values)| Op::Update {
                trx,
                block,
                rev,
                values
            }),
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 1..3),
            1u8..
        )
            .prop_map(|(trx, blocks, rev)| Op::Commit { trx, blocks, rev }),
    ]
}

fn block_id(b: u8) -> BlockId {
    BlockId::new(format!("block-{b}")).unwrap()
}

fn operation(op: &Op) -> RepoOperation {
    match op {
        Op::Insert { trx, block } => {
            let id = block_id(*block);
            let b: Block = serde_json::from_value(json!({
                "header": {"id": id.as_str(), "type": "T", "collectionId": "c"},
                "items": []
            }))
            .unwrap();
            RepoOperation::Pend(PendRequest {
                trx_id: TrxId::new(format!("t-{trx}")).unwrap(),
                rev: Some(1),
                transforms: Transforms {
                    inserts: Some([(id, b)].into()),
                    ..Transforms::default()
                },
                policy: PendPolicy::Fail,
            })
        }
        Op::Update {
            trx,
            block,
            rev,
            values,
        } => RepoOperation::Pend(PendRequest {
            trx_id: TrxId::new(format!("t-{trx}")).unwrap(),
            rev: Some(u64::from(*rev)),
            transforms: Transforms {
                updates: Some(
                    [(
                        block_id(*block),
                        vec![BlockOperation {
                            entity: "items".into(),
                            index: 0,
                            delete_count: 0,
                            inserted: json!(values),
                        }],
                    )]
                    .into(),
                ),
                ..Transforms::default()
            },
            policy: PendPolicy::Fail,
        }),
        Op::Commit { trx, blocks, rev } => RepoOperation::Commit(CommitRequest {
            trx_id: TrxId::new(format!("t-{trx}")).unwrap(),
            block_ids: blocks.iter().map(|b| block_id(*b)).collect(),
            rev: u64::from(*rev),
            header_id: None,
            tail_id: None,
        }),
    }
}

/// A record, valid in every respect, and the keys of its members.
#[derive(Debug, Clone)]
struct Plan {
    members: u8,
    seed: u8,
    coordinator: u8,
    ops: Vec<Op>,
    /// (member, approves), for the promises and the commits.
    promises: Vec<(u8, bool)>,
    commits: Vec<(u8, bool)>,
    ttl_ms: u64,
    held_rev: u8,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        1u8..=5,
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(op(), 1..4),
        proptest::collection::vec((any::<u8>(), any::<bool>()), 1..6),
        proptest::collection::vec((any::<u8>(), any::<bool>()), 0..6),
        1u64..60_000,
        any::<u8>(),
    )
        .prop_map(
            |(members, seed, coordinator, ops, promises, commits, ttl_ms, held_rev)| Plan {
                members,
                seed,
                coordinator,
                ops,
                promises,
                commits,
                ttl_ms,
                held_rev,
            },
        )
}

fn key(seed: u8, i: u8) -> Keypair {
    let mut bytes = [seed; 32];
    bytes[0] = i;
    Keypair::ed25519_from_bytes(bytes).unwrap()
}

const NOW_MS: u64 = 1_800_000_000_000;

impl Plan {
    fn keys(&self) -> Vec<Keypair> {
        (0..self.members).map(|i| key(self.seed, i)).collect()
    }

    fn id(k: &Keypair) -> String {
        k.public().to_peer_id().to_string()
    }

    /// The record: hashed, with every vote signed by its member.
    fn build(&self) -> ClusterRecord {
        let keys = self.keys();
        let operations: Vec<RepoOperation> = self.ops.iter().map(operation).collect();
        let message = RepoMessage {
            operations,
            expiration: Some(NOW_MS + self.ttl_ms),
            coordinator: Some(Self::id(
                &keys[usize::from(self.coordinator % self.members)],
            )),
            epochs: BTreeMap::new(),
            change: None,
        };
        let mut r = ClusterRecord {
            message_hash: message_hash(&message),
            peers: keys
                .iter()
                .map(|k| peer_entry(k, vec!["/ip4/127.0.0.1/tcp/1".into()]))
                .collect(),
            message: Arc::new(message),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
        };
        let blocks = message_blocks(&r.message.operations);
        for (m, approve) in &self.promises {
            let k = &keys[usize::from(m % self.members)];
            let vote = if *approve {
                let state = blocks
                    .iter()
                    .map(|b| {
                        let held = TrxRev {
                            trx_id: TrxId::new("earlier").unwrap(),
                            rev: u64::from(self.held_rev),
                        };
                        let s = BlockState {
                            latest: (self.held_rev > 0).then_some(held),
                            pendings: Vec::new(),
                        };
                        (b.clone(), s)
                    })
                    .collect();
                sign_promise(k, &r, VoteType::Approve, None, Some(state))
            } else {
                sign_promise(k, &r, VoteType::Reject, Some("busy".into()), None)
            };
            r.promises.insert(Self::id(k), vote);
        }
        for (m, approve) in &self.commits {
            let k = &keys[usize::from(m % self.members)];
            let vote = if *approve {
                let effect = vec![EffectKind::Ok; r.message.operations.len()];
                sign_commit(k, &r, VoteType::Approve, None, Some(effect))
            } else {
                sign_commit(k, &r, VoteType::Reject, Some("fenced".into()), None)
            };
            r.commits.insert(Self::id(k), vote);
        }
        r
    }
}

/// One change to a valid record, and whether an error is the one it must cause.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    /// The message's deadline moved, its hash kept.
    Expiration,
    /// An operation's transaction renamed, the hash kept.
    Operation,
    /// The hash of another message.
    Hash,
    /// One character of a promise's signature changed.
    PromiseSignature,
    /// A promise's reported state changed after signing.
    PromiseState,
    /// A promise re-signed by an outsider under a member's id.
    ForgedPromise,
    /// A vote filed under an outsider's id, signed by it.
    OutsiderVote,
    /// A member's public key replaced by another key.
    PeerKey,
    /// The coordinator is not in the peer set.
    Coordinator,
    /// An approving commit without its effect.
    CommitEffect,
    /// An approving promise that reports one block too few.
    PromiseBlocks,
}

const MUTATIONS: [Mutation; 11] = [
    Mutation::Expiration,
    Mutation::Operation,
    Mutation::Hash,
    Mutation::PromiseSignature,
    Mutation::PromiseState,
    Mutation::ForgedPromise,
    Mutation::OutsiderVote,
    Mutation::PeerKey,
    Mutation::Coordinator,
    Mutation::CommitEffect,
    Mutation::PromiseBlocks,
];

/// Applies `m` to `r`; `false` when `r` has nothing it applies to.
fn mutate(r: &mut ClusterRecord, m: Mutation, pick: usize) -> bool {
    let outsider = key(0xEE, 0xEE);
    let nth = |len: usize| pick % len.max(1);
    match m {
        Mutation::Expiration => {
            let msg = Arc::make_mut(&mut r.message);
            msg.expiration = msg.expiration.map(|e| e + 1);
        }
        Mutation::Operation => {
            let msg = Arc::make_mut(&mut r.message);
            let k = nth(msg.operations.len());
            match &mut msg.operations[k] {
                RepoOperation::Pend(p) => p.trx_id = TrxId::new("renamed").unwrap(),
                RepoOperation::Commit(c) => c.trx_id = TrxId::new("renamed").unwrap(),
                _ => return false,
            }
        }
        Mutation::Hash => {
            let mut other = (*r.message).clone();
            other.expiration = other.expiration.map(|e| e + 7);
            r.message_hash = message_hash(&other);
        }
        Mutation::PromiseSignature => {
            let k = nth(r.promises.len());
            let Some(v) = r.promises.values_mut().nth(k) else {
                return false;
            };
            let mut chars: Vec<char> = v.signature.chars().collect();
            let i = nth(chars.len());
            // Another base64url character, so the text still decodes.
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            v.signature = chars.into_iter().collect();
        }
        Mutation::PromiseState => {
            let Some(s) = r.promises.values_mut().find_map(|v| v.state.as_mut()) else {
                return false;
            };
            let first = s.values_mut().next().unwrap();
            first.pendings.push(TrxId::new("added-later").unwrap());
        }
        Mutation::ForgedPromise => {
            let Some(member) = r.promises.keys().nth(nth(r.promises.len())).cloned() else {
                return false;
            };
            let old = &r.promises[&member];
            let forged = sign_promise(
                &outsider,
                r,
                old.vote,
                old.reject_reason.clone(),
                old.state.clone(),
            );
            r.promises.insert(member, forged);
        }
        Mutation::OutsiderVote => {
            let vote = sign_promise(&outsider, r, VoteType::Reject, Some("x".into()), None);
            r.promises.insert(Plan::id(&outsider), vote);
        }
        Mutation::PeerKey => {
            let member = r.peers.keys().nth(nth(r.peers.len())).cloned().unwrap();
            let (_, entry) = peer_entry(&outsider, vec![]);
            r.peers.get_mut(&member).unwrap().public_key = entry.public_key;
        }
        Mutation::Coordinator => {
            Arc::make_mut(&mut r.message).coordinator = Some(Plan::id(&outsider));
            r.message_hash = message_hash(&r.message);
        }
        Mutation::CommitEffect => {
            let Some(v) = r.commits.values_mut().find(|v| v.vote == VoteType::Approve) else {
                return false;
            };
            v.effect = None;
        }
        Mutation::PromiseBlocks => {
            let Some(s) = r.promises.values_mut().find_map(|v| v.state.as_mut()) else {
                return false;
            };
            let first = s.keys().next().cloned().unwrap();
            s.remove(&first);
        }
    }
    true
}

fn refused_as(m: Mutation, e: &RecordError) -> bool {
    use RecordError as E;
    match m {
        Mutation::Expiration | Mutation::Operation | Mutation::Hash => {
            matches!(e, E::AlteredMessage)
        }
        Mutation::PromiseSignature | Mutation::PromiseState | Mutation::ForgedPromise => {
            matches!(
                e,
                E::BadSignature {
                    kind: "promise",
                    ..
                }
            )
        }
        Mutation::OutsiderVote => matches!(e, E::NonMember(_)),
        Mutation::PeerKey => matches!(e, E::BadPeer(..)),
        Mutation::Coordinator => matches!(e, E::Coordinator(_)),
        Mutation::CommitEffect | Mutation::PromiseBlocks => matches!(e, E::BadVote(..)),
    }
}

fn proposal_checks(keys: &KeyCache) -> Checks<'_> {
    Checks {
        now_ms: NOW_MS,
        proposal: true,
        max_lifetime_ms: 60_000,
        own: &|_, _, _| false,
        hash_known: false,
        keys,
    }
}

/// `items` after splicing `ops` into `base`, by the rule of docs/PROTOCOL.md:
/// remove `deleteCount` at `index`, insert the array there.
fn splice_model(base: &[i64], ops: &[(u64, u64, Vec<i64>)]) -> Option<Vec<i64>> {
    let mut v = base.to_vec();
    for (index, delete, inserted) in ops {
        let start = usize::try_from(*index).ok().filter(|s| *s <= v.len())?;
        let end = start
            .checked_add(usize::try_from(*delete).ok()?)
            .filter(|e| *e <= v.len())?;
        v.splice(start..end, inserted.iter().copied());
    }
    Some(v)
}

fn meta() -> impl Strategy<Value = BlockMeta> {
    (
        proptest::collection::vec((0u64..1_000, proptest::option::of(1u64..1_000)), 0..4),
        proptest::option::of(("[a-z0-9-]{1,12}", 1u64..1_000_000)),
    )
        .prop_map(|(ranges, latest)| BlockMeta {
            ranges: ranges
                .into_iter()
                .map(|(start, len)| RevRange {
                    start,
                    end: len.map(|l| start + l),
                })
                .collect(),
            latest: latest.map(|(t, rev)| TrxRev {
                trx_id: TrxId::new(t).unwrap(),
                rev,
            }),
        })
}

/// The file backend's envelope, as documented:
/// `{"xxh3":"<16 lowercase hex>","record":<the record's JSON>}`.
fn file_envelope(m: &BlockMeta) -> Vec<u8> {
    let record = serde_json::to_vec(m).unwrap();
    let sum = xxhash_rust::xxh3::xxh3_64(&record);
    let mut out = format!("{{\"xxh3\":\"{sum:016x}\",\"record\":").into_bytes();
    out.extend_from_slice(&record);
    out.push(b'}');
    out
}

/// The embedded backend's envelope, as documented: `0xC1`, the checksum as 8
/// little-endian bytes, then the record's MessagePack.
fn embedded_envelope(m: &BlockMeta) -> Vec<u8> {
    let record = rmp_serde::to_vec_named(m).unwrap();
    let mut out = vec![0xC1];
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&record).to_le_bytes());
    out.extend_from_slice(&record);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_valid_record_validates_and_each_mutation_is_refused(p in plan(), pick in any::<usize>()) {
        let r = p.build();
        let tally = validate(&r).map_err(|e| TestCaseError::fail(format!("valid record refused: {e}")))?;
        let approvals = r.promises.values().filter(|v| v.vote == VoteType::Approve).count();
        prop_assert_eq!(tally.approvals, approvals);
        prop_assert_eq!(tally.members, r.peers.len());
        // As a proposal: fine inside its lifetime, refused once expired or when
        // its deadline lies further ahead than a member accepts.
        let keys = KeyCache::default();
        prop_assert!(validate_with(&r, &proposal_checks(&keys)).is_ok());
        let late = Checks { now_ms: NOW_MS + p.ttl_ms + 1, ..proposal_checks(&keys) };
        prop_assert!(matches!(validate_with(&r, &late), Err(RecordError::Expired(_))));
        let short = Checks { max_lifetime_ms: p.ttl_ms - 1, ..proposal_checks(&keys) };
        let far = validate_with(&r, &short);
        prop_assert!(matches!(far, Err(RecordError::TooFarAhead { .. })), "{:?}", far);
        for m in MUTATIONS {
            let mut bad = r.clone();
            if !mutate(&mut bad, m, pick) {
                continue;
            }
            match validate(&bad) {
                Ok(_) => prop_assert!(false, "{m:?} accepted"),
                Err(e) => prop_assert!(refused_as(m, &e), "{m:?} refused as {e}"),
            }
        }
    }

    #[test]
    fn splices_apply_exactly_as_the_reference_says(
        base in proptest::collection::vec(any::<i64>(), 0..8),
        ops in proptest::collection::vec((0u64..10, 0u64..4, proptest::collection::vec(any::<i64>(), 1..4)), 1..5),
        title in "[a-z]{1,8}",
    ) {
        let id = BlockId::new("b").unwrap();
        let block: Block = serde_json::from_value(json!({
            "header": {"id": "b", "type": "T", "collectionId": "c"},
            "items": base,
            "title": "old",
        })).unwrap();
        let mut updates: Vec<BlockOperation> = ops
            .iter()
            .map(|(index, delete, inserted)| BlockOperation {
                entity: "items".into(),
                index: *index,
                delete_count: *delete,
                inserted: json!(inserted),
            })
            .collect();
        // A non-array value sets the field.
        updates.push(BlockOperation { entity: "title".into(), index: 0, delete_count: 0, inserted: json!(title) });
        let t = Transform { updates: Some(updates), ..Transform::default() };
        let got = apply_transform(&id, Some(&block), &t);
        match splice_model(&base, &ops) {
            Some(want) => {
                let b = got.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?.unwrap();
                prop_assert_eq!(&b.fields["items"], &json!(want));
                prop_assert_eq!(&b.fields["title"], &json!(title));
                prop_assert_eq!(b.header, block.header);
            }
            None => prop_assert!(matches!(got, Err(TransformError::OutOfRange { .. })), "{got:?}"),
        }
        // Without a base there is nothing to update.
        prop_assert!(matches!(apply_transform(&id, None, &t), Err(TransformError::NoBase(_))));
    }

    #[test]
    fn sealed_metadata_reads_back_and_damage_never_reads_as_another_value(
        m in meta(),
        at in any::<usize>(),
        flip in 1u8..,
        cut in any::<usize>(),
    ) {
        for (file, bytes) in [(true, file_envelope(&m)), (false, embedded_envelope(&m))] {
            let read = |b: &[u8]| if file { read_file_meta(b) } else { read_embedded_meta(b) };
            prop_assert_eq!(read(&bytes).unwrap(), m.clone());
            // One byte damaged: refused as corrupt, or (a hex digit's case) the same value.
            let mut damaged = bytes.clone();
            let i = at % damaged.len();
            damaged[i] ^= flip;
            match read(&damaged) {
                Ok(v) => prop_assert_eq!(v, m.clone(), "byte {} damaged read as another value", i),
                Err(e) => prop_assert!(matches!(e, StorageError::Corrupt { .. }), "{e}"),
            }
            // Truncated anywhere: refused as corrupt.
            let short = &bytes[..cut % bytes.len()];
            let got = read(short);
            prop_assert!(matches!(got, Err(StorageError::Corrupt { .. })), "{:?}", got);
        }
    }
}

#[test]
fn the_generators_reach_what_the_properties_are_about() {
    // A record with approving and rejecting promises and commits, several
    // operations and several members, exists among the generated ones, so each
    // mutation above has something to apply to.
    let p = Plan {
        members: 3,
        seed: 7,
        coordinator: 1,
        ops: vec![
            Op::Insert { trx: 1, block: 1 },
            Op::Update {
                trx: 2,
                block: 2,
                rev: 3,
                values: vec![5],
            },
            Op::Commit {
                trx: 3,
                blocks: vec![1, 2],
                rev: 4,
            },
        ],
        promises: vec![(0, true), (1, false), (2, true)],
        commits: vec![(0, true), (2, false)],
        ttl_ms: 5_000,
        held_rev: 2,
    };
    let r = p.build();
    assert!(validate(&r).is_ok());
    for m in MUTATIONS {
        let mut bad = r.clone();
        assert!(mutate(&mut bad, m, 1), "{m:?} found nothing to change");
        let e = validate(&bad).unwrap_err();
        assert!(refused_as(m, &e), "{m:?}: {e}");
    }
    let v: Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["promises"].as_object().unwrap().len(), 3);
}
