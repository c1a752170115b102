//! Per-connection token bucket, and the flood rule that closes a client which keeps exceeding it.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Dropped messages within `FLOOD_WINDOW` that make a client a flooder.
const FLOOD_DROPS: usize = 100;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

pub enum Verdict {
    Allowed,
    Dropped,
    Flooding,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    drops: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst,
            tokens: burst,
            refilled_at: Instant::now(),
            drops: VecDeque::with_capacity(FLOOD_DROPS),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        if self.drops.len() == FLOOD_DROPS {
            self.drops.pop_front();
        }
        self.drops.push_back(now);
        let flooding = self.drops.len() == FLOOD_DROPS
            && now.saturating_duration_since(self.drops[0]) <= FLOOD_WINDOW;
        if flooding {
            Verdict::Flooding
        } else {
            Verdict::Dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_drops_then_calls_a_sustained_flood() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(20, 40);
        let allowed = (0..40)
            .filter(|_| matches!(limiter.check(start), Verdict::Allowed))
            .count();
        assert_eq!(allowed, 40);
        assert!(matches!(limiter.check(start), Verdict::Dropped));
        assert!(matches!(
            limiter.check(start + Duration::from_millis(100)),
            Verdict::Allowed
        ));
        let verdicts: Vec<_> = (0..100)
            .map(|_| limiter.check(start + Duration::from_millis(100)))
            .collect();
        assert!(matches!(verdicts.last(), Some(Verdict::Flooding)));
    }
}
