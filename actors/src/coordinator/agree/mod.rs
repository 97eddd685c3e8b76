//! One record's two rounds (docs/CONSENSUS.md, "Coordinator"): promises from
//! the peers until a threshold of approvals agrees on every block's base, then
//! the decision; the write succeeds only once a threshold of members report it
//! applied with the same effect. Members still missing are retried in the
//! background until every member has voted.
//!
//! - [`commits`]: the tally of phase-2 votes;
//! - [`deliver`]: calls to the members, the abort, stragglers and proofs.

mod commits;
mod deliver;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::stream::StreamExt;
use libp2p::{Multiaddr, PeerId};
use tracing::Instrument;

use self::commits::Commits;
use self::deliver::{finish_in_background, has_diverged};
use super::plan::Plan;
use super::{Coordinator, Outcome};
use crate::cluster::{
    decide, implied_outcome, majority, message_hash, quorum_of, voters, ClusterPeer, ClusterRecord,
    Decision, EffectKind, VoteType,
};
use crate::model::{
    ms_from_now, ConfigChange, ErrorCode, OpOutcome, RegionView, RepoError, RepoMessage,
    RepoOperation,
};

/// How a record ended, short of a result.
pub(super) enum Agreement {
    /// Nothing was applied anywhere: too few promises, or a majority fenced.
    Refused(String),
    /// A member holds another configuration of the record's regions than this
    /// coordinator planned with: nothing was reserved there; retry with its view.
    WrongCluster(Vec<RegionView>),
    /// The coordinator could not run or finish the record (in doubt when the
    /// decision went out).
    Failed(RepoError),
}

/// The peer a change adds, held back in phase 1 (docs/CONSENSUS.md, "Handing
/// over"): it is proposed to only once a majority of the old configuration has
/// promised — so the change's regions are reserved there and no write moves
/// them — and `prepare` has handed it every block those promisers hold.
pub(super) struct Held<'a> {
    /// The newcomer.
    pub peer: PeerId,
    /// The configuration the change starts from.
    pub from: crate::model::Config,
    /// Hands the newcomer what the promisers of `from` (given) hold.
    pub prepare: Prepare<'a>,
}

/// The hand-over a held-back newcomer waits for, given the promisers.
pub(super) type Prepare<'a> = Box<
    dyn FnOnce(Vec<PeerId>) -> futures::future::BoxFuture<'a, Result<(), RepoError>> + Send + 'a,
>;

/// Where a held-back newcomer stands.
enum HeldState<'a> {
    /// No peer is held back.
    None,
    /// Waiting for a majority of the old configuration.
    Waiting(Held<'a>),
    /// Being handed its blocks (still so if phase 1 ran out of time meanwhile).
    Preparing,
    /// Handed its blocks and proposed to.
    Ready,
    /// The hand-over failed.
    Failed(RepoError),
}

impl HeldState<'_> {
    /// Whether phase 1 may end as far as the newcomer goes: none is held back,
    /// or it holds the blocks and was proposed to.
    fn settled(&self) -> bool {
        matches!(self, Self::None | Self::Ready)
    }
}

/// A decided record, as the members applied it.
struct Agreed {
    decision: Decision,
    effect: Vec<EffectKind>,
}

impl Coordinator {
    /// Runs one record of writes over `plan`'s peers: promises, then the decision.
    /// Each operation's outcome once a majority of the configuration applied it
    /// alike.
    pub(super) async fn agree(
        &self,
        plan: &Plan,
        operations: Vec<RepoOperation>,
    ) -> Result<Vec<OpOutcome>, Agreement> {
        self.metrics.operations.add(operations.len() as u64);
        let message = RepoMessage {
            epochs: self.epochs_of(&operations),
            operations,
            expiration: Some(ms_from_now(self.timeout)),
            coordinator: Some(self.me.to_string()),
            change: None,
        };
        let record = self.record(message, plan.peers.clone());
        let hash = record.message_hash.clone();
        let ops = record.message.clone();
        let agreed = self.rounds(record, &plan.remote, None).await?;
        Ok(self.outcomes(&hash, &ops.operations, &agreed.decision, &agreed.effect))
    }

    /// Agrees a configuration change among its old and new members (a majority of
    /// each): `Ok` once a majority of both applied it. A peer the change adds is
    /// held back until `held` has handed it the regions' blocks.
    pub(super) async fn agree_change(
        &self,
        change: ConfigChange,
        held: Option<Held<'_>>,
    ) -> Result<(), RepoError> {
        let members = change.peers();
        let peers = self.configs.entries(&members).ok_or_else(|| {
            RepoError::Unavailable(format!("the keys of {members:?} are not known yet"))
        })?;
        let remote: Vec<(PeerId, Vec<Multiaddr>)> = peers
            .iter()
            .filter(|(id, _)| **id != self.me.to_string())
            .filter_map(|(id, p)| {
                let addrs = p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((id.parse().ok()?, addrs))
            })
            .collect();
        let message = RepoMessage {
            operations: Vec::new(),
            expiration: Some(ms_from_now(self.timeout)),
            coordinator: Some(self.me.to_string()),
            epochs: BTreeMap::new(),
            change: Some(change),
        };
        let record = self.record(message, peers);
        match self.rounds(record, &remote, held).await {
            Ok(_) => Ok(()),
            Err(Agreement::Refused(reason)) => Err(RepoError::Unavailable(reason)),
            Err(Agreement::WrongCluster(view)) => Err(RepoError::WrongCluster {
                message: "a member holds another configuration".into(),
                view,
            }),
            Err(Agreement::Failed(e)) => Err(e),
        }
    }

