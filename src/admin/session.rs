//! Admin sessions: opaque random tokens in an HttpOnly, SameSite=Strict cookie (only their
//! SHA-256 is stored), a per-session CSRF token (double submit: readable cookie + the
//! `X-CSRF-Token` header, both compared with the stored value), idle and absolute expiry.

use crate::secrets::{ct_eq, hash_api_key};
use crate::store::admin::AdminSession;
use crate::store::ids::random_token;

pub const SESSION_COOKIE: &str = "botyard_session";
pub const CSRF_COOKIE: &str = "botyard_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Cookies are scoped to the admin UI.
pub const COOKIE_PATH: &str = "/_/";
/// A session ends after this much inactivity...
pub const IDLE_MS: i64 = 24 * 3600 * 1000;
/// ...and at the latest this long after login.
pub const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Activity is written back at most this often (reads stay reads).
const TOUCH_EVERY_MS: i64 = 5 * 60 * 1000;

/// A fresh session: the cookie token (shown to the browser only) and the row to store.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub row: AdminSession,
}

/// The stored form of a cookie token.
pub fn token_hash(token: &str) -> String {
    hash_api_key(token)
}

pub fn new_session(user_id: &str, now: i64) -> NewSession {
    let token = random_token(43);
    NewSession {
        row: AdminSession {
            token_hash: token_hash(&token),
            user_id: user_id.to_string(),
            csrf: random_token(32),
            created_at: now,
            last_seen_at: now,
            expires_at: (now + IDLE_MS).min(now + MAX_AGE_MS),
        },
        token,
    }
}

/// The new expiry to write back when the session was used, if it is time to.
pub fn touch(s: &AdminSession, now: i64) -> Option<i64> {
    (now - s.last_seen_at >= TOUCH_EVERY_MS).then(|| (now + IDLE_MS).min(s.created_at + MAX_AGE_MS))
}

/// A write is allowed when the header and the cookie both carry the session's CSRF token.
pub fn csrf_ok(s: &AdminSession, header: Option<&str>, cookie: Option<&str>) -> bool {
    match (header, cookie) {
        (Some(h), Some(c)) => {
            ct_eq(h.as_bytes(), s.csrf.as_bytes()) && ct_eq(c.as_bytes(), s.csrf.as_bytes())
        }
        _ => false,
    }
}

/// `Set-Cookie` values for a new session. `secure` adds `Secure` (behind HTTPS).
pub fn set_cookies(token: &str, csrf: &str, secure: bool) -> [String; 2] {
    let max_age = MAX_AGE_MS / 1000;
    let sec = if secure { "; Secure" } else { "" };
    [
        format!(
            "{SESSION_COOKIE}={token}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{sec}"
        ),
        format!(
            "{CSRF_COOKIE}={csrf}; Path={COOKIE_PATH}; Max-Age={max_age}; SameSite=Strict{sec}"
        ),
    ]
}

/// `Set-Cookie` values that delete both cookies.
pub fn clear_cookies() -> [String; 2] {
    [
        format!("{SESSION_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict"),
        format!("{CSRF_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; SameSite=Strict"),
    ]
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let h = "a=1; botyard_session=tok; botyard_csrf=c2";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(h, CSRF_COOKIE), Some("c2"));
        assert_eq!(cookie(h, "b"), None);
    }

    #[test]
    fn csrf_needs_both_and_equal() {
        let s = new_session("u", 0);
        let c = s.row.csrf.clone();
        assert!(csrf_ok(&s.row, Some(&c), Some(&c)));
        assert!(!csrf_ok(&s.row, Some(&c), None));
        assert!(!csrf_ok(&s.row, None, Some(&c)));
        assert!(!csrf_ok(&s.row, Some("x"), Some(&c)));
    }

    #[test]
    fn expiry_slides_but_is_capped() {
        let s = new_session("u", 0);
        assert_eq!(s.row.expires_at, IDLE_MS);
        assert_eq!(touch(&s.row, 1000), None);
        assert_eq!(
            touch(&s.row, TOUCH_EVERY_MS),
            Some(TOUCH_EVERY_MS + IDLE_MS)
        );
        assert_eq!(touch(&s.row, MAX_AGE_MS - 10), Some(MAX_AGE_MS));
        assert_ne!(s.token, s.row.token_hash);
        assert!(set_cookies("t", "c", false)[0].contains("HttpOnly; SameSite=Strict"));
        assert!(!set_cookies("t", "c", false)[1].contains("HttpOnly"));
    }
}
