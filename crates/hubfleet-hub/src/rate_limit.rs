//! Per-user API rate limits (`hubfleet.api_rate_limit`): a token bucket per user, over every
//! API request made as them (their tokens, OAuth tokens their servers got for them, their
//! browser's cookie). The token the hub gives each server (activity, access checks) is not
//! counted: it is the hub's own machinery.
//! Admins and services are not limited: they are the operator's, and their bulk actions (the
//! admin page's "stop all", the idle culler) are normal use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets that refilled completely are forgotten once the map grows past this many.
const PRUNE_AT_LEAST: usize = 1024;

pub struct ApiRateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<Buckets>,
}

struct Buckets {
    by_user: HashMap<i64, Bucket>,
    prune_at: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ApiRateLimiter {
    /// `(per_second, burst)`.
    pub fn rates(&self) -> (f64, f64) {
        (self.per_second, self.burst)
    }

    /// A limiter refilling `per_second` up to `burst` requests; `per_second == 0` limits nothing.
    pub fn new(per_second: u32, burst: u32) -> Self {
        ApiRateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            state: Mutex::new(Buckets {
                by_user: HashMap::new(),
                prune_at: PRUNE_AT_LEAST,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Count one request of `user_id`: `Err(wait)` when their bucket is empty, with how long
    /// until the next request would be allowed.
    pub fn take(&self, user_id: i64) -> Result<(), Duration> {
        self.take_at(user_id, Instant::now())
    }

    fn take_at(&self, user_id: i64, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let refilled = |bucket: &Bucket| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            (bucket.tokens + elapsed * self.per_second).min(self.burst)
        };
        if state.by_user.len() >= state.prune_at {
            // A full bucket is the same as none.
            state
                .by_user
                .retain(|_, bucket| refilled(bucket) < self.burst);
            state.prune_at = (state.by_user.len() * 2).max(PRUNE_AT_LEAST);
        }
        let bucket = state.by_user.entry(user_id).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refilled(bucket);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

/// What a limited client is told (with `Retry-After`).
pub fn message(wait: Duration) -> String {
    format!(
        "Too many API requests. Try again in {} seconds.",
        crate::password_login::retry_seconds(wait)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = ApiRateLimiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(1, t0).is_ok());
        }
        let wait = limiter.take_at(1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Another user has a bucket of their own.
        assert!(limiter.take_at(2, t0).is_ok());
        // A tenth of a second later, one more request.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.take_at(1, t1).is_ok());
        assert!(limiter.take_at(1, t1).is_err());
        // It never holds more than the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter.take_at(1, later).is_ok());
        }
        assert!(limiter.take_at(1, later).is_err());
    }

    #[test]
    fn off_at_zero_and_full_buckets_are_forgotten() {
        let off = ApiRateLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(off.take(1).is_ok());
        }
        let limiter = ApiRateLimiter::new(1000, 5);
        let t0 = Instant::now();
        for user in 0..PRUNE_AT_LEAST as i64 {
            limiter.take_at(user, t0).unwrap();
        }
        // A second later every bucket is full again: the next request prunes them all.
        limiter.take_at(-1, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.state.lock().unwrap().by_user.len(), 1);
    }
}
