//! Co-members that missed a configuration change (docs/CONSENSUS.md, "A member
//! that missed a change"). A change is agreed by a joint majority, so a member
//! of its new configuration may never hear of it — its proposal and decision
//! both lost, or it was down past the straggler window — and then holds an older
//! configuration, or none, while the others count it as a member. Every few
//! seconds each node asks the live members of the changes it applied lately
//! (until it has seen each hold the change's configuration) for their view of
//! those regions, and sends one that is behind the decided changes it missed,
//! oldest first: the member validates each like any decided record and applies
//! it. A member a change removed is asked too: one that missed its removal
//! would go on counting itself a member of those regions. A member seen holding
//! a change is asked again a minute later: it may have lost its store since.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::Coordinator;
use crate::cluster::ClusterRecord;
use crate::model::NetError;
use crate::model::{codes, Config, Region};

/// How often co-members' configurations are compared with this node's.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a member seen holding a change is not asked about it again. A
/// member can lose what it held — its store lost, its identity kept — and would
/// otherwise never be told its configurations again.
pub(super) const ASK_AGAIN: Duration = Duration::from_secs(60);
/// Regions asked per `configs` request.
const REGIONS_PER_ASK: usize = 1024;
/// Per-request wait.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Compares co-members' configurations with this node's once
    /// [`CHECK_EVERY`] has passed since the last time.
    pub(super) async fn bring_up_lagging_if_due(&self) {
        {
            let mut state = self.placement.lock();
            if state.checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
                return;
            }
            state.checked = Some(Instant::now());
            if state.seen_since.is_none_or(|at| at.elapsed() >= ASK_AGAIN) {
                state.seen.clear();
                state.seen_since = Some(Instant::now());
            }
        }
        self.bring_up_lagging().await
    }

    /// Asks each live member of a recent change's new configuration — still
    /// this node's configuration of some of its regions, and not yet seen
    /// holding it — and each member the change removed for its view of those
    /// regions; one that holds an older configuration (or none) is sent the
    /// decided changes leading to this node's (to the change's, for a removed
    /// member). A member seen holding a change's configuration is not asked
    /// about it again, so a settled network asks nothing.
    async fn bring_up_lagging(&self) {
        let Some(live) = self.live_by_name() else {
            return;
        };
        let me = self.me.to_string();
        let recent = self.configs.changes().recent();
        // Per member: the regions to ask about, and the changes they settle.
        let mut asks: BTreeMap<String, (BTreeMap<Region, Config>, Vec<String>)> = BTreeMap::new();
        {
            let table = self.configs.table();
            let seen = &self.placement.lock().seen;
            for r in &recent {
                let Some(c) = r.message.change.as_ref() else {
                    continue;
                };
                // Members of `to`: about the regions still at `to` here. Members
                // the change removed: about every region it moved that this node
                // holds at `to` or later without them — until told, they would
                // go on counting themselves members.
                let current: Vec<Region> = c
                    .regions
                    .iter()
                    .copied()
                    .filter(|g| table.get(*g) == Some(&c.to))
                    .collect();
                let removed: Vec<&String> = c
                    .from
                    .members
                    .iter()
                    .filter(|m| !c.to.members.contains(*m))
                    .collect();
                for m in c.to.members.iter().chain(removed.iter().copied()) {
                    if *m == me
                        || !live.contains_key(m)
                        || seen.contains(&(r.message_hash.clone(), m.clone()))
                    {
                        continue;
                    }
                    let regions: Vec<Region> = if c.to.members.contains(m) {
                        current.clone()
                    } else {
                        c.regions
                            .iter()
                            .copied()
                            .filter(|g| {
                                table.get(*g).is_some_and(|k| {
                                    k.epoch >= c.to.epoch && !k.members.contains(m)
                                })
                            })
                            .collect()
                    };
                    if regions.is_empty() {
                        continue;
                    }
                    let ask = asks.entry(m.clone()).or_default();
                    ask.0.extend(regions.iter().map(|g| (*g, c.to.clone())));
                    ask.1.push(r.message_hash.clone());
                }
            }
        }
        for (member, (regions, hashes)) in asks {
            let Some((peer, addrs)) = live.get(&member).cloned() else {
                continue;
            };
            let regions: Vec<(Region, Config)> = regions.into_iter().collect();
            let Some(missed) = self.missed_by(&member, peer, &addrs, &regions).await else {
                continue;
            };
            // Settled for these changes: it holds them, or it refused one for
            // good (it fenced it, or holds another configuration) — asking it
            // again would not change that. Only a failure to reach it is retried.
            let settled = if missed.is_empty() {
                true
            } else {
                self.send_missed(&member, peer, &addrs, &missed).await
            };
            if settled {
                let mut state = self.placement.lock();
                state
                    .seen
                    .extend(hashes.into_iter().map(|h| (h, member.clone())));
                // Bounded: changes no longer kept are forgotten first.
                let kept: BTreeSet<&String> = recent.iter().map(|r| &r.message_hash).collect();
                state.seen.retain(|(h, _)| kept.contains(h));
            }
        }
    }

    /// Sends `member` the decided changes it missed, oldest first. Returns
    /// whether that settled it: it applied them all, or refused one for good.
    async fn send_missed(
        &self,
        member: &str,
        peer: PeerId,
        addrs: &[Multiaddr],
        missed: &[ClusterRecord],
    ) -> bool {
        let Ok(net) = self.net() else {
            return false;
        };
        for (applied, record) in missed.iter().enumerate() {
            let sent = net
                .update(peer, addrs.to_vec(), record.clone(), self.timeout)
                .await;
            if let Err(e) = sent {
                let lasting = matches!(&e, NetError::WrongCluster { .. })
                    || matches!(&e, NetError::Remote { code, .. } if code == codes::DECIDED);
                let view = match &e {
                    // The first few regions it holds otherwise: enough to see why.
                    NetError::WrongCluster { view, .. } => {
                        format!("{:?}", view.iter().take(3).collect::<Vec<_>>())
                    }
                    _ => String::new(),
                };
                let change = record
                    .message
                    .change
                    .as_ref()
                    .map(|c| format!("{:?} -> {:?}", c.from, c.to));
                tracing::warn!(me = %self.me, %member, applied, error = %e, ?change, %view, "a co-member did not take a change it missed");
                return lasting;
            }
        }
        tracing::info!(%member, changes = missed.len(), "sent a co-member the configuration changes it missed");
        true
    }

    /// The decided changes `member` lacks of `regions` (each with this node's
    /// configuration of it), oldest first, each once; `None` when it could not
    /// be asked.
    async fn missed_by(
        &self,
        member: &str,
        peer: PeerId,
        addrs: &[Multiaddr],
        regions: &[(Region, Config)],
    ) -> Option<Vec<ClusterRecord>> {
        let net = self.net().ok()?;
        let mut missed: BTreeMap<(u64, String), ClusterRecord> = BTreeMap::new();
        let mut gaps = BTreeSet::new();
        for chunk in regions.chunks(REGIONS_PER_ASK) {
            let asked: Vec<Region> = chunk.iter().map(|(r, _)| *r).collect();
            let reply = net
                .configs(peer, addrs.to_vec(), asked, ASK_TIMEOUT)
                .await
                .ok()?;
            let ours: BTreeMap<Region, &Config> = chunk.iter().map(|(r, c)| (*r, c)).collect();
            for v in reply.view {
                let Some(target) = ours.get(&v.region) else {
                    continue;
                };
                if v.config.as_ref().is_some_and(|c| c.epoch >= target.epoch) {
                    continue;
                }
                match self
                    .configs
                    .changes()
                    .path(v.region, member, v.config.as_ref(), target)
                {
                    Some(path) => {
                        for r in path {
                            let epoch = r.message.change.as_ref().map_or(0, |c| c.to.epoch);
                            missed.insert((epoch, r.message_hash.clone()), r);
                        }
                    }
                    None => {
                        gaps.insert(v.region);
                    }
                }
            }
        }
        if !gaps.is_empty() {
            tracing::warn!(
                %member,
                regions = gaps.len(),
                "a co-member holds older configurations than the changes this node still keeps"
            );
        }
        Some(missed.into_values().collect())
    }
}
