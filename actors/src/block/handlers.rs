//! Message handlers of the BlockActor and the async procedures they run with the
//! block's storage taken out (the mailbox stays blocked until it is returned).

use actix::prelude::*;
use futures::FutureExt;
use tokio::sync::oneshot;

use super::actor::{
    BlockActor, BlockOp, Decision, Mode, Passivate, Prepare, Prepared, Read, Reply,
};
use crate::model::{
    apply_transform, BlockTrxState, GetBlockResult, PendPolicy, Rev, TrxId, TrxRev,
};
use crate::storage::{
    BlockStorage, CommitPlan, Effect, PendCommitPlan, RepoError, RestoreFn, StorageError,
    WriteBatch,
};

type Outcome<T> = (Option<BlockStorage>, Result<T, RepoError>);

/// A checked operation: what to write, how the cache changes, what to report.
struct Plan {
    prepared: Prepared,
    write: Option<(WriteBatch, Effect)>,
}

fn plan(st: &BlockStorage, op: &BlockOp) -> Result<Plan, RepoError> {
    Ok(match op {
        BlockOp::Pend {
            trx,
            transform,
            rev,
            policy,
        } => {
            let p = st.plan_pend(trx, transform, *rev, *policy)?;
            let blocked =
                !p.missing.is_empty() || (!p.pending.is_empty() && *policy != PendPolicy::Continue);
            Plan {
                write: (!blocked && !p.ops.is_empty()).then_some((p.ops, p.effect)),
                prepared: Prepared {
                    pending: p.pending,
                    missing: p.missing,
                    ..Prepared::default()
                },
            }
        }
        BlockOp::PendAgreed {
            trx,
            transform,
            rev,
        } => {
            let p = st.plan_pend_agreed(trx, transform, *rev)?;
            let stale = !p.missing.is_empty();
            Plan {
                write: (!stale && !p.ops.is_empty()).then_some((p.ops, p.effect)),
                prepared: Prepared {
                    pending: p.pending,
                    missing: p.missing,
                    ..Prepared::default()
                },
            }
        }
        BlockOp::CommitWith {
            trx,
            rev,
            transform,
        } => commit_plan(st.plan_commit_with(trx, *rev, transform.clone())?),
        BlockOp::Restore {
            archive,
            authoritative,
            pending_exact,
        } => Plan {
            prepared: Prepared::default(),
            write: Some(st.plan_restore_with(
                (**archive).clone(),
                *authoritative,
                *pending_exact,
            )?),
        },
        BlockOp::Drop { expected, pending } => Plan {
            prepared: Prepared::default(),
            write: st.plan_drop(expected.as_ref(), pending)?,
        },
        BlockOp::Commit { trx, rev } => commit_plan(st.plan_commit(trx, *rev)?),
        BlockOp::Cancel { trx } => Plan {
            prepared: Prepared::default(),
            write: st.plan_cancel(trx),
        },
        BlockOp::PendCommit {
            trx,
            transform,
            pend_rev,
            policy,
            rev,
        } => match st.plan_pend_commit(trx, transform, *pend_rev, *policy, *rev)? {
            PendCommitPlan::AlreadyCommitted => Plan {
                prepared: Prepared::default(),
                write: None,
            },
            PendCommitPlan::PendBlocked(p) => Plan {
                prepared: Prepared {
                    pending: p.pending,
                    missing: p.missing,
                    ..Prepared::default()
                },
                write: None,
            },
            PendCommitPlan::CommitStale { pending, missing } => Plan {
                prepared: Prepared {
                    pending,
                    missing,
                    commit_stale: true,
                    ..Prepared::default()
                },
                write: None,
            },
            PendCommitPlan::Apply {
                pending,
                ops,
                effect,
            } => Plan {
                prepared: Prepared {
                    pending,
                    ..Prepared::default()
                },
                write: Some((ops, effect)),
            },
        },
    })
}

fn commit_plan(p: CommitPlan) -> Plan {
    match p {
        CommitPlan::AlreadyCommitted => Plan {
            prepared: Prepared::default(),
            write: None,
        },
        CommitPlan::Stale(missing) => Plan {
            prepared: Prepared {
                missing,
                ..Prepared::default()
            },
            write: None,
        },
        CommitPlan::Apply(ops, effect) => Plan {
            prepared: Prepared::default(),
            write: Some((ops, effect)),
        },
    }
}

/// Writes `ops` durably and applies `effect`; on failure the cache is dropped so
/// the next message reloads from disk.
async fn write_and_apply(mut st: BlockStorage, ops: WriteBatch, effect: Effect) -> Outcome<()> {
    if let Err(e) = st.raw().write(ops).await {
        return (None, Err(e.into()));
    }
    match st.apply(effect) {
        Ok(()) => (Some(st), Ok(())),
        Err(e) => (None, Err(e.into())),
    }
}

/// Holds the block until the joint caller decides.
async fn await_decision(
    mut st: BlockStorage,
    rx: oneshot::Receiver<Decision>,
    effect: Effect,
) -> Outcome<()> {
    match rx.await {
        Ok(Decision::Apply) => match st.apply(effect) {
            Ok(()) => (Some(st), Ok(())),
            Err(e) => (None, Err(e.into())),
        },
        Ok(Decision::Release) => (Some(st), Ok(())),
        // The caller vanished: whether its batch landed is unknown, so reload.
        Err(_) => (None, Ok(())),
    }
}

impl Handler<Prepare> for BlockActor {
    type Result = Reply<Result<Prepared, RepoError>>;

