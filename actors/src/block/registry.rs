//! BlockRegistry: routes `BlockId → Addr<BlockActor>`, activates actors on demand
//! on one of N arbiters (by hash of the id) and passivates the least recently used
//! ones when more than `max_live` are active.
//!
//! One block never has two owners: an evicted actor removes its own entry while
//! handling [`Passivate`], after which it handles nothing more, so a new actor for
//! the same block can only start once the old one is done. Messages that reach an
//! actor after that are dropped, and [`BlockRegistry::call`] retries them on the
//! new one (every block operation is idempotent under redelivery).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;

use super::actor::{BlockActor, BlockEnv, Home, Passivate};
use crate::metrics::EngineMetrics;
use crate::model::BlockId;
use crate::storage::{Changes, RawStorage, RepoError, RestoreFn};

/// How many times a message is re-routed after meeting a passivating actor.
const ROUTE_ATTEMPTS: usize = 16;

struct Slot {
    addr: Addr<BlockActor>,
    generation: u64,
    last_used: AtomicU64,
    evicting: AtomicBool,
}

/// Settings of the registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Most BlockActors kept alive (least recently used ones are passivated).
    pub max_live: usize,
    /// Arbiters (threads) the actors are spread over.
    pub arbiters: usize,
    /// Most pending transactions one block may hold (a pend past it is refused with
    /// `too_many_pending`).
    pub max_pending_per_block: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            max_live: 10_000,
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_pending_per_block: 256,
        }
    }
}

/// State shared by the registry handle and its actors.
pub(crate) struct RegistryCore {
    env: BlockEnv,
    slots: DashMap<BlockId, Slot>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    max_live: usize,
    clock: AtomicU64,
    next_generation: AtomicU64,
    evicting: AtomicUsize,
    scanning: AtomicBool,
}

impl Home for RegistryCore {
    fn env(&self) -> &BlockEnv {
        &self.env
    }

