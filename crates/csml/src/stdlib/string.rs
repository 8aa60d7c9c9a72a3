//! String methods (spec §5.3). `length()` counts UTF-8 bytes while `slice` counts Unicode
//! scalars, as the reference does. Regexes use the `regex` crate (RE2-like syntax, linear-time
//! search), compiled under caps and cached by [`super::regexes`] through
//! [`Runtime::regex`]; the turn's budget is checked before each regex method and every
//! [`MATCHES_PER_CHECK`] matches of the ones that walk every match.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    Fault, MethodResult, Runtime, arity, error, formats, int_arg, limits, number, str_arg, usage,
};
use crate::json::from_json;
use crate::ops::{Num, parse_num};
use crate::value::Value;
use std::sync::Arc;

/// `is_email()`: a fixed pattern, compiled once per process.
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^@]+@[^@]+\.[^@]+$").expect("the e-mail pattern is valid"));

/// How many matches a regex method walks between two checks of the turn's budget.
const MATCHES_PER_CHECK: usize = 4096;

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let s = recv.as_str()?;
    if name.ends_with("_regex") {
        return regex_method(rt, s, name, args);
    }
    method(rt, s, name, args)
}

/// The regex methods; `None` when `name` is not one.
fn regex_method(
    rt: &mut dyn Runtime,
    s: &str,
    name: &str,
    args: &[Value],
) -> Option<Result<Value, Fault>> {
    let r = match name {
        "contains_regex" => with_regex(rt, args, "contains_regex(value: String) => Boolean")
            .map(|re| Value::bool(re.is_match(s))),
        "starts_with_regex" => with_regex(rt, args, "starts_with_regex(value: String) => Boolean")
            .map(|re| Value::bool(re.find(s).is_some_and(|m| m.start() == 0))),
        "ends_with_regex" => with_regex(rt, args, "ends_with_regex(value: String) => Boolean")
            .and_then(|re| {
                let mut found = false;
                for (i, m) in re.find_iter(s).enumerate() {
                    checkpoint(rt, i)?;
                    if m.end() == s.len() {
                        found = true;
                        break;
                    }
                }
                Ok(Value::bool(found))
            }),
        // `find_iter` steps past empty matches, which is the Decision of §5.3.
        "match_regex" => with_regex(rt, args, "match_regex(value: String) => Array")
            .and_then(|re| found_array(rt, "match_regex", re.find_iter(s).map(|m| m.as_str()))),
        "replace_regex" => replace_regex(rt, s, args),
        _ => return None,
    };
    Some(r)
}

/// Check the turn's budget before the first match and every [`MATCHES_PER_CHECK`] matches.
fn checkpoint(rt: &mut dyn Runtime, i: usize) -> Result<(), Fault> {
    if i > 0 && i.is_multiple_of(MATCHES_PER_CHECK) {
        rt.check_budget()?;
    }
    Ok(())
}

fn no_args(args: &[Value], sig: &str) -> Result<(), Fault> {
    arity(args, 0, 0, sig)
}

