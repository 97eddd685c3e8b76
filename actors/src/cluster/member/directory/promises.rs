//! The promises this member signs: the block states an approving promise
//! reports, the signed promises it remembers (phase 2 trusts them) and the
//! messages whose hash it has checked.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::MemberDirectory;
use crate::cluster::record::{BlockState, ClusterRecord, Signature, States, VoteType};
use crate::cluster::votes::{promise_payload_of, sign_promise};
use crate::model::{BlockId, RepoMessage};

/// Most own promises remembered (past it the map starts over: votes get verified).
const MAX_OWN: usize = 65_536;

impl MemberDirectory {
    /// This node's state of each of `blocks`: its latest revision and the
    /// transactions pending on it (from storage: what is durable).
    pub(in crate::cluster::member) fn states(&self, blocks: &BTreeSet<BlockId>) -> States {
        let raw = self.repo.registry().raw();
        blocks
            .iter()
            .map(|b| {
                let latest = raw.get_meta(b).ok().flatten().and_then(|m| m.latest);
                let pendings = raw.list_pending(b).unwrap_or_default();
                (b.clone(), BlockState { latest, pendings })
            })
            .collect()
    }

    /// Signs this node's promise on `r` and remembers it (see `own`).
    pub(in crate::cluster::member) fn promise(
        &self,
        r: &ClusterRecord,
        vote: VoteType,
        reason: Option<String>,
        state: Option<States>,
    ) -> Signature {
        let sig = sign_promise(&self.key, r, vote, reason, state);
        let payload = promise_payload_of(r, &sig);
        if self.own.len() >= MAX_OWN {
            self.own.clear();
        }
        self.own
            .insert(r.message_hash.clone(), (payload, sig.clone()));
        sig
    }

    /// Forgets this node's promise once the transaction is decided here.
    pub(in crate::cluster::member) fn decided(&self, hash: &str) {
        self.own.remove(hash);
        self.hashed.remove(hash);
    }

    /// Remembers that `message` hashes to `hash` (this node's coordinator just
    /// computed it), so its own member does not hash it again.
    pub fn note_message(&self, hash: &str, message: &Arc<RepoMessage>) {
        if self.hashed.len() >= MAX_OWN {
            self.hashed.clear();
        }
        self.hashed.insert(hash.to_string(), message.clone());
    }
}
