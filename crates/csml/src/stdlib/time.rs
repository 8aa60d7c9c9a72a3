//! `Time()` (spec §5.6): an Object tagged `time` holding `milliseconds` (Unix ms, UTC) and
//! optionally `timezone` (an IANA name) or `offset` (seconds east of UTC, from `parse`).
//! `at`, `add`, `sub`, `with_timezone` and `unix` are write methods.
//!
//! Choices: `at(...)` reads its arguments as UTC wall-clock time and keeps any zone for
//! display; `with_timezone` replaces a parsed `offset`; `format()` prints `Z` for UTC and the
//! zone's offset otherwise.

use chrono::format::{Item, StrftimeItems};
use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, SecondsFormat, TimeZone,
    Utc,
};
use chrono_tz::Tz;

use super::{Fault, MethodResult, Runtime, arity, error, int_arg, str_arg, usage};
use crate::value::{Kind, Map, Value};

/// `Time()`: now, from the host's clock.
pub(super) fn now(rt: &mut dyn Runtime) -> Value {
    time_value(rt.host().now_millis(), None)
}

fn time_value(ms: i64, offset: Option<i32>) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("milliseconds".into(), Value::int(ms));
    if let Some(o) = offset.filter(|o| *o != 0) {
        m.insert("offset".into(), Value::int(o as i64));
    }
    Value::object(m).with_tag("time")
}

fn millis(recv: &Value) -> i64 {
    recv.as_object()
        .and_then(|m| m.get("milliseconds"))
        .and_then(Value::as_int)
        .unwrap_or(0)
}

fn set(recv: &mut Value, key: &str, v: Value) {
    if let Some(m) = recv.as_object_mut() {
        m.insert(key.to_string(), v);
    }
}

/// The instant of a Time value, in its zone.
fn instant(recv: &Value) -> Result<DateTime<FixedOffset>, Fault> {
    let utc = Utc
        .timestamp_millis_opt(millis(recv))
        .single()
        .ok_or_else(|| error("time is out of range"))?;
    let m = recv.as_object();
    if let Some(tz) = m.and_then(|m| m.get("timezone")).and_then(Value::as_str) {
        let tz: Tz = tz
            .parse()
            .map_err(|_| error(format!("invalid timezone {tz}")))?;
        let local = utc.with_timezone(&tz);
        return Ok(local.with_timezone(&local.offset().fix()));
    }
    let offset = m
        .and_then(|m| m.get("offset"))
        .and_then(Value::as_int)
        .unwrap_or(0);
    let fixed = FixedOffset::east_opt(offset as i32)
        .unwrap_or(FixedOffset::east_opt(0).expect("0 is valid"));
    Ok(utc.with_timezone(&fixed))
}

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let _ = rt;
    let r = match name {
        "at" => at(recv, args),
        "unix" => {
            let sig = "unix(unit: Optional<\"s\">) => Integer";
            arity(args, 0, 1, sig).and_then(|_| match args.first().map(|a| a.as_str()) {
                None => Ok(Value::int(millis(recv))),
                Some(Some("s")) => Ok(Value::int(millis(recv).div_euclid(1000))),
                Some(Some("ms")) => Ok(Value::int(millis(recv))),
                _ => Err(usage(sig)),
            })
        }
        "add" | "sub" => {
            let sig = if name == "add" {
                "add(seconds: Integer) => Time"
            } else {
                "sub(seconds: Integer) => Time"
            };
            arity(args, 1, 1, sig)
                .and_then(|_| int_arg(args, 0, sig))
                .and_then(|s| {
                    let delta = s
                        .checked_mul(1000)
                        .ok_or_else(|| error("time is out of range"))?;
                    let ms = if name == "add" {
                        millis(recv).checked_add(delta)
                    } else {
                        millis(recv).checked_sub(delta)
                    }
                    .ok_or_else(|| error("time is out of range"))?;
                    set(recv, "milliseconds", Value::int(ms));
                    Ok(recv.clone())
                })
        }
        "with_timezone" => {
            let sig = "with_timezone(timezone: String) => Time";
            arity(args, 1, 1, sig)
                .and_then(|_| str_arg(args, 0, sig))
                .and_then(|tz| {
                    if tz.parse::<Tz>().is_err() {
                        return Err(error(format!("invalid timezone {tz}")));
                    }
                    if let Some(m) = recv.as_object_mut() {
                        m.shift_remove("offset");
                        m.insert("timezone".into(), Value::string(tz));
                    }
                    Ok(recv.clone())
                })
        }
        "format" => format(recv, args),
        "parse" => parse(args),
        _ => return None,
    };
    Some(r)
}

