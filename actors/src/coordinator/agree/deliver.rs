//! The coordinator's calls to a record's members: one call per member, the
//! signed abort, stragglers retried past a decision, a change's proof spread to
//! every member, and the test-only stop between the phases.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::{Multiaddr, PeerId};

use super::commits::Commits;
use super::Agreement;
use crate::cluster::record::tally;
use crate::cluster::{majority, sign_commit, ClusterRecord, Decision, Verdict, VoteType};
use crate::coordinator::{Coordinator, Outcome};
use crate::model::{now_ms, ErrorCode, Failure, RepoError};

/// A member's answer: its PeerId and the record it returned.
pub(super) type MemberCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = (String, Result<ClusterRecord, Failure>)> + Send>,
>;

/// How long stragglers of a decided record are retried past its deadline (the
/// decision stays valid; every member should vote).
const STRAGGLER_WINDOW: Duration = Duration::from_secs(60);

/// Lets the calls still running finish (their members still get the record).
pub(super) fn finish_in_background(mut calls: FuturesUnordered<MemberCall>) {
    actix_rt::spawn(async move { while calls.next().await.is_some() {} });
}

impl Coordinator {
    /// Too few promises: the coordinator's signed abort goes to every member (they
    /// release at once, and a member that has not seen the proposal never
    /// promises it), and the refusal names the conflicts.
    pub(super) async fn abort(
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
        self.metrics
            .count(record.message.change.is_some(), Outcome::Aborted);
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
    pub(super) fn repair_diverged(&self, record: &ClusterRecord, d: &Decision) {
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

    /// Test-only: stops between the phases (see [`crate::coordinator::fault`]).
    pub(super) async fn inject(
        &self,
        hang: crate::faults::Hang,
        record: &ClusterRecord,
        remote: &[(PeerId, Vec<Multiaddr>)],
    ) {
        let mut reached = None;
        if hang == crate::faults::Hang::HangAfterOneCommit {
            if let (Some(net), Some((peer, addrs))) = (self.net.get(), remote.first()) {
                let r = net.update(*peer, addrs.clone(), record.clone(), self.timeout);
                match r.await {
                    Ok(_) => reached = Some(peer.to_string()),
                    Err(e) => {
                        tracing::warn!(error = %e, "fault injection: phase 2 to one member failed")
                    }
                }
            }
        }
        crate::coordinator::fault::hang(hang, record, reached.as_deref()).await;
    }

    /// One call per member (this node locally, the others over the network), each
    /// independent of `self` so unfinished ones can run on after a decision.
    pub(super) fn calls(
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
        for (p, addrs) in remote {
            calls.push(self.remote_call(record, *p, addrs));
        }
        calls
    }

    /// One call of `record` to the remote member `peer`.
    pub(super) fn remote_call(
        &self,
        record: &ClusterRecord,
        peer: PeerId,
        addrs: &[Multiaddr],
    ) -> MemberCall {
        let (net, rec, addrs, timeout) = (
            self.net.get().cloned(),
            record.clone(),
            addrs.to_vec(),
            self.timeout,
        );
        Box::pin(async move {
            let r = match net {
                Some(net) => send(net.as_ref(), peer, addrs, rec, timeout).await,
                None => Err(Failure::new(ErrorCode::Unavailable, "network not started")),
            };
            (peer.to_string(), r)
        })
    }

    /// Sends every remote member the record proving a joint majority applied a
    /// change, in the background: each keeps it among its recent changes, and
    /// one that fenced the change takes its configuration.
    pub(super) fn spread_proof(&self, proof: ClusterRecord, remote: &[(PeerId, Vec<Multiaddr>)]) {
        let Some(net) = self.net.get().cloned() else {
            return;
        };
        let (remote, timeout) = (remote.to_vec(), self.timeout);
        actix_rt::spawn(async move {
            futures::future::join_all(remote.into_iter().map(|(peer, addrs)| {
                let (net, proof) = (net.clone(), proof.clone());
                async move {
                    if let Err(e) = net.update(peer, addrs, proof, timeout).await {
                        tracing::debug!(%peer, error = %e, "a member did not take a change's proof");
                    }
                }
            }))
            .await;
        });
    }

    /// Lets unfinished calls complete, then re-sends the decided record to members
    /// that have not voted, with backoff, until every member has or the straggler
    /// window past the deadline ends (a member left out then settles by recovery).
    pub(super) fn retry_stragglers(
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
                    let r = send(net.as_ref(), *id, addrs.clone(), record.clone(), timeout).await;
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
    net: &dyn crate::model::Peers,
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
    net.update(peer, addrs, record, timeout)
        .await
        .map_err(|e| RepoError::from(e).to_failure())
}

/// Whether some operation's block has no agreed base.
pub(super) fn has_diverged(d: &Decision) -> bool {
    d.verdicts.iter().any(|v| matches!(v, Verdict::Diverged(_)))
}
