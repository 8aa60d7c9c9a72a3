//! Token-bucket rate limiting keyed by a string (an API key, or a client IP for requests whose
//! key is unknown). Capacity = the per-second rate, refilled continuously (spec §1.5): a key may
//! burst up to one second's worth and is held to the rate afterwards. A rejected request costs
//! nothing and does nothing else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Above this many buckets in a shard, full (idle) buckets are dropped on the next insert (at
/// most once a second per shard, so a flood of new keys cannot make every insert a full scan).
const SHARD_SOFT_CAP: usize = 4096;

#[derive(Debug)]
struct Shard {
    buckets: HashMap<String, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens per second; 0 disables the limiter.
    rate: f64,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            rate: per_second as f64,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        last_sweep: None,
                    })
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty (`wait` = time until a
    /// token is back).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let shard = &self.shards[shard_of(key)];
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *guard;
        if shard.buckets.len() >= SHARD_SOFT_CAP
            && !shard.buckets.contains_key(key)
            && shard
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 1)
        {
            let rate = self.rate;
            shard.buckets.retain(|_, b| refilled(b, now, rate) < rate);
            shard.last_sweep = Some(now);
        }
        let bucket = shard.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.rate,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, self.rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

fn refilled(b: &Bucket, now: Instant, rate: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + elapsed * rate).min(rate)
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap and good enough to spread keys over a handful of locks.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(50);
        let t0 = Instant::now();
        for _ in 0..50 {
            assert!(rl.check_at("k", t0).is_ok());
        }
        let wait = rl.check_at("k", t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(20) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Other keys are independent.
        assert!(rl.check_at("other", t0).is_ok());
        // 100 ms later: 5 tokens back.
        let t1 = t0 + Duration::from_millis(100);
        for _ in 0..5 {
            assert!(rl.check_at("k", t1).is_ok());
        }
        assert!(rl.check_at("k", t1).is_err());
        // Never more than one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..50 {
            assert!(rl.check_at("k", t2).is_ok());
        }
        assert!(rl.check_at("k", t2).is_err());
    }

    #[test]
    fn zero_rate_disables() {
        let rl = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(rl.check("k").is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let rl = RateLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..(SHARDS * SHARD_SOFT_CAP * 2) {
            let _ = rl.check_at(&format!("k{i}"), t0);
        }
        // Once idle buckets are full again, new keys sweep them away in every shard.
        let later = t0 + Duration::from_secs(5);
        for i in 0..200 {
            let _ = rl.check_at(&format!("fresh{i}"), later);
        }
        let total: usize = rl
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert!(total <= 200, "{total}");
    }
}
