//! The BlockActor: sole owner of one active block. Every read and write of the
//! block passes through its mailbox; a handler that awaits I/O blocks the mailbox
//! (`ctx.wait`) until it is done, so the cached state is always the truth.

use std::sync::Arc;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use futures::future::LocalBoxFuture;
use tokio::sync::oneshot;

use crate::metrics::{EngineMetrics, HandlerTimer};
use crate::model::{
    BlockId, GetBlockResult, PendPolicy, Rev, Transform, TrxId, TrxPending, TrxRev, TrxTransforms,
};
use crate::storage::{BlockStorage, Changes, RawStorage, RepoError, RestoreFn, WriteBatch};

/// Mailbox capacity of a BlockActor (senders wait beyond it).
pub(crate) const BLOCK_MAILBOX: usize = 64;

/// A write operation on one block.
#[derive(Debug, Clone)]
pub(crate) enum BlockOp {
    Pend {
        trx: TrxId,
        transform: Arc<Transform>,
        rev: Option<Rev>,
        policy: PendPolicy,
    },
    /// A pend the cluster agreed on: no policy, no per-block limit.
    PendAgreed {
        trx: TrxId,
        transform: Arc<Transform>,
        rev: Option<Rev>,
    },
    /// A commit whose transform came from another member (this copy missed the pend).
    CommitWith {
        trx: TrxId,
        rev: Rev,
        transform: Arc<Transform>,
    },
    /// Forget this copy if it still ends at `expected` (`None`: no revision)
    /// with exactly `pending` pending (hand-off).
    Drop {
        expected: Option<crate::model::TrxRev>,
        pending: Vec<crate::model::TrxId>,
    },
    /// Store a peer's archive (`authoritative`: replace what differs;
    /// `pending_exact`: its pending transactions are the whole set to hold).
    Restore {
        archive: Arc<crate::storage::BlockArchive>,
        authoritative: bool,
        pending_exact: bool,
    },
    Commit {
        trx: TrxId,
        rev: Rev,
    },
    Cancel {
        trx: TrxId,
    },
    /// A pend and its commit, in one write.
    PendCommit {
        trx: TrxId,
        transform: Arc<Transform>,
        pend_rev: Option<Rev>,
        policy: PendPolicy,
        rev: Rev,
    },
}

/// How the outcome of a prepared operation is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// This block alone: the actor writes and applies by itself.
    Solo,
    /// Part of a multi-block request: the actor returns its writes and holds the
    /// block until the caller reports a [`Decision`].
    Joint,
}

/// What became of a joint write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The caller wrote the batch durably: apply the effect.
    Apply,
    /// Nothing was written.
    Release,
}

/// Check (and in solo mode perform) an operation.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Prepared, RepoError>")]
pub(crate) struct Prepare {
    pub(crate) op: BlockOp,
    pub(crate) mode: Mode,
}

/// The block's answer to [`Prepare`].
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Other transactions pending on the block.
    pub(crate) pending: Vec<TrxPending>,
    /// Committed transactions the requester missed (stale when non-empty).
    pub(crate) missing: Vec<TrxTransforms>,
    /// A pendCommit whose pend would go ahead but whose commit is stale (`missing`
    /// is then the commit's).
    pub(crate) commit_stale: bool,
    /// Joint mode: the writes to make durable before deciding `Apply`.
    pub(crate) ops: WriteBatch,
    /// Joint mode with writes: where to send the decision (the block is held until then).
    pub(crate) hold: Option<oneshot::Sender<Decision>>,
}

/// Read the block.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<GetBlockResult, RepoError>")]
pub(crate) struct Read {
    pub(crate) rev: Option<Rev>,
    pub(crate) overlay: Option<TrxId>,
    /// Committed transactions to catch up on first, sorted by rev.
    pub(crate) catch_up: Arc<Vec<TrxRev>>,
}

/// Stop if still the registered generation.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Passivate;

