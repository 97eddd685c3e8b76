//! The placement driver: moves every region this node leads toward its target,
//! one member at a time, through agreed configuration changes (docs/CONSENSUS.md,
//! "Configurations"). A region's leader is the lowest PeerId among its members
//! that this node sees live (itself included); regions that take the same step
//! share one change record.
//!
//! Before a change adds a peer, the leader hands it every block of the regions,
//! and the rest inside the change ([`super::handover`]), so a newcomer votes
//! with the data. Failing steps back off. A member that stayed away past the dead-peer timeout is
//! no longer a candidate, so the target replaces it with a live peer; a
//! configuration never shrinks below `cluster_size` for lack of one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;

use super::Coordinator;
use crate::membership::{next_step, peer_key, target_keyed};
use crate::model::{BlockId, Config, ConfigChange, Region, RepoError};

/// Most steps one pass takes at once (they touch disjoint regions).
const STEPS_AT_ONCE: usize = 8;

impl Coordinator {
    /// One pass of the driver: notes the peers identify described, then takes
    /// the steps due (see [`Self::step`]). Returns whether a change was agreed.
    pub(super) async fn place(self: &Arc<Self>) -> bool {
        let Ok(net) = self.net() else {
            return false;
        };
        let view = net.member_view();
        let generation = self.configs.generation();
        let retired = self.configs.retired();
        let live = self.candidates(&view, &retired);
        {
            let mut state = self.placement.lock();
            let new_view = !state.view.as_ref().is_some_and(|v| Arc::ptr_eq(v, &view));
            if new_view {
                for p in &view.members {
                    self.configs
                        .note_identified(p.peer_id, &p.public_key, &p.addrs);
                }
                self.configs
                    .note_identified(self.me, &self.key.public(), &view.listen_addrs);
                state.view = Some(view.clone());
            }
            if state.idle.as_ref() == Some(&(generation, live.clone())) {
                return false;
            }
        }
        let (changes, deferred) = self.due(&live, &retired);
        if changes.is_empty() {
            if !deferred {
                self.placement.lock().idle = Some((generation, live));
            }
            return false;
        }
        // One scan of the stored blocks for every hand-over of this pass.
        let blocks = if changes.iter().any(|c| c.added().is_some()) {
            match self.stored_blocks().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list blocks to hand over");
                    return false;
                }
            }
        } else {
            Vec::new()
        };
        let steps = changes.into_iter().map(|c| self.step(c, &blocks));
        futures::future::join_all(steps)
            .await
            .into_iter()
            .any(|agreed| agreed)
    }

    /// The peers placement chooses among: the live members of `view` and this
    /// node, less the `retired` and those not allowed to be members; sorted.
    pub(super) fn candidates(
        &self,
        view: &crate::model::MemberView,
        retired: &BTreeSet<String>,
    ) -> Vec<PeerId> {
        let mut live: Vec<PeerId> = view.members.iter().map(|p| p.peer_id).collect();
        live.push(self.me);
        live.retain(|p| {
            let name = p.to_string();
            !retired.contains(&name) && self.configs.may_be_member(&name)
        });
        live.sort();
        live.dedup();
        live
    }

    /// Retires `peer` on an operator's word (`optimystic peers remove`): durably
    /// a candidate for no region. The driver then replaces it in every region
    /// this node is a member of, and those changes retire it on their members
    /// too. Returns how many of this node's regions still have it as a member.
    pub(super) async fn retire(&self, peer: &str) -> Result<usize, RepoError> {
        let id: PeerId = peer
            .parse()
            .map_err(|_| RepoError::Invalid(format!("{peer:?} is not a PeerId")))?;
        let name = id.to_string();
        if id == self.me {
            return Err(RepoError::Invalid(
                "a node does not remove itself: run `optimystic leave` on it, or this command on another member".into(),
            ));
        }
        let regions = self.configs.regions_with(&name);
        if regions == 0 && self.configs.peer(&name).is_none() && !self.configs.is_retired(&name) {
            return Err(RepoError::Invalid(format!(
                "{name} is not a peer this node has had in a configuration"
            )));
        }
        if let Some(w) = self.configs.retire(&name)? {
            w.await?;
            tracing::info!(peer = %name, regions, "peer retired by the operator");
        }
        Ok(regions)
    }

    /// Takes one step: hands its regions' blocks to the peer it adds, if any,
    /// then agrees the change. Returns whether it was agreed.
    async fn step(self: &Arc<Self>, change: ConfigChange, blocks: &[BlockId]) -> bool {
        if let Some(peer) = change.added().cloned() {
            // Committed history only: which pending transactions a newcomer
            // holds is settled inside the change, from a majority.
            if let Err(e) = self.hand_over(&peer, &change.regions, blocks, None).await {
                tracing::warn!(%peer, error = %e, "cannot hand blocks to a joining peer");
                self.placement
                    .lock()
                    .backoff
                    .settle((change.from.clone(), change.to.clone()), false);
                return false;
            }
        }
        let (regions, to) = (change.regions.len(), change.to.clone());
        let key = (change.from.clone(), change.to.clone());
        let held = change
            .added()
            .and_then(|p| p.parse::<PeerId>().ok())
            .filter(|p| *p != self.me)
            .map(|peer| {
                let (me, from, wanted) =
                    (self.clone(), change.from.clone(), change.regions.clone());
                super::agree::Held {
                    peer,
                    from: from.clone(),
                    prepare: Box::new(move |promisers| {
                        Box::pin(async move {
                            me.complete_hand_over(peer, &from, &wanted, &promisers)
                                .await
                        })
                    }),
                }
            });
        let agreed = self.agree_change(change, held).await;
        self.placement.lock().backoff.settle(key, agreed.is_ok());
        match agreed {
            Ok(()) => {
                tracing::info!(regions, epoch = to.epoch, members = ?to.members, "configuration change agreed");
                true
            }
            Err(e) => {
                tracing::debug!(regions, error = %e, "configuration change not agreed");
                false
            }
        }
    }

    /// The steps due among the regions this node leads (at most
    /// [`STEPS_AT_ONCE`]), each with every region that takes the same step, and
    /// whether some were left for later because they failed lately. A
    /// region with a retired member is led by every live member that knows it is
    /// retired (the others may not know yet; concurrent steps of one region are
    /// safe, one is agreed and the rest conflict).
    fn due(&self, live: &[PeerId], retired: &BTreeSet<String>) -> (Vec<ConfigChange>, bool) {
        let k = self.configs.cluster_size();
        let me = self.me.to_string();
        let names: BTreeSet<String> = live.iter().map(ToString::to_string).collect();
        let keyed: Vec<([u8; 32], PeerId)> = live.iter().map(|p| (peer_key(p), *p)).collect();
        let table = self.configs.table();
        let mut steps: BTreeMap<(Config, Config), Vec<Region>> = BTreeMap::new();
        for (config, regions) in table.groups() {
            let leader = config.members.iter().find(|m| names.contains(*m));
            // A leaving node (retired itself) is in no candidate list, yet it
            // holds the data: it leads its own replacement.
            let retiring = (names.contains(&me) || config.members.contains(&me))
                && config.members.iter().any(|m| retired.contains(m));
            if leader != Some(&me) && !retiring {
                continue;
            }
            for r in regions {
                let t = target_keyed(r, &keyed, k);
                if let Some(next) = next_step(config, &t, k) {
                    steps.entry((config.clone(), next)).or_default().push(r);
                }
            }
        }
        let backoff = &self.placement.lock().backoff;
        let now = std::time::Instant::now();
        let deferred = steps.keys().any(|k| !backoff.may_try(k, now));
        let changes = steps
            .into_iter()
            .filter(|(k, _)| backoff.may_try(k, now))
            .take(STEPS_AT_ONCE)
            .map(|((from, to), regions)| {
                let mut change = ConfigChange {
                    regions,
                    from,
                    to,
                    retire: false,
                };
                change.retire = change.removed().is_some_and(|p| retired.contains(p));
                change
            })
            .collect();
        (changes, deferred)
    }

    /// Every block this node stores.
    pub(super) async fn stored_blocks(&self) -> Result<Vec<BlockId>, RepoError> {
        let raw = self.repo.registry().raw().clone();
        Ok(tokio::task::spawn_blocking(move || raw.list_blocks())
            .await
            .map_err(|e| RepoError::Unavailable(format!("block scan failed: {e}")))??)
    }
}

