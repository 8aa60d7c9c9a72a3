//! Token-bucket rate limiting keyed by a string (an API key, or a client IP for requests whose
//! key is unknown). [`RateLimiter::new`]: capacity = the per-second rate, refilled continuously
//! (spec §1.5): a key may burst up to one second's worth and is held to the rate afterwards.
//! [`RateLimiter::per_window`]: `N` requests per window, i.e. a burst of `N`, refilled at
//! `N / window` (the anonymous chat limits, [`RateSpec`]). A rejected request costs nothing and
//! does nothing else.
//!
//! [`client_key`] is the key of a client address, shared with the per-IP connection cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
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
    /// Largest burst, in tokens; 0 disables the limiter.
    capacity: f64,
    /// Tokens added per second.
    refill: f64,
    shards: Vec<Mutex<Shard>>,
}

/// `N` requests per `window` (the `N/SECONDS` form of the command line); `N = 0` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: u32,
    pub window: Duration,
}

impl std::str::FromStr for RateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected N/SECONDS, e.g. 600/60");
        let (n, w) = s.split_once('/').ok_or_else(bad)?;
        let count = n.trim().parse::<u32>().map_err(|_| bad())?;
        let secs = w.trim().parse::<u64>().map_err(|_| bad())?;
        if secs == 0 {
            return Err(format!("`{s}`: the window must be at least 1 second"));
        }
        Ok(RateSpec {
            count,
            window: Duration::from_secs(secs),
        })
    }
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self::per_window(RateSpec {
            count: per_second,
            window: Duration::from_secs(1),
        })
    }

    /// `spec.count` requests per `spec.window`, as a bucket of `count` tokens refilled evenly.
    pub fn per_window(spec: RateSpec) -> Self {
        let capacity = spec.count as f64;
        RateLimiter {
            capacity,
            refill: capacity / spec.window.as_secs_f64().max(0.001),
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
        self.capacity > 0.0
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty (`wait` = time until a
    /// token is back).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// The bucket holds this node's share of the rate (see `crate::cluster`): capacity and
    /// refill divided by the number of live nodes.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let share = crate::cluster::share() as f64;
        // Never below one request: a share under one token would refuse everything.
        let capacity = (self.capacity / share).max(1.0);
        let refill = self.refill * capacity / self.capacity;
        let shard = &self.shards[shard_of(key)];
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *guard;
        if shard.buckets.len() >= SHARD_SOFT_CAP
            && !shard.buckets.contains_key(key)
            && shard
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 1)
        {
            shard
                .buckets
                .retain(|_, b| refilled(b, now, capacity, refill) < capacity);
            shard.last_sweep = Some(now);
        }
        let bucket = shard.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, capacity, refill);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / refill))
        }
    }
}

fn refilled(b: &Bucket, now: Instant, capacity: f64, refill: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + elapsed * refill).min(capacity)
}

/// The key of a client address for per-client limits: an IPv4 address (also when it comes
/// IPv4-mapped), or the /64 network of an IPv6 address, since one IPv6 client is routinely
/// given a whole /64 and could otherwise rotate through it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
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
    fn windowed_limits_burst_then_refill_evenly() {
        let rl = RateLimiter::per_window("3/60".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at("ip", t0).is_ok());
        }
        let wait = rl.check_at("ip", t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(rl.check_at("ip", t0 + Duration::from_secs(20)).is_ok());
        assert!(rl.check_at("ip", t0 + Duration::from_secs(20)).is_err());
        assert!("5".parse::<RateSpec>().is_err());
        assert!("5/0".parse::<RateSpec>().is_err());
        assert!(!RateLimiter::per_window("0/60".parse().unwrap()).enabled());
    }

    #[test]
    fn client_keys() {
        let k = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(k("127.0.0.2"), "127.0.0.2");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
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