    fn handle(&mut self, msg: Prepare, ctx: &mut Context<Self>) -> Self::Result {
        let timer = self.timer();
        let planned = self.loaded().and_then(|st| plan(st, &msg.op));
        let Plan {
            mut prepared,
            write,
        } = match planned {
            Ok(p) => p,
            Err(e) => return Reply::Now(Err(e), timer),
        };
        let Some((ops, effect)) = write else {
            return Reply::Now(Ok(prepared), timer);
        };
        let st = match self.take_storage() {
            Ok(st) => st,
            Err(e) => return Reply::Now(Err(e), timer),
        };
        match msg.mode {
            Mode::Solo => Reply::Wait(
                write_and_apply(st, ops, effect)
                    .map(move |(st, r)| (st, r.map(|()| prepared)))
                    .boxed_local(),
                timer,
            ),
            Mode::Joint => {
                let (tx, rx) = oneshot::channel();
                prepared.ops = ops;
                prepared.hold = Some(tx);
                ctx.wait(
                    actix::fut::wrap_future::<_, Self>(await_decision(st, rx, effect))
                        .map(|(st, _), act, _| act.put_back(st)),
                );
                Reply::Now(Ok(prepared), timer)
            }
        }
    }
}

/// Catch-up commits a read must make first: listed as committed, above the
/// block's latest, and pending here.
fn catch_up_needed<'a>(st: &BlockStorage, catch_up: &'a [TrxRev]) -> Vec<&'a TrxRev> {
    let latest = st.latest().map(|l| l.rev);
    catch_up
        .iter()
        .filter(|tr| latest.is_none_or(|l| tr.rev > l) && st.pending(&tr.trx_id).is_some())
        .collect()
}

fn read_now(
    st: &BlockStorage,
    rev: Option<Rev>,
    overlay: Option<&TrxId>,
) -> Result<GetBlockResult, RepoError> {
    let read = st.read(rev)?;
    let (latest, mut block) = match read {
        Some((tr, b)) => (Some(tr), b),
        None => (None, None),
    };
    if let Some(trx) = overlay {
        let t = st
            .pending(trx)
            .ok_or_else(|| RepoError::ContextTrxMissing {
                block: st.id().clone(),
                trx: trx.clone(),
            })?;
        block = apply_transform(st.id(), block.as_ref(), t)?;
    }
    let pendings = st.pending_ids();
    Ok(GetBlockResult {
        block,
        state: BlockTrxState {
            latest,
            pendings: (!pendings.is_empty()).then_some(pendings),
        },
    })
}

async fn read_slow(
    mut st: BlockStorage,
    msg: Read,
    restore: Option<RestoreFn>,
) -> Outcome<GetBlockResult> {
    let targets: Vec<TrxRev> = catch_up_needed(&st, &msg.catch_up)
        .into_iter()
        .cloned()
        .collect();
    for tr in targets {
        let planned = match st.plan_commit(&tr.trx_id, tr.rev) {
            Ok(p) => p,
            Err(e) => return (Some(st), Err(e)),
        };
        if let CommitPlan::Apply(ops, effect) = planned {
            let (back, r) = write_and_apply(st, ops, effect).await;
            match (back, r) {
                (Some(s), Ok(())) => st = s,
                (back, r) => return (back, r.map(|()| GetBlockResult::default())),
            }
        }
    }
    if let Some(restore) = restore.filter(|_| st.needs_restore(msg.rev)) {
        match restore(st.id().clone(), st.restore_from(msg.rev)).await {
            Ok(Some(archive)) => {
                let (ops, effect) = match st.plan_restore(archive) {
                    Ok(p) => p,
                    Err(e) => return (Some(st), Err(e)),
                };
                match write_and_apply(st, ops, effect).await {
                    (Some(s), Ok(())) => st = s,
                    (back, r) => return (back, r.map(|()| GetBlockResult::default())),
                }
            }
            Ok(None) => {}
            Err(message) => {
                let block = st.id().clone();
                return (Some(st), Err(RepoError::Restore { block, message }));
            }
        }
    }
    let r = read_now(&st, msg.rev, msg.overlay.as_ref());
    (Some(st), r)
}

impl Handler<Read> for BlockActor {
    type Result = Reply<Result<GetBlockResult, RepoError>>;

    fn handle(&mut self, msg: Read, _: &mut Context<Self>) -> Self::Result {
        let timer = self.timer();
        let restore = self.restore_fn().cloned();
        let st = match self.loaded() {
            Ok(st) => st,
            Err(e) => return Reply::Now(Err(e), timer),
        };
        let slow = !catch_up_needed(st, &msg.catch_up).is_empty()
            || (restore.is_some() && st.needs_restore(msg.rev));
        if !slow {
            match read_now(st, msg.rev, msg.overlay.as_ref()) {
                // A damaged record: repair the block from peers, then read again.
                Err(RepoError::Storage(e @ StorageError::Corrupt { .. })) if restore.is_some() => {
                    st.mark_damaged(e.to_string());
                }
                r => return Reply::Now(r, timer),
            }
        }
        match self.take_storage() {
            Ok(st) => Reply::Wait(read_slow(st, msg, restore).boxed_local(), timer),
            Err(e) => Reply::Now(Err(e), timer),
        }
    }
}

impl Handler<Passivate> for BlockActor {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        let _timer = self.timer();
        let (id, generation) = (self.id().clone(), self.generation());
        self.core().forget(&id, generation);
        self.core().env().metrics.registry.passivated.add(1);
        ctx.stop();
    }
}
