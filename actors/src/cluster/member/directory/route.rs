//! Routing records to the member actor of their transaction (started on
//! demand, bounded in number), and answering recovery queries.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use super::MemberDirectory;
use crate::cluster::member::{ClusterError, ClusterMember, Update};
use crate::cluster::record::{ClusterRecord, RecordError, Signature};

impl MemberDirectory {
    /// Answers a recovering peer: this member's stored record of the same
    /// transaction (unchanged), or the asker's record if it knows none. A query
    /// changes nothing, so it is not checked against the configurations (it may
    /// be about an epoch this member has left).
    pub fn query(&self, record: ClusterRecord) -> Result<ClusterRecord, ClusterError> {
        self.check(&record, false, &|_, _, _| false, false)?;
        Ok(self
            .store
            .load(&record.message_hash)?
            .map_or(record, |s| s.record))
    }

    /// Handles a record `sender` delivered (a coordinator, or a recovering peer):
    /// validates it, advances this member's phase and returns the record with this
    /// member's votes. A proposal is taken only from its own coordinator.
    pub async fn update(
        self: &Arc<Self>,
        record: ClusterRecord,
        sender: &str,
    ) -> Result<ClusterRecord, ClusterError> {
        let proposal = record.promises.is_empty() && record.commits.is_empty();
        let own = |peer: &str, payload: &[u8], vote: &Signature| {
            peer == self.me
                && self
                    .own
                    .get(&record.message_hash)
                    .is_some_and(|e| e.0 == payload && e.1 == *vote)
        };
        let known = self
            .hashed
            .get(&record.message_hash)
            .is_some_and(|m| Arc::ptr_eq(&m, &record.message) || *m == record.message);
        self.check(&record, proposal, &own, known)?;
        if proposal && record.message.coordinator.as_deref() != Some(sender) {
            return Err(ClusterError::Record(RecordError::BadPeer(
                sender.to_string(),
                "a proposal is taken only from the coordinator it names".into(),
            )));
        }
        if !known && proposal {
            // A proposal: its phase-2 record will carry the same message.
            self.note_message(&record.message_hash, &record.message);
        }
        let hash = record.message_hash.clone();
        let change = record.message.change.is_some();
        for _ in 0..4 {
            let addr = self.member_for(&hash, change)?;
            self.metrics.enqueued();
            match addr.send(Update(record.clone())).await {
                Ok(r) => return r,
                Err(_) => self.metrics.dropped(),
            }
            // The actor stopped after deciding; the next one loads the decided state.
        }
        Err(ClusterError::Unavailable(format!(
            "member for {hash} keeps stopping"
        )))
    }

    /// The actor of transaction `hash`, started (from its stored state) if none runs.
    pub(in crate::cluster::member) fn member(
        self: &Arc<Self>,
        hash: &str,
    ) -> Result<Addr<ClusterMember>, ClusterError> {
        self.member_for(hash, false)
    }

    /// [`Self::member`]; a new write transaction is refused past
    /// `max-active-transactions`. A configuration change (`change`, or one stored)
    /// neither counts toward that limit nor is refused for it: a member's slots
    /// taken by writes, or by other changes, must not keep it from joining or
    /// leaving a configuration (its proposer's share still bounds it).
    fn member_for(
        self: &Arc<Self>,
        hash: &str,
        change: bool,
    ) -> Result<Addr<ClusterMember>, ClusterError> {
        if let Some(a) = self.members.get(hash).filter(|a| a.connected()) {
            return Ok(a.clone());
        }
        let state = self.store.load(hash)?;
        let change = change
            || state
                .as_ref()
                .is_some_and(|s| s.record.message.change.is_some());
        let full = self.active() >= self.max_active.load(Ordering::Relaxed);
        if state.is_none() && full && !change {
            return Err(ClusterError::Busy(format!(
                "{} transactions in progress on this member",
                self.active()
            )));
        }
        let dir = self.clone();
        let hash_owned = hash.to_string();
        let addr = self
            .members
            .entry(hash.to_string())
            .and_modify(|a| {
                if !a.connected() {
                    *a =
                        ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone(), !change)
                            .start();
                }
            })
            .or_insert_with(|| {
                ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone(), !change).start()
            })
            .clone();
        Ok(addr)
    }
}