/// The string methods; `None` when `name` is not one (generic methods come next).
fn method(
    rt: &mut dyn Runtime,
    s: &str,
    name: &str,
    args: &[Value],
) -> Option<Result<Value, Fault>> {
    let r = match name {
        "length" => no_args(args, "length() => int").map(|_| Value::int(s.len() as i64)),
        "to_uppercase" => {
            no_args(args, "to_uppercase() => String").map(|_| Value::string(s.to_uppercase()))
        }
        "to_lowercase" => {
            no_args(args, "to_lowercase() => String").map(|_| Value::string(s.to_lowercase()))
        }
        "capitalize" => no_args(args, "capitalize() => String").map(|_| {
            let mut c = s.chars();
            Value::string(match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            })
        }),
        "trim" => no_args(args, "trim() => String").map(|_| Value::string(s.trim())),
        "trim_left" => {
            no_args(args, "trim_left() => String").map(|_| Value::string(s.trim_start()))
        }
        "trim_right" => {
            no_args(args, "trim_right() => String").map(|_| Value::string(s.trim_end()))
        }
        "contains" => {
            one_str(args, "contains(value: String) => Boolean").map(|x| Value::bool(s.contains(x)))
        }
        "starts_with" => one_str(args, "starts_with(value: String) => Boolean")
            .map(|x| Value::bool(s.starts_with(x))),
        "ends_with" => one_str(args, "ends_with(value: String) => Boolean")
            .map(|x| Value::bool(s.ends_with(x))),
        "match" => one_str(args, "match(value: String) => Array").and_then(|x| {
            if x.is_empty() {
                return Ok(Value::null());
            }
            found_array(rt, "match", s.match_indices(x).map(|(_, m)| m))
        }),
        "replace" => two_str(
            args,
            "replace(value_to_replace: String, replace_by: String) => String",
        )
        .and_then(|(a, b)| {
            if s.contains(a) {
                limits::text("replace", s.len() - a.len() + b.len())?;
            }
            Ok(Value::string(s.replacen(a, b, 1)))
        }),
        "replace_all" => two_str(
            args,
            "replace_all(value_to_replace: String, replace_by: String) => String",
        )
        .and_then(|(a, b)| {
            if b.len() > a.len() {
                // An empty pattern matches at every char boundary.
                let n = if a.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(a).count()
                };
                let grown = n.saturating_mul(b.len() - a.len());
                limits::text("replace_all", s.len().saturating_add(grown))?;
            }
            Ok(Value::string(s.replace(a, b)))
        }),
        "split" => one_str(args, "split(separator: String) => Array").and_then(|sep| {
            // An empty separator gives every char plus an empty piece at each end.
            let n = if sep.is_empty() {
                s.chars().count() + 2
            } else {
                s.matches(sep).count() + 1
            };
            limits::items("split", n)?;
            Ok(Value::array(s.split(sep).map(Value::string).collect()))
        }),
        "slice" => slice(s, args),
        // Decision (§5.3): `is_empty()` takes no argument; one is tolerated as the reference
        // demanded it.
        "is_empty" => arity(args, 0, 1, "is_empty() => Boolean").map(|_| Value::bool(s.is_empty())),
        "append" => one_str(args, "append(value: String) => String").and_then(|x| {
            limits::text("append", s.len() + x.len())?;
            Ok(Value::string(format!("{s}{x}")))
        }),
        "is_email" => no_args(args, "is_email() => Boolean").map(|_| Value::bool(is_email(s))),
        "from_json" => no_args(args, "from_json() => Object").and_then(|_| {
            limits::items("from_json", limits::nodes_bound(s))?;
            serde_json::from_str::<serde_json::Value>(s)
                .map(|j| from_json(&j))
                .map_err(|_| error("[from_json] [!] string to object failed]"))
        }),
        "to_json" => no_args(args, "to_json() => Object").and_then(|_| {
            limits::items("to_json", limits::nodes_bound(s))?;
            formats::text_to_value(s)
        }),
        "encode_uri_component" => no_args(args, "encode_uri_component() => String")
            .map(|_| Value::string(formats::encode_uri_component(s))),
        "decode_uri_component" => no_args(args, "decode_uri_component() => String")
            .and_then(|_| formats::percent_decode(s, "decode_uri_component").map(Value::string)),
        "encode_uri" => {
            no_args(args, "encode_uri() => String").map(|_| Value::string(formats::encode_uri(s)))
        }
        "decode_uri" => no_args(args, "decode_uri() => String")
            .and_then(|_| formats::percent_decode(s, "decode_uri").map(Value::string)),
        "encode_html_entities" => no_args(args, "encode_html_entities() => String")
            .map(|_| Value::string(html_escape::encode_text(s).into_owned())),
        "decode_html_entities" => no_args(args, "decode_html_entities() => String")
            .map(|_| Value::string(html_escape::decode_html_entities(s).into_owned())),
        "to_int" | "to_float" | "abs" | "ceil" | "floor" | "round" | "pow" | "sin" | "cos"
        | "tan" | "sqrt" | "precision" => {
            let n = match parse_num(s) {
                Some(Num::I(i)) => Value::int(i),
                Some(Num::F(f)) => Value::float(f),
                None => {
                    return Some(Err(error(format!(
                        "[{name}] the string must be of numeric type in order to use this method"
                    ))));
                }
            };
            return number::call(&n, name, args);
        }
        _ => return None,
    };
    Some(r)
}

