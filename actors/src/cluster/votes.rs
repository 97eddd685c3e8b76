//! The signed vote payloads of a record and the validation of a record received
//! from anyone (docs/CONSENSUS.md, "Signed payloads" and "Validation"). Pure
//! functions, apart from a bounded cache of decoded public keys.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use dashmap::DashMap;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use super::canonical::digest;
use super::message_blocks;
use super::record::{
    message_hash, tally, ClusterPeer, ClusterRecord, RecordError, Signature, States, Tally,
    VoteType, MAX_OPERATIONS,
};

/// The digests a record's vote payloads cover, computed once per record.
struct Digests {
    peers: String,
    promises: String,
}

impl Digests {
    fn of(r: &ClusterRecord) -> Self {
        // The promise set, by its signatures: each signature binds its vote, reason
        // and state (Ed25519 signatures are deterministic), so the map of them fixes
        // the set as well as the whole votes would, at a fraction of the bytes.
        let signatures: BTreeMap<&str, &str> = r
            .promises
            .iter()
            .map(|(p, v)| (p.as_str(), v.signature.as_str()))
            .collect();
        Self {
            peers: digest(&r.peers),
            promises: digest(&signatures),
        }
    }
}

fn promise_payload(r: &ClusterRecord, d: &Digests, vote: &Signature) -> Vec<u8> {
    format!(
        "optimystic/cluster/v2/promise\n{}\n{}\n{}\n{}\n{}",
        r.message_hash,
        d.peers,
        vote.vote.as_str(),
        vote.reject_reason.as_deref().unwrap_or(""),
        vote.state.as_ref().map(state_digest).unwrap_or_default(),
    )
    .into_bytes()
}

/// `D(state)`, written straight to canonical JSON (ids are `[A-Za-z0-9_-]`, so
/// nothing needs escaping; keys in canonical order): a promise's state is hashed
/// on every signature and every check of it, for every block of a batch.
pub fn state_digest(state: &States) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 * state.len() + 2);
    out.push('{');
    for (i, (block, s)) in state.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{block}\":{{");
        let mut field = false;
        if let Some(l) = &s.latest {
            let _ = write!(
                out,
                "\"latest\":{{\"rev\":{},\"trxId\":\"{}\"}}",
                l.rev, l.trx_id
            );
            field = true;
        }
        if !s.pendings.is_empty() {
            if field {
                out.push(',');
            }
            out.push_str("\"pendings\":[");
            for (j, t) in s.pendings.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{t}\"");
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push('}');
    B64.encode(Sha256::digest(out.as_bytes()))
}

fn commit_payload(r: &ClusterRecord, d: &Digests, vote: &Signature) -> Vec<u8> {
    format!(
        "optimystic/cluster/v2/commit\n{}\n{}\n{}\n{}\n{}\n{}",
        r.message_hash,
        d.peers,
        vote.vote.as_str(),
        vote.reject_reason.as_deref().unwrap_or(""),
        d.promises,
        vote.effect.as_ref().map(digest).unwrap_or_default(),
    )
    .into_bytes()
}

/// An unsigned vote (its signature is filled in by [`sign`]).
fn vote(vote: VoteType, reason: Option<String>) -> Signature {
    Signature {
        vote,
        signature: String::new(),
        reject_reason: reason,
        state: None,
        effect: None,
    }
}

fn sign(key: &Keypair, payload: &[u8], mut v: Signature) -> Signature {
    // Ed25519 signing cannot fail.
    v.signature = B64.encode(key.sign(payload).unwrap_or_default());
    v
}

/// This member's promise (phase 1) on `r`: an approval reports `state`, the
/// member's state of the message's blocks; a rejection gives a reason.
pub fn sign_promise(
    key: &Keypair,
    r: &ClusterRecord,
    vote_type: VoteType,
    reason: Option<String>,
    state: Option<States>,
) -> Signature {
    let mut v = vote(vote_type, reason);
    v.state = state;
    let payload = promise_payload(r, &Digests::of(r), &v);
    sign(key, &payload, v)
}

/// This member's commit (phase 2) on `r`, covering its promise set: an approval
/// says it applied the decision, with what each operation did (`effect`); a
/// rejection that it never will (a fence, or the coordinator's abort).
pub fn sign_commit(
    key: &Keypair,
    r: &ClusterRecord,
    vote_type: VoteType,
    reason: Option<String>,
    effect: Option<Vec<super::decision::EffectKind>>,
) -> Signature {
    let mut v = vote(vote_type, reason);
    v.effect = effect;
    let payload = commit_payload(r, &Digests::of(r), &v);
    sign(key, &payload, v)
}

/// The bytes a promise `vote` on `r` signs.
pub fn promise_payload_of(r: &ClusterRecord, vote: &Signature) -> Vec<u8> {
    promise_payload(r, &Digests::of(r), vote)
}

/// Public keys already checked against their PeerId, by (peerId, publicKey) text:
/// decoding a key decompresses a curve point, which profiles showed dominating
/// validation. Bounded; cleared when full.
#[derive(Default)]
pub struct KeyCache {
    keys: DashMap<(String, String), PublicKey>,
}

/// Most keys a [`KeyCache`] holds before it starts over.
const KEY_CACHE_MAX: usize = 4096;

