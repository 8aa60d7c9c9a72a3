//! `JWT(x)` (spec §5.10): HS256/HS384/HS512 tokens, written by hand over HMAC-SHA2.
//!
//! The builder is `{"jwt": x}` tagged `jwt` (claims Object to sign, or a token String).
//! Tokens are byte-compatible with the reference: the header is `{"typ":"JWT","alg":…}` then
//! the allowed extra headers in the order `cty, jku, kid, x5u, x5t`, and the claims JSON has
//! its keys sorted. `decode` and `verify` check the signature and, like the reference, require
//! an unexpired `exp` (60 s leeway unless `verify` sets `leeway`). Failures are non-fatal
//! errors `Invalid JWT encode|decode|verify <Kind>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value as Json;

use super::{Args, Fault, MethodResult, Runtime, arity, crypto, error, usage};
use crate::json::{from_json, to_json};
use crate::value::{Kind, Map, Value};

const DEFAULT_LEEWAY: i64 = 60;
const EXTRA_HEADERS: &[&str] = &["cty", "jku", "kid", "x5u", "x5t"];

pub(super) fn builder(args: Args) -> Result<Value, Fault> {
    let arg = if args.len() == 1 {
        args.positional
            .first()
            .or_else(|| args.named.first().map(|(_, v)| v))
    } else {
        None
    };
    let Some(x) = arg else {
        return Err(usage("JWT(value: Object | String) => JWT object"));
    };
    let mut m = Map::with_capacity(1);
    m.insert("jwt".into(), x.clone());
    Ok(Value::object(m).with_tag("jwt"))
}

fn fail(op: &str, kind: &str) -> Fault {
    error(format!("Invalid JWT {op} {kind}"))
}

/// `HS256` etc. → the hash name used by [`crypto::hmac`].
fn hash_of(alg: &str) -> Option<(&'static str, &'static str)> {
    match alg.to_ascii_uppercase().as_str() {
        "HS256" => Some(("HS256", "sha256")),
        "HS384" => Some(("HS384", "sha384")),
        "HS512" => Some(("HS512", "sha512")),
        _ => None,
    }
}

/// JSON with object keys sorted at every level (the reference's map order).
fn sorted(j: Json) -> Json {
    crate::value::deep(|| sorted_inner(j))
}

fn sorted_inner(j: Json) -> Json {
    match j {
        Json::Object(m) => {
            let mut entries: Vec<(String, Json)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(a) => Json::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn token_of(recv: &Value) -> Option<&Value> {
    recv.as_object().and_then(|m| m.get("jwt"))
}

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let now = rt.host().now_millis().div_euclid(1000);
    let r = match name {
        "sign" => sign(recv, args),
        "decode" => {
            let sig = "decode(algorithm: String, secret: String) => Object";
            arity(args, 2, 2, sig).and_then(|_| {
                let (alg, secret) = two_strings(args, sig)?;
                let opts = Checks {
                    leeway: DEFAULT_LEEWAY,
                    validate_exp: true,
                    validate_nbf: false,
                    expect: None,
                };
                decode(recv, alg, secret, &opts, now, "decode")
            })
        }
        "verify" => {
            let sig = "verify(claims: Object, algorithm: String, secret: String) => Object";
            arity(args, 3, 3, sig).and_then(|_| {
                let claims = args[0].as_object().ok_or_else(|| usage(sig))?;
                let (alg, secret) = two_strings(&args[1..], sig)?;
                let b = |k: &str, d: bool| match claims.get(k).map(|v| &v.kind) {
                    Some(Kind::Bool(x)) => *x,
                    _ => d,
                };
                let opts = Checks {
                    leeway: claims
                        .get("leeway")
                        .and_then(Value::as_int)
                        .unwrap_or(DEFAULT_LEEWAY),
                    validate_exp: b("validate_exp", true),
                    validate_nbf: b("validate_nbf", false),
                    expect: Some(claims),
                };
                decode(recv, alg, secret, &opts, now, "verify")
            })
        }
        _ => return None,
    };
    Some(r)
}

fn two_strings<'a>(args: &'a [Value], sig: &str) -> Result<(&'a str, &'a str), Fault> {
    match (
        args.first().and_then(Value::as_str),
        args.get(1).and_then(Value::as_str),
    ) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(usage(sig)),
    }
}

