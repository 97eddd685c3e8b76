//! One record's two rounds: promises from the peers, then (at threshold) the
//! commit decision, answered with this node's own execution once a majority has
//! committed; members still missing are retried in the background.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::{Multiaddr, PeerId};

use super::plan::Plan;
use super::Coordinator;
use crate::cluster::record::tally;
use crate::cluster::{majority, message_hash, sign_commit, ClusterRecord, VoteType};
use crate::model::{
    ms_from_now, now_ms, ErrorCode, OpOutcome, OpResult, RepoError, RepoMessage, RepoOperation,
};
use crate::net::{cluster_update, NetError};

/// How a record ended, short of a result.
pub(super) enum Agreement {
    /// Fewer than threshold promises: nothing was applied anywhere.
    Refused(String),
    /// The coordinator could not run or finish the record.
    Failed(RepoError),
}

/// A member's answer: its PeerId and the record it returned.
type MemberCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = (String, Result<ClusterRecord, String>)> + Send>,
>;

/// Lets the calls still running finish (their members still get the record).
fn finish_in_background(mut calls: FuturesUnordered<MemberCall>) {
    actix_rt::spawn(async move { while calls.next().await.is_some() {} });
}

impl Coordinator {
    /// Runs one record over `plan`'s peers: promises, then (at threshold) commits.
    /// The local execution's outcomes, one per operation.
    pub(super) async fn agree(
        &self,
        plan: &Plan,
        operations: Vec<RepoOperation>,
    ) -> Result<Vec<OpOutcome>, Agreement> {
        self.metrics.started.add(1);
        self.metrics.operations.add(operations.len() as u64);
        let count = operations.len();
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
            heads: BTreeMap::new(),
        };
        let hash = record.message_hash.clone();
        self.members.note_message(&hash, &record.message);
        let threshold = majority(record.peers.len());
        let members = record.peers.len();
        // Phase 1: collect promises until the decision is known either way.
        let phase1 = Instant::now();
        let mut calls = self.calls(&record, &plan.remote);
        let mut failures = Vec::new();
        while let Some((peer, reply)) = calls.next().await {
            match reply {
                Ok(mut r) => {
                    if let Some(v) = r.promises.get(&peer) {
                        record.promises.insert(peer.clone(), v.clone());
                    }
                    if let Some(h) = r.heads.remove(&peer) {
                        record.heads.insert(peer, h);
                    }
                }
                Err(e) => failures.push(format!("{peer}: {e}")),
            }
            let t = tally(&record);
            let unreachable = members.saturating_sub(t.rejections + failures.len()) < threshold;
            if t.approvals >= threshold || unreachable {
                break;
            }
        }
        self.metrics.phase1.observe(phase1.elapsed());
        let approvals = tally(&record).approvals;
        if approvals < threshold {
            // Let the promise requests still in flight land first: a member that
            // heard the refusal before the proposal would promise afterwards and hold
            // the blocks until the deadline.
            let _ = tokio::time::timeout(self.timeout, async {
                while calls.next().await.is_some() {}
            })
            .await;
            self.metrics.aborted.add(1);
            // Decided abort, signed: members release at once (an unreachable
            // member is a failure, not a rejection, so without it the approving
            // ones could not tell the threshold is out of reach).
            let reason = "refused: too few promises".to_string();
            let vote = sign_commit(&self.key, &record, VoteType::Reject, Some(reason));
            record.commits.insert(self.me.to_string(), vote);
            // Tell members now so they release, not at expiry; wait for it, so a
            // retry of the same writes does not find its own blocks still held.
            let mut release = self.calls(&record, &plan.remote);
            let _ = tokio::time::timeout(self.timeout, async {
                while release.next().await.is_some() {}
            })
            .await;
            let mut reasons: Vec<String> = record
                .promises
                .values()
                .filter_map(|s| s.reject_reason.clone())
                .collect();
            reasons.extend(failures);
            return Err(Agreement::Refused(format!(
                "cluster refused ({approvals}/{threshold} promises): {}",
                reasons.join(", ")
            )));
        }
        finish_in_background(calls);
        // Phase 2: the decision is commit; members execute and sign. Answer once a
        // majority (this node included) has committed; retry the rest in the background.
        self.metrics.committed.add(1);
        if self.fault.hits(&record) {
            self.inject(&record, &plan.remote).await;
        }
        let phase2 = Instant::now();
        let me = self.me.to_string();
        let mut calls = self.calls(&record, &plan.remote);
        let (mut committed, mut local_done, mut stragglers) = (0, false, Vec::new());
        while let Some((peer, reply)) = calls.next().await {
            local_done |= peer == me;
            match reply {
                Ok(r) if r.commits.contains_key(&peer) => committed += 1,
                _ => stragglers.push(peer),
            }
            if local_done && committed >= threshold {
                break;
            }
        }
        self.metrics.phase2.observe(phase2.elapsed());
        if committed < threshold {
            self.metrics.in_doubt.add(1);
            tracing::warn!(%hash, committed, threshold, "commit decided but not yet acknowledged by a majority; retrying");
        }
        // Shared, not copied: read again once the results are in.
        let message = record.message.clone();
        self.retry_stragglers(calls, stragglers, record, &plan.remote);
        match self.members.result(&hash) {
            Some(mut results) if results.len() == count => {
                self.settle_local(&message.operations, &mut results).await;
                Ok(results)
            }
            _ => Err(Agreement::Failed(RepoError::InDoubt(format!(
                "transaction {hash} was not executed locally"
            )))),
        }
    }

    /// Replaces a false `not_pending` outcome of a decided commit. This node found
    /// no pending transaction because it has not applied the pend's decision yet:
    /// the pend went through another node, which answered once a majority without
    /// this one had it. Any two majorities share a member, so a member that
    /// committed this record had the pend and applied the commit before replying:
    /// the blocks are restored from the cluster and the commit is answered from
    /// the restored copy (a success, or the `stale` it really is). A commit of a
    /// transaction pended nowhere finds nothing newer and stays `not_pending`.
    async fn settle_local(&self, operations: &[RepoOperation], results: &mut [OpOutcome]) {
        for (op, result) in operations.iter().zip(results.iter_mut()) {
            let RepoOperation::Commit(c) = op else {
                continue;
            };
            let not_pending = matches!(result, Err(f) if f.code == ErrorCode::NotPending);
            if !not_pending || !self.catch_up.reach_commit(c).await {
                continue;
            }
            match self.repo.commit(c.clone()).await {
                Ok(r) => *result = Ok(OpResult::Commit(r)),
                Err(e) => {
                    tracing::warn!(trx = %c.trx_id, error = %e, "commit restored from the cluster but not readable here")
                }
            }
        }
    }

    /// Test-only: stops between the phases (see [`super::fault`]).
    async fn inject(&self, record: &ClusterRecord, remote: &[(PeerId, Vec<Multiaddr>)]) {
        if self.fault == super::fault::Fault::HangAfterOneCommit {
            if let (Some(net), Some((peer, addrs))) = (self.net.get(), remote.first()) {
                let r = cluster_update(net, *peer, addrs.clone(), record.clone(), self.timeout);
                if let Err(e) = r.await {
                    tracing::warn!(error = %e, "fault injection: phase 2 to one member failed");
                }
            }
        }
        self.fault.hang(record).await;
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
        calls.push(Box::pin(
            async move { (me, members.update(rec).await.map_err(|e| e.to_string())) },
        ) as MemberCall);
        let net = self.net.get().cloned();
        for (p, addrs) in remote {
            let (net, rec, addrs, peer, timeout) =
                (net.clone(), record.clone(), addrs.clone(), *p, self.timeout);
            calls.push(Box::pin(async move {
                let r = match net {
                    Some(net) => cluster_update(&net, peer, addrs, rec, timeout)
                        .await
                        .map_err(|e: NetError| e.to_string()),
                    None => Err("network not started".to_string()),
                };
                (peer.to_string(), r)
            }));
        }
        calls
    }

    /// Lets unfinished calls complete, then re-sends the decided record to members
    /// that have not committed, with backoff, until the record expires.
    fn retry_stragglers(
        &self,
        rest: FuturesUnordered<MemberCall>,
        mut stragglers: Vec<String>,
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
            while let Some((peer, reply)) = rest.next().await {
                if !reply.is_ok_and(|r| r.commits.contains_key(&peer)) {
                    stragglers.push(peer);
                }
            }
            let Some(net) = net else { return };
            let deadline = record.message.expiration.unwrap_or(0);
            let mut backoff = Duration::from_millis(100);
            while !stragglers.is_empty() && now_ms() < deadline {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let mut still = Vec::new();
                for peer in stragglers {
                    let Some((id, addrs)) = remote.get(&peer) else {
                        continue;
                    };
                    let ok = cluster_update(&net, *id, addrs.clone(), record.clone(), timeout)
                        .await
                        .is_ok_and(|r| r.commits.contains_key(&peer));
                    if !ok {
                        still.push(peer);
                    }
                }
                stragglers = still;
            }
        });
    }
}
