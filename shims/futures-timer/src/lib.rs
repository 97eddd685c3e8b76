//! `Delay`: a future that completes at a deadline — the API of futures-timer 3,
//! implemented on the tokio timer of the runtime that first polls it.
//!
//! The deadline is fixed when the delay is created (or reset); the tokio sleep
//! is registered on the first poll, which in libp2p is always inside the swarm's
//! task. Polled outside any tokio runtime (a plain executor), it falls back to a
//! helper thread that sleeps until the deadline and wakes the task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Far enough that nothing waits that long; deadlines past it are clamped.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A future that completes once its deadline has passed.
pub struct Delay {
    deadline: Instant,
    timer: Timer,
}

enum Timer {
    /// Not polled yet.
    Unregistered,
    /// On the tokio runtime that polled it.
    Tokio(Pin<Box<tokio::time::Sleep>>),
    /// On a helper thread (polled outside tokio); the thread wakes the latest waker.
    Thread(Arc<Mutex<Option<Waker>>>),
}

fn deadline_after(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur.min(FAR)).unwrap_or(now)
}

impl Delay {
    /// A delay that completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay {
            deadline: deadline_after(dur),
            timer: Timer::Unregistered,
        }
    }

    /// Restarts the delay to complete `dur` from now.
    pub fn reset(&mut self, dur: Duration) {
        self.deadline = deadline_after(dur);
        match &mut self.timer {
            Timer::Tokio(sleep) => sleep.as_mut().reset(self.deadline.into()),
            // The helper thread may wake early for the old deadline; polls check
            // the deadline, so only a new thread is needed when that is later.
            Timer::Thread(_) | Timer::Unregistered => self.timer = Timer::Unregistered,
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        if let Timer::Unregistered = self.timer {
            self.timer = if tokio::runtime::Handle::try_current().is_ok() {
                Timer::Tokio(Box::pin(tokio::time::sleep_until(deadline.into())))
            } else {
                let waker = Arc::new(Mutex::new(None::<Waker>));
                let shared = waker.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    let waker = shared.lock().map(|mut w| w.take()).unwrap_or(None);
                    if let Some(w) = waker {
                        w.wake();
                    }
                });
                Timer::Thread(waker)
            };
        }
        match &mut self.timer {
            Timer::Tokio(sleep) => sleep.as_mut().poll(cx),
            Timer::Thread(waker) => {
                if let Ok(mut w) = waker.lock() {
                    *w = Some(cx.waker().clone());
                }
                // Woken by the helper thread at the deadline (checked above).
                if Instant::now() >= deadline {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            Timer::Unregistered => Poll::Pending,
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn completes_after_the_deadline_inside_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let start = Instant::now();
            Delay::new(Duration::from_millis(30)).await;
            assert!(start.elapsed() >= Duration::from_millis(30));
            let mut d = Delay::new(Duration::from_secs(3600));
            d.reset(Duration::from_millis(10));
            let start = Instant::now();
            d.await;
            assert!(start.elapsed() < Duration::from_secs(60));
        });
    }

    #[test]
    fn completes_outside_tokio() {
        let start = Instant::now();
        futures_lite_block_on(Delay::new(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    /// A minimal executor: polls on every wake-up.
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}
