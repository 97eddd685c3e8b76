//! Planning a write: the configuration of each of its blocks' regions (from the
//! node's table; asked of its peers when unknown), the record's peers for one
//! configuration, and where to forward a write this node is not a member for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::Coordinator;
use crate::cluster::ClusterPeer;
use crate::membership::closest_to;
use crate::model::NetError;
use crate::model::{
    block_key, ms_from_now, BlockId, OpResult, Region, RegionView, RepoError, RepoMessage,
    RepoOperation,
};

/// Peers asked per unknown region (the closest to it).
const DISCOVERY_FANOUT: usize = 4;

/// Per-peer wait when asking peers for configurations.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// The peers of one transaction and how to reach them.
#[derive(Clone)]
pub(super) struct Plan {
    /// The configuration's members, as the record names them.
    pub(super) peers: BTreeMap<String, ClusterPeer>,
    /// The members other than this node.
    pub(super) remote: Vec<(PeerId, Vec<Multiaddr>)>,
    /// This node is not a member: the members to forward the write to, in the
    /// order to try them (the next when one cannot be reached).
    pub(super) forward_to: Option<Vec<(PeerId, Vec<Multiaddr>)>>,
}

impl Plan {
    /// This node alone is the configuration: the write applies directly.
    pub(super) fn alone(&self) -> bool {
        self.forward_to.is_none() && self.remote.is_empty()
    }
}

/// A write's blocks grouped by the members of their regions' configurations.
pub(super) type Groups = BTreeMap<BTreeSet<String>, BTreeSet<BlockId>>;

/// Addresses parsed from a peer entry.
fn addrs_of(p: &ClusterPeer) -> Vec<Multiaddr> {
    p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect()
}

impl Coordinator {
    /// The operation's blocks grouped by their regions' configurations (asking
    /// peers for regions this node knows none of).
    pub(super) async fn groups(&self, blocks: BTreeSet<BlockId>) -> Result<Groups, RepoError> {
        let regions: BTreeSet<Region> = blocks.iter().map(Region::of).collect();
        let unknown = self.unknown(regions.iter().copied());
        if !unknown.is_empty() {
            let asked = self.discover(&unknown).await;
            // None of the peers closest to them knew: every other live peer
            // is asked once (after churn the members may lie farther out).
            let still = self.unknown(unknown.iter().copied());
            if !still.is_empty() {
                self.discover_widely(&still, &asked).await;
            }
        }
        let mut groups = Groups::new();
        for block in blocks {
            let r = Region::of(&block);
            let c = self.configs.config(r).ok_or_else(|| {
                RepoError::Unavailable(format!(
                    "no configuration known for region {r} (block {block}): this node has not joined a network yet"
                ))
            })?;
            groups.entry(c.members).or_default().insert(block);
        }
        Ok(groups)
    }

    /// The regions of `regions` this node knows no configuration of.
    fn unknown(&self, regions: impl IntoIterator<Item = Region>) -> Vec<Region> {
        regions
            .into_iter()
            .filter(|r| self.configs.config(*r).is_none())
            .collect()
    }

    /// Asks peers for the configurations of `regions` and learns the answers:
    /// for each region, the [`DISCOVERY_FANOUT`] peers closest to it (its
    /// members, once placement has settled) and the members of the configuration
    /// known, if any (only they can vouch for a newer one).
    /// Returns the peers asked.
    pub(super) async fn discover(&self, regions: &[Region]) -> BTreeSet<PeerId> {
        let Ok(net) = self.net() else {
            return BTreeSet::new();
        };
        let mut peers: Vec<PeerId> = net
            .member_view()
            .members
            .iter()
            .map(|p| p.peer_id)
            .collect();
        peers.extend(self.configs.known_peers());
        let retired = self.configs.retired();
        peers.retain(|p| *p != self.me && !retired.contains(&p.to_string()));
        peers.sort();
        peers.dedup();
        let mut ask: BTreeSet<PeerId> = BTreeSet::new();
        for r in regions.iter().take(DISCOVERY_FANOUT * 4) {
            ask.extend(crate::membership::target(*r, &peers, DISCOVERY_FANOUT));
            // The members of a configuration known (they vouch for its successors).
            if let Some(c) = self.configs.config(*r) {
                ask.extend(c.members.iter().filter_map(|m| m.parse::<PeerId>().ok()));
            }
        }
        ask.remove(&self.me);
        self.ask_configs(&ask, regions).await;
        ask
    }

    /// Asks every live peer (connected, not retired) not in `asked` for the
    /// configurations of `regions`.
    pub(super) async fn discover_widely(&self, regions: &[Region], asked: &BTreeSet<PeerId>) {
        let Ok(net) = self.net() else {
            return;
        };
        let retired = self.configs.retired();
        let ask: BTreeSet<PeerId> = net
            .member_view()
            .members
            .iter()
            .map(|p| p.peer_id)
            .filter(|p| *p != self.me && !asked.contains(p) && !retired.contains(&p.to_string()))
            .collect();
        self.ask_configs(&ask, regions).await;
    }

    /// Asks `peers` for the configurations of `regions` and learns the answers.
    async fn ask_configs(&self, peers: &BTreeSet<PeerId>, regions: &[Region]) {
        let Ok(net) = self.net() else {
            return;
        };
        let asks = peers
            .iter()
            .map(|p| net.configs(*p, Vec::new(), regions.to_vec(), ASK_TIMEOUT));
        let replies = futures::future::join_all(asks).await;
        for (peer, reply) in peers.iter().zip(replies) {
            let Ok(reply) = reply else { continue };
            self.learn(&peer.to_string(), &reply.view);
            for (id, p) in reply.peers {
                self.configs.note_peer(&id, p);
            }
        }
    }

