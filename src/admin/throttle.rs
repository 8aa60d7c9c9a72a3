//! Login throttling: how many password checks an attacker gets, and who they can lock out.
//!
//! An attempt is *reserved* before its password is checked (argon2 runs after
//! [`LoginThrottle::begin`] said yes), so attempts still in flight count against the limits:
//! 40 parallel guesses against one account get at most [`MAX_PER_ACCOUNT_IP`] checks, the
//! rest are refused at once. A reservation stays as a failure unless the attempt succeeds
//! ([`LoginThrottle::succeeded`]) or was never checked because the server was too busy
//! ([`LoginThrottle::release`]); a client that hangs up mid-check still pays for the guess.
//!
//! Three sliding windows of [`WINDOW_MS`], each refusing only what it is about:
//!
//! * per account and client address ([`MAX_PER_ACCOUNT_IP`]): the guesser against one account;
//!   it refuses that address for that account only.
//! * per client address ([`MAX_PER_IP`]): one address spraying many accounts; it refuses that
//!   address only, never another client logging in to the same accounts. IPv6 addresses count
//!   per /64, the block one subscriber usually holds.
//! * per account, all addresses together ([`MAX_PER_ACCOUNT`]): guessing spread over many
//!   addresses.
//!
//! Lock-out, the design choice: failures on other accounts never touch an account, and an
//! address's failures never touch another address, so the one way to keep a real admin out is
//! the all-address account limit, which takes [`MAX_PER_ACCOUNT`] failures from at least
//! `MAX_PER_ACCOUNT / MAX_PER_ACCOUNT_IP` distinct addresses (/64s) within the window. Even
//! then an address from which this account logged in successfully within [`KNOWN_MS`] is not
//! refused by that limit (only by its own two), so an admin who has logged in from where they
//! are is not locked out by a distributed attack. Without that cap a botnet would get
//! `MAX_PER_ACCOUNT_IP` guesses per address per window; we chose a bounded lock-out of new
//! places over unbounded guessing. The client address is the TCP peer, or what a configured
//! trusted proxy reports (`--trusted-proxy`): behind a proxy that is not configured, every
//! client shares the proxy's address and the per-address limit is shared too.
//!
//! Kept in memory: a restart forgets (argon2id already makes each guess expensive). The maps
//! are bounded; when full, the keys idle longest are dropped first, so evicting one account's
//! record takes fresher activity on more keys than the map holds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Window over which failures count.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures (and attempts in flight) per account from one client address within the window.
pub const MAX_PER_ACCOUNT_IP: usize = 5;
/// Failures per client address within the window, whatever the accounts.
pub const MAX_PER_IP: usize = 20;
/// Failures per account within the window, all addresses together.
pub const MAX_PER_ACCOUNT: usize = 30;
/// How long an address from which an account logged in stays known to it.
pub const KNOWN_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Keys kept at most in each map.
const MAX_KEYS: usize = 50_000;

/// A reserved attempt, to be settled by [`LoginThrottle::succeeded`] or
/// [`LoginThrottle::release`] (or left: then it is a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    account: String,
    ip: String,
    at: i64,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Timestamps of failures and in-flight attempts, by key (see [`Key`]).
    attempts: HashMap<Key, VecDeque<i64>>,
    /// (account, address) pairs that logged in successfully, with the time.
    known: HashMap<(String, String), i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    AccountIp(String, String),
    Ip(String),
    Account(String),
}

/// The account part of the keys: e-mails compare case-insensitively.
fn account_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The address part of the keys: an IPv4 address, or the /64 of an IPv6 one (IPv4-mapped IPv6
/// addresses count as IPv4).
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl LoginThrottle {
    /// Reserves an attempt by `ip` on `email`, or `Err(retry_after_secs)` when it must be
    /// refused.
    pub fn begin(&self, ip: IpAddr, email: &str, now: i64) -> Result<Attempt, u64> {
        let (account, ip) = (account_key(email), ip_key(ip));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let known = st
            .known
            .get(&(account.clone(), ip.clone()))
            .is_some_and(|t| *t > now - KNOWN_MS);
        let mut limits = vec![
            (
                Key::AccountIp(account.clone(), ip.clone()),
                MAX_PER_ACCOUNT_IP,
            ),
            (Key::Ip(ip.clone()), MAX_PER_IP),
        ];
        if !known {
            limits.push((Key::Account(account.clone()), MAX_PER_ACCOUNT));
        }
        let mut wait = 0i64;
        for (key, max) in &limits {
            if let Some(q) = st.attempts.get_mut(key) {
                while q.front().is_some_and(|t| *t <= now - WINDOW_MS) {
                    q.pop_front();
                }
                if q.len() >= *max {
                    wait = wait.max(q[q.len() - max] + WINDOW_MS - now);
                }
            }
        }
        if wait > 0 {
            return Err(((wait + 999) / 1000) as u64);
        }
        make_room(&mut st.attempts, 3, now, WINDOW_MS, |q| q.back().copied());
        for key in [
            Key::AccountIp(account.clone(), ip.clone()),
            Key::Ip(ip.clone()),
            Key::Account(account.clone()),
        ] {
            st.attempts.entry(key).or_default().push_back(now);
        }
        Ok(Attempt {
            account,
            ip,
            at: now,
        })
    }

    /// The password was right: the attempt is not a failure, the account's failures from this
    /// address are forgotten, and the address becomes known to the account.
    pub fn succeeded(&self, attempt: &Attempt, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.attempts
            .remove(&Key::AccountIp(attempt.account.clone(), attempt.ip.clone()));
        unreserve(&mut st.attempts, &Key::Ip(attempt.ip.clone()), attempt.at);
        unreserve(
            &mut st.attempts,
            &Key::Account(attempt.account.clone()),
            attempt.at,
        );
        make_room(&mut st.known, 1, now, KNOWN_MS, |t| Some(*t));
        st.known
            .insert((attempt.account.clone(), attempt.ip.clone()), now);
    }

    /// The password was never checked (the server was busy): the attempt does not count.
    pub fn release(&self, attempt: &Attempt) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for key in [
            Key::AccountIp(attempt.account.clone(), attempt.ip.clone()),
            Key::Ip(attempt.ip.clone()),
            Key::Account(attempt.account.clone()),
        ] {
            unreserve(&mut st.attempts, &key, attempt.at);
        }
    }
}