impl KeyCache {
    /// The key of peer `id` from its record entry, checked to belong to `id`.
    pub fn key(&self, id: &str, p: &ClusterPeer) -> Result<PublicKey, RecordError> {
        let cache_key = (id.to_string(), p.public_key.clone());
        if let Some(k) = self.keys.get(&cache_key) {
            return Ok(k.clone());
        }
        let key = decode_key(id, p)?;
        if self.keys.len() >= KEY_CACHE_MAX {
            self.keys.clear();
        }
        self.keys.insert(cache_key, key.clone());
        Ok(key)
    }
}

fn decode_key(id: &str, p: &ClusterPeer) -> Result<PublicKey, RecordError> {
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
    Ok(key)
}

/// Decides whether a vote is one this node signed itself: given the voter, the exact
/// payload the vote must cover and the vote, true skips its signature check.
pub type OwnVote<'a> = &'a dyn Fn(&str, &[u8], &Signature) -> bool;

/// How a record is checked.
pub struct Checks<'a> {
    /// Now, in ms since the epoch (the deadline is checked against it when
    /// `proposal`).
    pub now_ms: u64,
    /// A proposal (phase 1): refused past its deadline, or when the deadline lies
    /// more than `max_lifetime_ms` ahead. Decisions and aborts are accepted late.
    pub proposal: bool,
    /// Longest lifetime a proposal may ask for.
    pub max_lifetime_ms: u64,
    /// Votes this node signed itself (skip their signature check).
    pub own: OwnVote<'a>,
    /// The caller holds this exact message under this hash (skip re-hashing it).
    pub hash_known: bool,
    /// Decoded keys.
    pub keys: &'a KeyCache,
}

/// Checks a record's shape, hash and every vote's signature; the deadline only
/// as `checks` asks. Returns the tally of its votes.
pub fn validate_with(r: &ClusterRecord, checks: &Checks<'_>) -> Result<Tally, RecordError> {
    let ops = r.message.operations.len();
    let shaped = match &r.message.change {
        // A configuration change carries no operation.
        Some(change) => {
            change
                .check()
                .map_err(|e| RecordError::BadChange(e.to_string()))?;
            ops == 0
        }
        None => (1..=MAX_OPERATIONS).contains(&ops),
    };
    if !shaped {
        return Err(RecordError::Operations(ops));
    }
    if !checks.hash_known && message_hash(&r.message) != r.message_hash {
        return Err(RecordError::AlteredMessage);
    }
    let deadline = r.message.expiration.ok_or(RecordError::NoExpiration)?;
    if checks.proposal {
        if deadline < checks.now_ms {
            return Err(RecordError::Expired(deadline));
        }
        if deadline.saturating_sub(checks.now_ms) > checks.max_lifetime_ms {
            return Err(RecordError::TooFarAhead {
                deadline,
                max_ms: checks.max_lifetime_ms,
            });
        }
    }
    if r.peers.is_empty() {
        return Err(RecordError::NoPeers);
    }
    match &r.message.coordinator {
        Some(c) if r.peers.contains_key(c) => {}
        other => return Err(RecordError::Coordinator(other.clone())),
    }
    let keys = r
        .peers
        .iter()
        .map(|(id, p)| Ok((id.as_str(), checks.keys.key(id, p)?)))
        .collect::<Result<BTreeMap<_, _>, RecordError>>()?;
    let blocks = message_blocks(&r.message.operations);
    for (peer, v) in &r.promises {
        let shape_ok = match v.vote {
            VoteType::Approve => v.state.as_ref().is_some_and(|s| s.keys().eq(blocks.iter())),
            VoteType::Reject => v.state.is_none(),
        } && v.effect.is_none();
        if !shape_ok {
            return Err(RecordError::BadVote(
                peer.clone(),
                "an approving promise reports the state of exactly the message's blocks; a rejecting one none".into(),
            ));
        }
    }
    for (peer, v) in &r.commits {
        let shape_ok = v.state.is_none()
            && match v.vote {
                VoteType::Approve => v.effect.is_some(),
                VoteType::Reject => v.effect.is_none(),
            };
        if !shape_ok {
            return Err(RecordError::BadVote(
                peer.clone(),
                "an approving commit carries its effect; a rejecting one none".into(),
            ));
        }
    }
    let check = |kind: &'static str,
                 votes: &BTreeMap<String, Signature>,
                 payload: &dyn Fn(&Signature) -> Vec<u8>| {
        for (peer, sig) in votes {
            let key = keys
                .get(peer.as_str())
                .ok_or_else(|| RecordError::NonMember(peer.clone()))?;
            let bytes = payload(sig);
            if (checks.own)(peer, &bytes, sig) {
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
    check("promise", &r.promises, &|s| promise_payload(r, &digests, s))?;
    check("commit", &r.commits, &|s| commit_payload(r, &digests, s))?;
    Ok(tally(r))
}

/// Checks everything about a record except its deadline (a decided record is
/// valid past it): shape, hash, peers and every vote.
pub fn validate(r: &ClusterRecord) -> Result<Tally, RecordError> {
    validate_with(
        r,
        &Checks {
            now_ms: 0,
            proposal: false,
            max_lifetime_ms: u64::MAX,
            own: &|_, _, _| false,
            hash_known: false,
            keys: &KeyCache::default(),
        },
    )
}

#[cfg(test)]
mod tests;
