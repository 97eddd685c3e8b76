//! ClusterRecord (DESIGN §7): its canonical hash, the signed vote payloads, and
//! validation of a record received from anyone. Pure functions; docs/CONSENSUS.md
//! states the same rules in prose.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{BlockId, RepoMessage, Rev};

/// A member of the record's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPeer {
    /// Where to reach it.
    pub multiaddrs: Vec<String>,
    /// Its libp2p public key, protobuf-encoded, base64url without padding.
    pub public_key: String,
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteType {
    /// In favour.
    Approve,
    /// Against.
    Reject,
}

impl VoteType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// One member's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// The vote.
    #[serde(rename = "type")]
    pub vote: VoteType,
    /// Ed25519 signature over the vote payload, base64url without padding.
    pub signature: String,
    /// Why it rejects (e.g. `conflict:<messageHash>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
}

/// A cluster transaction as it travels between coordinator and members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    /// base64url(sha256(canonical JSON of `message`)).
    pub message_hash: String,
    /// The cluster, by PeerId (base58).
    pub peers: BTreeMap<String, ClusterPeer>,
    /// The repo operation being agreed (shared: copies of a record, one per
    /// member call and one per stored state, do not copy the operations).
    pub message: Arc<RepoMessage>,
    /// Phase-1 votes by PeerId.
    #[serde(default)]
    pub promises: BTreeMap<String, Signature>,
    /// Phase-2 votes by PeerId.
    #[serde(default)]
    pub commits: BTreeMap<String, Signature>,
    /// Each promising member's latest revision of the message's blocks when it
    /// promised (blocks it holds no revision of are absent). Not signed: only a
    /// hint telling members in phase 2 whether their copy is behind and must catch
    /// up before executing. Omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<String, BTreeMap<BlockId, Rev>>,
}

impl ClusterRecord {
    /// The newest revision any member reported for each block (`None` when no
    /// member reported heads, e.g. a record from a coordinator that sends none).
    pub fn newest_heads(&self) -> Option<BTreeMap<BlockId, Rev>> {
        if self.heads.is_empty() {
            return None;
        }
        let mut out: BTreeMap<BlockId, Rev> = BTreeMap::new();
        for (block, rev) in self.heads.values().flatten() {
            let e = out.entry(block.clone()).or_insert(*rev);
            *e = (*e).max(*rev);
        }
        Some(out)
    }
}

/// Why a record was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// `heads` names a block the message does not touch.
    #[error("heads name block {0}, which the message does not touch")]
    ForeignHead(BlockId),
    /// `messageHash` does not match the message.
    #[error("messageHash does not match the message")]
    AlteredMessage,
    /// The message carries no `expiration`.
    #[error("a cluster message needs an expiration")]
    NoExpiration,
    /// The deadline has passed.
    #[error("record expired at {0} ms")]
    Expired(u64),
    /// A peer entry is malformed or its key is not its PeerId's.
    #[error("peer {0}: {1}")]
    BadPeer(String, String),
    /// A vote filed under a peer outside the record's peer set.
    #[error("vote from {0}, which is not a member of the record's cluster")]
    NonMember(String),
    /// A vote whose signature does not verify under its peer's key.
    #[error("{kind} of {peer} does not verify")]
    BadSignature {
        /// `promise` or `commit`.
        kind: &'static str,
        /// The voter.
        peer: String,
    },
    /// A record with no peers.
    #[error("a record needs at least one peer")]
    NoPeers,
    /// This node is not in the record's cluster.
    #[error("this node is not a member of the record's cluster")]
    NotAMember,
    /// A message with no operations, or more than [`MAX_OPERATIONS`].
    #[error("a cluster message carries 1 to {MAX_OPERATIONS} operations, not {0}")]
    Operations(usize),
}

/// Most operations one record may carry (a coordinator batches concurrent client
/// writes on one cluster into one record).
pub const MAX_OPERATIONS: usize = 256;

/// JSON with object keys sorted (by UTF-8 bytes) and no insignificant space.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    // Serialising a string cannot fail.
                    out.extend(serde_json::to_vec(k).unwrap_or_default());
                    out.push(b':');
                    write(&m[k], out);
                }
                out.push(b'}');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
        }
    }
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

fn digest<T: Serialize>(v: &T) -> String {
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    B64.encode(Sha256::digest(canonical_json(&value)))
}

/// The `messageHash` of a message.
pub fn message_hash(message: &RepoMessage) -> String {
    digest(message)
}

