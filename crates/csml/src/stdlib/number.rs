//! Number methods, Int and Float (spec §5.5). Numeric strings reach these through the string
//! methods of the same names.

use super::{Fault, MethodResult, arity, error, int_arg, usage};
use crate::ops::{Num, parse_num};
use crate::value::{Kind, Value};

/// An Int when `f` is integral and fits, else a Float (`4.sqrt()` → 2).
fn int_if_integral(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        Value::int(f as i64)
    } else {
        Value::float(f)
    }
}

pub(super) fn call(recv: &Value, name: &str, args: &[Value]) -> MethodResult {
    let n = match recv.kind {
        Kind::Int(i) => Num::I(i),
        Kind::Float(f) => Num::F(f),
        _ => return None,
    };
    let none = |sig: &str| arity(args, 0, 0, sig);
    let r = match (name, n) {
        ("abs", Num::I(i)) => none("abs() => Number").and_then(|_| {
            i.checked_abs()
                .map(Value::int)
                .ok_or_else(|| error("overflowing operation: abs"))
        }),
        ("abs", Num::F(f)) => none("abs() => Number").map(|_| Value::float(f.abs())),
        ("floor" | "ceil" | "round", Num::I(i)) => none("floor() => Number").map(|_| Value::int(i)),
        ("floor", Num::F(f)) => none("floor() => Float").map(|_| Value::float(f.floor())),
        ("ceil", Num::F(f)) => none("ceil() => Float").map(|_| Value::float(f.ceil())),
        // `f64::round` goes half away from zero, as the spec requires.
        ("round", Num::F(f)) => none("round() => Float").map(|_| Value::float(f.round())),
        ("pow", _) => pow(n, args),
        ("sqrt" | "sin" | "cos" | "tan", _) => none("sqrt() => Number").map(|_| {
            let x = match n {
                Num::I(i) => i as f64,
                Num::F(f) => f,
            };
            let r = match name {
                "sqrt" => x.sqrt(),
                "sin" => x.sin(),
                "cos" => x.cos(),
                _ => x.tan(),
            };
            match n {
                Num::I(_) => int_if_integral(r),
                Num::F(_) => Value::float(r),
            }
        }),
        ("precision", _) => {
            let sig = "precision(value: Integer) => Float";
            arity(args, 1, 1, sig)
                .and_then(|_| int_arg(args, 0, sig))
                .map(|p| match n {
                    Num::I(i) => Value::int(i),
                    Num::F(f) => {
                        let m = 10f64.powi(p.clamp(-300, 300) as i32);
                        Value::float((f * m).round() / m)
                    }
                })
        }
        ("to_int", Num::I(i)) => none("to_int() => Integer").map(|_| Value::int(i)),
        // `as` truncates toward zero and saturates.
        ("to_int", Num::F(f)) => none("to_int() => Integer").map(|_| Value::int(f as i64)),
        ("to_float", Num::I(i)) => none("to_float() => Float").map(|_| Value::float(i as f64)),
        ("to_float", Num::F(f)) => none("to_float() => Float").map(|_| Value::float(f)),
        _ => return None,
    };
    Some(r)
}

fn pow(n: Num, args: &[Value]) -> Result<Value, Fault> {
    let sig = "pow(exponent: Number) => Number";
    arity(args, 1, 1, sig)?;
    let e = match &args[0].kind {
        Kind::Int(i) => Num::I(*i),
        Kind::Float(f) => Num::F(*f),
        Kind::String(s) => parse_num(s).ok_or_else(|| usage(sig))?,
        _ => return Err(usage(sig)),
    };
    Ok(match (n, e) {
        (Num::I(b), Num::I(x)) => match u32::try_from(x).ok().and_then(|x| b.checked_pow(x)) {
            Some(r) => Value::int(r),
            None => int_if_integral((b as f64).powf(x as f64)),
        },
        (Num::I(b), Num::F(x)) => int_if_integral((b as f64).powf(x)),
        (Num::F(b), Num::I(x)) => Value::float(b.powf(x as f64)),
        (Num::F(b), Num::F(x)) => Value::float(b.powf(x)),
    })
}