/// What the driver remembers between passes.
#[derive(Default)]
pub(super) struct State {
    /// The member view whose peers were last noted in the peer book.
    view: Option<Arc<crate::model::MemberView>>,
    /// The table generation and live peers of the last pass that found nothing
    /// due: while both are unchanged, nothing is.
    idle: Option<(u64, Vec<PeerId>)>,
    /// Steps that failed lately, tried again only after a growing pause.
    backoff: Backoff,
    /// When co-members' configurations were last compared with this node's
    /// ([`super::lagging`]).
    pub(super) checked: Option<std::time::Instant>,
    /// (change hash, member): the member was seen holding the change's
    /// configuration, and is not asked about it again until `seen_since` is
    /// older than [`super::lagging::ASK_AGAIN`].
    pub(super) seen: BTreeSet<(String, String)>,
    /// When `seen` was last emptied.
    pub(super) seen_since: Option<std::time::Instant>,
}

/// The first pause after a step fails; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(300);
/// The longest pause.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Failing steps, and when each may be tried again. A change's promise reserves
/// its regions, so a step retried at every pass while it cannot succeed (its
/// newcomer unreachable, its members cut off) would keep refusing writes there
/// with `conflict`: each failure in a row doubles the pause before the next try.
#[derive(Default)]
struct Backoff {
    failing: BTreeMap<(Config, Config), (u32, std::time::Instant)>,
}