/// The digests a record's vote payloads cover, computed once per record.
struct Digests {
    peers: String,
    promises: String,
}

impl Digests {
    fn of(r: &ClusterRecord) -> Self {
        Self {
            peers: digest(&r.peers),
            promises: digest(&r.promises),
        }
    }
}

fn promise_payload(
    r: &ClusterRecord,
    d: &Digests,
    vote: VoteType,
    reason: Option<&str>,
) -> Vec<u8> {
    format!(
        "optimystic/cluster/v1/promise\n{}\n{}\n{}\n{}",
        r.message_hash,
        d.peers,
        vote.as_str(),
        reason.unwrap_or("")
    )
    .into_bytes()
}

fn commit_payload(r: &ClusterRecord, d: &Digests, vote: VoteType, reason: Option<&str>) -> Vec<u8> {
    format!(
        "optimystic/cluster/v1/commit\n{}\n{}\n{}\n{}\n{}",
        r.message_hash,
        d.peers,
        vote.as_str(),
        reason.unwrap_or(""),
        d.promises
    )
    .into_bytes()
}

fn sign(key: &Keypair, payload: &[u8], vote: VoteType, reason: Option<String>) -> Signature {
    Signature {
        vote,
        // Ed25519 signing cannot fail.
        signature: B64.encode(key.sign(payload).unwrap_or_default()),
        reject_reason: reason,
    }
}

/// This member's promise (phase 1) on `r`.
pub fn sign_promise(
    key: &Keypair,
    r: &ClusterRecord,
    vote: VoteType,
    reason: Option<String>,
) -> Signature {
    sign(
        key,
        &promise_payload(r, &Digests::of(r), vote, reason.as_deref()),
        vote,
        reason,
    )
}

/// This member's commit (phase 2) on `r`, covering its promise set.
pub fn sign_commit(
    key: &Keypair,
    r: &ClusterRecord,
    vote: VoteType,
    reason: Option<String>,
) -> Signature {
    sign(
        key,
        &commit_payload(r, &Digests::of(r), vote, reason.as_deref()),
        vote,
        reason,
    )
}

/// The entry for this node in a record's peer set.
pub fn peer_entry(key: &Keypair, multiaddrs: Vec<String>) -> (String, ClusterPeer) {
    let public_key = B64.encode(key.public().encode_protobuf());
    (
        key.public().to_peer_id().to_string(),
        ClusterPeer {
            multiaddrs,
            public_key,
        },
    )
}

/// Keys already checked against their PeerId, by (peerId, publicKey) text:
/// decoding a key decompresses a curve point, which profiles showed dominating
/// validation. Bounded; cleared when full.
fn key_cache() -> &'static dashmap::DashMap<(String, String), PublicKey> {
    static CACHE: std::sync::OnceLock<dashmap::DashMap<(String, String), PublicKey>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(dashmap::DashMap::new)
}

const KEY_CACHE_MAX: usize = 4096;

fn peer_key(id: &str, p: &ClusterPeer) -> Result<PublicKey, RecordError> {
    let cache_key = (id.to_string(), p.public_key.clone());
    if let Some(k) = key_cache().get(&cache_key) {
        return Ok(k.clone());
    }
    let bad = |m: &str| RecordError::BadPeer(id.to_string(), m.to_string());
    let peer: PeerId = id.parse().map_err(|_| bad("not a PeerId"))?;
    let bytes = B64
        .decode(&p.public_key)
        .map_err(|_| bad("publicKey is not base64url"))?;
    let key =
        PublicKey::try_decode_protobuf(&bytes).map_err(|_| bad("publicKey is not a libp2p key"))?;
    if key.to_peer_id() != peer {
        return Err(bad("publicKey does not belong to this PeerId"));
    }
    let cache = key_cache();
    if cache.len() >= KEY_CACHE_MAX {
        cache.clear();
    }
    cache.insert(cache_key, key.clone());
    Ok(key)
}

/// The outcome of counting a validated record's votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Members in the record.
    pub members: usize,
    /// Approving promises.
    pub approvals: usize,
    /// Rejecting promises.
    pub rejections: usize,
    /// Approving commits.
    pub commits: usize,
}

/// Checks everything about a record: hash, deadline, peers and every vote.
/// Returns the tally of its votes.
pub fn validate(r: &ClusterRecord, now_ms: u64) -> Result<Tally, RecordError> {
    validate_trusting(r, now_ms, &|_, _, _| false)
}