pub(super) fn is_email(s: &str) -> bool {
    EMAIL.is_match(s)
}

fn one_str<'a>(args: &'a [Value], sig: &str) -> Result<&'a str, Fault> {
    arity(args, 1, 1, sig)?;
    str_arg(args, 0, sig)
}

fn two_str<'a>(args: &'a [Value], sig: &str) -> Result<(&'a str, &'a str), Fault> {
    arity(args, 2, 2, sig)?;
    Ok((str_arg(args, 0, sig)?, str_arg(args, 1, sig)?))
}

/// The compiled regex of the method's one argument, once the turn's budget allows a search.
fn with_regex(rt: &mut dyn Runtime, args: &[Value], sig: &str) -> Result<Arc<Regex>, Fault> {
    let pat = one_str(args, sig)?;
    rt.check_budget()?;
    rt.regex(pat)
}

fn replace_regex(rt: &mut dyn Runtime, s: &str, args: &[Value]) -> Result<Value, Fault> {
    let (pat, by) = two_str(
        args,
        "replace_regex(regex: String, replace_by: String) => String",
    )?;
    rt.check_budget()?;
    let re = rt.regex(pat)?;
    // What `Regex::replace_all` does, with the size checked before each expansion: a `$n`
    // reference expands to at most the whole match.
    let refs = by.bytes().filter(|&b| b == b'$').count();
    let mut out = String::new();
    let mut last = 0;
    for (i, caps) in re.captures_iter(s).enumerate() {
        checkpoint(rt, i)?;
        let Some(m) = caps.get(0) else { continue };
        let most = by.len().saturating_add(refs.saturating_mul(m.len()));
        let after = out.len() + (m.start() - last);
        limits::text("replace_regex", after.saturating_add(most))?;
        out.push_str(&s[last..m.start()]);
        caps.expand(by, &mut out);
        last = m.end();
    }
    limits::text("replace_regex", out.len() + (s.len() - last))?;
    out.push_str(&s[last..]);
    Ok(Value::string(out))
}

/// The pieces found by `match`/`match_regex`: an Array, or Null when there is none.
fn found_array<'a>(
    rt: &mut dyn Runtime,
    method: &str,
    found: impl Iterator<Item = &'a str>,
) -> Result<Value, Fault> {
    let mut out = Vec::new();
    for (i, m) in found.enumerate() {
        checkpoint(rt, i)?;
        if out.len() == limits::MAX_ITEMS {
            return Err(limits::too_large(method));
        }
        out.push(Value::string(m));
    }
    Ok(if out.is_empty() {
        Value::null()
    } else {
        Value::array(out)
    })
}

/// Normalise `slice(start[, end])` over a sequence of `len` items (strings count scalars).
/// Negative values count from the end.
pub(super) fn slice_bounds(
    len: usize,
    args: &[Value],
    sig: &str,
    what: &str,
) -> Result<(usize, usize), Fault> {
    arity(args, 1, 2, sig)?;
    let len = len as i64;
    let start = int_arg(args, 0, sig)?;
    let end = match args.get(1) {
        Some(v) => v.as_int().ok_or_else(|| usage(sig))?,
        None => len,
    };
    let start = if start < 0 { len + start } else { start };
    let end = if end < 0 { len + end } else { end };
    let inferior = || error(format!("args need to be inferior to the {what} length"));
    if start < 0 || start >= len {
        return Err(inferior());
    }
    if end < start {
        return Err(error("end need to be superior to start"));
    }
    if end > len {
        return Err(inferior());
    }
    Ok((start as usize, end as usize))
}

fn slice(s: &str, args: &[Value]) -> Result<Value, Fault> {
    let sig = "slice(start: Integer, end: Optional<Integer>) => String";
    let count = s.chars().count();
    let (a, b) = slice_bounds(count, args, sig, "string")?;
    Ok(Value::string(
        s.chars().skip(a).take(b - a).collect::<String>(),
    ))
}
