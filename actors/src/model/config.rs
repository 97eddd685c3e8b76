//! Configurations: the agreed replica set of a region, and the changes that move
//! it. A configuration changes only by an agreed record (docs/CONSENSUS.md,
//! "Configurations"), one member at a time: any majority of a configuration and
//! any majority of the next one then share a member, which is what keeps two
//! epochs from both acknowledging writes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::region::Region;

/// The peers that hold and agree a region's blocks, at an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Increases by one with every agreed change.
    pub epoch: u64,
    /// The members, by PeerId (base58).
    pub members: BTreeSet<String>,
}

impl Config {
    /// The first configuration of a network: this node alone.
    pub fn genesis(me: &str) -> Self {
        Self {
            epoch: 1,
            members: BTreeSet::from([me.to_string()]),
        }
    }

    /// Votes needed: a simple majority of the members.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Whether `voters` include a majority of the members.
    pub fn met_by<'a>(&self, voters: impl IntoIterator<Item = &'a str>) -> bool {
        let n = voters
            .into_iter()
            .filter(|v| self.members.contains(*v))
            .count();
        n >= self.majority()
    }

    /// Whether so many members are out (`against`) that a majority is unreachable.
    pub fn lost_to<'a>(&self, against: impl IntoIterator<Item = &'a str>) -> bool {
        let n = against
            .into_iter()
            .filter(|v| self.members.contains(*v))
            .count();
        self.members.len().saturating_sub(n) < self.majority()
    }

    /// The configuration one step on: `peer` added.
    pub fn with(&self, peer: &str) -> Self {
        let mut members = self.members.clone();
        members.insert(peer.to_string());
        Self {
            epoch: self.epoch + 1,
            members,
        }
    }

    /// The configuration one step on: `peer` removed.
    pub fn without(&self, peer: &str) -> Self {
        let mut members = self.members.clone();
        members.remove(peer);
        Self {
            epoch: self.epoch + 1,
            members,
        }
    }
}

/// A configuration change of some regions that all hold `from`: each moves to
/// `to`, which is `from` with one member added or removed, one epoch later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChange {
    /// The regions, sorted, distinct.
    pub regions: Vec<Region>,
    /// Their configuration now.
    pub from: Config,
    /// Their configuration after the change.
    pub to: Config,
    /// The member this change removes is **retired** by an operator (`optimystic
    /// peers remove`): every member that applies the change stops counting it as
    /// a candidate for any region. Only a removal carries it; absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retire: bool,
}

/// Why a configuration change is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No regions, or not sorted and distinct.
    #[error("a change names one or more regions, sorted and distinct")]
    Regions,
    /// `to` is not one epoch after `from`.
    #[error("a change moves one epoch, not from {0} to {1}")]
    Epoch(u64, u64),
    /// `to` differs from `from` by other than one member.
    #[error("a change adds or removes exactly one member")]
    NotOneMember,
    /// `to` would be empty.
    #[error("a configuration keeps at least one member")]
    Empty,
    /// `retire` on a change that removes nobody.
    #[error("only a change that removes a member retires it")]
    RetireWithoutRemoval,
}

impl ConfigChange {
    /// Checks the change's shape.
    pub fn check(&self) -> Result<(), ChangeError> {
        if self.regions.is_empty() || !self.regions.windows(2).all(|w| w[0] < w[1]) {
            return Err(ChangeError::Regions);
        }
        if self.to.epoch != self.from.epoch.saturating_add(1) {
            return Err(ChangeError::Epoch(self.from.epoch, self.to.epoch));
        }
        if self.to.members.is_empty() {
            return Err(ChangeError::Empty);
        }
        let added = self.to.members.difference(&self.from.members).count();
        let removed = self.from.members.difference(&self.to.members).count();
        if added + removed != 1 {
            return Err(ChangeError::NotOneMember);
        }
        if self.retire && removed == 0 {
            return Err(ChangeError::RetireWithoutRemoval);
        }
        Ok(())
    }

    /// Every peer of the change's record: the old members and the new.
    pub fn peers(&self) -> BTreeSet<String> {
        self.from.members.union(&self.to.members).cloned().collect()
    }

    /// Whether `voters` include a majority of the old members and of the new.
    pub fn met_by(&self, voters: &BTreeSet<&str>) -> bool {
        self.from.met_by(voters.iter().copied()) && self.to.met_by(voters.iter().copied())
    }

    /// Whether `against` leaves either side short of its majority.
    pub fn lost_to(&self, against: &BTreeSet<&str>) -> bool {
        self.from.lost_to(against.iter().copied()) || self.to.lost_to(against.iter().copied())
    }

