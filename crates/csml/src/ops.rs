//! Operators on values (spec §3.5–3.7): truthiness, comparison, strict equality, arithmetic,
//! `match`.
//!
//! Choices where the spec leaves room:
//! * Strict (nested) equality is per kind: `[1] == [1.0]` is false, like `[1] == ["1"]`.
//! * Arithmetic results keep the secure flag of either operand (spec §3.12 Decision);
//!   comparison, `&&`, `||` and `match` give plain Bools (comparisons are an allowed use).
//! * `%` by `0.0` is `[!] Float: Division by zero`, like `/`.

use std::cmp::Ordering;

use crate::ast::BinOp;
use crate::value::{Kind, Value, deep};

/// Truthiness (spec §3.5).
pub fn truthy(v: &Value) -> bool {
    match &v.kind {
        Kind::Bool(b) => *b,
        Kind::Int(i) => *i > 0,
        Kind::Float(f) => f.is_normal(),
        Kind::String(_) | Kind::Array(_) | Kind::Object(_) => true,
        Kind::Null | Kind::Closure(_) => false,
    }
}

/// Strict per-kind equality used for nested elements, `find`, `index_of` (spec §3.6).
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    deep(|| strict_eq_inner(a, b))
}

fn strict_eq_inner(a: &Value, b: &Value) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool(x), Kind::Bool(y)) => x == y,
        (Kind::Int(x), Kind::Int(y)) => x == y,
        (Kind::Float(x), Kind::Float(y)) => x == y,
        (Kind::String(x), Kind::String(y)) => x == y,
        (Kind::Array(x), Kind::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| strict_eq(p, q))
        }
        (Kind::Object(x), Kind::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| strict_eq(p, q)))
        }
        _ => false,
    }
}

/// A number read out of a string with Rust rules: i64 first, then f64.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

/// Parse a string as a number (`"1e3"`, `"inf"` and `"NaN"` accepted, spaces not).
pub(crate) fn parse_num(s: &str) -> Option<Num> {
    // Cheap rejection of ordinary text before asking the parsers.
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.' | b'i' | b'I' | b'n' | b'N'))
    {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::I(i));
    }
    s.parse::<f64>().ok().map(Num::F)
}

fn value_num(v: &Value) -> Option<Num> {
    match &v.kind {
        Kind::Int(i) => Some(Num::I(*i)),
        Kind::Float(f) => Some(Num::F(*f)),
        Kind::String(s) => parse_num(s),
        _ => None,
    }
}

/// Two strings compare numerically only when one is an i64 and the other only an f64.
fn str_numeric_pair(a: &str, b: &str) -> Option<(f64, f64)> {
    match (parse_num(a)?, parse_num(b)?) {
        (Num::I(x), Num::F(y)) => Some((x as f64, y)),
        (Num::F(x), Num::I(y)) => Some((x, y as f64)),
        _ => None,
    }
}

fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        _ => a.f().partial_cmp(&b.f()),
    }
}

/// Top-level `==` with the coercions of spec §3.6.
pub fn loose_eq(l: &Value, r: &Value) -> bool {
    match (&l.kind, &r.kind) {
        (Kind::String(a), Kind::String(b)) => match str_numeric_pair(a, b) {
            Some((x, y)) => x == y,
            None => a == b,
        },
        (Kind::Int(_) | Kind::Float(_) | Kind::String(_), Kind::Int(_) | Kind::Float(_))
        | (Kind::Int(_) | Kind::Float(_), Kind::String(_)) => match (value_num(l), value_num(r)) {
            (Some(a), Some(b)) => num_cmp(a, b) == Some(Ordering::Equal),
            _ => false,
        },
        _ => strict_eq(l, r),
    }
}

/// Ordering of nested elements: per kind, no coercion.
fn strict_cmp(l: &Value, r: &Value) -> Option<Ordering> {
    deep(|| strict_cmp_inner(l, r))
}

