//! The votes of phase 2 as they arrive: approving commits grouped by the effect
//! they report, fences, and members that have not voted yet.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{ClusterRecord, EffectKind, Signature, VoteType};
use crate::membership::Quorum;
use crate::model::{ErrorCode, Failure};

/// The votes of phase 2, as they arrive.
#[derive(Default)]
pub(super) struct Commits {
    /// Approving commits (each member's signed vote) by the effect they report.
    pub(super) by_effect: BTreeMap<Vec<EffectKind>, BTreeMap<String, Signature>>,
    /// Members that will never apply (fenced, refused as decided, or moved to
    /// another configuration).
    pub(super) fences: BTreeSet<String>,
    /// Members that have not voted yet.
    pub(super) stragglers: Vec<String>,
}

impl Commits {
    /// Counts `peer`'s answer to the decided record.
    pub(super) fn count(&mut self, peer: String, reply: Result<ClusterRecord, Failure>) {
        match reply {
            Ok(r) => match r.commits.get(&peer) {
                Some(v) if v.vote == VoteType::Approve => {
                    let effect = v.effect.clone().unwrap_or_default();
                    self.by_effect
                        .entry(effect)
                        .or_default()
                        .insert(peer, v.clone());
                }
                Some(_) => {
                    self.fences.insert(peer);
                }
                None => self.stragglers.push(peer),
            },
            Err(f) if matches!(f.code, ErrorCode::Decided | ErrorCode::WrongCluster) => {
                self.fences.insert(peer);
            }
            Err(_) => self.stragglers.push(peer),
        }
    }

    /// The effect members meeting the quorum applied, with their votes, if any.
    pub(super) fn agreed(
        &self,
        quorum: &Quorum,
    ) -> Option<(&Vec<EffectKind>, &BTreeMap<String, Signature>)> {
        self.by_effect
            .iter()
            .find(|(_, votes)| quorum.met_by(&votes.keys().map(String::as_str).collect()))
    }

    /// Whether the fences leave the quorum out of reach.
    pub(super) fn aborted(&self, quorum: &Quorum) -> bool {
        quorum.lost_to(&self.fences.iter().map(String::as_str).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn answer(
        peer: &str,
        vote: Option<(VoteType, Vec<EffectKind>)>,
    ) -> Result<ClusterRecord, Failure> {
        let message = crate::model::RepoMessage {
            operations: Vec::new(),
            expiration: Some(1),
            coordinator: Some("a".into()),
            epochs: BTreeMap::new(),
            change: None,
        };
        let mut r = ClusterRecord {
            message_hash: "h".into(),
            peers: BTreeMap::new(),
            message: message.into(),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
        };
        if let Some((vote, effect)) = vote {
            let sig = Signature {
                vote,
                signature: format!("sig-{peer}"),
                reject_reason: None,
                state: None,
                effect: Some(effect),
            };
            r.commits.insert(peer.to_string(), sig);
        }
        Ok(r)
    }

    fn members() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn a_majority_agreeing_on_one_effect_is_agreed_and_split_effects_are_not() {
        let quorum = Quorum::majority(&members());
        let mut c = Commits::default();
        c.count(
            "a".into(),
            answer("a", Some((VoteType::Approve, vec![EffectKind::Ok]))),
        );
        c.count(
            "b".into(),
            answer("b", Some((VoteType::Approve, vec![EffectKind::Refused]))),
        );
        assert!(
            c.agreed(&quorum).is_none(),
            "two members applied differently"
        );
        c.count(
            "c".into(),
            answer("c", Some((VoteType::Approve, vec![EffectKind::Ok]))),
        );
        let (effect, votes) = c.agreed(&quorum).unwrap();
        assert_eq!(effect, &vec![EffectKind::Ok]);
        assert_eq!(votes.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert!(!c.aborted(&quorum));
    }

    #[test]
    fn fences_decided_refusals_and_silence_are_told_apart() {
        let quorum = Quorum::majority(&members());
        let mut c = Commits::default();
        c.count(
            "a".into(),
            answer("a", Some((VoteType::Reject, Vec::new()))),
        );
        c.count("b".into(), Err(Failure::new(ErrorCode::Decided, "decided")));
        c.count(
            "c".into(),
            Err(Failure::new(ErrorCode::Unavailable, "timeout")),
        );
        assert_eq!(c.fences.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.stragglers, ["c"]);
        assert!(c.aborted(&quorum));
        // An answer that carries no vote of the member is a straggler too.
        c.count("c".into(), answer("c", None));
        assert_eq!(c.stragglers, ["c", "c"]);
    }
}
