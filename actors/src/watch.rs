//! Watching a block: every revision it commits, in order, as a stream. A watcher
//! reads a block's history through a [`History`] — a node's own copy, or a
//! remote node's over the network — and waits between reads on wake-ups (a
//! node's [`Changes`](crate::storage::Changes)) or, without them, a poll.
//!
//! Guarantees (docs/PROTOCOL.md, "Watching a block"): revisions come in
//! ascending order, each at least once; a watch started `from` a revision
//! yields every revision after it the history still holds, so a client resumes
//! from the last revision it saw. Without `from` it starts at the current
//! revision. A failed read is yielded as an error and the watch goes on.

use std::collections::VecDeque;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::{Block, BlockId, RepoError, Rev, TrxId, TrxRev};

/// One committed revision of a watched block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// The block.
    pub block_id: BlockId,
    /// The revision.
    pub rev: Rev,
    /// The transaction committed at it.
    pub trx_id: TrxId,
    /// The block as of this revision (absent: deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
}

/// Where a watcher reads a block's history.
pub trait History: Send + Sync {
    /// The block's latest committed revision, if any.
    fn latest<'a>(&'a self, id: &'a BlockId) -> BoxFuture<'a, Result<Option<TrxRev>, RepoError>>;
    /// Its committed revisions after `after`, ascending.
    fn after<'a>(
        &'a self,
        id: &'a BlockId,
        after: Rev,
    ) -> BoxFuture<'a, Result<Vec<TrxRev>, RepoError>>;
    /// The block as of revision `rev`.
    fn block_at<'a>(
        &'a self,
        id: &'a BlockId,
        rev: Rev,
    ) -> BoxFuture<'a, Result<Option<Block>, RepoError>>;
}

struct Watcher<H> {
    history: H,
    id: BlockId,
    /// The last revision yielded (`None`: not started; yield the current one).
    cursor: Option<Rev>,
    queue: VecDeque<TrxRev>,
    wake: Option<broadcast::Receiver<BlockId>>,
    poll: Duration,
    /// Read again without waiting (at the start, and after a wake-up).
    fresh: bool,
}

impl<H: History> Watcher<H> {
    /// Fills the queue with what is new; `Ok(false)` when nothing is.
    async fn refill(&mut self) -> Result<bool, RepoError> {
        let Some(latest) = self.history.latest(&self.id).await? else {
            self.cursor.get_or_insert(0);
            return Ok(false);
        };
        let after = match self.cursor {
            None => {
                self.queue.push_back(latest);
                return Ok(true);
            }
            Some(c) if latest.rev <= c => return Ok(false),
            Some(c) => c,
        };
        let revs: Vec<TrxRev> = self
            .history
            .after(&self.id, after)
            .await?
            .into_iter()
            .filter(|t| t.rev > after && t.rev <= latest.rev)
            .collect();
        // A history that lists nothing new still has its latest.
        if revs.is_empty() {
            self.queue.push_back(latest);
        } else {
            self.queue.extend(revs);
        }
        Ok(true)
    }

    /// Waits for a wake-up about this block, or the poll interval.
    async fn wait(&mut self) {
        let poll = tokio::time::sleep(self.poll);
        tokio::pin!(poll);
        loop {
            let Some(rx) = self.wake.as_mut() else {
                poll.as_mut().await;
                return;
            };
            tokio::select! {
                () = &mut poll => return,
                got = rx.recv() => match got {
                    Ok(id) if id == self.id => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => self.wake = None,
                },
            }
        }
    }

    async fn next(&mut self) -> Result<Revision, RepoError> {
        loop {
            if let Some(t) = self.queue.pop_front() {
                let block = self.history.block_at(&self.id, t.rev).await;
                let block = match block {
                    Ok(b) => b,
                    Err(e) => {
                        self.queue.push_front(t);
                        self.fresh = false;
                        return Err(e);
                    }
                };
                self.cursor = Some(t.rev);
                return Ok(Revision {
                    block_id: self.id.clone(),
                    rev: t.rev,
                    trx_id: t.trx_id,
                    block,
                });
            }
            if !self.fresh {
                self.wait().await;
            }
            self.fresh = false;
            if self.refill().await? {
                self.fresh = true;
            }
        }
    }
}

/// The revisions of `id` from `history`, after `from` (or from the current one),
/// waking on `wake` when given and polling every `poll` otherwise (and beside it,
/// for changes that arrive by another path).
pub fn watch<H: History + 'static>(
    history: H,
    id: BlockId,
    from: Option<Rev>,
    wake: Option<broadcast::Receiver<BlockId>>,
    poll: Duration,
) -> impl Stream<Item = Result<Revision, RepoError>> + Send {
    let w = Watcher {
        history,
        id,
        cursor: from,
        queue: VecDeque::new(),
        wake,
        poll,
        fresh: true,
    };
    futures::stream::unfold(w, |mut w| async move {
        let item = w.next().await;
        Some((item, w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// A history held in memory (its blocks are all deleted ones).
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<TrxRev>>>);

    impl Memory {
        fn commit(&self, rev: Rev) {
            let tr = TrxRev {
                trx_id: TrxId::new(format!("t{rev}")).unwrap(),
                rev,
            };
            self.0.lock().push(tr);
        }
    }

    impl History for Memory {
        fn latest<'a>(
            &'a self,
            _: &'a BlockId,
        ) -> BoxFuture<'a, Result<Option<TrxRev>, RepoError>> {
            let l = self.0.lock().last().cloned();
            Box::pin(async move { Ok(l) })
        }
        fn after<'a>(
            &'a self,
            _: &'a BlockId,
            after: Rev,
        ) -> BoxFuture<'a, Result<Vec<TrxRev>, RepoError>> {
            let v = self
                .0
                .lock()
                .iter()
                .filter(|t| t.rev > after)
                .cloned()
                .collect();
            Box::pin(async move { Ok(v) })
        }
        fn block_at<'a>(
            &'a self,
            _: &'a BlockId,
            _: Rev,
        ) -> BoxFuture<'a, Result<Option<Block>, RepoError>> {
            Box::pin(async { Ok(None) })
        }
    }

    #[actix_rt::test]
    async fn revisions_come_in_order_from_the_cursor_and_on_wake_ups() {
        let h = Memory::default();
        for rev in [1, 2, 5] {
            h.commit(rev);
        }
        let id = BlockId::new("w").unwrap();
        let changes = crate::storage::Changes::default();
        let mut s = Box::pin(watch(
            h.clone(),
            id.clone(),
            Some(1),
            Some(changes.subscribe()),
            Duration::from_secs(3600),
        ));
        let revs: Vec<Rev> = vec![
            s.next().await.unwrap().unwrap().rev,
            s.next().await.unwrap().unwrap().rev,
        ];
        assert_eq!(revs, [2, 5]);
        // Nothing new: the watcher waits; a commit and a wake-up bring it.
        h.commit(9);
        changes.notify(&id);
        let next = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap();
        assert_eq!(next.unwrap().unwrap().rev, 9);
        // Without a cursor it starts at the current revision.
        let mut s = Box::pin(watch(h, id, None, None, Duration::from_millis(10)));
        assert_eq!(s.next().await.unwrap().unwrap().rev, 9);
    }
}
