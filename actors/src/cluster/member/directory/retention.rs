//! Retention of transactions: resuming the members left undecided on disk,
//! and forgetting decided transactions [`RETENTION`] after their deadline.

use std::sync::Arc;

use super::{MemberDirectory, RETENTION};
use crate::cluster::member::ClusterError;
use crate::cluster::phase::Phase;

impl MemberDirectory {
    /// Restarts the members of transactions left undecided on disk (they re-reserve
    /// their blocks and recover). Returns how many.
    pub fn resume(self: &Arc<Self>) -> Result<usize, ClusterError> {
        let mut n = 0;
        for (hash, state) in self.store.all()? {
            if state.phase.holds() {
                self.member(&hash)?;
                n += 1;
            } else {
                if state.phase == Phase::Committed {
                    self.cancelled.note(&state.record);
                    self.pend_deadlines.note(&state.record);
                }
                self.retire(&hash, state.record.message.expiration.unwrap_or(0));
            }
        }
        Ok(n)
    }

    /// Queues a decided transaction to be forgotten [`RETENTION`] after `deadline`.
    pub(in crate::cluster::member) fn retire(&self, hash: &str, deadline: u64) {
        self.retired.lock().insert((deadline, hash.to_string()));
    }

    /// Forgets decided transactions whose deadline is more than [`RETENTION`] before
    /// `now_ms` (one durable write), and the finished actors' entries. Returns how many.
    pub async fn prune(&self, now_ms: u64) -> Result<usize, ClusterError> {
        let cutoff = now_ms.saturating_sub(u64::try_from(RETENTION.as_millis()).unwrap_or(0));
        let due: Vec<String> = {
            let mut r = self.retired.lock();
            let keep = r.split_off(&(cutoff, String::new()));
            std::mem::replace(&mut *r, keep)
                .into_iter()
                .map(|(_, h)| h)
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        for h in &due {
            self.members.remove_if(h, |_, a| !a.connected());
        }
        let n = due.len();
        self.cancelled.forget(&due);
        self.pend_deadlines.forget_before(cutoff);
        self.store.delete(due).await?;
        Ok(n)
    }
}
