//! Lanes of a load: N in flight, each starting its next operation when its last
//! one ends, for a count or until a deadline ([`drive`]); every operation timed
//! and counted (live, for progress), failures counted by kind.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;

/// When the lanes stop starting operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every lane runs exactly this many.
    Each(u64),
    /// This many in all, each to whichever lane is free first.
    Total(u64),
    /// Lanes start operations until this instant (the last ones end after it).
    Deadline(Instant),
}

impl Until {
    /// The run's number for a lane's next operation (its `k`th), taken from
    /// `started`; `None` when the lane is done.
    fn take(self, k: u64, started: &AtomicU64) -> Option<u64> {
        match self {
            Self::Each(n) if k >= n => None,
            Self::Deadline(end) if Instant::now() >= end => None,
            Self::Total(n) => {
                let i = started.fetch_add(1, Ordering::Relaxed);
                (i < n).then_some(i)
            }
            Self::Each(_) | Self::Deadline(_) => Some(started.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// Which operation a lane is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The lane, of `0..lanes`.
    pub lane: usize,
    /// How many operations this lane started before this one.
    pub k: u64,
    /// How many operations all lanes started before this one.
    pub i: u64,
}

/// Operations acknowledged and failed so far, readable while the lanes run.
#[derive(Debug, Default)]
pub struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    /// Operations that succeeded so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Operations that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Each successful operation's value and latency, lane by lane, each lane's
    /// in the order it ran them.
    pub done: Vec<(T, Duration)>,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
}

impl<T> Outcome<T> {
    fn with_capacity(n: usize) -> Self {
        Self {
            done: Vec::with_capacity(n),
            errors: BTreeMap::new(),
        }
    }

    /// Operations that succeeded.
    pub fn acked(&self) -> u64 {
        self.done.len() as u64
    }

    /// Operations that failed.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The successful operations' latencies, in the order of [`Outcome::done`].
    pub fn latencies(&self) -> Vec<Duration> {
        self.done.iter().map(|(_, d)| *d).collect()
    }
}

/// Runs `lanes` lanes of `op` until `until`, each lane starting its next
/// operation when its last one ends. An operation is timed from the call of `op`
/// (building its request included) to its end; `Ok(value)` counts as acknowledged,
/// `Err(kind)` as a failure of that kind. `counts` follows the run as it goes.
pub async fn drive<T, F, Fut>(lanes: usize, until: Until, counts: &Counts, op: F) -> Outcome<T>
where
    F: Fn(Slot) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = AtomicU64::new(0);
    let (op, started) = (&op, &started);
    let capacity = match until {
        Until::Each(n) => usize::try_from(n.min(1 << 16)).unwrap_or(0),
        Until::Total(_) | Until::Deadline(_) => 0,
    };
    let runs = (0..lanes).map(move |lane| async move {
        let mut out = Outcome::with_capacity(capacity);
        let mut k = 0;
        while let Some(i) = until.take(k, started) {
            let slot = Slot { lane, k, i };
            k += 1;
            let t = Instant::now();
            match op(slot).await {
                Ok(value) => {
                    out.done.push((value, t.elapsed()));
                    counts.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(kind) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    *out.errors.entry(kind).or_default() += 1;
                }
            }
        }
        out
    });
    let mut all = Outcome::with_capacity(0);
    for lane in join_all(runs).await {
        all.done.extend(lane.done);
        for (kind, n) in lane.errors {
            *all.errors.entry(kind).or_default() += n;
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::executor::block_on;

    use super::*;

    /// Ready on its second poll: lets the other lanes start theirs.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn every_lane_runs_exactly_its_count() {
        let counts = Counts::default();
        let slots = RefCell::new(Vec::new());
        let slots_ref = &slots;
        let out = block_on(drive(4, Until::Each(5), &counts, move |s| async move {
            slots_ref.borrow_mut().push(s);
            YieldOnce(false).await;
            Ok::<usize, String>(s.lane)
        }));
        assert_eq!((out.acked(), out.failed()), (20, 0));
        assert_eq!((counts.acked(), counts.failed()), (20, 0));
        assert_eq!(out.latencies().len(), 20);
        let slots = slots.into_inner();
        for lane in 0..4 {
            let ks: Vec<u64> = slots
                .iter()
                .filter(|s| s.lane == lane)
                .map(|s| s.k)
                .collect();
            assert_eq!(ks, [0, 1, 2, 3, 4], "lane {lane}");
            assert_eq!(out.done.iter().filter(|(l, _)| *l == lane).count(), 5);
        }
        let mut is: Vec<u64> = slots.iter().map(|s| s.i).collect();
        is.sort_unstable();
        assert_eq!(is, (0..20).collect::<Vec<u64>>());
    }

    #[test]
    fn a_total_is_spread_over_the_lanes_all_in_flight() {
        let (flying, most) = (Cell::new(0u32), Cell::new(0u32));
        let (flying, most) = (&flying, &most);
        let out = block_on(drive(
            3,
            Until::Total(10),
            &Counts::default(),
            move |s| async move {
                flying.set(flying.get() + 1);
                most.set(most.get().max(flying.get()));
                YieldOnce(false).await;
                flying.set(flying.get() - 1);
                Ok::<u64, String>(s.i)
            },
        ));
        let mut is: Vec<u64> = out.done.iter().map(|(i, _)| *i).collect();
        is.sort_unstable();
        assert_eq!(is, (0..10).collect::<Vec<u64>>());
        assert_eq!(most.get(), 3);
    }

    #[test]
    fn failures_are_counted_by_kind_and_not_timed() {
        let counts = Counts::default();
        let out = block_on(drive(2, Until::Each(6), &counts, |s| async move {
            match s.k % 3 {
                0 => Ok(()),
                1 => Err("stale".to_string()),
                _ => Err("timeout".to_string()),
            }
        }));
        assert_eq!((out.acked(), out.failed()), (4, 8));
        assert_eq!((counts.acked(), counts.failed()), (4, 8));
        let expected = BTreeMap::from([("stale".to_string(), 4), ("timeout".to_string(), 4)]);
        assert_eq!(out.errors, expected);
        assert_eq!(out.latencies().len(), 4);
    }

    #[test]
    fn a_deadline_stops_the_lanes() {
        let ok = |_: Slot| async { Ok::<(), String>(()) };
        let out = block_on(drive(
            3,
            Until::Deadline(Instant::now()),
            &Counts::default(),
            ok,
        ));
        assert_eq!(out.acked(), 0);
        let end = Instant::now() + Duration::from_millis(5);
        let out = block_on(drive(2, Until::Deadline(end), &Counts::default(), ok));
        assert!(out.acked() > 0);
        assert!(Instant::now() >= end);
    }
}
