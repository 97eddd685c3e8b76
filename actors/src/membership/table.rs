//! A node's table of region configurations: the ones it is a member of
//! (authoritative: it applied every change that made them) and the ones it
//! learned of others (a cache, for planning and forwarding). Checks a record's
//! claim against what the node holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Config, ConfigChange, Region};

/// Why a record does not match this node's configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The record names another configuration of the region than this member
    /// holds (another epoch or other members); this member's is given.
    Wrong(Region, Config),
    /// This node is not a member of the region (its configuration, if it knows
    /// one, is given).
    NotMember(Region, Option<Config>),
    /// The record's regions are not exactly its blocks' regions.
    Regions,
}

/// Region configurations known to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionTable {
    me: String,
    configs: BTreeMap<Region, Config>,
}

impl RegionTable {
    /// An empty table for node `me`.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            configs: BTreeMap::new(),
        }
    }

    /// Node `me`'s table holding `configs`.
    pub fn with(me: &str, configs: BTreeMap<Region, Config>) -> Self {
        Self {
            me: me.to_string(),
            configs,
        }
    }

    /// This node.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The configuration known for `r`.
    pub fn get(&self, r: Region) -> Option<&Config> {
        self.configs.get(&r)
    }

    /// Whether this node is a member of `r`.
    pub fn is_member(&self, r: Region) -> bool {
        self.configs
            .get(&r)
            .is_some_and(|c| c.members.contains(&self.me))
    }

    /// Whether this node is a member of any region.
    pub fn has_any(&self) -> bool {
        self.configs.values().any(|c| c.members.contains(&self.me))
    }

    /// Learns `c` for `r` if it is newer than what is known; true if it was.
    pub fn learn(&mut self, r: Region, c: Config) -> bool {
        match self.configs.get(&r) {
            Some(known) if known.epoch >= c.epoch => false,
            _ => {
                self.configs.insert(r, c);
                true
            }
        }
    }

    /// Forgets the configuration learned for `r`, unless this node is one of its
    /// members (a member's own configurations change only by applying changes).
    /// True if one was forgotten.
    pub fn forget_learned(&mut self, r: Region) -> bool {
        let learned = self
            .configs
            .get(&r)
            .is_some_and(|c| !c.members.contains(&self.me));
        if learned {
            self.configs.remove(&r);
        }
        learned
    }

    /// Sets `r`'s configuration (an agreed change applied here).
    pub fn set(&mut self, r: Region, c: Config) {
        self.configs.insert(r, c);
    }

    /// The regions this node is a member of, with their configurations.
    pub fn mine(&self) -> impl Iterator<Item = (Region, &Config)> {
        self.configs
            .iter()
            .filter(|(_, c)| c.members.contains(&self.me))
            .map(|(r, c)| (*r, c))
    }

    /// Every region known, with its configuration.
    pub fn all(&self) -> impl Iterator<Item = (Region, &Config)> {
        self.configs.iter().map(|(r, c)| (*r, c))
    }

    /// Checks a write record's claim: for every region in `epochs` (which must be
    /// exactly `regions`, its blocks' regions), this node is a member at that epoch
    /// and the record's `peers` are exactly the members.
    pub fn check(
        &self,
        regions: &BTreeSet<Region>,
        epochs: &BTreeMap<Region, u64>,
        peers: &BTreeSet<&str>,
    ) -> Result<(), Vec<Mismatch>> {
        if !epochs.keys().eq(regions.iter()) {
            return Err(vec![Mismatch::Regions]);
        }
        let wrong: Vec<Mismatch> = epochs
            .iter()
            .filter_map(|(r, epoch)| match self.configs.get(r) {
                Some(c) if !c.members.contains(&self.me) => {
                    Some(Mismatch::NotMember(*r, Some(c.clone())))
                }
                None => Some(Mismatch::NotMember(*r, None)),
                Some(c)
                    if c.epoch != *epoch
                        || !c
                            .members
                            .iter()
                            .map(String::as_str)
                            .eq(peers.iter().copied()) =>
                {
                    Some(Mismatch::Wrong(*r, c.clone()))
                }
                Some(_) => None,
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    }

    /// Checks a configuration change against what this node holds: a member of
    /// the old configuration holds exactly it; a peer joining holds no newer one
    /// that names it.
    pub fn check_change(&self, change: &ConfigChange) -> Result<(), Vec<Mismatch>> {
        let wrong: Vec<Mismatch> = change
            .regions
            .iter()
            .filter_map(|r| {
                let known = self.configs.get(r);
                let member = known.is_some_and(|c| c.members.contains(&self.me));
                match known {
                    Some(c) if c == &change.from => None,
                    // Joining: whatever this node knew of the region, it was not a
                    // member at or after the change's epoch.
                    Some(c) if !member && c.epoch <= change.from.epoch => None,
                    None if change.to.members.contains(&self.me) => None,
                    Some(c) => Some(Mismatch::Wrong(*r, c.clone())),
                    None => Some(Mismatch::NotMember(*r, None)),
                }
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    }

    /// The regions of a decided change this node still has to take: those it
    /// holds at an older epoch than the change's `to`, at that epoch but not as
    /// `to`, or not at all. A removed
    /// member may have learned the new configuration of some of the regions
    /// (as any non-member learns), and a region already there or past it is
    /// left as it is.
    pub fn still_to_take(&self, change: &ConfigChange) -> Vec<Region> {
        change
            .regions
            .iter()
            .copied()
            .filter(|r| {
                self.configs.get(r).is_none_or(|c| {
                    c.epoch < change.to.epoch || (c.epoch == change.to.epoch && *c != change.to)
                })
            })
            .collect()
    }

    /// Checks a *decided* change (a joint majority promised it) before applying
    /// it: [`Self::check_change`] for the regions still to take.
    pub fn check_decided_change(&self, change: &ConfigChange) -> Result<(), Vec<Mismatch>> {
        let rest = ConfigChange {
            regions: self.still_to_take(change),
            ..change.clone()
        };
        self.check_change(&rest)
    }

    /// Applies a change: every region still to take moves to `to` (none moves
    /// back).
    pub fn apply(&mut self, change: &ConfigChange) {
        for r in self.still_to_take(change) {
            self.configs.insert(r, change.to.clone());
        }
    }

    /// The regions of this node's memberships, grouped by configuration.
    pub fn groups(&self) -> BTreeMap<&Config, Vec<Region>> {
        let mut out: BTreeMap<&Config, Vec<Region>> = BTreeMap::new();
        for (r, c) in self.mine() {
            out.entry(c).or_default().push(r);
        }
        out
    }

    /// The configurations to keep durably: this node's memberships.
    pub fn owned(&self) -> BTreeMap<Region, Config> {
        self.mine().map(|(r, c)| (r, c.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cfg;

    #[test]
    fn a_record_must_name_this_members_configuration() {
        let mut t = RegionTable::new("a");
        let (r1, r2) = (Region::new(1), Region::new(2));
        t.set(r1, cfg(3, &["a", "b", "c"]));
        t.set(r2, cfg(5, &["b", "c", "d"]));
        let regions = BTreeSet::from([r1]);
        let peers = BTreeSet::from(["a", "b", "c"]);
        assert_eq!(
            t.check(&regions, &BTreeMap::from([(r1, 3)]), &peers),
            Ok(())
        );
        // Another epoch, other peers, a region it is not in, regions that do not
        // match the blocks.
        assert_eq!(
            t.check(&regions, &BTreeMap::from([(r1, 2)]), &peers),
            Err(vec![Mismatch::Wrong(r1, cfg(3, &["a", "b", "c"]))])
        );
        let chosen = BTreeSet::from(["a", "x"]);
        assert!(t
            .check(&regions, &BTreeMap::from([(r1, 3)]), &chosen)
            .is_err());
        let invented = BTreeSet::from(["a", "b", "c", "x", "y", "z", "w"]);
        assert!(t
            .check(&regions, &BTreeMap::from([(r1, 3)]), &invented)
            .is_err());
        assert_eq!(
            t.check(&BTreeSet::from([r2]), &BTreeMap::from([(r2, 5)]), &peers),
            Err(vec![Mismatch::NotMember(
                r2,
                Some(cfg(5, &["b", "c", "d"]))
            )])
        );
        assert_eq!(
            t.check(
                &BTreeSet::from([r1, r2]),
                &BTreeMap::from([(r1, 3)]),
                &peers
            ),
            Err(vec![Mismatch::Regions])
        );
        // Learning keeps the newest.
        assert!(!t.learn(r2, cfg(4, &["x"])));
        assert!(t.learn(r2, cfg(6, &["a", "b", "c"])));
        assert!(t.is_member(r2));
        assert_eq!(t.owned().len(), 2);
        assert_eq!(t.groups().len(), 2);
    }

    #[test]
    fn only_learned_configurations_are_forgotten() {
        let mut t = RegionTable::new("a");
        let (mine, theirs) = (Region::new(1), Region::new(2));
        t.set(mine, cfg(3, &["a", "b", "c"]));
        assert!(t.learn(theirs, cfg(5, &["x", "y", "z"])));
        assert!(
            !t.forget_learned(mine),
            "a member's own configuration stays"
        );
        assert!(t.forget_learned(theirs));
        assert_eq!(t.get(theirs), None);
        assert!(t.get(mine).is_some());
        assert!(!t.forget_learned(theirs), "nothing left to forget");
    }

    #[test]
    fn changes_start_from_the_held_configuration() {
        let r = Region::new(9);
        let from = cfg(3, &["a", "b", "c"]);
        let add = ConfigChange {
            regions: vec![r],
            to: from.with("d"),
            from: from.clone(),
            retire: false,
        };
        let mut a = RegionTable::new("a");
        a.set(r, from.clone());
        assert_eq!(a.check_change(&add), Ok(()));
        // A member that holds another configuration refuses.
        let mut stale = RegionTable::new("a");
        stale.set(r, cfg(2, &["a", "b"]));
        assert!(stale.check_change(&add).is_err());
        // The joining peer, knowing nothing or an older configuration without it.
        assert_eq!(RegionTable::new("d").check_change(&add), Ok(()));
        let mut d = RegionTable::new("d");
        d.learn(r, cfg(2, &["a", "b"]));
        assert_eq!(d.check_change(&add), Ok(()));
        // A stranger to both configurations.
        assert!(RegionTable::new("z").check_change(&add).is_err());
        a.apply(&add);
        assert_eq!(a.get(r), Some(&from.with("d")));
    }

    #[test]
    fn a_decided_change_skips_the_regions_already_past_it() {
        let (r1, r2) = (Region::new(1), Region::new(2));
        let from = cfg(4, &["a", "b", "c", "d"]);
        let to = cfg(5, &["a", "b", "c"]);
        let remove = ConfigChange {
            regions: vec![r1, r2],
            from: from.clone(),
            to: to.clone(),
            retire: false,
        };
        // `d`, removed, learned `to` for r1 and still holds `from` for r2: the
        // change as a whole does not start from what it holds...
        let mut d = RegionTable::new("d");
        d.set(r2, from.clone());
        d.learn(r1, to.clone());
        assert!(d.check_change(&remove).is_err());
        // ...but decided, it is taken for r2 alone.
        assert_eq!(d.still_to_take(&remove), vec![r2]);
        assert_eq!(d.check_decided_change(&remove), Ok(()));
        d.apply(&remove);
        assert_eq!((d.get(r1), d.get(r2)), (Some(&to), Some(&to)));
        assert!(d.still_to_take(&remove).is_empty());
        // A region past the change is never moved back.
        let mut ahead = RegionTable::new("a");
        ahead.set(r1, cfg(6, &["a", "b", "e"]));
        ahead.set(r2, from.clone());
        ahead.apply(&remove);
        assert_eq!(ahead.get(r1), Some(&cfg(6, &["a", "b", "e"])));
        assert_eq!(ahead.get(r2), Some(&to));
        // Another configuration at the change's epoch is not the change's: refused.
        let mut twin = RegionTable::new("d");
        twin.set(r1, cfg(5, &["a", "b", "z"]));
        twin.set(r2, from.clone());
        assert_eq!(twin.still_to_take(&remove), vec![r1, r2]);
        assert!(twin.check_decided_change(&remove).is_err());
        // A region held otherwise (an older configuration) is still refused.
        let mut other = RegionTable::new("d");
        other.set(r1, cfg(3, &["a", "b", "d"]));
        other.set(r2, from.clone());
        assert!(other.check_decided_change(&remove).is_err());
    }
}
