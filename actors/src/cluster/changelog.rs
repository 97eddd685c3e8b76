//! The decided configuration changes this node applied lately: proof it can
//! hand a co-member that missed one, so that member applies it too
//! (docs/CONSENSUS.md, "A member that missed a change"). In memory only and
//! bounded; a change older than what is kept is not resent.

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::record::ClusterRecord;
use crate::model::{Config, Region};

/// How many decided changes are kept (a few KiB each; a network settling
/// after joins decides hundreds a minute).
const KEPT: usize = 1024;

/// Recent decided change records, oldest first.
#[derive(Default)]
pub struct ChangeLog {
    recent: Mutex<VecDeque<ClusterRecord>>,
}

impl ChangeLog {
    /// Keeps `record`, a decided change this node applied (once per hash; the
    /// commit votes of a record kept already are added to it).
    pub fn note(&self, record: &ClusterRecord) {
        if record.message.change.is_none() {
            return;
        }
        let mut recent = self.recent.lock();
        if let Some(kept) = recent
            .iter_mut()
            .find(|r| r.message_hash == record.message_hash)
        {
            for (peer, vote) in &record.commits {
                kept.commits
                    .entry(peer.clone())
                    .or_insert_with(|| vote.clone());
            }
            return;
        }
        if recent.len() >= KEPT {
            recent.pop_front();
        }
        recent.push_back(record.clone());
    }

    /// The changes kept, oldest first.
    pub fn recent(&self) -> Vec<ClusterRecord> {
        self.recent.lock().iter().cloned().collect()
    }

    /// The decided changes that take `region` from `held` — what `member` holds
    /// of it (nothing, or a configuration) — to `target`, oldest first; `None`
    /// when one of them is no longer kept. A member that holds nothing of the
    /// region, or holds a configuration it is not in, takes the last change
    /// alone (as a joining peer would); a member of `held` needs every change
    /// from it.
    pub fn path(
        &self,
        region: Region,
        member: &str,
        held: Option<&Config>,
        target: &Config,
    ) -> Option<Vec<ClusterRecord>> {
        let recent = self.recent.lock();
        let of = |to: &Config| {
            recent.iter().rev().find(|r| {
                r.message
                    .change
                    .as_ref()
                    .is_some_and(|c| c.to == *to && c.regions.contains(&region))
            })
        };
        let Some(mut at) = held.filter(|c| c.members.contains(member)).cloned() else {
            return of(target).map(|r| vec![r.clone()]);
        };
        let mut path = Vec::new();
        while at.epoch < target.epoch {
            let next = recent.iter().find(|r| {
                r.message
                    .change
                    .as_ref()
                    .is_some_and(|c| c.from == at && c.regions.contains(&region))
            })?;
            let change = next.message.change.as_ref()?;
            at = change.to.clone();
            path.push(next.clone());
        }
        (at == *target).then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{cfg, ConfigChange, RepoMessage};

    fn change(regions: &[u32], from: Config, to: Config) -> ClusterRecord {
        let message = RepoMessage {
            operations: Vec::new(),
            expiration: Some(1),
            coordinator: Some("a".into()),
            epochs: Default::default(),
            change: Some(ConfigChange {
                regions: regions.iter().map(|r| Region::new(*r)).collect(),
                from,
                to,
                retire: false,
            }),
        };
        ClusterRecord {
            message_hash: crate::cluster::message_hash(&message),
            peers: Default::default(),
            message: message.into(),
            promises: Default::default(),
            commits: Default::default(),
        }
    }

    #[test]
    fn a_member_gets_every_change_it_missed_and_a_newcomer_the_last() {
        let log = ChangeLog::default();
        let (c1, c2, c3) = (
            cfg(1, &["a", "b", "c"]),
            cfg(2, &["a", "b", "c", "d"]),
            cfg(3, &["a", "b", "d"]),
        );
        let first = change(&[7, 8], c1.clone(), c2.clone());
        let second = change(&[7], c2.clone(), c3.clone());
        log.note(&first);
        log.note(&second);
        log.note(&first);
        let r = Region::new(7);
        let hashes = |p: Option<Vec<ClusterRecord>>| {
            p.map(|p| p.into_iter().map(|r| r.message_hash).collect::<Vec<_>>())
        };
        // A member of c1 needs both, in order.
        assert_eq!(
            hashes(log.path(r, "b", Some(&c1), &c3)),
            Some(vec![
                first.message_hash.clone(),
                second.message_hash.clone()
            ])
        );
        // A peer holding nothing, or a configuration without it, takes the last.
        assert_eq!(
            hashes(log.path(r, "d", None, &c3)),
            Some(vec![second.message_hash.clone()])
        );
        assert_eq!(
            hashes(log.path(r, "d", Some(&c1), &c3)),
            Some(vec![second.message_hash.clone()])
        );
        // Another region, or a gap: nothing to send.
        assert_eq!(hashes(log.path(Region::new(8), "b", Some(&c1), &c3)), None);
        assert_eq!(hashes(log.path(r, "b", Some(&cfg(0, &["b"])), &c3)), None);
    }
}
