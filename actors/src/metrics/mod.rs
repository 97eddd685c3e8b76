//! Instrumentation shared by every actor kind: mailbox depth (now and high-water),
//! messages handled and a handler-latency histogram, plus the block registry's
//! live/activated/passivated counts and storage counters. Plain atomics, so
//! recording costs a few nanoseconds; `src/` exports them over HTTP.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod process;

/// Upper bounds (µs) of the latency histogram buckets; a last bucket is unbounded.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// A cumulative-friendly latency histogram of atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per-bucket counts (not cumulative), aligned with [`LATENCY_BUCKETS_US`] plus +Inf.
    pub buckets: Vec<u64>,
    /// Sum of observations, µs.
    pub sum_us: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// Mailbox and handler figures of one actor kind.
#[derive(Debug)]
pub struct ActorMetrics {
    kind: &'static str,
    depth: AtomicI64,
    high_water: AtomicI64,
    handled: AtomicU64,
    latency: Histogram,
}

/// A point-in-time copy of [`ActorMetrics`].
#[derive(Debug, Clone)]
pub struct ActorSnapshot {
    /// Actor kind (`block`, `coordinator`, …).
    pub kind: &'static str,
    /// Messages queued and not yet being handled.
    pub depth: i64,
    /// Highest depth seen.
    pub high_water: i64,
    /// Messages handled.
    pub handled: u64,
    /// Handler latency.
    pub latency: HistogramSnapshot,
}

impl ActorMetrics {
    /// Metrics for one actor kind.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            depth: AtomicI64::new(0),
            high_water: AtomicI64::new(0),
            handled: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }

    /// The sender is about to queue a message.
    pub fn enqueued(&self) {
        let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.high_water.fetch_max(d, Ordering::Relaxed);
    }

    /// A queued message was dropped unhandled (the actor stopped).
    pub fn dropped(&self) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// A handler starts; finish the returned timer when its reply is sent.
    pub fn start(self: &Arc<Self>) -> HandlerTimer {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        HandlerTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Copies the current values.
    pub fn snapshot(&self) -> ActorSnapshot {
        ActorSnapshot {
            kind: self.kind,
            depth: self.depth.load(Ordering::Relaxed),
            high_water: self.high_water.load(Ordering::Relaxed),
            handled: self.handled.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// Measures one handler; records on drop.
#[derive(Debug)]
pub struct HandlerTimer {
    metrics: Arc<ActorMetrics>,
    started: Instant,
}

impl Drop for HandlerTimer {
    fn drop(&mut self) {
        self.metrics.handled.fetch_add(1, Ordering::Relaxed);
        self.metrics.latency.observe(self.started.elapsed());
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets it to `n`.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// The BlockRegistry's figures.
#[derive(Debug, Default)]
pub struct BlockRegistryMetrics {
    /// BlockActors alive now.
    pub live: Gauge,
    /// Highest number alive at once.
    pub live_high_water: Gauge,
    /// Activations since start.
    pub activated: Counter,
    /// Passivations since start.
    pub passivated: Counter,
}

impl BlockRegistryMetrics {
    pub(crate) fn actor_started(&self) {
        self.live.add(1);
        let now = self.live.get();
        self.live_high_water.0.fetch_max(now, Ordering::Relaxed);
    }
}

/// Repo operations, as exported by [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoOp {
    /// get
    Get = 0,
    /// pend
    Pend = 1,
    /// commit
    Commit = 2,
    /// cancel
    Cancel = 3,
    /// pendCommit
    PendCommit = 4,
}

/// How a repo operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Success = 0,
    /// A stale or blocked reply (`success:false`).
    Stale = 1,
    /// An error.
    Error = 2,
}

/// Repo operations by kind and outcome.
#[derive(Debug, Default)]
pub struct RepoMetrics {
    counts: [[Counter; 3]; 5],
    active: Gauge,
}

impl RepoMetrics {
    /// A write (pend, commit, cancel) starts.
    pub fn begin(&self) {
        self.active.add(1);
    }

    /// A write ends.
    pub fn end(&self) {
        self.active.add(-1);
    }

    /// Writes executing now.
    pub fn active(&self) -> i64 {
        self.active.get()
    }

    /// Counts one operation.
    pub fn record(&self, op: RepoOp, outcome: Outcome) {
        self.counts[op as usize][outcome as usize].add(1);
    }

    /// Operations of `op` that ended with `outcome`.
    pub fn get(&self, op: RepoOp, outcome: Outcome) -> u64 {
        self.counts[op as usize][outcome as usize].get()
    }
}

/// Every metric of one node's engine.
#[derive(Debug)]
pub struct EngineMetrics {
    /// BlockActor mailboxes and handlers.
    pub block_actor: Arc<ActorMetrics>,
    /// Registry counts.
    pub registry: BlockRegistryMetrics,
    /// Repo operations.
    pub repo: RepoMetrics,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            block_actor: Arc::new(ActorMetrics::new("block")),
            registry: BlockRegistryMetrics::default(),
            repo: RepoMetrics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_high_water_and_latency() {
        let m = Arc::new(ActorMetrics::new("t"));
        m.enqueued();
        m.enqueued();
        m.enqueued();
        m.dropped();
        {
            let _t = m.start();
        }
        let s = m.snapshot();
        assert_eq!((s.depth, s.high_water, s.handled), (1, 3, 1));
        assert_eq!(s.latency.count, 1);
        assert_eq!(s.latency.buckets.iter().sum::<u64>(), 1);
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[LATENCY_BUCKETS_US.len()], 1);
    }
}