/// Replies now, or after a future that blocks the mailbox until it completes.
pub(crate) enum Reply<T: 'static> {
    Now(T, HandlerTimer),
    Wait(
        LocalBoxFuture<'static, (Option<BlockStorage>, T)>,
        HandlerTimer,
    ),
}

impl<M, T> MessageResponse<BlockActor, M> for Reply<T>
where
    M: Message<Result = T>,
    T: 'static,
{
    fn handle(self, ctx: &mut Context<BlockActor>, tx: Option<OneshotSender<T>>) {
        let send = |v: T| {
            if let Some(tx) = tx {
                let _ = tx.send(v);
            }
        };
        match self {
            Reply::Now(v, timer) => {
                send(v);
                drop(timer);
            }
            Reply::Wait(fut, timer) => {
                ctx.wait(actix::fut::wrap_future::<_, BlockActor>(fut).map(
                    move |(st, v), act, _| {
                        act.storage = st;
                        send(v);
                        drop(timer);
                    },
                ));
            }
        }
    }
}

/// What every BlockActor of one registry shares: the storage, metrics, the
/// restore callback, the change feed and the pending limit.
pub(crate) struct BlockEnv {
    pub(crate) raw: Arc<dyn RawStorage>,
    pub(crate) metrics: Arc<EngineMetrics>,
    pub(crate) restore: Option<RestoreFn>,
    /// Told of every effect any block applies (watchers subscribe).
    pub(crate) changes: Changes,
    pub(crate) max_pending: usize,
}

/// The registry a BlockActor belongs to (the actor knows it only as this, so the
/// actor does not depend on the registry that starts it).
pub(crate) trait Home: Send + Sync {
    /// What the registry's actors share.
    fn env(&self) -> &BlockEnv;
    /// Removes `id`'s entry if it still belongs to `generation` (an actor that
    /// stops says so).
    fn forget(&self, id: &BlockId, generation: u64);
}

/// Owner of one block.
pub(crate) struct BlockActor {
    id: BlockId,
    generation: u64,
    core: Arc<dyn Home>,
    storage: Option<BlockStorage>,
    restore: Option<RestoreFn>,
}

impl BlockActor {
    pub(crate) fn new(id: BlockId, generation: u64, core: Arc<dyn Home>) -> Self {
        let restore = core.env().restore.clone();
        Self {
            id,
            generation,
            core,
            storage: None,
            restore,
        }
    }

    fn storage(&mut self) -> Result<&mut BlockStorage, RepoError> {
        if self.storage.is_none() {
            self.storage = Some(
                BlockStorage::load(self.id.clone(), self.core.env().raw.clone())?
                    .with_pending_limit(self.core.env().max_pending)
                    .with_changes(self.core.env().changes.clone()),
            );
        }
        self.storage
            .as_mut()
            .ok_or_else(|| RepoError::Unavailable("block storage not loaded".into()))
    }

    pub(super) fn timer(&self) -> HandlerTimer {
        self.core.env().metrics.block_actor.start()
    }

    /// Takes the loaded storage out for an async procedure (the mailbox is blocked
    /// until it is put back by [`Reply::Wait`]).
    pub(super) fn take_storage(&mut self) -> Result<BlockStorage, RepoError> {
        self.storage()?;
        self.storage
            .take()
            .ok_or_else(|| RepoError::Unavailable("block storage not loaded".into()))
    }

    pub(super) fn restore_fn(&self) -> Option<&RestoreFn> {
        self.restore.as_ref()
    }

    pub(super) fn core(&self) -> &Arc<dyn Home> {
        &self.core
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn id(&self) -> &BlockId {
        &self.id
    }

    pub(super) fn put_back(&mut self, st: Option<BlockStorage>) {
        self.storage = st;
    }

    pub(super) fn loaded(&mut self) -> Result<&mut BlockStorage, RepoError> {
        self.storage()
    }
}

impl Actor for BlockActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(BLOCK_MAILBOX);
        self.core.env().metrics.registry.actor_started();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.env().metrics.registry.live.add(-1);
        self.core.forget(&self.id, self.generation);
    }
}
