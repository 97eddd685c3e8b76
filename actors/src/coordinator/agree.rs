//! One record's two rounds (docs/CONSENSUS.md, "Coordinator"): promises from
//! the peers until a threshold of approvals agrees on every block's base, then
//! the decision; the write succeeds only once a threshold of members report it
//! applied with the same effect. Members still missing are retried in the
//! background until every member has voted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::{Multiaddr, PeerId};

use super::plan::Plan;
use super::Coordinator;
use crate::cluster::record::tally;
use crate::cluster::{
    decide, implied_outcome, majority, message_hash, sign_commit, ClusterRecord, Decision,
    EffectKind, Verdict, VoteType,
};
use crate::model::{
    ms_from_now, now_ms, ErrorCode, Failure, OpOutcome, RepoError, RepoMessage, RepoOperation,
};
use crate::net::cluster_update;

/// How a record ended, short of a result.
pub(super) enum Agreement {
    /// Nothing was applied anywhere: too few promises, or a majority fenced.
    Refused(String),
    /// The coordinator could not run or finish the record (in doubt when the
    /// decision went out).
    Failed(RepoError),
}

/// A member's answer: its PeerId and the record it returned.
type MemberCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = (String, Result<ClusterRecord, Failure>)> + Send>,
>;

/// How long stragglers of a decided record are retried past its deadline (the
/// decision stays valid; every member should vote).
const STRAGGLER_WINDOW: Duration = Duration::from_secs(60);

/// Lets the calls still running finish (their members still get the record).
fn finish_in_background(mut calls: FuturesUnordered<MemberCall>) {
    actix_rt::spawn(async move { while calls.next().await.is_some() {} });
}

/// The votes of phase 2, as they arrive.
#[derive(Default)]
struct Commits {
    /// Approving commits by the effect they report.
    by_effect: BTreeMap<Vec<EffectKind>, Vec<String>>,
    /// Members that will never apply (fenced, or refused as decided).
    fences: usize,
    /// Members that have not voted yet.
    stragglers: Vec<String>,
}

impl Commits {
    fn count(&mut self, peer: String, reply: Result<ClusterRecord, Failure>) {
        match reply {
            Ok(r) => match r.commits.get(&peer) {
                Some(v) if v.vote == VoteType::Approve => {
                    let effect = v.effect.clone().unwrap_or_default();
                    self.by_effect.entry(effect).or_default().push(peer);
                }
                Some(_) => self.fences += 1,
                None => self.stragglers.push(peer),
            },
            Err(f) if f.code == ErrorCode::Decided => self.fences += 1,
            Err(_) => self.stragglers.push(peer),
        }
    }

    /// The effect a threshold of members applied, if any.
    fn agreed(&self, threshold: usize) -> Option<&Vec<EffectKind>> {
        self.by_effect
            .iter()
            .find(|(_, peers)| peers.len() >= threshold)
            .map(|(e, _)| e)
    }
}

