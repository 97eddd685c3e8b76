//! A member left without a decision: a promise whose decision never came is
//! settled past its deadline by asking the other members (docs/CONSENSUS.md,
//! "Recovery"); a decision this copy could not apply yet is retried.
//!
//! A peer's record with a threshold of approving promises is the decision: this
//! member applies it. The coordinator's signed abort ends it. Otherwise this
//! member fences: it signs a rejecting commit and will never apply the record,
//! which is safe whatever the others did — the outcome is what a majority
//! durably did, and no member both applies and fences.

use std::time::Duration;

use actix::prelude::*;

use super::directory::MemberDirectory;
use super::{ClusterMember, Update, RETRY_MAX};
use crate::cluster::phase::{Event, Phase};
use crate::cluster::record::{abandoned, quorum_of, voters, VoteType};
use crate::cluster::votes::validate;
use crate::model::now_ms;

/// How long past its deadline a promised member waits before recovering.
pub(super) const RECOVERY_GRACE: Duration = Duration::from_secs(2);
/// How long after a restart a resumed member first asks its peers for the decision
/// (time to reconnect).
pub(super) const RESUME_QUERY_DELAY: Duration = Duration::from_millis(500);
/// Per-peer wait of a recovery query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl ClusterMember {
    /// Wakes this member up `RECOVERY_GRACE` after the deadline.
    pub(super) fn arm_recovery(&self, ctx: &mut Context<Self>) {
        let Some(deadline) = self
            .state
            .as_ref()
            .and_then(|s| s.record.message.expiration)
        else {
            return;
        };
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms())) + RECOVERY_GRACE;
        ctx.run_later(wait, |act, ctx| act.recover(ctx));
    }

    /// Tries a decision this copy could not apply yet again, after a backoff.
    pub(super) fn arm_retry(&mut self, ctx: &mut Context<Self>) {
        let wait = self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        ctx.run_later(wait, |act, ctx| {
            let Some(s) = act.state.as_ref().filter(|s| s.phase == Phase::Decided) else {
                return;
            };
            if ctx.address().try_send(Update(s.record.clone())).is_err() {
                act.arm_retry(ctx);
            }
        });
    }

    /// Still promised: ask the other members. A record with threshold promises
    /// (the decision) is applied; the coordinator's abort releases; past the
    /// deadline, anything else fences.
    pub(super) fn recover(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone().filter(|s| s.phase == Phase::Promised) else {
            return;
        };
        let Some(net) = self.dir.net.get().cloned() else {
            return self.arm_recovery(ctx);
        };
        let record = state.record;
        let queries: Vec<_> = MemberDirectory::addrs_of(&record)
            .into_iter()
            .filter(|(id, _)| *id != self.dir.me)
            .map(|(_, (peer, addrs))| {
                let (net, rec) = (net.clone(), record.clone());
                async move { net.query(peer, addrs, rec, QUERY_TIMEOUT).await }
            })
            .collect();
        let quorum = quorum_of(&record);
        let fut = fut::wrap_future::<_, Self>(futures::future::join_all(queries)).map(
            move |replies, act, ctx| {
                // Proof of the decision either way: a record whose approving
                // promises meet the quorum, or the coordinator's abort.
                let proof = replies.into_iter().flatten().find(|r| {
                    r.message_hash == act.hash
                        && validate(r).is_ok()
                        && (quorum.met_by(&voters(&r.promises, VoteType::Approve)) || abandoned(r))
                });
                let past = act
                    .state
                    .as_ref()
                    .and_then(|s| s.record.message.expiration)
                    .is_none_or(|d| now_ms() >= d);
                match proof {
                    Some(p) => {
                        if ctx.address().try_send(Update(p)).is_err() {
                            act.arm_recovery(ctx);
                        }
                    }
                    // Asked before the deadline (just resumed): the coordinator may
                    // still decide; the deadline's recovery settles it otherwise.
                    None if !past => {}
                    None => act.expire(ctx),
                }
            },
        );
        ctx.wait(fut);
    }

    /// No decision found past the deadline: fence (never apply) and release.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        let Some(record) = self.state.as_ref().map(|s| s.record.clone()) else {
            return;
        };
        if self
            .phase()
            .next(&Event::Expired { decision: false })
            .is_err()
        {
            return;
        }
        self.dir.fenced();
        let staged = self.fence(record, "fenced: no decision found past the deadline".into());
        let hash = self.hash.clone();
        let write = async move {
            match staged {
                Ok((_, Some(w))) => w.await.map_err(super::ClusterError::from),
                Ok((_, None)) => Ok(()),
                Err(e) => Err(e),
            }
        };
        ctx.wait(fut::wrap_future::<_, Self>(write).map(move |r, _, ctx| {
            if let Err(e) = r {
                tracing::error!(%hash, error = %e, "cannot persist the fence");
            }
            ctx.stop();
        }));
    }
}
