//! `Crypto(s)`, `Base64(s)` and `Hex(s)` (spec §5.10).
//!
//! Builders: `{"value": s}` tagged `crypto`, `base64` or `hex`. `create_hash`/`create_hmac`
//! give `{"hash": [bytes]}` tagged `crypto`, and `.digest("hex" | "base64")` turns that into a
//! String. SHAKE digests have the usual default lengths (16 bytes for shake_128, 32 for
//! shake_256); HMAC is not defined over them (`Invalid Algorithm`).

use base64::Engine;
use digest::{Digest, ExtendableOutput, KeyInit, Mac, Update, XofReader};
use hmac::SimpleHmac;

use super::{Args, Fault, MethodResult, arity, error, http, str_arg, usage};
use crate::value::{Kind, Map, Value};

pub(super) fn builder(name: &str, args: Args) -> Result<Value, Fault> {
    let arg = if args.len() == 1 {
        args.positional
            .first()
            .or_else(|| args.named.first().map(|(_, v)| v))
    } else {
        None
    };
    let Some(s) = arg.and_then(Value::as_str) else {
        // The reference answers Base64/Hex misuse with the HTTP usage text (spec §5.10).
        return Err(match name {
            "Crypto" => usage("Crypto(value: String) => Crypto object"),
            _ => usage(http::USAGE),
        });
    };
    let mut m = Map::with_capacity(1);
    m.insert("value".into(), Value::string(s));
    Ok(Value::object(m).with_tag(match name {
        "Crypto" => "crypto",
        "Base64" => "base64",
        _ => "hex",
    }))
}

fn field<'a>(recv: &'a Value, key: &str) -> Option<&'a Value> {
    recv.as_object().and_then(|m| m.get(key))
}

/// An algorithm name, written all lowercase or all uppercase.
fn algorithm(name: &str) -> Result<String, Fault> {
    let ok = name == name.to_lowercase() || name == name.to_uppercase();
    let lower = name.to_lowercase();
    const KNOWN: &[&str] = &[
        "md5",
        "sha1",
        "sha256",
        "sha384",
        "sha512",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
        "shake_128",
        "shake_256",
        "ripemd160",
        "sm3",
    ];
    if ok && KNOWN.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(error(format!(
            "'{name}' Invalid Algorithm, expecting one of {}",
            KNOWN.join(", ")
        )))
    }
}

fn xof<X: Default + Update + ExtendableOutput>(data: &[u8], len: usize) -> Vec<u8> {
    let mut h = X::default();
    h.update(data);
    let mut out = vec![0u8; len];
    h.finalize_xof().read(&mut out);
    out
}

/// The digest of `data` with algorithm `alg` (already normalised to lowercase).
pub(super) fn hash(alg: &str, data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg {
        "md5" => md5::Md5::digest(data).to_vec(),
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "sha3_224" => sha3::Sha3_224::digest(data).to_vec(),
        "sha3_256" => sha3::Sha3_256::digest(data).to_vec(),
        "sha3_384" => sha3::Sha3_384::digest(data).to_vec(),
        "sha3_512" => sha3::Sha3_512::digest(data).to_vec(),
        "shake_128" => xof::<shake::Shake128>(data, 16),
        "shake_256" => xof::<shake::Shake256>(data, 32),
        "ripemd160" => ripemd::Ripemd160::digest(data).to_vec(),
        "sm3" => sm3::Sm3::digest(data).to_vec(),
        _ => return None,
    })
}

fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    Mac::update(&mut m, data);
    m.finalize().into_bytes().to_vec()
}