/// Decides whether a vote is one this node signed itself: given the voter, the exact
/// payload the vote must cover and the vote, true skips its signature check.
pub type OwnVote<'a> = &'a dyn Fn(&str, &[u8], &Signature) -> bool;

/// The bytes a promise by anyone on `r` signs.
pub fn promise_payload_of(r: &ClusterRecord, vote: VoteType, reason: Option<&str>) -> Vec<u8> {
    promise_payload(r, &Digests::of(r), vote, reason)
}

/// [`validate`], skipping the signature check of votes `own` recognises as this
/// node's (the same payload and the same signature it produced: Ed25519 signatures
/// are deterministic, so equality is as strong as verifying under its own key).
pub fn validate_trusting(
    r: &ClusterRecord,
    now_ms: u64,
    own: OwnVote<'_>,
) -> Result<Tally, RecordError> {
    validate_known(r, now_ms, own, false)
}

/// [`validate_trusting`]; `hash_known` skips recomputing `messageHash` when the
/// caller already holds this exact message under this hash (checked or computed
/// by this node, and compared equal to the record's).
pub fn validate_known(
    r: &ClusterRecord,
    now_ms: u64,
    own: OwnVote<'_>,
    hash_known: bool,
) -> Result<Tally, RecordError> {
    let ops = r.message.operations.len();
    if ops == 0 || ops > MAX_OPERATIONS {
        return Err(RecordError::Operations(ops));
    }
    if !hash_known && message_hash(&r.message) != r.message_hash {
        return Err(RecordError::AlteredMessage);
    }
    let deadline = r.message.expiration.ok_or(RecordError::NoExpiration)?;
    if deadline < now_ms {
        return Err(RecordError::Expired(deadline));
    }
    if r.peers.is_empty() {
        return Err(RecordError::NoPeers);
    }
    if !r.heads.is_empty() {
        let blocks = crate::cluster::message_blocks(&r.message.operations);
        for (peer, heads) in &r.heads {
            if !r.peers.contains_key(peer) {
                return Err(RecordError::NonMember(peer.clone()));
            }
            if let Some(b) = heads.keys().find(|b| !blocks.contains(*b)) {
                return Err(RecordError::ForeignHead(b.clone()));
            }
        }
    }
    let keys = r
        .peers
        .iter()
        .map(|(id, p)| Ok((id.as_str(), peer_key(id, p)?)))
        .collect::<Result<BTreeMap<_, _>, RecordError>>()?;
    let check = |kind: &'static str,
                 votes: &BTreeMap<String, Signature>,
                 payload: &dyn Fn(&Signature) -> Vec<u8>| {
        for (peer, sig) in votes {
            let key = keys
                .get(peer.as_str())
                .ok_or_else(|| RecordError::NonMember(peer.clone()))?;
            let bytes = payload(sig);
            if own(peer, &bytes, sig) {
                continue;
            }
            let raw = B64.decode(&sig.signature).unwrap_or_default();
            if !key.verify(&bytes, &raw) {
                return Err(RecordError::BadSignature {
                    kind,
                    peer: peer.clone(),
                });
            }
        }
        Ok(())
    };
    let digests = Digests::of(r);
    check("promise", &r.promises, &|s| {
        promise_payload(r, &digests, s.vote, s.reject_reason.as_deref())
    })?;
    check("commit", &r.commits, &|s| {
        commit_payload(r, &digests, s.vote, s.reject_reason.as_deref())
    })?;
    Ok(tally(r))
}

/// Counts a record's votes without checking them (for records already validated).
pub fn tally(r: &ClusterRecord) -> Tally {
    let count = |votes: &BTreeMap<String, Signature>, v: VoteType| {
        votes.values().filter(|s| s.vote == v).count()
    };
    Tally {
        members: r.peers.len(),
        approvals: count(&r.promises, VoteType::Approve),
        rejections: count(&r.promises, VoteType::Reject),
        commits: count(&r.commits, VoteType::Approve),
    }
}

/// Whether the record's coordinator (named in the message) has signed a rejecting
/// commit: it decided abort. Only meaningful on a validated record.
pub fn abandoned(r: &ClusterRecord) -> bool {
    r.message
        .coordinator
        .as_ref()
        .and_then(|c| r.commits.get(c))
        .is_some_and(|v| v.vote == VoteType::Reject)
}

