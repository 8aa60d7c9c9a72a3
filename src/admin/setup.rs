//! The one-time setup link (as PocketBase does it): when `serve` starts and no admin account
//! exists, a random token is minted and `http://ADDR/_/#/setup/TOKEN` is printed on the
//! console. The token lives in memory only, for [`TTL_MS`]; creating the first admin through
//! it consumes it (the store refuses a second "first" admin atomically). Headless
//! alternative: `botyard admin create --email E`.

use crate::secrets::ct_eq;
use crate::store::Store;
use crate::store::ids::{now_millis, random_token};
use std::net::SocketAddr;
use std::sync::Mutex;

/// How long a setup link works.
pub const TTL_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Default)]
pub struct SetupToken {
    current: Mutex<Option<(String, i64)>>,
}

impl SetupToken {
    /// Mints a new token (replacing any previous one).
    pub fn issue(&self, now: i64) -> String {
        let token = random_token(40);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.clone(), now + TTL_MS));
        token
    }

    /// Is `given` the current, unexpired token?
    pub fn valid(&self, given: &str, now: i64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(t, exp)| now < *exp && ct_eq(t.as_bytes(), given.as_bytes()))
    }

    pub fn active(&self, now: i64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(_, exp)| now < *exp)
    }

    pub fn consume(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Called by `serve` once it listens: when no admin account exists, mints a setup token and
/// prints the link on stderr (with the CLI alternative). Returns the link, if any.
pub async fn announce(store: Store, addr: SocketAddr) -> Option<String> {
    let users = tokio::task::spawn_blocking(move || store.count_users())
        .await
        .ok()?
        .ok()?;
    if users > 0 {
        return None;
    }
    let token = super::global().setup.issue(now_millis());
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let link = format!("http://{host}/_/#/setup/{token}");
    eprintln!(
        "\nNo admin account yet. Create the first one in the admin UI (this link works once, for 1 hour):\n\n  {link}\n\n\
         or from the command line: botyard admin create --email you@example.com\n"
    );
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifecycle() {
        let s = SetupToken::default();
        assert!(!s.active(0));
        let t = s.issue(0);
        assert!(s.valid(&t, 10));
        assert!(!s.valid("nope", 10));
        assert!(!s.valid(&t, TTL_MS));
        s.consume();
        assert!(!s.valid(&t, 10));
    }
}
