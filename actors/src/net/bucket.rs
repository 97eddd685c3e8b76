//! The one token bucket of the network layer: a rate per second with at most one
//! second's worth saved up. It limits inbound handshakes (`admit.rs`) and each
//! peer's requests (the swarm's per-peer budget).

use std::time::Instant;

/// `rate` tokens a second, holding at most `rate`; a rate of 0 means unlimited.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `per_sec` tokens a second (`0` = unlimited).
    pub(crate) fn new(per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(per_sec);
        Self {
            rate,
            tokens: rate,
            at: now,
        }
    }

    /// Takes one token at `now`; false (and nothing taken) when none is left.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + since * self.rate).min(self.rate);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_bucket_gives_its_rate_then_refuses() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, t0);
        assert_eq!((0..6).filter(|_| b.take(t0)).count(), 4);
        assert!(!b.take(t0));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_one_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        while b.take(t0) {}
        // 300 ms at 10/s refills 3 tokens.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 3);
        // A long pause saves up at most one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 10);
    }

    #[test]
    fn a_zero_rate_is_unlimited_and_time_running_backwards_takes_nothing_extra() {
        let t0 = Instant::now();
        let mut free = TokenBucket::new(0, t0);
        assert!((0..10_000).all(|_| free.take(t0)));
        let later = t0 + Duration::from_secs(1);
        let mut b = TokenBucket::new(2, later);
        assert!(b.take(later) && b.take(later));
        assert!(!b.take(t0), "an earlier instant must not refill");
    }
}
