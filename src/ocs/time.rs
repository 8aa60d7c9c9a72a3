//! OCS timestamps: ISO-8601 UTC with a `Z`, microseconds only when non-zero
//! (`2021-01-01T12:00:00Z`, `2024-05-02T10:11:12.345678Z`), and a lenient parser for `since`
//! and schedule dates (`Z` or `±HH:MM` offsets, optional fraction, date-only allowed).

use crate::store::ids::{civil_from_days, days_from_civil};

/// Format microseconds since the epoch.
pub fn iso_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    if frac == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:06}Z")
    }
}

/// Format milliseconds since the epoch.
pub fn iso_millis(ms: i64) -> String {
    iso_micros(ms * 1000)
}

/// Parse an ISO-8601 date-time to microseconds since the epoch. A missing offset means UTC.
pub fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut us = days_from_civil(y, mo as u32, d as u32) * 86_400_000_000;
    if b.len() == 10 {
        return Some(us);
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    if b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(11..13)?, num(14..16)?);
    let mut i = 16;
    let mut sec = 0;
    if b.len() > 16 && b[16] == b':' {
        sec = num(17..19)?;
        i = 19;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    us += (h * 3600 + mi * 60 + sec) * 1_000_000;
    if i < b.len() && b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end.min(start + 6)];
        let mut frac: i64 = digits.parse().ok()?;
        for _ in digits.len()..6 {
            frac *= 10;
        }
        us += frac;
        i = end;
    }
    let rest = &s[i..];
    let offset_secs = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = rest[1..].replace(':', "");
            if r.len() != 4 || !r.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: i64 = r[..2].parse().ok()?;
            let om: i64 = r[2..].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(us - offset_secs * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse() {
        assert_eq!(iso_micros(1_609_502_400_000_000), "2021-01-01T12:00:00Z");
        assert_eq!(
            iso_micros(1_609_502_400_345_678),
            "2021-01-01T12:00:00.345678Z"
        );
        for s in ["2021-01-01T12:00:00Z", "2021-01-01T12:00:00.345678Z"] {
            assert_eq!(iso_micros(parse_iso(s).unwrap()), s);
        }
        assert_eq!(
            parse_iso("2021-01-01T14:00:00+02:00"),
            parse_iso("2021-01-01T12:00:00Z")
        );
        assert_eq!(
            parse_iso("2021-01-01T12:00:00.5Z").unwrap() % 1_000_000,
            500_000
        );
        assert!(parse_iso("yesterday").is_none());
        assert!(parse_iso("2021-01-01T12:00:00 00:00").is_none());
    }
}