fn strict_cmp_inner(l: &Value, r: &Value) -> Option<Ordering> {
    match (&l.kind, &r.kind) {
        (Kind::Int(a), Kind::Int(b)) => Some(a.cmp(b)),
        (Kind::Float(a), Kind::Float(b)) => a.partial_cmp(b),
        (Kind::String(a), Kind::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Kind::Bool(a), Kind::Bool(b)) => Some(a.cmp(b)),
        (Kind::Null, Kind::Null) => Some(Ordering::Equal),
        (Kind::Array(a), Kind::Array(b)) => array_cmp(a, b),
        _ => None,
    }
}

fn array_cmp(a: &[Value], b: &[Value]) -> Option<Ordering> {
    for (x, y) in a.iter().zip(b) {
        match strict_cmp(x, y)? {
            Ordering::Equal => {}
            o => return Some(o),
        }
    }
    Some(a.len().cmp(&b.len()))
}

/// Top-level ordering with the coercions of spec §3.6; `None` makes every ordering false.
fn loose_cmp(l: &Value, r: &Value) -> Option<Ordering> {
    match (&l.kind, &r.kind) {
        (Kind::String(a), Kind::String(b)) => match str_numeric_pair(a, b) {
            Some((x, y)) => x.partial_cmp(&y),
            None => Some(a.as_bytes().cmp(b.as_bytes())),
        },
        (Kind::Int(_) | Kind::Float(_) | Kind::String(_), Kind::Int(_) | Kind::Float(_))
        | (Kind::Int(_) | Kind::Float(_), Kind::String(_)) => num_cmp(value_num(l)?, value_num(r)?),
        _ => strict_cmp(l, r),
    }
}

fn is_button_like(v: &Value) -> bool {
    matches!(v.tag(), "button" | "object")
}

fn accepts(v: &Value) -> Option<&Value> {
    v.as_object().and_then(|m| m.get("accepts"))
}

/// `L match R` (spec §3.7).
pub fn matches(l: &Value, r: &Value) -> bool {
    deep(|| matches_inner(l, r))
}

fn matches_inner(l: &Value, r: &Value) -> bool {
    let (lb, rb) = (is_button_like(l), is_button_like(r));
    if lb && rb {
        return match (accepts(l), accepts(r)) {
            (Some(a), Some(b)) => matches(a, b),
            _ => false,
        };
    }
    if rb {
        return accepts(r).is_some_and(|b| matches(l, b));
    }
    if lb {
        return accepts(l).is_some_and(|a| matches(a, r));
    }
    match (&l.kind, &r.kind) {
        (Kind::Array(_), Kind::Array(_)) => strict_eq(l, r),
        (Kind::Array(a), _) => array_contains(a, r),
        (_, Kind::Array(b)) => array_contains(b, l),
        _ => loose_eq(l, r),
    }
}

fn array_contains(a: &[Value], x: &Value) -> bool {
    match &x.kind {
        Kind::String(s) => a
            .iter()
            .any(|e| e.as_str().is_some_and(|t| t.eq_ignore_ascii_case(s))),
        _ => a.iter().any(|e| strict_eq(e, x)),
    }
}

/// Apply a comparison operator (`== != < <= > >= match !match`); always a Bool.
pub fn compare(op: BinOp, l: &Value, r: &Value) -> bool {
    match op {
        BinOp::Eq => loose_eq(l, r),
        BinOp::Ne => !loose_eq(l, r),
        BinOp::Lt => loose_cmp(l, r) == Some(Ordering::Less),
        BinOp::Le => matches!(loose_cmp(l, r), Some(Ordering::Less | Ordering::Equal)),
        BinOp::Gt => loose_cmp(l, r) == Some(Ordering::Greater),
        BinOp::Ge => matches!(loose_cmp(l, r), Some(Ordering::Greater | Ordering::Equal)),
        BinOp::Match => matches(l, r),
        BinOp::NotMatch => !matches(l, r),
        BinOp::And => truthy(l) && truthy(r),
        BinOp::Or => truthy(l) || truthy(r),
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => false,
    }
}