    /// Learns the configurations peer `from` reported (see `Configs::learn`).
    pub(super) fn learn(&self, from: &str, view: &[RegionView]) {
        self.configs.learn(
            from,
            view.iter()
                .filter_map(|v| v.config.clone().map(|c| (v.region, c))),
        );
    }

    /// The record's peers for a configuration of `members`, and where to forward
    /// the write when this node is not one of them.
    pub(super) fn plan(
        &self,
        members: &BTreeSet<String>,
        blocks: &BTreeSet<BlockId>,
    ) -> Result<Plan, RepoError> {
        let me = self.me.to_string();
        let unknown = || {
            RepoError::Unavailable(format!(
                "the keys of the members {members:?} are not known to this node yet"
            ))
        };
        if !members.contains(&me) {
            // The configuration's coordinator for these blocks: its member closest
            // to the first block.
            let ids: Vec<PeerId> = members.iter().filter_map(|m| m.parse().ok()).collect();
            let first = blocks.first().map(block_key).unwrap_or_default();
            let order: Vec<(PeerId, Vec<Multiaddr>)> = closest_to(&first, ids, members.len())
                .into_iter()
                .map(|to| {
                    let addrs = self
                        .configs
                        .peer(&to.to_string())
                        .map(|p| addrs_of(&p))
                        .unwrap_or_default();
                    (to, addrs)
                })
                .collect();
            if order.is_empty() {
                return Err(unknown());
            }
            return Ok(Plan {
                peers: BTreeMap::new(),
                remote: Vec::new(),
                forward_to: Some(order),
            });
        }
        let peers = self.configs.entries(members).ok_or_else(unknown)?;
        let remote = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .filter_map(|(id, p)| Some((id.parse().ok()?, addrs_of(p))))
            .collect();
        Ok(Plan {
            peers,
            remote,
            forward_to: None,
        })
    }

    /// The configuration epoch of every region `ops` touch, as this node holds
    /// them now (the record names them; members check them).
    pub(super) fn epochs_of(&self, ops: &[RepoOperation]) -> BTreeMap<Region, u64> {
        let t = self.configs.table();
        crate::cluster::message_blocks(ops)
            .iter()
            .map(Region::of)
            .filter_map(|r| Some((r, t.get(r)?.epoch)))
            .collect()
    }

    /// One configuration's part: forwarded to a member when this node is not one
    /// (unless it was itself forwarded here: then `wrong_cluster`), applied
    /// directly when this node alone is the configuration, or agreed by it.
    pub(super) async fn run_part(
        self: &Arc<Self>,
        members: &BTreeSet<String>,
        blocks: &BTreeSet<BlockId>,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        let plan = self.plan(members, blocks)?;
        if let Some(order) = plan.forward_to {
            if forwarded {
                return Err(self.not_here(blocks));
            }
            let result = self.forward(order, op).await;
            if matches!(result, Err(RepoError::Unavailable(_))) {
                // No member of the configuration this node learned answers: it
                // may be long gone (its members retired or replaced while this
                // node heard nothing). Ask around again on the next try.
                self.configs.forget_learned(blocks.iter().map(Region::of));
            }
            return result;
        }
        if plan.alone() {
            self.metrics.local.add(1);
            return self.local(op).await;
        }
        self.submit(plan, op).await
    }

    /// Forwards a write to the members in `order`, the next one when one cannot
    /// be reached (a write reaches a member at most once as far as this node
    /// knows: a reply lost after sending makes the answer in doubt).
    async fn forward(
        &self,
        order: Vec<(PeerId, Vec<Multiaddr>)>,
        op: RepoOperation,
    ) -> Result<OpResult, RepoError> {
        let net = self.net()?;
        let mut unreachable = Vec::new();
        for (peer, addrs) in order {
            let message = RepoMessage::of(op.clone(), Some(ms_from_now(self.timeout)));
            match net.coordinate(peer, addrs, message, self.timeout).await {
                Ok(r) => {
                    self.metrics.forwarded.add(1);
                    return Ok(r);
                }
                Err(NetError::WrongCluster { message, view }) => {
                    self.learn(&peer.to_string(), &view);
                    return Err(RepoError::WrongCluster { message, view });
                }
                Err(e) if e.is_in_doubt() => {
                    return Err(RepoError::InDoubt(format!("forwarded to {peer}: {e}")))
                }
                Err(e) => unreachable.push(format!("{peer}: {e}")),
            }
        }
        Err(RepoError::Unavailable(format!(
            "cannot reach a member of the blocks' cluster ({})",
            unreachable.join("; ")
        )))
    }

    /// `wrong_cluster` for a write forwarded here about blocks this node is not a
    /// member for, with what it knows of their regions.
    fn not_here(&self, blocks: &BTreeSet<BlockId>) -> RepoError {
        let t = self.configs.table();
        let view = blocks
            .iter()
            .map(Region::of)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|r| RegionView {
                region: r,
                config: t.get(r).cloned(),
            })
            .collect();
        RepoError::WrongCluster {
            message: "this node is not a member of the blocks' configuration".into(),
            view,
        }
    }
}