impl Backoff {
    /// Whether step `key` may be tried at `now`.
    fn may_try(&self, key: &(Config, Config), now: std::time::Instant) -> bool {
        self.failing.get(key).is_none_or(|(_, at)| *at <= now)
    }

    /// Records how step `key` ended.
    fn settle(&mut self, key: (Config, Config), agreed: bool) {
        if agreed {
            self.failing.remove(&key);
            return;
        }
        let n = self.failing.get(&key).map_or(0, |(n, _)| *n);
        let pause = BACKOFF_FIRST
            .saturating_mul(1u32 << n.min(16))
            .min(BACKOFF_MAX);
        self.failing
            .insert(key, (n + 1, std::time::Instant::now() + pause));
        // Bounded: past 4,096 failing steps the first keys are forgotten (and so
        // tried again at once).
        while self.failing.len() > 4096 {
            self.failing.pop_first();
        }
    }
}

/// How often the driver looks for a step to take.
pub(crate) const PLACEMENT_INTERVAL: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cfg;

    #[test]
    fn a_failing_step_waits_longer_each_time_and_an_agreed_one_not_at_all() {
        let key = (cfg(1, &["a"]), cfg(2, &["a", "b"]));
        let mut b = Backoff::default();
        let now = std::time::Instant::now();
        assert!(b.may_try(&key, now));
        b.settle(key.clone(), false);
        assert!(!b.may_try(&key, std::time::Instant::now()));
        assert!(b.may_try(&key, now + BACKOFF_FIRST + Duration::from_millis(50)));
        for _ in 0..20 {
            b.settle(key.clone(), false);
        }
        let later = std::time::Instant::now();
        assert!(!b.may_try(&key, later + BACKOFF_MAX - Duration::from_millis(50)));
        assert!(b.may_try(&key, later + BACKOFF_MAX + Duration::from_millis(50)));
        b.settle(key.clone(), true);
        assert!(b.may_try(&key, std::time::Instant::now()));
    }
}
