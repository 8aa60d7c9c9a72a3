//! The Studio API's request signature (spec §1.2–1.3), as pure functions: parsing the
//! `X-Api-Key` header, HMAC-SHA-256 over its exact value, and the freshness window.
//!
//! What is signed is only the `X-Api-Key` value `key|unix_ts`, keyed with the channel secret;
//! no nonce (one signature may be reused within the window). The window is symmetric so a client
//! clock running ahead is tolerated as much as one running behind.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default accepted distance between the signed timestamp and the server clock.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// The `X-Api-Key` header, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader<'a> {
    /// A bare key (public endpoints without a signature).
    Bare(&'a str),
    /// `key|ts`; `raw` is the whole header value, the HMAC message.
    Stamped { key: &'a str, ts: i64, raw: &'a str },
}

impl<'a> KeyHeader<'a> {
    pub fn key(&self) -> &'a str {
        match self {
            KeyHeader::Bare(k) => k,
            KeyHeader::Stamped { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingKey,
    MalformedKey,
    MissingSignature,
    BadSignature,
    Expired,
    UnknownKey,
}

impl AuthFailure {
    /// The envelope message of spec §1.4.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::MissingKey => "missing X-Api-Key header",
            AuthFailure::MalformedKey => "malformed X-Api-Key",
            AuthFailure::MissingSignature => "missing X-Api-Signature header",
            AuthFailure::BadSignature => "invalid signature",
            AuthFailure::Expired => "expired or future timestamp",
            AuthFailure::UnknownKey => "invalid API key",
        }
    }
}

/// Splits `X-Api-Key` on its last `|`. The timestamp must be all ASCII digits.
pub fn parse_key_header(value: &str) -> Result<KeyHeader<'_>, AuthFailure> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthFailure::MissingKey);
    }
    match value.rsplit_once('|') {
        None => Ok(KeyHeader::Bare(value)),
        Some((key, ts)) => {
            if key.is_empty() || ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AuthFailure::MalformedKey);
            }
            let ts = ts.parse::<i64>().map_err(|_| AuthFailure::MalformedKey)?;
            Ok(KeyHeader::Stamped {
                key,
                ts,
                raw: value,
            })
        }
    }
}

/// `sha256=<lowercase hex>` of HMAC-SHA-256(secret, message): what a client sends.
pub fn sign(secret: &[u8], message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.iter() {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Checks `X-Api-Signature` (with or without `sha256=`, hex in any case) against the HMAC of
/// `message`, in constant time.
pub fn verify(secret: &[u8], message: &str, signature: &str) -> Result<(), AuthFailure> {
    let sig = signature.trim();
    let hex = sig
        .strip_prefix("sha256=")
        .or_else(|| sig.strip_prefix("SHA256="))
        .unwrap_or(sig);
    let tag = decode_hex(hex).ok_or(AuthFailure::BadSignature)?;
    if tag.len() != 32 {
        return Err(AuthFailure::BadSignature);
    }
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| AuthFailure::BadSignature)
}

/// `|now - ts| <= window`.
pub fn check_window(ts: i64, now: i64, window_secs: i64) -> Result<(), AuthFailure> {
    if now.abs_diff(ts) <= window_secs.unsigned_abs() {
        Ok(())
    } else {
        Err(AuthFailure::Expired)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SIG: &str =
        "sha256=07c80879096f465b5f6de494c0d7a6f1cb0fa6966466c1b78299334fe05401bc";

    #[test]
    fn spec_test_vector() {
        assert_eq!(
            sign(b"sk_demo_9c41e2", "pk_demo_7f3a|1700000000"),
            VECTOR_SIG
        );
        let h = parse_key_header("pk_demo_7f3a|1700000000").unwrap();
        assert_eq!(
            h,
            KeyHeader::Stamped {
                key: "pk_demo_7f3a",
                ts: 1_700_000_000,
                raw: "pk_demo_7f3a|1700000000"
            }
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", "pk_demo_7f3a|1700000000", VECTOR_SIG),
            Ok(())
        );
        // Frozen clock at the vector's time, and at both edges of the window.
        assert_eq!(check_window(1_700_000_000, 1_700_000_000, 300), Ok(()));
        assert_eq!(check_window(1_700_000_000, 1_700_000_300, 300), Ok(()));
        assert_eq!(check_window(1_700_000_000, 1_699_999_700, 300), Ok(()));
        assert_eq!(
            check_window(1_700_000_000, 1_700_000_301, 300),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            check_window(1_700_000_000, 1_699_999_699, 300),
            Err(AuthFailure::Expired)
        );
    }

    #[test]
    fn signature_forms() {
        let msg = "pk_demo_7f3a|1700000000";
        let bare = VECTOR_SIG.trim_start_matches("sha256=");
        assert_eq!(verify(b"sk_demo_9c41e2", msg, bare), Ok(()));
        assert_eq!(verify(b"sk_demo_9c41e2", msg, &bare.to_uppercase()), Ok(()));
        assert_eq!(
            verify(b"wrong", msg, VECTOR_SIG),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", "pk_demo_7f3a|1700000001", VECTOR_SIG),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", msg, "sha256=abc"),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", msg, "sha256=zz"),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", msg, &bare[..62]),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(b"sk_demo_9c41e2", msg, ""),
            Err(AuthFailure::BadSignature)
        );
    }

    #[test]
    fn key_header_forms() {
        assert_eq!(parse_key_header("abc"), Ok(KeyHeader::Bare("abc")));
        assert_eq!(parse_key_header(" abc "), Ok(KeyHeader::Bare("abc")));
        assert_eq!(parse_key_header(""), Err(AuthFailure::MissingKey));
        assert_eq!(parse_key_header("abc|"), Err(AuthFailure::MalformedKey));
        assert_eq!(parse_key_header("|123"), Err(AuthFailure::MalformedKey));
        assert_eq!(parse_key_header("abc|12x"), Err(AuthFailure::MalformedKey));
        assert_eq!(parse_key_header("abc|-12"), Err(AuthFailure::MalformedKey));
        assert_eq!(
            parse_key_header("abc|99999999999999999999999"),
            Err(AuthFailure::MalformedKey)
        );
        // Split on the last pipe.
        assert_eq!(parse_key_header("a|b|5").unwrap().key(), "a|b");
    }
}