/// Removes one entry `at` from the key's queue (any equal timestamp is the same reservation).
fn unreserve(map: &mut HashMap<Key, VecDeque<i64>>, key: &Key, at: i64) {
    if let Some(q) = map.get_mut(key) {
        if let Some(i) = q.iter().rposition(|t| *t == at) {
            q.remove(i);
        }
        if q.is_empty() {
            map.remove(key);
        }
    }
}

/// Makes room for `extra` new keys: first drops what was last active more than `keep_ms` ago,
/// then, if still full, the tenth of the keys whose last activity is oldest.
fn make_room<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    extra: usize,
    now: i64,
    keep_ms: i64,
    last: impl Fn(&V) -> Option<i64>,
) {
    if map.len() + extra <= MAX_KEYS {
        return;
    }
    map.retain(|_, v| last(v).is_some_and(|t| t > now - keep_ms));
    if map.len() + extra <= MAX_KEYS {
        return;
    }
    let mut ages: Vec<(i64, K)> = map
        .iter()
        .map(|(k, v)| (last(v).unwrap_or(i64::MIN), k.clone()))
        .collect();
    let drop_n = (MAX_KEYS / 10).max(extra).min(ages.len());
    let nth = drop_n.min(ages.len() - 1);
    ages.select_nth_unstable_by_key(nth, |(t, _)| *t);
    for (_, k) in ages.into_iter().take(drop_n) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn in_flight_attempts_count_and_only_that_address_is_refused() {
        let t = LoginThrottle::default();
        let now = 1_000_000_000;
        let mut held = Vec::new();
        for _ in 0..MAX_PER_ACCOUNT_IP {
            held.push(t.begin(ip("1.2.3.4"), "A@x.io", now).unwrap());
        }
        // Nothing settled yet, and the next one is already refused.
        let retry = t.begin(ip("1.2.3.4"), "a@x.io", now).unwrap_err();
        assert!(retry > 0 && retry <= (WINDOW_MS / 1000) as u64);
        // Another address for the same account, and another account from the same address.
        assert!(t.begin(ip("9.9.9.9"), "a@x.io", now).is_ok());
        assert!(t.begin(ip("1.2.3.4"), "b@x.io", now).is_ok());
        // The window passes.
        assert!(
            t.begin(ip("1.2.3.4"), "a@x.io", now + WINDOW_MS + 1)
                .is_ok()
        );
    }

    #[test]
    fn release_and_success_give_the_reservation_back() {
        let t = LoginThrottle::default();
        let now = 5_000;
        let mut last = None;
        for _ in 0..MAX_PER_ACCOUNT_IP {
            last = Some(t.begin(ip("1.1.1.1"), "a@x", now).unwrap());
        }
        assert!(t.begin(ip("1.1.1.1"), "a@x", now).is_err());
        t.release(&last.unwrap());
        let a = t.begin(ip("1.1.1.1"), "a@x", now).unwrap();
        t.succeeded(&a, now);
        // Success forgets this address's failures on the account.
        for _ in 0..MAX_PER_ACCOUNT_IP {
            t.begin(ip("1.1.1.1"), "a@x", now + 1).unwrap();
        }
    }

    #[test]
    fn spraying_many_accounts_refuses_that_address_only() {
        let t = LoginThrottle::default();
        let now = 10_000;
        for i in 0..MAX_PER_IP {
            t.begin(ip("6.6.6.6"), &format!("u{i}@x"), now).unwrap();
        }
        assert!(t.begin(ip("6.6.6.6"), "admin@x", now).is_err());
        assert!(t.begin(ip("7.7.7.7"), "admin@x", now).is_ok());
        // IPv6: one /64 is one address.
        for i in 0..MAX_PER_IP {
            t.begin(ip(&format!("2001:db8:1:2::{i:x}")), &format!("v{i}@x"), now)
                .unwrap();
        }
        assert!(t.begin(ip("2001:db8:1:2::ffff"), "w@x", now).is_err());
        assert!(t.begin(ip("2001:db8:1:3::1"), "w@x", now).is_ok());
    }

    #[test]
    fn distributed_guessing_caps_the_account_but_not_its_known_addresses() {
        let t = LoginThrottle::default();
        let now = 50_000;
        let ok = t.begin(ip("10.0.0.1"), "boss@x", now).unwrap();
        t.succeeded(&ok, now);
        for i in 0..MAX_PER_ACCOUNT {
            t.begin(
                ip(&format!("172.16.{}.{}", i / 200, i % 200)),
                "boss@x",
                now + 1,
            )
            .unwrap();
        }
        assert!(t.begin(ip("192.168.0.1"), "boss@x", now + 2).is_err());
        assert!(t.begin(ip("10.0.0.1"), "boss@x", now + 2).is_ok());
    }

    #[test]
    fn the_maps_stay_bounded() {
        let t = LoginThrottle::default();
        for i in 0..(MAX_KEYS as u32) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let _ = t.begin(IpAddr::V4(a), &format!("u{i}@x"), 1_000 + i64::from(i));
        }
        let st = t.state.lock().unwrap();
        assert!(st.attempts.len() <= MAX_KEYS);
    }
}