fn sign(recv: &Value, args: &[Value]) -> Result<Value, Fault> {
    let sig = "sign(algorithm: String, secret: String, headers: Optional<Object>) => String";
    arity(args, 2, 3, sig)?;
    let (alg, secret) = two_strings(args, sig)?;
    let (alg_name, hash) = hash_of(alg).ok_or_else(|| fail("encode", "InvalidAlgorithm"))?;
    let claims = match token_of(recv) {
        Some(
            c @ Value {
                kind: Kind::Object(_),
                ..
            },
        ) => sorted(to_json(c)),
        _ => return Err(fail("encode", "InvalidClaims")),
    };
    let extra = match args.get(2).map(|v| &v.kind) {
        None | Some(Kind::Null) => None,
        Some(Kind::Object(m)) => Some(m),
        Some(_) => return Err(usage(sig)),
    };
    let mut header = serde_json::Map::new();
    let typ = extra
        .and_then(|m| m.get("typ"))
        .and_then(Value::as_str)
        .unwrap_or("JWT");
    header.insert("typ".into(), Json::String(typ.into()));
    header.insert("alg".into(), Json::String(alg_name.into()));
    for k in EXTRA_HEADERS {
        if let Some(v) = extra.and_then(|m| m.get(*k)) {
            header.insert((*k).to_string(), to_json(v));
        }
    }
    let json = |j: &Json| serde_json::to_vec(j).unwrap_or_default();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json(&Json::Object(header))),
        URL_SAFE_NO_PAD.encode(json(&claims))
    );
    let mac = crypto::hmac(hash, secret.as_bytes(), input.as_bytes())
        .ok_or_else(|| fail("encode", "InvalidAlgorithm"))?;
    Ok(Value::string(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac)
    )))
}

struct Checks<'a> {
    leeway: i64,
    validate_exp: bool,
    validate_nbf: bool,
    /// `verify`'s expected `iss`/`sub`/`aud`.
    expect: Option<&'a Map>,
}

fn decode_part(part: &str, op: &str) -> Result<Json, Fault> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| fail(op, "InvalidToken"))?;
    serde_json::from_slice(&bytes).map_err(|_| fail(op, "InvalidToken"))
}

fn decode(
    recv: &Value,
    alg: &str,
    secret: &str,
    c: &Checks,
    now: i64,
    op: &str,
) -> Result<Value, Fault> {
    let token = token_of(recv)
        .and_then(Value::as_str)
        .ok_or_else(|| fail(op, "InvalidToken"))?;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail(op, "InvalidToken"));
    };
    let header = decode_part(h, op)?;
    let payload = decode_part(p, op)?;
    let (alg_name, hash) = hash_of(alg).ok_or_else(|| fail(op, "InvalidAlgorithm"))?;
    if header.get("alg").and_then(Json::as_str) != Some(alg_name) {
        return Err(fail(op, "InvalidAlgorithm"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| fail(op, "InvalidSignature"))?;
    let expected = crypto::hmac(hash, secret.as_bytes(), format!("{h}.{p}").as_bytes())
        .ok_or_else(|| fail(op, "InvalidAlgorithm"))?;
    if !constant_time_eq(&signature, &expected) {
        return Err(fail(op, "InvalidSignature"));
    }
    let claim_num = |k: &str| payload.get(k).and_then(Json::as_f64);
    if c.validate_exp {
        let exp = claim_num("exp").ok_or_else(|| fail(op, "MissingRequiredClaim(\"exp\")"))?;
        if exp < (now - c.leeway) as f64 {
            return Err(fail(op, "ExpiredSignature"));
        }
    }
    if c.validate_nbf && claim_num("nbf").is_some_and(|nbf| nbf > (now + c.leeway) as f64) {
        return Err(fail(op, "ImmatureSignature"));
    }
    if let Some(expect) = c.expect {
        for (claim, kind) in [
            ("iss", "InvalidIssuer"),
            ("sub", "InvalidSubject"),
            ("aud", "InvalidAudience"),
        ] {
            if let (Some(want), Some(got)) = (expect.get(claim), payload.get(claim))
                && !claim_matches(&to_json(want), got)
            {
                return Err(fail(op, kind));
            }
        }
    }
    let mut out = Map::with_capacity(2);
    out.insert("header".into(), from_json(&header));
    out.insert("payload".into(), from_json(&payload));
    Ok(Value::object(out))
}

/// A token claim (string or array of strings) matches when it shares a value with `want`.
fn claim_matches(want: &Json, got: &Json) -> bool {
    let list = |j: &Json| -> Vec<String> {
        match j {
            Json::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Json::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        }
    };
    let w = list(want);
    list(got).iter().any(|g| w.contains(g))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
