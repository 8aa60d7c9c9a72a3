//! Object methods (spec §5.11), for plain objects, components and HTTP builders. `insert`,
//! `assign`, `remove` and `clear_values` are write methods. Removing a key keeps the order of
//! the others.

use super::{MethodResult, arity, formats, str_arg, usage};
use crate::value::{Kind, Value};

pub(super) fn call(recv: &mut Value, name: &str, args: &[Value]) -> MethodResult {
    let Kind::Object(map) = &mut recv.kind else {
        return None;
    };
    let none = |sig: &str| arity(args, 0, 0, sig);
    let key = |sig: &str| arity(args, 1, 1, sig).and_then(|_| str_arg(args, 0, sig));
    let r =
        match name {
            "keys" => none("keys() => array")
                .map(|_| Value::array(map.keys().map(|k| Value::string(k.as_str())).collect())),
            "values" => {
                none("values() => array").map(|_| Value::array(map.values().cloned().collect()))
            }
            "length" => none("length() => int").map(|_| Value::int(map.len() as i64)),
            "is_empty" => none("is_empty() => boolean").map(|_| Value::bool(map.is_empty())),
            "contains" => {
                key("contains(key: string) => boolean").map(|k| Value::bool(map.contains_key(k)))
            }
            "get" => key("get(key: string) => primitive")
                .map(|k| map.get(k).cloned().unwrap_or_default()),
            "insert" => {
                let sig = "insert(key: string, value) => null";
                arity(args, 2, 2, sig)
                    .and_then(|_| str_arg(args, 0, sig))
                    .map(|k| {
                        map.insert(k.to_string(), args[1].clone());
                        Value::null()
                    })
            }
            "assign" => {
                let sig = "assign(other: object) => null";
                arity(args, 1, 1, sig).and_then(|_| match &args[0].kind {
                    Kind::Object(other) => {
                        for (k, v) in other.iter() {
                            map.insert(k.clone(), v.clone());
                        }
                        Ok(Value::null())
                    }
                    _ => Err(usage(sig)),
                })
            }
            "remove" => key("remove(key: string) => primitive")
                .map(|k| map.shift_remove(k).unwrap_or_default()),
            "clear_values" => none("clear_values() => null").map(|_| {
                for v in map.values_mut() {
                    *v = Value::null();
                }
                Value::null()
            }),
            "to_yaml" => none("to_yaml() => string")
                .and_then(|_| formats::check_depth(map, "to_yaml"))
                .map(|_| Value::string(formats::to_yaml(map))),
            "to_xml" => none("to_xml() => string")
                .and_then(|_| formats::check_depth(map, "to_xml"))
                .map(|_| Value::string(formats::to_xml(map))),
            _ => return None,
        };
    Some(r)
}
