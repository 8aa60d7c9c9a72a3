//! Methods every value has (spec §5.2): `type_of`, `to_string`, `is_number`, `is_int`,
//! `is_float`, `is_error`, `get_info`.

use super::{Fault, MethodResult, arity, error};
use crate::json::to_display;
use crate::ops::{Num, parse_num};
use crate::value::{Kind, Value};

pub(super) fn call(recv: &Value, name: &str, args: &[Value]) -> MethodResult {
    let r = match name {
        "type_of" => arity(args, 0, 0, "type_of() => String").map(|_| type_of(recv)),
        "to_string" => {
            arity(args, 0, 0, "to_string() => String").map(|_| Value::string(to_display(recv)))
        }
        "is_number" => arity(args, 0, 0, "is_number() => Boolean").map(|_| {
            Value::bool(match &recv.kind {
                Kind::Int(_) | Kind::Float(_) => true,
                Kind::String(s) => parse_num(s).is_some(),
                _ => false,
            })
        }),
        "is_int" => arity(args, 0, 0, "is_int() => Boolean").map(|_| {
            Value::bool(match &recv.kind {
                Kind::Int(_) => true,
                Kind::String(s) => matches!(parse_num(s), Some(Num::I(_))),
                _ => false,
            })
        }),
        "is_float" => arity(args, 0, 0, "is_float() => Boolean").map(|_| {
            Value::bool(match &recv.kind {
                Kind::Float(_) => true,
                Kind::String(s) => s.contains('.') && parse_num(s).is_some(),
                _ => false,
            })
        }),
        "is_error" => {
            arity(args, 0, 0, "is_error() => Boolean").map(|_| Value::bool(recv.is_error()))
        }
        "get_info" => get_info(recv, args),
        _ => return None,
    };
    Some(r)
}

/// `type_of()`: the kind's name, and `"Null"` for null (spec §5.2, replicated).
pub(super) fn type_of(v: &Value) -> Value {
    Value::string(match v.kind {
        Kind::Null => "Null",
        _ => v.kind_tag(),
    })
}

fn get_info(recv: &Value, args: &[Value]) -> Result<Value, Fault> {
    arity(args, 0, 1, "get_info(key: Optional<String>) => Object")?;
    let info = || Value::object(recv.info.as_deref().cloned().unwrap_or_default());
    match args.first() {
        None if recv.info.is_none() => Ok(Value::string("Null")),
        None => Ok(info()),
        Some(Value {
            kind: Kind::String(k),
            ..
        }) => match recv.info_get(k) {
            Some(v) => Ok(v.clone()),
            None => {
                let mut all = info();
                if let Some(m) = all.as_object_mut() {
                    m.insert(
                        "error".into(),
                        Value::string(format!("[{k}] key does not exist")),
                    );
                }
                Ok(all)
            }
        },
        Some(_) => Err(error("usage: get_info(key: Optional<String>) => Object")),
    }
}
