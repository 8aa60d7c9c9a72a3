//! OCS rate limits (ocs-api §4.2): fixed windows (`start = now - now % window`) counted in
//! memory per scope and budget key. Three scopes: `api` (API-key endpoints, budget = the
//! team), `chat_api` (the chat API, budget = the session, or the channel/IP on start) and
//! `credentials` (rejected keys, budget = the client IP). Headers are reported whenever a
//! count was taken; blocking happens only when enforcement is on (off by default, as OCS).
//!
//! Configuration (environment, read once at start): `BOTYARD_OCS_RATE_API`,
//! `BOTYARD_OCS_RATE_CHAT`, `BOTYARD_OCS_RATE_CREDENTIALS` as `N/SECONDS` (defaults 2000/300,
//! 300/300, 100/300), `BOTYARD_OCS_RATE_ENFORCE=1`, `BOTYARD_OCS_RATE_EXEMPT=<org ids, comma
//! separated>`.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Api,
    Chat,
    Credentials,
}

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub count: u64,
    pub window_secs: i64,
}

#[derive(Debug, Clone)]
pub struct RateConfig {
    pub api: Limit,
    pub chat: Limit,
    pub credentials: Limit,
    pub enforce: bool,
    pub exempt: Vec<String>,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            api: Limit {
                count: 2000,
                window_secs: 300,
            },
            chat: Limit {
                count: 300,
                window_secs: 300,
            },
            credentials: Limit {
                count: 100,
                window_secs: 300,
            },
            enforce: false,
            exempt: Vec::new(),
        }
    }
}

fn parse_limit(v: &str) -> Option<Limit> {
    let (n, w) = v.split_once('/')?;
    Some(Limit {
        count: n.trim().parse().ok()?,
        window_secs: w.trim().parse().ok().filter(|w: &i64| *w > 0)?,
    })
}

impl RateConfig {
    pub fn from_env() -> RateConfig {
        let mut c = RateConfig::default();
        let get = |k: &str| std::env::var(k).ok();
        if let Some(l) = get("BOTYARD_OCS_RATE_API").as_deref().and_then(parse_limit) {
            c.api = l;
        }
        if let Some(l) = get("BOTYARD_OCS_RATE_CHAT")
            .as_deref()
            .and_then(parse_limit)
        {
            c.chat = l;
        }
        if let Some(l) = get("BOTYARD_OCS_RATE_CREDENTIALS")
            .as_deref()
            .and_then(parse_limit)
        {
            c.credentials = l;
        }
        c.enforce = get("BOTYARD_OCS_RATE_ENFORCE")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if let Some(e) = get("BOTYARD_OCS_RATE_EXEMPT") {
            c.exempt = e
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        c
    }
}

/// The outcome of one count: header values, and whether to block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds to the end of the window.
    pub reset: i64,
    pub blocked: bool,
}

#[derive(Debug)]
pub struct Limiter {
    pub config: RateConfig,
    counters: Mutex<HashMap<(Scope, String), (i64, u64)>>,
}

impl Limiter {
    pub fn new(config: RateConfig) -> Limiter {
        Limiter {
            config,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// This node's share of the limit (see `crate::cluster`): the count divided by the
    /// number of live nodes, rounded up.
    fn limit(&self, scope: Scope) -> Limit {
        let mut l = match scope {
            Scope::Api => self.config.api,
            Scope::Chat => self.config.chat,
            Scope::Credentials => self.config.credentials,
        };
        l.count = l.count.div_ceil(crate::cluster::share() as u64);
        l
    }

    /// Count one request of `key` in `scope` at `now` (seconds). `team`: exempt teams are never
    /// blocked. A blocked request is not counted.
    pub fn hit(&self, scope: Scope, key: &str, team: Option<&str>, now: i64) -> Verdict {
        let l = self.limit(scope);
        let start = now - now.rem_euclid(l.window_secs);
        let reset = (start + l.window_secs - now).max(1);
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (s, _)| *s == start);
        }
        let e = map.entry((scope, key.to_string())).or_insert((start, 0));
        if e.0 != start {
            *e = (start, 0);
        }
        let exempt = team.is_some_and(|t| self.config.exempt.iter().any(|x| x == t));
        let over = e.1 >= l.count;
        if over && !exempt {
            tracing::info!(scope = ?scope, key, enforce = self.config.enforce, "ocs rate limit would block");
        }
        let blocked = over && self.config.enforce && !exempt;
        if !blocked {
            e.1 += 1;
        }
        Verdict {
            limit: l.count,
            remaining: l.count.saturating_sub(e.1),
            reset,
            blocked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_counts_and_blocks_only_when_enforced() {
        let mut c = RateConfig {
            api: Limit {
                count: 2,
                window_secs: 300,
            },
            ..Default::default()
        };
        let l = Limiter::new(c.clone());
        assert_eq!(l.hit(Scope::Api, "t", None, 1000).remaining, 1);
        assert!(!l.hit(Scope::Api, "t", None, 1000).blocked);
        assert!(!l.hit(Scope::Api, "t", None, 1000).blocked);
        c.enforce = true;
        let l = Limiter::new(c.clone());
        l.hit(Scope::Api, "t", None, 1000);
        l.hit(Scope::Api, "t", None, 1000);
        let v = l.hit(Scope::Api, "t", None, 1000);
        assert!(v.blocked);
        assert_eq!(v.reset, 200);
        assert!(!l.hit(Scope::Api, "other", None, 1000).blocked);
        assert!(!l.hit(Scope::Api, "t", None, 1200).blocked);
        c.exempt = vec!["t".into()];
        let l = Limiter::new(c);
        for _ in 0..5 {
            assert!(!l.hit(Scope::Api, "k", Some("t"), 1000).blocked);
        }
    }
}
