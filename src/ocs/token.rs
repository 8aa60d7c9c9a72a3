//! Session tokens of the chat API (ocs-api §3.7): a stateless HMAC-SHA-256 over
//! `purpose|session id`, keyed by a per-data-dir key (`ocs-token.key`, mode 0600). Nothing is
//! stored server side and no expiry is encoded: expiry runs from the session's creation, so
//! the same token can be re-derived for a session at any time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::Path;

const PURPOSE: &str = "ocs-session-token:v1";
/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "ocs-token.key";
/// Environment variable that gives the key instead of the file (64 hex digits).
pub const KEY_ENV: &str = "BOTYARD_OCS_TOKEN_KEY";

#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The session-token key: from `BOTYARD_OCS_TOKEN_KEY` when set, else
    /// `DIR/ocs-token.key`, created when absent (see [`crate::secrets::load_key`]).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<TokenKey> {
        let key = crate::secrets::load_key(data_dir, KEY_FILE, KEY_ENV)?;
        Ok(TokenKey { key })
    }

    #[cfg(test)]
    pub fn from_bytes(key: [u8; 32]) -> TokenKey {
        TokenKey { key }
    }

    fn mac(&self, purpose: &str, sid: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key size");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(sid.as_bytes());
        crate::store::ids::hex(&mac.finalize().into_bytes())
    }

    /// The token of a session: `<hex sid>.<hex mac>` (opaque to clients).
    pub fn issue(&self, sid: &str) -> String {
        format!(
            "{}.{}",
            crate::store::ids::hex(sid.as_bytes()),
            self.mac(PURPOSE, sid)
        )
    }

    /// Is `token` a valid token for `sid`?
    pub fn verify(&self, sid: &str, token: &str) -> bool {
        let Some((enc, mac)) = token.split_once('.') else {
            return false;
        };
        let Some(raw) = crate::store::ids::unhex(enc) else {
            return false;
        };
        if raw != sid.as_bytes() {
            return false;
        }
        crate::secrets::ct_eq(self.mac(PURPOSE, sid).as_bytes(), mac.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = TokenKey::from_bytes([7; 32]);
        let t = k.issue("s1");
        assert!(k.verify("s1", &t));
        assert!(!k.verify("s2", &t));
        assert!(!k.verify("s1", &format!("{t}0")));
        assert!(!k.verify("s1", ""));
        assert!(!k.verify("s1", "garbage"));
        let other = TokenKey::from_bytes([8; 32]);
        assert!(!other.verify("s1", &t));
        assert_ne!(k.mac("other-purpose", "s1"), k.mac(PURPOSE, "s1"));
    }
}