fn at(recv: &mut Value, args: &[Value]) -> Result<Value, Fault> {
    let sig = "at(year: Integer, month: Integer, day: Integer, hour: Integer, minute: Integer, second: Integer, millisecond: Integer) => Time";
    arity(args, 1, 7, sig)?;
    // The hour defaults to 1, as in the reference (spec §5.6).
    let defaults = [0i64, 1, 1, 1, 0, 0, 0];
    let mut v = defaults;
    for (i, a) in args.iter().enumerate() {
        v[i] = match a.kind {
            Kind::Int(n) => n,
            _ => return Err(usage(sig)),
        };
    }
    let small = |n: i64| u32::try_from(n).ok();
    let date = i32::try_from(v[0])
        .ok()
        .zip(small(v[1]))
        .zip(small(v[2]))
        .and_then(|((y, mo), d)| NaiveDate::from_ymd_opt(y, mo, d))
        .ok_or_else(|| error(format!("invalid date {}-{}-{}", v[0], v[1], v[2])))?;
    let time = match (small(v[3]), small(v[4]), small(v[5]), small(v[6])) {
        (Some(h), Some(mi), Some(s), Some(ms)) => NaiveTime::from_hms_milli_opt(h, mi, s, ms),
        _ => None,
    };
    let Some(time) = time else {
        return Ok(Value::bool(false));
    };
    let ms = NaiveDateTime::new(date, time).and_utc().timestamp_millis();
    set(recv, "milliseconds", Value::int(ms));
    Ok(recv.clone())
}

fn format(recv: &Value, args: &[Value]) -> Result<Value, Fault> {
    let sig = "format(format: Optional<String>) => String";
    arity(args, 0, 1, sig)?;
    let dt = instant(recv)?;
    let Some(fmt) = args.first() else {
        return Ok(Value::string(
            dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        ));
    };
    let fmt = fmt.as_str().ok_or_else(|| usage(sig))?;
    let items: Vec<Item> = StrftimeItems::new(fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(error(format!("invalid time format {fmt}")));
    }
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", dt.format_with_items(items.into_iter()))
        .map_err(|_| error(format!("invalid time format {fmt}")))?;
    Ok(Value::string(out))
}

/// Complete a truncated RFC 3339 text (`YYYY`, `YYYY-MM`, …, `…THH:MM:SS`) to a full one.
fn complete_rfc3339(s: &str) -> String {
    let tail = match s.len() {
        4 => "-01-01T00:00:00Z",
        7 => "-01T00:00:00Z",
        10 => "T00:00:00Z",
        13 => ":00:00Z",
        16 => ":00Z",
        _ => "Z",
    };
    format!("{s}{tail}")
}

fn parse(args: &[Value]) -> Result<Value, Fault> {
    let sig = "parse(date: String, format: Optional<String>) => Time";
    arity(args, 1, 2, sig)?;
    let s = str_arg(args, 0, sig)?;
    let fail = || error(format!("[parse] can not parse date {s}"));
    let Some(fmt) = args.get(1) else {
        let dt = DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_rfc3339(&complete_rfc3339(s)))
            .map_err(|_| fail())?;
        return Ok(time_value(
            dt.timestamp_millis(),
            Some(dt.offset().local_minus_utc()),
        ));
    };
    let fmt = fmt.as_str().ok_or_else(|| usage(sig))?;
    if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
        return Ok(time_value(
            dt.timestamp_millis(),
            Some(dt.offset().local_minus_utc()),
        ));
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
        return Ok(time_value(dt.and_utc().timestamp_millis(), None));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
        return Ok(time_value(
            d.and_time(NaiveTime::MIN).and_utc().timestamp_millis(),
            None,
        ));
    }
    Err(fail())
}
