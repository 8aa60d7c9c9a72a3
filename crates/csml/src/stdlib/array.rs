//! Array methods (spec §5.4), including the write methods `push`, `pop`, `insert_at` and
//! `remove_at`, and the closure methods `map`, `filter`, `reduce`.
//!
//! One `map`/`filter`/`reduce` call shares one closure scope across its iterations (spec
//! §5.4) through [`Runtime::call_closure_scoped`].

use super::{
    Fault, MethodResult, Runtime, arity, error, int_arg, limits, random_index, shuffled, str_arg,
    usage,
};
use crate::ops::{strict_eq, truthy};
use crate::value::{Closure, Kind, Map, Value};

/// Upper bound for `init(n)`, so a script can not exhaust memory in one call (below
/// [`limits::MAX_ITEMS`]).
const INIT_LIMIT: i64 = 1_000_000;

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let Kind::Array(items) = &mut recv.kind else {
        return None;
    };
    let none = |sig: &str| arity(args, 0, 0, sig);
    let one = |sig: &str| arity(args, 1, 1, sig);
    let r = match name {
        "length" => none("length() => int").map(|_| Value::int(items.len() as i64)),
        "is_empty" => none("is_empty() => boolean").map(|_| Value::bool(items.is_empty())),
        "push" => one("push(value) => null").map(|_| {
            items.push(args[0].clone());
            Value::null()
        }),
        "pop" => none("pop() => primitive").and_then(|_| {
            items
                .pop()
                .ok_or_else(|| error("[pop] Cannot pop if array is empty"))
        }),
        "insert_at" => {
            let sig = "insert_at(index: int, value) => null";
            arity(args, 2, 2, sig)
                .and_then(|_| int_arg(args, 0, sig))
                .and_then(|i| {
                    let i = checked_index(i, items.len(), true)?;
                    items.insert(i, args[1].clone());
                    Ok(Value::null())
                })
        }
        "remove_at" => {
            let sig = "remove_at(index: int) => primitive";
            one(sig).and_then(|_| int_arg(args, 0, sig)).and_then(|i| {
                // Decision (§5.4): `i == len` is the same error as `i > len`.
                let i = checked_index(i, items.len(), false)?;
                Ok(items.remove(i))
            })
        }
        "index_of" => one("index_of(value) => int").map(|_| {
            Value::int(
                items
                    .iter()
                    .position(|e| strict_eq(e, &args[0]))
                    .map_or(-1, |p| p as i64),
            )
        }),
        "find" => one("find(value) => array").map(|_| {
            Value::array(
                items
                    .iter()
                    .filter(|e| strict_eq(e, &args[0]))
                    .cloned()
                    .collect(),
            )
        }),
        "join" => {
            let sig = "join(separator: string) => string";
            one(sig)
                .and_then(|_| str_arg(args, 0, sig))
                .and_then(|sep| {
                    let seps = sep.len().saturating_mul(items.len().saturating_sub(1));
                    limits::text("join", seps)?;
                    let mut out = String::new();
                    for (i, e) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(sep);
                        }
                        crate::json::push_display(&mut out, e);
                        limits::text("join", out.len())?;
                    }
                    Ok(Value::string(out))
                })
        }
        "slice" => {
            let sig = "slice(start: int, end: Optional<int>) => array";
            super::string::slice_bounds(items.len(), args, sig, "array")
                .map(|(a, b)| Value::array(items[a..b].to_vec()))
        }
        "reverse" => {
            none("reverse() => array").map(|_| Value::array(items.iter().rev().cloned().collect()))
        }
        "append" => {
            let sig = "append(other: array) => array";
            one(sig).and_then(|_| match &args[0].kind {
                Kind::Array(other) => {
                    limits::items("append", items.len() + other.len())?;
                    let mut v = items.clone();
                    v.extend(other.iter().cloned());
                    Ok(Value::array(v))
                }
                _ => Err(usage(sig)),
            })
        }
        "flatten" => none("flatten() => array").and_then(|_| {
            let n = items
                .iter()
                .map(|e| e.as_array().map_or(1, Vec::len))
                .sum::<usize>();
            limits::items("flatten", n)?;
            let mut v = Vec::with_capacity(n);
            for e in items.iter() {
                match &e.kind {
                    Kind::Array(inner) => v.extend(inner.iter().cloned()),
                    _ => v.push(e.clone()),
                }
            }
            Ok(Value::array(v))
        }),
        "shuffle" => none("shuffle() => array").map(|_| Value::array(shuffled(rt, items))),
        "one_of" => none("one_of() => primitive").and_then(|_| {
            if items.is_empty() {
                return Err(error("[one_of] Cannot pick an element from an empty array"));
            }
            Ok(items[random_index(rt, items.len())].clone())
        }),
        "init" => {
            let sig = "init(size: int) => array";
            one(sig).and_then(|_| int_arg(args, 0, sig)).and_then(|n| {
                if !(0..=INIT_LIMIT).contains(&n) {
                    return Err(error(format!(
                        "[init] size must be between 0 and {INIT_LIMIT}"
                    )));
                }
                Ok(Value::array(vec![Value::null(); n as usize]))
            })
        }
        "map" | "filter" => {
            let items = items.clone();
            map_filter(rt, name, items, args)
        }
        "reduce" => {
            let items = items.clone();
            reduce(rt, items, args)
        }
        _ => return None,
    };
    Some(r)
}

