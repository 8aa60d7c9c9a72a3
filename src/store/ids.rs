//! Identifiers, random tokens and time helpers shared by the store and the engine.
//!
//! Ids are UUID-formatted, version 7 (48-bit millisecond timestamp first, then randomness), so
//! they sort by creation time and keep B-tree inserts local.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

/// `N` bytes of OS randomness served from a per-thread buffer refilled 512 bytes at a time:
/// one `getrandom` call per 32 ids instead of one per id (ids and seeds are made on every
/// chat turn). Same source as [`random_bytes`]; keep secrets on [`random_bytes`] anyway.
pub fn buffered_random_bytes<const N: usize>() -> [u8; N] {
    const CAP: usize = 512;
    struct Pool {
        buf: [u8; CAP],
        used: usize,
    }
    thread_local! {
        static POOL: std::cell::RefCell<Pool> =
            const { std::cell::RefCell::new(Pool { buf: [0; CAP], used: CAP }) };
    }
    let mut out = [0u8; N];
    if N > CAP {
        return random_bytes();
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.used + N > CAP {
            getrandom::fill(&mut p.buf).expect("the OS random source failed");
            p.used = 0;
        }
        let at = p.used;
        out.copy_from_slice(&p.buf[at..at + N]);
        // Bytes handed out are wiped so they never leave the pool twice.
        p.buf[at..at + N].fill(0);
        p.used += N;
    });
    out
}

/// A new time-ordered UUID (v7) string, e.g. `0190f3a2-7c1e-7b3d-9f2a-3c4d5e6f7a8b`.
pub fn new_id() -> String {
    let mut b: [u8; 16] = buffered_random_bytes();
    let ms = now_millis() as u64;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    // Written in place: several ids are made on every chat turn.
    let mut out = Vec::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.extend_from_slice(&hex_pair(*byte));
    }
    String::from_utf8(out).expect("hex digits and dashes are ASCII")
}

/// A random token of `len` characters from `[0-9A-Za-z]` (about 5.95 bits each).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let chunk: [u8; 32] = random_bytes();
        for byte in chunk {
            // 62 * 4 = 248: reject the top values so every character is equally likely.
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[(byte % 62) as usize] as char);
            }
        }
    }
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let [hi, lo] = hex_pair(*b);
        s.push(hi as char);
        s.push(lo as char);
    }
    s
}

/// The two lowercase hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]
}

/// Decode hex (either case); `None` when malformed.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Days since the Unix epoch (UTC) of a millisecond timestamp.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// (year, month 1-12, day 1-31) of a day number (proleptic Gregorian, UTC).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number of a civil date (inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO-8601 UTC with milliseconds and `Z`, e.g. `2024-03-05T09:14:07.412Z`.
pub fn iso_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_civil() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_709_630_047_412), "2024-03-05T09:14:07.412Z");
        for z in [-1000, 0, 19_000, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_ordered() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        for id in [&a, &b] {
            let lens: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.bytes()
                    .all(|c| c == b'-' || matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            );
            assert_eq!(&id[14..15], "7", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        let ms = i64::from_str_radix(&format!("{}{}", &a[0..8], &a[9..13]), 16).unwrap();
        assert!((now_millis() - ms).abs() < 5_000);
        assert!(a < b);
        assert_eq!(random_token(40).len(), 40);
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
    }
}