impl Coordinator {
    /// Runs one record over `plan`'s peers: promises, then (at threshold) the
    /// decision. Each operation's outcome once a threshold applied it alike.
    pub(super) async fn agree(
        &self,
        plan: &Plan,
        operations: Vec<RepoOperation>,
    ) -> Result<Vec<OpOutcome>, Agreement> {
        self.metrics.started.add(1);
        self.metrics.operations.add(operations.len() as u64);
        let message = RepoMessage {
            operations,
            expiration: Some(ms_from_now(self.timeout)),
            coordinator: Some(self.me.to_string()),
        };
        let mut record = ClusterRecord {
            message_hash: message_hash(&message),
            peers: plan.peers.clone(),
            message: message.into(),
            promises: BTreeMap::new(),
            commits: BTreeMap::new(),
        };
        let hash = record.message_hash.clone();
        self.members.note_message(&hash, &record.message);
        let threshold = majority(record.peers.len());
        let members = record.peers.len();
        let started = Instant::now();
        // Phase 1: promises until a threshold agrees on every block's base, or the
        // threshold is out of reach, or a third of the lifetime has passed.
        let phase1_budget = self.timeout / 3;
        let mut calls = self.calls(&record, &plan.remote);
        let (mut failures, mut answered) = (Vec::new(), 0);
        let _ = tokio::time::timeout(phase1_budget, async {
            while let Some((peer, reply)) = calls.next().await {
                answered += 1;
                match reply {
                    Ok(r) => {
                        if let Some(v) = r.promises.get(&peer) {
                            record.promises.insert(peer.clone(), v.clone());
                        }
                    }
                    Err(e) => failures.push(format!("{peer}: {e:?}")),
                }
                let t = tally(&record);
                if members.saturating_sub(t.rejections + failures.len()) < threshold {
                    break;
                }
                if t.approvals >= threshold
                    && (answered == members || !has_diverged(&decide(&record, threshold)))
                {
                    break;
                }
            }
        })
        .await;
        self.metrics.phase1.observe(started.elapsed());
        let approvals = tally(&record).approvals;
        if approvals < threshold {
            return Err(self.abort(record, calls, failures, &plan.remote).await);
        }
        finish_in_background(calls);
        // Phase 2: the decision; members apply it (or fence) and sign.
        let decision = decide(&record, threshold);
        self.metrics.committed.add(1);
        if has_diverged(&decision) {
            self.repair_diverged(&record, &decision);
        }
        if self.fault.hits(&record) {
            self.inject(&record, &plan.remote).await;
        }
        let phase2 = Instant::now();
        let phase2_budget = self
            .timeout
            .saturating_sub(started.elapsed())
            .max(self.timeout / 2);
        let me = self.me.to_string();
        let mut calls = self.calls(&record, &plan.remote);
        let mut commits = Commits::default();
        let mut local_done = false;
        let _ = tokio::time::timeout(phase2_budget, async {
            while let Some((peer, reply)) = calls.next().await {
                local_done |= peer == me;
                commits.count(peer, reply);
                let settled = commits.agreed(threshold).is_some() && local_done;
                let aborted = commits.fences > members - threshold;
                if settled || aborted {
                    break;
                }
            }
        })
        .await;
        self.metrics.phase2.observe(phase2.elapsed());
        let agreed = commits.agreed(threshold).cloned();
        let fences = commits.fences;
        let message = record.message.clone();
        self.retry_stragglers(calls, commits.stragglers, record, &plan.remote);
        let Some(effect) = agreed else {
            if fences > members - threshold {
                self.metrics.aborted.add(1);
                return Err(Agreement::Refused(format!(
                    "aborted: {fences} of {members} members fenced the decision"
                )));
            }
            self.metrics.in_doubt.add(1);
            tracing::warn!(%hash, threshold, "decided but not applied by a majority in time");
            return Err(Agreement::Failed(RepoError::InDoubt(format!(
                "transaction {hash} was decided but fewer than {threshold} of {members} members reported it applied in time"
            ))));
        };
        Ok(self.outcomes(&hash, &message.operations, &decision, &effect))
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

    /// Too few promises: the coordinator's signed abort goes to every member (they
    /// release at once, and a member that has not seen the proposal never
    /// promises it), and the refusal names the conflicts.
    async fn abort(
        &self,
        mut record: ClusterRecord,
        mut calls: FuturesUnordered<MemberCall>,
        failures: Vec<String>,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) -> Agreement {
        // Let the promise requests still in flight land first (bounded): a member
        // that heard the abort before the proposal would promise afterwards and
        // hold the blocks until the deadline.
        let _ = tokio::time::timeout(self.timeout / 3, async {
            while let Some((peer, reply)) = calls.next().await {
                if let Ok(r) = reply {
                    if let Some(v) = r.promises.get(&peer) {
                        record.promises.insert(peer, v.clone());
                    }
                }
            }
        })
        .await;
        self.metrics.aborted.add(1);
        let approvals = tally(&record).approvals;
        let threshold = majority(record.peers.len());
        let reason = "refused: too few promises".to_string();
        let vote = sign_commit(&self.key, &record, VoteType::Reject, Some(reason), None);
        record.commits.insert(self.me.to_string(), vote);
        // Members accept the abort even past the deadline; wait for it, so a retry
        // of the same writes does not find its own blocks still held.
        let mut release = self.calls(&record, remote);
        let _ = tokio::time::timeout(self.timeout / 3, async {
            while release.next().await.is_some() {}
        })
        .await;
        let mut reasons: Vec<String> = record
            .promises
            .values()
            .filter_map(|s| s.reject_reason.clone())
            .collect();
        reasons.extend(failures);
        Agreement::Refused(format!(
            "cluster refused ({approvals}/{threshold} promises): {}",
            reasons.join(", ")
        ))
    }

    /// Blocks whose approvals disagree get compared with their cluster in the
    /// background, so the write's retry finds them repaired.
    fn repair_diverged(&self, record: &ClusterRecord, d: &Decision) {
        let blocks: Vec<_> = d
            .verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Diverged(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        tracing::warn!(hash = %record.message_hash, ?blocks, "replicas disagree on blocks; repairing");
        let catch_up = self.catch_up.clone();
        actix_rt::spawn(async move { catch_up.repair(&blocks).await });
    }

    /// Test-only: stops between the phases (see [`super::fault`]).
    async fn inject(&self, record: &ClusterRecord, remote: &[(PeerId, Vec<Multiaddr>)]) {
        let mut reached = None;
        if self.fault == super::fault::Fault::HangAfterOneCommit {
            if let (Some(net), Some((peer, addrs))) = (self.net.get(), remote.first()) {
                let r = cluster_update(net, *peer, addrs.clone(), record.clone(), self.timeout);
                match r.await {
                    Ok(_) => reached = Some(peer.to_string()),
                    Err(e) => {
                        tracing::warn!(error = %e, "fault injection: phase 2 to one member failed")
                    }
                }
            }
        }
        self.fault.hang(record, reached.as_deref()).await;
    }

    /// One call per member (this node locally, the others over the network), each
    /// independent of `self` so unfinished ones can run on after a decision.
    fn calls(
        &self,
        record: &ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) -> FuturesUnordered<MemberCall> {
        let calls = FuturesUnordered::new();
        let (members, rec, me) = (self.members.clone(), record.clone(), self.me.to_string());
        calls.push(Box::pin(async move {
            let r = members.update(rec, &me).await;
            (me, r.map_err(|e| Failure::new(e.code(), e.to_string())))
        }) as MemberCall);
        let net = self.net.get().cloned();
        for (p, addrs) in remote {
            let (net, rec, addrs, peer, timeout) =
                (net.clone(), record.clone(), addrs.clone(), *p, self.timeout);
            calls.push(Box::pin(async move {
                let r = match net {
                    Some(net) => send(&net, peer, addrs, rec, timeout).await,
                    None => Err(Failure::new(ErrorCode::Unavailable, "network not started")),
                };
                (peer.to_string(), r)
            }));
        }
        calls
    }

    /// Lets unfinished calls complete, then re-sends the decided record to members
    /// that have not voted, with backoff, until every member has or the straggler
    /// window past the deadline ends (a member left out then settles by recovery).
    fn retry_stragglers(
        &self,
        rest: FuturesUnordered<MemberCall>,
        stragglers: Vec<String>,
        record: ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) {
        let net = self.net.get().cloned();
        let remote: BTreeMap<String, (PeerId, Vec<Multiaddr>)> = remote
            .iter()
            .map(|(p, a)| (p.to_string(), (*p, a.clone())))
            .collect();
        let timeout = self.timeout;
        actix_rt::spawn(async move {
            let mut rest = rest;
            let mut left = Commits {
                stragglers,
                ..Commits::default()
            };
            while let Some((peer, reply)) = rest.next().await {
                left.count(peer, reply);
            }
            let Some(net) = net else { return };
            let until = record
                .message
                .expiration
                .unwrap_or(0)
                .saturating_add(u64::try_from(STRAGGLER_WINDOW.as_millis()).unwrap_or(0));
            let mut backoff = Duration::from_millis(100);
            let mut stragglers = left.stragglers;
            while !stragglers.is_empty() && now_ms() < until {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let mut again = Commits::default();
                for peer in stragglers {
                    let Some((id, addrs)) = remote.get(&peer) else {
                        continue;
                    };
                    let r = send(&net, *id, addrs.clone(), record.clone(), timeout).await;
                    again.count(peer, r);
                }
                stragglers = again.stragglers;
            }
        });
    }
}

/// Delivers `record` to a remote member (a decided record is held back by the
/// test-only `drop-decisions` fault rule).
async fn send(
    net: &crate::net::NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: ClusterRecord,
    timeout: Duration,
) -> Result<ClusterRecord, Failure> {
    let decided = tally(&record).approvals > 0 && !crate::cluster::abandoned(&record);
    if decided && crate::faults::drops_decision(&peer) {
        return Err(Failure::new(
            ErrorCode::Unavailable,
            "decision dropped by an injected fault",
        ));
    }
    cluster_update(net, peer, addrs, record, timeout)
        .await
        .map_err(|e| RepoError::from(e).to_failure())
}

/// Whether some operation's block has no agreed base.
fn has_diverged(d: &Decision) -> bool {
    d.verdicts.iter().any(|v| matches!(v, Verdict::Diverged(_)))
}
