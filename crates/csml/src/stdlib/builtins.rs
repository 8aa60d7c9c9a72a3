//! Builtin functions (spec §5.1), except `Or` (the evaluator's, since its arguments are
//! evaluated silently). Randomness and the clock come from the host.

use super::{
    Args, Fault, Runtime, app, crypto, error, http, jwt, random_float, random_index, shuffled,
    smtp, time, usage,
};
use crate::json::to_display;
use crate::value::{Kind, Map, Value};

pub(super) fn call(rt: &mut dyn Runtime, name: &str, args: Args) -> Option<Result<Value, Fault>> {
    let r = match name {
        "OneOf" => one_of(rt, &args),
        "Shuffle" => match single(&args) {
            Some(Value {
                kind: Kind::Array(items),
                ..
            }) => Ok(Value::array(shuffled(rt, items))),
            _ => Err(error(
                "Shuffle builtin expects one value of type Array. Example: Shuffle([1, 2, 3])",
            )),
        },
        "Length" => match single(&args).map(|v| &v.kind) {
            Some(Kind::Array(a)) => Ok(Value::int(a.len() as i64)),
            Some(Kind::String(s)) => Ok(Value::int(s.len() as i64)),
            _ => Err(error(
                "Length builtin expects one value of type Array or String. Example: Length(value)",
            )),
        },
        "Find" => find(&args),
        "Random" => Ok(Value::float(random_float(rt))),
        "Floor" => match single(&args).map(|v| &v.kind) {
            Some(Kind::Float(f)) => Ok(Value::float(f.floor())),
            _ => Err(error(
                "Floor builtin expects one argument of type float. Example: Floor(4.2)",
            )),
        },
        "UUID" => uuid(rt, &args),
        "Time" => {
            if args.is_empty() {
                Ok(time::now(rt))
            } else {
                Err(usage("Time() => Time"))
            }
        }
        "Exists" => match single(&args).and_then(Value::as_str) {
            Some(n) => Ok(Value::bool(rt.exists(n))),
            None => Err(error(
                "Exists builtin expects one value of type String. Example: Exists(\"var_name\")",
            )),
        },
        "Object" => {
            if !args.positional.is_empty() {
                Err(usage("Object(key = value, ...) => Object"))
            } else {
                Ok(Value::object(args.named.into_iter().collect::<Map>()))
            }
        }
        "Debug" => {
            let items = args
                .into_values()
                .iter()
                .map(|v| Value::string(to_display(v)))
                .collect();
            let mut m = Map::with_capacity(1);
            m.insert("args".into(), Value::array(items));
            Ok(Value::object(m).with_tag("debug"))
        }
        "HTTP" => http::builder(args),
        "App" | "Fn" => app::call(rt, args),
        "SMTP" => smtp::builder(args),
        "JWT" => jwt::builder(args),
        "Crypto" | "Base64" | "Hex" => crypto::builder(name, args),
        _ => return None,
    };
    Some(r)
}

/// The one argument of a one-argument builtin, positional or named.
fn single(args: &Args) -> Option<&Value> {
    if args.len() != 1 {
        return None;
    }
    args.positional
        .first()
        .or_else(|| args.named.first().map(|(_, v)| v))
}

fn one_of(rt: &mut dyn Runtime, args: &Args) -> Result<Value, Fault> {
    match single(args) {
        Some(Value {
            kind: Kind::Array(items),
            ..
        }) => {
            // Decision (§5.1): an empty array is an error, not a crash.
            if items.is_empty() {
                return Err(error("OneOf builtin expects a non-empty Array"));
            }
            Ok(items[random_index(rt, items.len())].clone())
        }
        _ => Err(error(
            "OneOf builtin expects one value of type Array. Example: OneOf([1, 2, 3])",
        )),
    }
}

/// `Find(needle, in=haystack)`: case-insensitive containment. `case_sensitive` is accepted and
/// ignored, as in the reference.
fn find(args: &Args) -> Result<Value, Fault> {
    let sig = "Find(value: String, in = String) => Boolean";
    let needle = args.positional.first().or_else(|| args.named("value"));
    let hay = args.named("in").or_else(|| args.positional.get(1));
    match (needle.and_then(Value::as_str), hay.and_then(Value::as_str)) {
        (Some(n), Some(h)) => Ok(Value::bool(h.to_lowercase().contains(&n.to_lowercase()))),
        _ => Err(usage(sig)),
    }
}

fn uuid(rt: &mut dyn Runtime, args: &Args) -> Result<Value, Fault> {
    let version = match (args.len(), single(args).map(|v| v.as_str())) {
        (0, _) => "v4",
        (1, Some(Some(v @ ("v4" | "v1")))) => v,
        _ => return Err(usage("UUID(version: Optional<\"v1\" | \"v4\">) => String")),
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rt.host().random_u64().to_be_bytes());
    b[8..].copy_from_slice(&rt.host().random_u64().to_be_bytes());
    if version == "v1" {
        // 100 ns intervals since 1582-10-15; random clock sequence and multicast node.
        let t = (rt.host().now_millis().max(0) as u64)
            .wrapping_mul(10_000)
            .wrapping_add(0x01B2_1DD2_1381_4000);
        let low = (t & 0xFFFF_FFFF) as u32;
        let mid = ((t >> 32) & 0xFFFF) as u16;
        let high = ((t >> 48) & 0x0FFF) as u16 | 0x1000;
        b[..4].copy_from_slice(&low.to_be_bytes());
        b[4..6].copy_from_slice(&mid.to_be_bytes());
        b[6..8].copy_from_slice(&high.to_be_bytes());
        b[10] |= 0x01;
    } else {
        b[6] = (b[6] & 0x0F) | 0x40;
    }
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(Value::string(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )))
}
