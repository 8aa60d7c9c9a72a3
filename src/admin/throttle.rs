//! Login throttling: failed logins are counted per e-mail and per client IP over a sliding
//! window; past the limit, logins are refused (429 with Retry-After) until the oldest failure
//! leaves the window. A success clears the e-mail's count. Kept in memory: a restart forgets,
//! which is acceptable because argon2id already makes each guess expensive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Window over which failures count.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures per e-mail within the window before logins for it are refused.
pub const MAX_PER_EMAIL: usize = 5;
/// Failures per client IP within the window (several accounts behind one address).
pub const MAX_PER_IP: usize = 20;
/// Keys kept at most; beyond it the oldest-looking entries are dropped wholesale.
const MAX_KEYS: usize = 50_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

fn email_key(email: &str) -> String {
    format!("e:{}", email.trim().to_lowercase())
}

fn ip_key(ip: &str) -> String {
    format!("i:{ip}")
}

impl LoginThrottle {
    /// `Err(retry_after_secs)` when this attempt must be refused.
    pub fn check(&self, ip: &str, email: &str, now: i64) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0i64;
        for (key, max) in [(email_key(email), MAX_PER_EMAIL), (ip_key(ip), MAX_PER_IP)] {
            if let Some(q) = map.get_mut(&key) {
                while q.front().is_some_and(|t| *t <= now - WINDOW_MS) {
                    q.pop_front();
                }
                if q.len() >= max {
                    let oldest = q[q.len() - max];
                    wait = wait.max(oldest + WINDOW_MS - now);
                }
            }
        }
        if wait > 0 {
            Err(((wait + 999) / 1000) as u64)
        } else {
            Ok(())
        }
    }

    pub fn failure(&self, ip: &str, email: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, q| q.back().is_some_and(|t| *t > now - WINDOW_MS));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for key in [email_key(email), ip_key(ip)] {
            map.entry(key).or_default().push_back(now);
        }
    }

    pub fn success(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&email_key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_recovers() {
        let t = LoginThrottle::default();
        let now = 1_000_000_000;
        for i in 0..MAX_PER_EMAIL {
            assert!(t.check("1.2.3.4", "A@x.io", now + i as i64).is_ok());
            t.failure("1.2.3.4", "a@x.io", now + i as i64);
        }
        let retry = t.check("9.9.9.9", "a@x.io", now + 10).unwrap_err();
        assert!(retry > 0 && retry <= (WINDOW_MS / 1000) as u64);
        // Another account from the same IP is still allowed (IP limit is higher).
        assert!(t.check("1.2.3.4", "b@x.io", now + 10).is_ok());
        // The window passes.
        assert!(t.check("1.2.3.4", "a@x.io", now + WINDOW_MS + 10).is_ok());
    }

    #[test]
    fn success_clears_the_email_and_ip_limit_applies() {
        let t = LoginThrottle::default();
        let now = 5_000;
        for i in 0..3 {
            t.failure("ip", "a@x", now + i);
        }
        t.success("a@x");
        assert!(t.check("ip", "a@x", now + 5).is_ok());
        for i in 0..MAX_PER_IP {
            t.failure("ip2", &format!("u{i}@x"), now + i as i64);
        }
        assert!(t.check("ip2", "new@x", now + 100).is_err());
    }
}