    fn record(&self, message: RepoMessage, peers: BTreeMap<String, ClusterPeer>) -> ClusterRecord {
        self.metrics
            .count(message.change.is_some(), Outcome::Started);
        let record = ClusterRecord {
            message_hash: message_hash(&message),
            peers,
            message: message.into(),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
        };
        self.members
            .note_message(&record.message_hash, &record.message);
        record
    }

    /// The two rounds of `record` with its members (this node and `remote`), the
    /// `held` one proposed to last (see [`Held`]).
    async fn rounds(
        &self,
        record: ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
        held: Option<Held<'_>>,
    ) -> Result<Agreed, Agreement> {
        let span = crate::cluster::txn_span(&record);
        self.rounds_in(record, remote, held).instrument(span).await
    }

    /// [`Self::rounds`], inside the transaction's span.
    async fn rounds_in(
        &self,
        mut record: ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
        held: Option<Held<'_>>,
    ) -> Result<Agreed, Agreement> {
        let hash = record.message_hash.clone();
        let quorum = quorum_of(&record);
        let members = record.peers.len();
        let threshold = majority(members);
        let started = Instant::now();
        let change = record.message.change.is_some();
        // Phase 1: promises until the approvals meet the quorum and agree on every
        // block's base, or refusals put the quorum out of reach, or every member
        // answered, or a third of the lifetime has passed.
        let held_peer = held.as_ref().map(|h| h.peer);
        let mut held = held.map_or(HeldState::None, HeldState::Waiting);
        // A hand-over runs inside phase 1: give it half the lifetime.
        let phase1_budget = if held_peer.is_some() {
            self.timeout / 2
        } else {
            self.timeout / 3
        };
        let proposal = record.clone();
        let first: Vec<(PeerId, Vec<Multiaddr>)> = remote
            .iter()
            .filter(|(p, _)| Some(*p) != held_peer)
            .cloned()
            .collect();
        let mut calls = self.calls(&record, &first);
        let (mut failures, mut failed, mut answered) = (Vec::new(), BTreeSet::new(), 0);
        let mut wrong: Vec<RegionView> = Vec::new();
        let _ = tokio::time::timeout(phase1_budget, async {
            while let Some((peer, reply)) = calls.next().await {
                answered += 1;
                match reply {
                    Ok(r) => {
                        if let Some(v) = r.promises.get(&peer) {
                            record.promises.insert(peer.clone(), v.clone());
                        }
                        // Only a change with a held-back newcomer counts here
                        // (writes skip it: this runs on every reply).
                        let approvals = match &held {
                            HeldState::Waiting(_) => voters(&record.promises, VoteType::Approve),
                            _ => Default::default(),
                        };
                        let ready = matches!(&held, HeldState::Waiting(h) if h.from.met_by(approvals.iter().copied()));
                        if ready {
                            if let HeldState::Waiting(h) = std::mem::replace(&mut held, HeldState::Preparing) {
                                let promisers: Vec<PeerId> = approvals
                                    .iter()
                                    .filter(|p| h.from.members.contains(**p))
                                    .filter_map(|p| p.parse().ok())
                                    .collect();
                                let peer = h.peer;
                                match (h.prepare)(promisers).await {
                                    Ok(()) => {
                                        held = HeldState::Ready;
                                        let addrs = remote
                                            .iter()
                                            .find(|(p, _)| *p == peer)
                                            .map(|(_, a)| a.clone())
                                            .unwrap_or_default();
                                        calls.push(self.remote_call(&proposal, peer, &addrs));
                                    }
                                    Err(e) => {
                                        held = HeldState::Failed(e);
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if e.code == ErrorCode::WrongCluster {
                            self.learn(&peer, &e.view);
                            wrong.extend(e.view.clone());
                        }
                        failures.push(format!("{peer}: {}: {}", e.code, e.message));
                        failed.insert(peer);
                    }
                }
                // Refusals alone settle it (a conflict). Lost only with the
                // failures counted, the rest still answer: their refusals make it
                // a conflict rather than a lack of quorum.
                if quorum.lost_to(&voters(&record.promises, VoteType::Reject)) {
                    break;
                }
                if quorum.met_by(&voters(&record.promises, VoteType::Approve))
                    && held.settled()
                    && (answered == members || !has_diverged(&decide(&record, threshold)))
                {
                    break;
                }
            }
        })
        .await;
        if !change {
            self.metrics.phase1.observe(started.elapsed());
        }
        // A newcomer not handed its blocks must not become a voter. (Waiting:
        // no majority of the old configuration promised, so the quorum is not met
        // either and the record is refused below.)
        let unprepared = match held {
            HeldState::Preparing => Some(RepoError::Unavailable(format!(
                "handing the newcomer its blocks took longer than {phase1_budget:?}"
            ))),
            HeldState::Failed(e) => Some(e),
            HeldState::None | HeldState::Waiting(_) | HeldState::Ready => None,
        };
        if let Some(e) = unprepared {
            let _ = self.abort(record, calls, failures.clone(), remote).await;
            return Err(Agreement::Failed(e));
        }
        if !quorum.met_by(&voters(&record.promises, VoteType::Approve)) {
            // Out of reach by refusals alone (a conflict), or only because members
            // could not be reached (no quorum: retry later, or elsewhere).
            let refusals = voters(&record.promises, VoteType::Reject);
            let unreachable = !failed.is_empty() && !quorum.lost_to(&refusals);
            // Those that answered but refused, named with the failures: a quorum
            // missed by one unreachable member and one refusal says both.
            let mut missing = failures.clone();
            missing.extend(record.promises.iter().filter_map(|(peer, v)| {
                v.reject_reason
                    .as_ref()
                    .map(|why| format!("{peer}: refused: {why}"))
            }));
            let refused = self.abort(record, calls, failures.clone(), remote).await;
            if !wrong.is_empty() {
                return Err(Agreement::WrongCluster(wrong));
            }
            if unreachable {
                return Err(Agreement::Failed(RepoError::Unavailable(format!(
                    "no quorum: too few of the {members} members of the blocks' configuration promised ({})",
                    missing.join(", ")
                ))));
            }
            return Err(refused);
        }
        finish_in_background(calls);
        // Phase 2: the decision; members apply it (or fence) and sign.
        let decision = decide(&record, threshold);
        self.metrics.count(change, Outcome::Committed);
        if has_diverged(&decision) {
            self.repair_diverged(&record, &decision);
        }
        if let Some(hang) = super::fault::hang_for(&record) {
            self.inject(hang, &record, remote).await;
        }
        let phase2 = Instant::now();
        let phase2_budget = self
            .timeout
            .saturating_sub(started.elapsed())
            .max(self.timeout / 2);
        let me = self.me.to_string();
        let local_member = record.peers.contains_key(&me);
        let mut calls = self.calls(&record, remote);
        let mut commits = Commits::default();
        let mut local_done = !local_member;
        let _ = tokio::time::timeout(phase2_budget, async {
            while let Some((peer, reply)) = calls.next().await {
                local_done |= peer == me;
                commits.count(peer, reply);
                let settled = commits.agreed(&quorum).is_some() && local_done;
                if settled || commits.aborted(&quorum) {
                    break;
                }
            }
        })
        .await;
        if !change {
            self.metrics.phase2.observe(phase2.elapsed());
        }
        let agreed = commits
            .agreed(&quorum)
            .map(|(e, votes)| (e.clone(), votes.clone()));
        let aborted = commits.aborted(&quorum);
        let fences = commits.fences.len();
        if let (true, Some((_, applied))) = (change, &agreed) {
            // Proof that a joint majority applied the change, for a member that
            // fenced it (docs/CONSENSUS.md, "A member that missed a change"):
            // kept here and sent to every member, so any of them can show it.
            let mut proof = record.clone();
            proof.commits = applied.clone();
            self.configs.changes().note(&proof);
            self.spread_proof(proof, remote);
        }
        let stragglers = std::mem::take(&mut commits.stragglers);
        self.retry_stragglers(calls, stragglers, record, remote);
        let Some((effect, _)) = agreed else {
            if aborted {
                self.metrics.count(change, Outcome::Aborted);
                return Err(Agreement::Refused(format!(
                    "aborted: {fences} of {members} members fenced the decision"
                )));
            }
            self.metrics.count(change, Outcome::InDoubt);
            tracing::warn!(%hash, "decided but not applied by a majority in time");
            return Err(Agreement::Failed(RepoError::InDoubt(format!(
                "transaction {hash} was decided but not reported applied by a majority of its {members} members in time"
            ))));
        };
        Ok(Agreed { decision, effect })
    }

    /// The answer to each operation: this node's own outcome when its copy took
    /// part with the agreed effect, else what the agreed effect implies.
    fn outcomes(
        &self,
        hash: &str,
        ops: &[RepoOperation],
        d: &Decision,
        effect: &[EffectKind],
    ) -> Vec<OpOutcome> {
        let local = self
            .members
            .result(hash)
            .filter(|l| l.iter().map(EffectKind::of).eq(effect.iter().cloned()));
        match local {
            Some(l) => l,
            None => ops
                .iter()
                .zip(&d.verdicts)
                .zip(effect)
                .map(|((op, v), k)| implied_outcome(d, op, v, k))
                .collect(),
        }
    }
}