/// Apply a binary operator to two evaluated operands. `&&`/`||` included (both operands are
/// always evaluated). The error is the reference's reason text, e.g.
/// `illegal operation: PrimitiveString + PrimitiveInt`.
pub fn binary(op: BinOp, l: &Value, r: &Value) -> Result<Value, String> {
    match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
            let mut v = arith(op, l, r)?;
            v.secure = l.secure || r.secure;
            Ok(v)
        }
        _ => Ok(Value::bool(compare(op, l, r))),
    }
}

fn illegal(op: BinOp, l: &Value, r: &Value) -> String {
    format!(
        "illegal operation: {} {} {}",
        l.primitive_name(),
        op.symbol(),
        r.primitive_name()
    )
}

fn overflow(op: BinOp, l: &Value, r: &Value) -> String {
    format!(
        "overflowing operation: {} {} {}",
        l.primitive_name(),
        op.symbol(),
        r.primitive_name()
    )
}

fn arith(op: BinOp, l: &Value, r: &Value) -> Result<Value, String> {
    match (&l.kind, &r.kind) {
        (Kind::Int(a), Kind::Int(b)) => int_op(op, *a, *b, l, r),
        (Kind::Int(_) | Kind::Float(_), Kind::Int(_) | Kind::Float(_)) => float_op(
            op,
            value_num(l).unwrap_or(Num::F(0.0)).f(),
            value_num(r).unwrap_or(Num::F(0.0)).f(),
        ),
        (Kind::String(_), Kind::Int(_) | Kind::Float(_))
        | (Kind::Int(_) | Kind::Float(_), Kind::String(_)) => match (value_num(l), value_num(r)) {
            (Some(a), Some(b)) => num_op(op, a, b, l, r),
            _ => Err(illegal(op, l, r)),
        },
        (Kind::String(a), Kind::String(b)) => {
            let (na, nb) = (parse_num(a), parse_num(b));
            match (na, nb) {
                // Two int-strings divide as integers: `"7"/"2"` is 3 (spec §3.6, replicated).
                (Some(Num::I(x)), Some(Num::I(y))) if op == BinOp::Div => {
                    if y == 0 {
                        return Err("[!] Int: Division by zero".into());
                    }
                    x.checked_div(y)
                        .map(Value::int)
                        .ok_or_else(|| overflow(op, l, r))
                }
                (Some(x), Some(y)) => num_op(op, x, y, l, r),
                (None, _) if op == BinOp::Add => {
                    let mut s = String::with_capacity(a.len() + b.len());
                    s.push_str(a);
                    s.push_str(b);
                    Ok(Value::string(s))
                }
                _ => Err(illegal(op, l, r)),
            }
        }
        _ => Err(illegal(op, l, r)),
    }
}

fn num_op(op: BinOp, a: Num, b: Num, l: &Value, r: &Value) -> Result<Value, String> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => int_op(op, x, y, l, r),
        _ => float_op(op, a.f(), b.f()),
    }
}

fn int_op(op: BinOp, a: i64, b: i64, l: &Value, r: &Value) -> Result<Value, String> {
    let res = match op {
        BinOp::Add => a.checked_add(b),
        BinOp::Sub => a.checked_sub(b),
        BinOp::Mul => a.checked_mul(b),
        BinOp::Div => {
            if b == 0 {
                return Err("[!] Int: Division by zero".into());
            }
            match a.checked_rem(b) {
                None => None,
                Some(0) => a.checked_div(b),
                Some(_) => return Ok(Value::float(a as f64 / b as f64)),
            }
        }
        BinOp::Rem => a.checked_rem(b),
        _ => None,
    };
    res.map(Value::int).ok_or_else(|| overflow(op, l, r))
}

fn float_op(op: BinOp, a: f64, b: f64) -> Result<Value, String> {
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div | BinOp::Rem if b == 0.0 => return Err("[!] Float: Division by zero".into()),
        BinOp::Div => a / b,
        BinOp::Rem => a % b,
        _ => f64::NAN,
    };
    Ok(Value::float(v))
}