/// Simple majority of `members`: the default threshold.
pub fn majority(members: usize) -> usize {
    members / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlockGets, BlockId, RepoOperation};

    fn record(keys: &[&Keypair], expiration: u64) -> ClusterRecord {
        let message = RepoMessage {
            operations: vec![RepoOperation::Get(BlockGets {
                block_ids: vec![BlockId::new("b").unwrap()],
                context: None,
            })],
            expiration: Some(expiration),
            coordinator: None,
        };
        ClusterRecord {
            message_hash: message_hash(&message),
            peers: keys.iter().map(|k| peer_entry(k, vec![])).collect(),
            message: message.into(),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
            heads: BTreeMap::new(),
        }
    }

    fn id(k: &Keypair) -> String {
        k.public().to_peer_id().to_string()
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":0,"y":"é"}],"c":null}}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"c":null,"d":[1,{"y":"é","z":0}]},"b":1}"#
        );
    }

    #[test]
    fn signed_votes_validate_and_count() {
        let (a, b, c) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let mut r = record(&[&a, &b, &c], u64::MAX);
        r.promises
            .insert(id(&a), sign_promise(&a, &r, VoteType::Approve, None));
        r.promises.insert(
            id(&b),
            sign_promise(&b, &r, VoteType::Reject, Some("conflict:x".into())),
        );
        r.promises
            .insert(id(&c), sign_promise(&c, &r, VoteType::Approve, None));
        r.commits
            .insert(id(&a), sign_commit(&a, &r, VoteType::Approve, None));
        let t = validate(&r, 0).unwrap();
        assert_eq!(
            (t.members, t.approvals, t.rejections, t.commits),
            (3, 2, 1, 1)
        );
        // Round-trips through both encodings unchanged and still validates.
        let json: ClusterRecord =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(validate(&json, 0).unwrap(), t);
        let mp: ClusterRecord =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&r).unwrap()).unwrap();
        assert_eq!(validate(&mp, 0).unwrap(), t);
    }

    #[test]
    fn heads_name_only_members_and_the_messages_blocks() {
        use crate::model::{CommitRequest, TrxId};
        let (a, b, outsider) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let mut r = record(&[&a, &b], u64::MAX);
        Arc::make_mut(&mut r.message).operations = vec![RepoOperation::Commit(CommitRequest {
            trx_id: TrxId::new("t").unwrap(),
            block_ids: vec![BlockId::new("x").unwrap()],
            rev: 2,
            header_id: None,
            tail_id: None,
        })];
        r.message_hash = message_hash(&r.message);
        let head = |block: &str, rev| BTreeMap::from([(BlockId::new(block).unwrap(), rev)]);
        assert_eq!(r.newest_heads(), None);
        r.heads.insert(id(&a), head("x", 1));
        r.heads.insert(id(&b), head("x", 4));
        assert!(validate(&r, 0).is_ok());
        assert_eq!(r.newest_heads(), Some(head("x", 4)));
        let mut outsiders = r.clone();
        outsiders.heads.insert(id(&outsider), head("x", 9));
        assert_eq!(
            validate(&outsiders, 0),
            Err(RecordError::NonMember(id(&outsider)))
        );
        let mut foreign = r.clone();
        foreign.heads.insert(id(&a), head("y", 1));
        assert!(matches!(
            validate(&foreign, 0),
            Err(RecordError::ForeignHead(_))
        ));
    }

    #[test]
    fn every_kind_of_tampering_is_refused() {
        let (a, b, outsider) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let mut r = record(&[&a, &b], u64::MAX);
        r.promises
            .insert(id(&a), sign_promise(&a, &r, VoteType::Approve, None));

        // Forged: b's slot signed by a.
        let mut forged = r.clone();
        forged
            .promises
            .insert(id(&b), sign_promise(&a, &r, VoteType::Approve, None));
        assert!(matches!(
            validate(&forged, 0),
            Err(RecordError::BadSignature {
                kind: "promise",
                ..
            })
        ));
        // Vote type flipped after signing.
        let mut flipped = r.clone();
        flipped.promises.get_mut(&id(&a)).unwrap().vote = VoteType::Reject;
        assert!(matches!(
            validate(&flipped, 0),
            Err(RecordError::BadSignature { .. })
        ));
        // A non-member's vote.
        let mut non_member = r.clone();
        non_member.promises.insert(
            id(&outsider),
            sign_promise(&outsider, &r, VoteType::Approve, None),
        );
        assert_eq!(
            validate(&non_member, 0),
            Err(RecordError::NonMember(id(&outsider)))
        );
        // Altered message under the same hash.
        let mut altered = r.clone();
        Arc::make_mut(&mut altered.message).expiration = Some(u64::MAX - 1);
        assert_eq!(validate(&altered, 0), Err(RecordError::AlteredMessage));
        // Expired.
        let old = record(&[&a], 5);
        assert_eq!(validate(&old, 6), Err(RecordError::Expired(5)));
        // Peer set changed after voting: the vote no longer verifies.
        let mut moved = r.clone();
        moved
            .peers
            .insert(id(&outsider), peer_entry(&outsider, vec![]).1);
        assert!(matches!(
            validate(&moved, 0),
            Err(RecordError::BadSignature { .. })
        ));
        // A peer entry whose key is someone else's.
        let mut wrong_key = r.clone();
        wrong_key.peers.get_mut(&id(&b)).unwrap().public_key = peer_entry(&a, vec![]).1.public_key;
        assert!(matches!(
            validate(&wrong_key, 0),
            Err(RecordError::BadPeer(..))
        ));
        // A commit signed before more promises arrived no longer verifies.
        let mut late = r.clone();
        late.commits
            .insert(id(&a), sign_commit(&a, &r, VoteType::Approve, None));
        late.promises
            .insert(id(&b), sign_promise(&b, &r, VoteType::Approve, None));
        assert!(matches!(
            validate(&late, 0),
            Err(RecordError::BadSignature { kind: "commit", .. })
        ));
    }

    #[test]
    fn an_own_vote_is_trusted_only_for_the_exact_payload_and_signature() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let mut r = record(&[&a, &b], u64::MAX);
        let sig = sign_promise(&a, &r, VoteType::Approve, None);
        let signed = (promise_payload_of(&r, VoteType::Approve, None), sig.clone());
        let me = id(&a);
        let own = |peer: &str, payload: &[u8], vote: &Signature| {
            peer == me && signed.0 == payload && signed.1 == *vote
        };
        r.promises.insert(id(&a), sig.clone());
        assert_eq!(validate_trusting(&r, 0, &own).unwrap().approvals, 1);
        // The same signature under a flipped vote is neither trusted nor valid.
        let mut flipped = r.clone();
        flipped.promises.insert(
            id(&a),
            Signature {
                vote: VoteType::Reject,
                ..sig.clone()
            },
        );
        assert!(matches!(
            validate_trusting(&flipped, 0, &own),
            Err(RecordError::BadSignature { .. })
        ));
        // Nor moved to another peer set (the payload covers it).
        let c = Keypair::generate_ed25519();
        let mut moved = r.clone();
        moved.peers.extend([peer_entry(&c, vec![])]);
        assert!(matches!(
            validate_trusting(&moved, 0, &own),
            Err(RecordError::BadSignature { .. })
        ));
        // Nor claimed for another peer.
        let mut stolen = r.clone();
        stolen.promises.clear();
        stolen.promises.insert(id(&b), sig);
        assert!(matches!(
            validate_trusting(&stolen, 0, &own),
            Err(RecordError::BadSignature { .. })
        ));
    }

    #[test]
    fn only_the_coordinators_rejecting_commit_abandons() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let mut r = record(&[&a, &b], u64::MAX);
        Arc::make_mut(&mut r.message).coordinator = Some(id(&a));
        r.message_hash = message_hash(&r.message);
        assert!(!abandoned(&r));
        let mut by_member = r.clone();
        let vote = sign_commit(&b, &by_member, VoteType::Reject, Some("no".into()));
        by_member.commits.insert(id(&b), vote);
        assert!(validate(&by_member, 0).is_ok());
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
        );
        by_coordinator.commits.insert(id(&a), vote);
        assert!(validate(&by_coordinator, 0).is_ok());
        assert!(abandoned(&by_coordinator));
        // Naming another coordinator after signing alters the message: refused.
        let mut renamed = by_coordinator.clone();
        Arc::make_mut(&mut renamed.message).coordinator = Some(id(&b));
        assert!(matches!(
            validate(&renamed, 0),
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
            validate(&r, 0)
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
    fn majority_threshold() {
        assert_eq!(
            (
                majority(1),
                majority(2),
                majority(3),
                majority(4),
                majority(5)
            ),
            (1, 2, 2, 3, 3)
        );
    }
}
