//! Liveness and readiness, as the admin server's `/health` and `/ready` report
//! them. Readiness is three checks: the storage answers a read; the node has
//! joined a network (it holds configurations, its own genesis or learned from a
//! peer); and every configuration it is a member of has a majority of its
//! members connected (this node counts), so a write there can be agreed.

use std::collections::BTreeSet;

use optimystic_actors::membership::RegionTable;
use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
}

impl Check {
    fn new(ok: bool, detail: impl Into<String>) -> Self {
        Self {
            ok,
            detail: detail.into(),
        }
    }
}

/// What `/ready` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// All checks passed.
    pub ready: bool,
    /// The storage answers.
    pub storage: Check,
    /// The node holds configurations.
    pub network: Check,
    /// Its configurations have a majority connected.
    pub quorum: Check,
}

impl Readiness {
    /// Judges a node from its storage's answer, its region table and the peers
    /// it is connected to.
    pub fn judge(
        storage: Result<u64, String>,
        table: &RegionTable,
        connected: &BTreeSet<String>,
    ) -> Self {
        let storage = match storage {
            Ok(blocks) => Check::new(true, format!("open, {blocks} blocks")),
            Err(e) => Check::new(false, format!("cannot read: {e}")),
        };
        let known = table.all().count();
        let network = if known == 0 {
            Check::new(
                false,
                "no configuration yet: not joined (no peer reached, and not a network's first node)",
            )
        } else {
            Check::new(true, format!("configurations of {known} regions held"))
        };
        let quorum = quorum(table, connected);
        Self {
            ready: storage.ok && network.ok && quorum.ok,
            storage,
            network,
            quorum,
        }
    }
}

/// Whether every region this node is a member of has a majority connected.
fn quorum(table: &RegionTable, connected: &BTreeSet<String>) -> Check {
    let me = table.me();
    let reachable = |c: &optimystic_actors::model::Config| {
        c.met_by(connected.iter().map(String::as_str).chain([me]))
    };
    let mine: Vec<_> = table.mine().collect();
    let short: Vec<_> = mine.iter().filter(|(_, c)| !reachable(c)).collect();
    match short.first() {
        None => Check::new(
            true,
            format!(
                "all {} regions this node is a member of have a majority connected",
                mine.len()
            ),
        ),
        Some((region, config)) => {
            let missing: Vec<&String> = config
                .members
                .iter()
                .filter(|m| *m != me && !connected.contains(*m))
                .collect();
            Check::new(
                false,
                format!(
                    "{} of {} regions this node is a member of lack a connected majority; region {region}: members {:?}, not connected {missing:?}",
                    short.len(),
                    mine.len(),
                    config.members
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use optimystic_actors::model::{Config, Region};
    use std::collections::BTreeMap;

    fn config(members: &[&str]) -> Config {
        Config {
            epoch: 2,
            members: members.iter().map(ToString::to_string).collect(),
        }
    }

    fn connected(peers: &[&str]) -> BTreeSet<String> {
        peers.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_node_is_ready_with_a_majority_of_each_of_its_configurations() {
        let regions: Vec<Region> = Region::all().take(2).collect();
        let table = RegionTable::with(
            "a",
            BTreeMap::from([
                (regions[0], config(&["a", "b", "c"])),
                (regions[1], config(&["b", "c", "d"])),
            ]),
        );
        let r = Readiness::judge(Ok(3), &table, &connected(&["b"]));
        assert!(r.ready, "{r:?}");
        // Only a's own regions count: {b, c, d} without any of them is fine.
        let r = Readiness::judge(Ok(3), &table, &connected(&[]));
        assert!(!r.ready && !r.quorum.ok, "{r:?}");
        assert!(r.quorum.detail.contains("\"b\""), "{}", r.quorum.detail);
        let r = Readiness::judge(Err("broken".into()), &table, &connected(&["b", "c"]));
        assert!(!r.ready && !r.storage.ok && r.quorum.ok, "{r:?}");
    }

    #[test]
    fn a_node_without_configurations_has_not_joined() {
        let r = Readiness::judge(Ok(0), &RegionTable::new("a"), &connected(&["b"]));
        assert!(!r.ready && !r.network.ok, "{r:?}");
    }
}