    fn forget(&self, id: &BlockId, generation: u64) {
        if let Some((_, slot)) = self.slots.remove_if(id, |_, s| s.generation == generation) {
            if slot.evicting.load(Ordering::Relaxed) {
                self.evicting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl RegistryCore {
    fn arbiter_for(&self, id: &BlockId) -> &ArbiterHandle {
        let n = self.arbiters.len().max(1) as u64;
        // Modulo keeps the index in range; arbiters is never empty (checked at start).
        &self.arbiters[(self.hasher.hash_one(id) % n) as usize]
    }

    fn addr(self: &Arc<Self>, id: &BlockId) -> Addr<BlockActor> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(id) {
            slot.last_used.store(now, Ordering::Relaxed);
            return slot.addr.clone();
        }
        let addr = self
            .slots
            .entry(id.clone())
            .or_insert_with(|| {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                let (core, bid) = (self.clone(), id.clone());
                let addr = BlockActor::start_in_arbiter(self.arbiter_for(id), move |_| {
                    BlockActor::new(bid, generation, core)
                });
                self.env.metrics.registry.activated.add(1);
                Slot {
                    addr,
                    generation,
                    last_used: AtomicU64::new(now),
                    evicting: AtomicBool::new(false),
                }
            })
            .addr
            .clone();
        if self.live_target() > self.max_live {
            self.evict();
        }
        addr
    }

    fn live_target(&self) -> usize {
        self.slots
            .len()
            .saturating_sub(self.evicting.load(Ordering::Relaxed))
    }

    /// Passivates the least recently used actors, down to 15/16 of `max_live`.
    fn evict(&self) {
        if self.scanning.swap(true, Ordering::Acquire) {
            return;
        }
        let keep = self.max_live - self.max_live / 16;
        let excess = self.live_target().saturating_sub(keep);
        // Find the age below which the `excess` oldest actors lie, without cloning keys.
        let mut ages: Vec<u64> = self
            .slots
            .iter()
            .filter(|s| !s.evicting.load(Ordering::Relaxed))
            .map(|s| s.last_used.load(Ordering::Relaxed))
            .collect();
        let cutoff = match excess {
            0 => 0,
            n if n >= ages.len() => u64::MAX,
            n => *ages.select_nth_unstable(n).1,
        };
        let mut sent = 0;
        for slot in self.slots.iter() {
            if sent >= excess {
                break;
            }
            if slot.last_used.load(Ordering::Relaxed) >= cutoff
                || slot.evicting.swap(true, Ordering::Relaxed)
            {
                continue;
            }
            self.evicting.fetch_add(1, Ordering::Relaxed);
            self.env.metrics.block_actor.enqueued();
            if slot.addr.try_send(Passivate).is_ok() {
                sent += 1;
            } else {
                // Busy (mailbox full) or already stopped: not evicted now.
                self.env.metrics.block_actor.dropped();
                slot.evicting.store(false, Ordering::Relaxed);
                self.evicting.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.scanning.store(false, Ordering::Release);
    }
}

/// Handle to the block actors of one node.
#[derive(Clone)]
pub struct BlockRegistry {
    core: Arc<RegistryCore>,
}

impl BlockRegistry {
    /// Starts `opts.arbiters` arbiter threads; must run inside an actix System.
    pub fn start(
        raw: Arc<dyn RawStorage>,
        metrics: Arc<EngineMetrics>,
        restore: Option<RestoreFn>,
        opts: RegistryOptions,
    ) -> Result<Self, RepoError> {
        let arbiters = (0..opts.arbiters.max(1))
            .map(|_| {
                Arbiter::try_new()
                    .map(|a| a.handle())
                    .map_err(|e| RepoError::Unavailable(format!("cannot start arbiter: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            core: Arc::new(RegistryCore {
                env: BlockEnv {
                    raw,
                    metrics,
                    restore,
                    changes: Changes::default(),
                    max_pending: opts.max_pending_per_block.max(1),
                },
                slots: DashMap::new(),
                arbiters,
                hasher: Default::default(),
                max_live: opts.max_live.max(1),
                clock: AtomicU64::new(0),
                next_generation: AtomicU64::new(0),
                evicting: AtomicUsize::new(0),
                scanning: AtomicBool::new(false),
            }),
        })
    }

    /// Sends `msg` to `id`'s actor (activating it), re-routing if it was passivated.
    pub(crate) async fn call<M>(&self, id: &BlockId, msg: M) -> Result<M::Result, RepoError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        BlockActor: Handler<M>,
    {
        let metrics = &self.core.env.metrics.block_actor;
        for _ in 0..ROUTE_ATTEMPTS {
            let addr = self.core.addr(id);
            metrics.enqueued();
            match addr.send(msg.clone()).await {
                Ok(r) => return Ok(r),
                Err(MailboxError::Closed) => metrics.dropped(),
                Err(MailboxError::Timeout) => {
                    metrics.dropped();
                    return Err(RepoError::Unavailable(format!("block {id} timed out")));
                }
            }
        }
        Err(RepoError::Unavailable(format!(
            "block {id} kept passivating; giving up after {ROUTE_ATTEMPTS} attempts"
        )))
    }

    /// BlockActors registered now (including ones being passivated).
    pub fn live(&self) -> usize {
        self.core.slots.len()
    }

    /// The storage backend.
    pub fn raw(&self) -> &Arc<dyn RawStorage> {
        &self.core.env.raw
    }

    /// Every block's applied changes, for watchers.
    pub fn changes(&self) -> &Changes {
        &self.core.env.changes
    }

    /// The engine metrics.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.core.env.metrics
    }

    /// Drops every actor address and stops the arbiters once their actors finish.
    pub fn shutdown(&self) {
        self.core.slots.clear();
        for a in &self.core.arbiters {
            a.stop();
        }
    }
}
