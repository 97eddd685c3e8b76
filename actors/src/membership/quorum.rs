//! The votes a record needs: a majority of its region's configuration, or — for a
//! configuration change — a majority of the old configuration **and** of the new
//! (joint consensus). Every count of promises, applications and fences goes
//! through here.

use std::collections::BTreeSet;

use crate::model::{Config, ConfigChange};

/// Who must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quorum {
    /// A simple majority of these members.
    Majority(BTreeSet<String>),
    /// A majority of the change's old members and one of its new members.
    Joint(Box<ConfigChange>),
}

impl Quorum {
    /// A simple majority of `members`.
    pub fn majority<'a>(members: impl IntoIterator<Item = &'a String>) -> Self {
        Self::Majority(members.into_iter().cloned().collect())
    }

    /// Whether `voters` are enough.
    pub fn met_by(&self, voters: &BTreeSet<&str>) -> bool {
        match self {
            Self::Majority(m) => as_config(m).met_by(voters.iter().copied()),
            Self::Joint(c) => c.met_by(voters),
        }
    }

    /// Whether `against` (rejections, fences, failures) leave too few to be enough.
    pub fn lost_to(&self, against: &BTreeSet<&str>) -> bool {
        match self {
            Self::Majority(m) => as_config(m).lost_to(against.iter().copied()),
            Self::Joint(c) => c.lost_to(against),
        }
    }
}

fn as_config(members: &BTreeSet<String>) -> Config {
    Config {
        epoch: 0,
        members: members.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Region;

    #[test]
    fn majorities_simple_and_joint() {
        let m: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let q = Quorum::majority(&m);
        assert!(q.met_by(&BTreeSet::from(["a", "b"])));
        assert!(!q.met_by(&BTreeSet::from(["a", "z"])));
        assert!(q.lost_to(&BTreeSet::from(["b", "c"])));
        let from = Config {
            epoch: 1,
            members: m.clone(),
        };
        let j = Quorum::Joint(Box::new(ConfigChange {
            regions: vec![Region::new(0)],
            to: from.with("d"),
            from,
            retire: false,
        }));
        assert!(!j.met_by(&BTreeSet::from(["a", "b"])), "2 of the 4 new");
        assert!(j.met_by(&BTreeSet::from(["a", "b", "d"])));
        assert!(
            j.lost_to(&BTreeSet::from(["c", "d"])),
            "the new side is short"
        );
    }
}
