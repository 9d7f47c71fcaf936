//! Per-caller limits, kept in each process's memory: a token bucket per
//! client (or per address for anonymous calls), and a lock-out that slows
//! down guessing a client's secret. Several processes behind one balancer
//! each apply the limits to the traffic they see.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second a caller may sustain, and the burst it may send at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// How many keys a table holds before it forgets the ones with nothing to
/// remember (full buckets, expired lock-outs): an attacker cycling keys
/// cannot grow it without bound.
const MAX_KEYS: usize = 100_000;

/// Token buckets by caller key.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.limit.per_second.max(1));
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        let refilled = now.saturating_duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refilled).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// Failed secret checks per key (a client id and the address it is tried
/// from). After `FREE_FAILURES` in a row, each
/// further failure locks the client id out for twice as long as the last
/// (1 s, 2 s, 4 s … at most `MAX_LOCKOUT`); a success clears the record.
#[derive(Default)]
pub struct LoginGuard {
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Instant,
}

const FREE_FAILURES: u32 = 5;
const MAX_LOCKOUT: Duration = Duration::from_secs(300);

impl LoginGuard {
    /// Whether `client_id` may try a secret now, else how long it must wait.
    pub fn check(&self, client_id: &str, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(client_id) {
            Some(f) if f.locked_until > now => Err(f.locked_until - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, client_id: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= MAX_KEYS && !failures.contains_key(client_id) {
            failures.retain(|_, f| f.locked_until > now);
        }
        let entry = failures.entry(client_id.to_owned()).or_insert(Failures { count: 0, locked_until: now });
        entry.count += 1;
        if entry.count > FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES - 1).min(16);
            entry.locked_until = now + Duration::from_secs(1 << doublings).min(MAX_LOCKOUT);
        }
    }

    pub fn succeeded(&self, client_id: &str) {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(client_id);
    }
}

/// The limits of one process.
pub struct Throttle {
    pub requests: Option<RateLimiter>,
    /// Token requests per peer address, whatever client id they name.
    pub token_requests: RateLimiter,
    /// Failed secrets per (client id, address).
    pub logins: LoginGuard,
}

impl Throttle {
    pub fn new(rate_limit: Option<RateLimit>, token_rate_limit: RateLimit) -> Self {
        Self {
            requests: rate_limit.map(RateLimiter::new),
            token_requests: RateLimiter::new(token_rate_limit),
            logins: LoginGuard::default(),
        }
    }

    /// Counts a request of the caller `key` names against the rate limit,
    /// if there is one (the key is only built then).
    pub fn request(&self, key: impl FnOnce() -> String) -> Result<(), Duration> {
        self.requests.as_ref().map_or(Ok(()), |limiter| limiter.check(&key(), Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(RateLimit { per_second: 10, burst: 3 });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", start).is_ok());
        }
        let wait = limiter.check("a", start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check("b", start).is_ok(), "another caller has its own bucket");
        assert!(limiter.check("a", start + Duration::from_millis(100)).is_ok(), "one token back after 1/rate");
        assert!(limiter.check("a", start + Duration::from_millis(100)).is_err());
        for _ in 0..3 {
            assert!(limiter.check("a", start + Duration::from_secs(60)).is_ok(), "refills only up to the burst");
        }
        assert!(limiter.check("a", start + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn logins_lock_out_after_repeated_failures_with_growing_waits() {
        let guard = LoginGuard::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(guard.check("c", t0).is_ok());
            guard.failed("c", t0);
        }
        assert!(guard.check("c", t0).is_ok(), "the first failures cost nothing");
        guard.failed("c", t0);
        assert_eq!(guard.check("c", t0), Err(Duration::from_secs(1)));
        assert!(guard.check("other", t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(guard.check("c", t1).is_ok());
        guard.failed("c", t1);
        assert_eq!(guard.check("c", t1), Err(Duration::from_secs(2)));
        for _ in 0..30 {
            guard.failed("c", t1);
        }
        assert_eq!(guard.check("c", t1), Err(MAX_LOCKOUT));
        guard.succeeded("c");
        assert!(guard.check("c", t1).is_ok(), "a success clears the record");
    }

    #[test]
    fn tables_forget_idle_keys_when_full() {
        let limiter = RateLimiter::new(RateLimit { per_second: 1000, burst: 1 });
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(limiter.check(&i.to_string(), t0).is_ok());
        }
        assert!(limiter.check("new", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1, "refilled buckets are dropped");
    }
}