/// HMAC of `data` under `key` with algorithm `alg` (lowercase).
pub(super) fn hmac(alg: &str, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg {
        "md5" => mac::<SimpleHmac<md5::Md5>>(key, data),
        "sha1" => mac::<SimpleHmac<sha1::Sha1>>(key, data),
        "sha256" => mac::<SimpleHmac<sha2::Sha256>>(key, data),
        "sha384" => mac::<SimpleHmac<sha2::Sha384>>(key, data),
        "sha512" => mac::<SimpleHmac<sha2::Sha512>>(key, data),
        "sha3_224" => mac::<SimpleHmac<sha3::Sha3_224>>(key, data),
        "sha3_256" => mac::<SimpleHmac<sha3::Sha3_256>>(key, data),
        "sha3_384" => mac::<SimpleHmac<sha3::Sha3_384>>(key, data),
        "sha3_512" => mac::<SimpleHmac<sha3::Sha3_512>>(key, data),
        "ripemd160" => mac::<SimpleHmac<ripemd::Ripemd160>>(key, data),
        "sm3" => mac::<SimpleHmac<sm3::Sm3>>(key, data),
        _ => return None,
    })
}

fn hash_value(bytes: Vec<u8>) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert(
        "hash".into(),
        Value::array(bytes.into_iter().map(|b| Value::int(b as i64)).collect()),
    );
    Value::object(m).with_tag("crypto")
}

pub(super) fn call_crypto(recv: &mut Value, name: &str, args: &[Value]) -> MethodResult {
    let data = || {
        field(recv, "value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes()
    };
    let r = match name {
        "create_hash" => {
            let sig = "create_hash(algorithm: String) => Crypto object";
            arity(args, 1, 1, sig)
                .and_then(|_| str_arg(args, 0, sig))
                .and_then(|a| {
                    let alg = algorithm(a)?;
                    hash(&alg, data())
                        .map(hash_value)
                        .ok_or_else(|| algorithm_error(a))
                })
        }
        "create_hmac" => {
            let sig = "create_hmac(algorithm: String, key: String) => Crypto object";
            arity(args, 2, 2, sig).and_then(|_| {
                let (a, key) = (str_arg(args, 0, sig)?, str_arg(args, 1, sig)?);
                let alg = algorithm(a)?;
                hmac(&alg, key.as_bytes(), data())
                    .map(hash_value)
                    .ok_or_else(|| algorithm_error(a))
            })
        }
        "digest" => digest_method(recv, args),
        _ => return None,
    };
    Some(r)
}

fn algorithm_error(name: &str) -> Fault {
    error(format!("'{name}' Invalid Algorithm for this operation"))
}

fn digest_method(recv: &Value, args: &[Value]) -> Result<Value, Fault> {
    let sig = "digest(encoding: \"hex\" | \"base64\") => String";
    arity(args, 1, 1, sig)?;
    let enc = str_arg(args, 0, sig)?;
    let Some(Kind::Array(items)) = field(recv, "hash").map(|v| &v.kind) else {
        return Err(error(
            "digest needs a hash: call create_hash or create_hmac first",
        ));
    };
    let bytes: Vec<u8> = items
        .iter()
        .filter_map(Value::as_int)
        .map(|b| b as u8)
        .collect();
    match enc {
        "hex" => Ok(Value::string(to_hex(&bytes))),
        "base64" => Ok(Value::string(
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        )),
        _ => Err(usage(sig)),
    }
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err("odd number of digits".into());
    }
    b.chunks(2)
        .map(|p| {
            let d = |c: u8| {
                (c as char)
                    .to_digit(16)
                    .ok_or_else(|| format!("invalid character {:?}", c as char))
            };
            Ok((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

pub(super) fn call_codec(recv: &mut Value, name: &str, args: &[Value]) -> MethodResult {
    let hex = recv.tag() == "hex";
    let text = field(recv, "value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let r = match name {
        "encode" => arity(args, 0, 0, "encode() => String").map(|_| {
            Value::string(if hex {
                to_hex(text.as_bytes())
            } else {
                base64::engine::general_purpose::STANDARD.encode(text)
            })
        }),
        "decode" => arity(args, 0, 0, "decode() => String").and_then(|_| {
            let bytes = if hex {
                from_hex(text).map_err(|e| error(format!("Hex invalid value: {e}")))?
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| error(format!("Base64 invalid value: {e}")))?
            };
            Ok(Value::string(String::from_utf8_lossy(&bytes).into_owned()))
        }),
        _ => return None,
    };
    Some(r)
}