    /// The peer this change adds, if it adds one.
    pub fn added(&self) -> Option<&String> {
        self.to.members.difference(&self.from.members).next()
    }

    /// The member the change removes, if it removes one.
    pub fn removed(&self) -> Option<&String> {
        self.from.members.difference(&self.to.members).next()
    }

    /// The member an operator retires by this change, if any.
    pub fn retires(&self) -> Option<&String> {
        self.removed().filter(|_| self.retire)
    }
}

/// A configuration of `members` at `epoch` (unit tests).
#[cfg(test)]
pub(crate) fn cfg(epoch: u64, m: &[&str]) -> Config {
    Config {
        epoch,
        members: m.iter().map(|s| s.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_and_single_member_changes() {
        let c = cfg(3, &["a", "b", "c"]);
        assert_eq!(c.majority(), 2);
        assert!(c.met_by(["a", "c", "x"]));
        assert!(!c.met_by(["a", "x"]));
        assert!(c.lost_to(["a", "b"]));
        assert!(!c.lost_to(["a", "x"]));
        let add = ConfigChange {
            regions: vec![Region::new(1), Region::new(7)],
            from: c.clone(),
            to: c.with("d"),
            retire: false,
        };
        assert_eq!(add.check(), Ok(()));
        assert_eq!(add.added().map(String::as_str), Some("d"));
        // Joint: a majority of both {a,b,c} and {a,b,c,d}.
        assert!(add.met_by(&BTreeSet::from(["a", "b", "d"])));
        assert!(!add.met_by(&BTreeSet::from(["a", "d"])));
        assert!(!add.met_by(&BTreeSet::from(["a", "b"])), "3 of 4 needed");
        let remove = ConfigChange {
            regions: vec![Region::new(1)],
            from: c.clone(),
            to: c.without("c"),
            retire: false,
        };
        assert_eq!(remove.check(), Ok(()));
        assert_eq!(remove.added(), None);
        assert_eq!(remove.removed().map(String::as_str), Some("c"));
        assert_eq!(remove.retires(), None);
        let retire = ConfigChange {
            retire: true,
            ..remove.clone()
        };
        assert_eq!(retire.check(), Ok(()));
        assert_eq!(retire.retires().map(String::as_str), Some("c"));
        let retire_on_add = ConfigChange {
            retire: true,
            ..add.clone()
        };
        assert_eq!(
            retire_on_add.check(),
            Err(ChangeError::RetireWithoutRemoval)
        );
        let two = ConfigChange {
            regions: vec![Region::new(1)],
            from: c.clone(),
            to: c.with("d").with("e"),
            retire: false,
        };
        assert!(two.check().is_err());
        let swap = ConfigChange {
            regions: vec![Region::new(1)],
            from: c.clone(),
            to: cfg(4, &["a", "b", "d"]),
            retire: false,
        };
        assert_eq!(swap.check(), Err(ChangeError::NotOneMember));
        let unsorted = ConfigChange {
            regions: vec![Region::new(7), Region::new(1)],
            ..add.clone()
        };
        assert_eq!(unsorted.check(), Err(ChangeError::Regions));
        let last = ConfigChange {
            regions: vec![Region::new(1)],
            from: cfg(1, &["a"]),
            to: cfg(2, &[]),
            retire: false,
        };
        assert_eq!(last.check(), Err(ChangeError::Empty));
    }

    /// The property single-member changes rest on: any majority of a
    /// configuration and any majority of the next share a member.
    #[test]
    fn majorities_of_consecutive_configurations_intersect() {
        let names: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
        for n in 1..=6 {
            let c = Config {
                epoch: 1,
                members: names[..n].iter().cloned().collect(),
            };
            for next in [c.with(&names[n]), c.without(&names[0])] {
                if next.members.is_empty() {
                    continue;
                }
                let subsets = |cfg: &Config| -> Vec<BTreeSet<String>> {
                    let m: Vec<&String> = cfg.members.iter().collect();
                    (0u32..(1 << m.len()))
                        .map(|bits| {
                            m.iter()
                                .enumerate()
                                .filter(|(i, _)| bits & (1 << i) != 0)
                                .map(|(_, p)| (*p).clone())
                                .collect()
                        })
                        .filter(|s: &BTreeSet<String>| cfg.met_by(s.iter().map(String::as_str)))
                        .collect()
                };
                for a in subsets(&c) {
                    for b in subsets(&next) {
                        assert!(
                            a.intersection(&b).next().is_some(),
                            "{c:?} / {next:?}: {a:?} and {b:?} are disjoint"
                        );
                    }
                }
            }
        }
    }
}