/// Validate an index for `insert_at` (`i == len` allowed) or `remove_at`.
fn checked_index(i: i64, len: usize, allow_len: bool) -> Result<usize, Fault> {
    if i < 0 {
        return Err(error("index must be positive. Udage: array[1]"));
    }
    let i = i as usize;
    if i > len || (i == len && !allow_len) {
        return Err(error("index must be lower than or equal to array.length()"));
    }
    Ok(i)
}

fn closure_arg<'a>(v: &'a Value, sig: &str) -> Result<&'a Closure, Fault> {
    match &v.kind {
        Kind::Closure(c) => Ok(c),
        _ => Err(usage(sig)),
    }
}

fn too_many_params(name: &str) -> Fault {
    error(format!(
        "[{name}] the closure takes more parameters than the arguments supplied"
    ))
}

fn map_filter(
    rt: &mut dyn Runtime,
    name: &str,
    items: Vec<Value>,
    args: &[Value],
) -> Result<Value, Fault> {
    let sig = if name == "map" {
        "map(fn: closure) => array"
    } else {
        "filter(fn: closure) => array"
    };
    arity(args, 1, 1, sig)?;
    let f = closure_arg(&args[0], sig)?;
    let nparams = f.def.params.len();
    if nparams > 2 {
        return Err(too_many_params(name));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut scope = Map::new();
    for (i, item) in items.into_iter().enumerate() {
        let mut call_args = vec![item.clone()];
        if nparams >= 2 {
            call_args.push(Value::int(i as i64));
        }
        let r = rt.call_closure_scoped(f, call_args, &mut scope)?;
        if name == "map" {
            out.push(r);
        } else if truthy(&r) {
            out.push(item);
        }
    }
    Ok(Value::array(out))
}

fn reduce(rt: &mut dyn Runtime, items: Vec<Value>, args: &[Value]) -> Result<Value, Fault> {
    let sig = "reduce(init, fn: closure) => primitive";
    arity(args, 2, 2, sig)?;
    let f = closure_arg(&args[1], sig)?;
    let nparams = f.def.params.len();
    if nparams > 3 {
        return Err(too_many_params("reduce"));
    }
    let mut acc = args[0].clone();
    let mut scope = Map::new();
    for (i, item) in items.into_iter().enumerate() {
        let mut call_args = vec![acc, item];
        if nparams >= 3 {
            call_args.push(Value::int(i as i64));
        }
        acc = rt.call_closure_scoped(f, call_args, &mut scope)?;
    }
    Ok(acc)
}
