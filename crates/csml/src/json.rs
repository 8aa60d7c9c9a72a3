//! Values ↔ JSON: string forms (spec §3.8), `say` messages (§4.1), nested component wrapping
//! (§4.2), and the memory format of the test protocol.
//!
//! Serialization goes through [`serde::Serialize`] views of a [`Value`], so a string form or a
//! memory write is produced in one pass without building an intermediate JSON tree.
//!
//! # Memory format
//! * A value with a plain tag (see [`crate::value::PLAIN_TAGS`]) is its plain JSON, nested
//!   component-like members wrapped as `{"content_type": T, "content": …}` (§4.2).
//! * A value with another tag (button, http, time, …) is
//!   `{"_content": <its JSON>, "_content_type": "<tag>"}`.
//! * A closure (at any depth) is
//!   `{"_content_type": "closure", "_content": {"flow": F, "line": L, "column": C,
//!   "captured": {name: <memory format>, …}}}`. A closure's body is syntax, not data, so it is
//!   found again on load from its flow and the position of its `(` (see [`closure_key`]):
//!   the evaluator passes a resolver to [`from_memory_with`] that looks up the
//!   [`ClosureDef`] written at `(flow, line, column)` in the compiled bot. When it cannot be
//!   found (the bot changed), the closure loads as Null carrying an `error` info.
//!
//! On load, `{"_content", "_content_type"}` objects at any depth and nested
//! `{"content_type", "content"}` objects with exactly those two keys and a non-plain tag get
//! their tag back, so a remembered Button (or an array of them) is still a Button.

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

use crate::api::Message;
use crate::ast::{ClosureDef, Pos};
use crate::value::{Closure, Kind, Map, Value, deep, is_plain_tag};

/// The string form used by interpolation, `to_string()`, `join` and `Debug` (spec §3.8).
pub fn to_display(v: &Value) -> String {
    match &v.kind {
        Kind::String(s) => s.clone(),
        Kind::Null | Kind::Closure(_) => "Null".to_string(),
        Kind::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Kind::Int(i) => i.to_string(),
        Kind::Float(f) => float_display(*f),
        Kind::Array(_) | Kind::Object(_) => serde_json::to_string(&Ser {
            v,
            mode: Mode::Json,
            wrap: true,
        })
        .unwrap_or_default(),
    }
}

/// Append the string form of `v` to `out` (interpolation without a temporary for strings).
pub fn push_display(out: &mut String, v: &Value) {
    use std::fmt::Write;
    match &v.kind {
        Kind::String(s) => out.push_str(s),
        Kind::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Kind::Float(f) => {
            let _ = write!(out, "{}", FloatDisplay(*f));
        }
        _ => out.push_str(&to_display(v)),
    }
}

/// Shortest round-trip text, never in exponent notation: Rust's `Display` for f64 does
/// exactly that (`1e21` → `1000000000000000000000`, NaN → `NaN`, infinity → `inf`).
pub fn float_display(f: f64) -> String {
    FloatDisplay(f).to_string()
}

struct FloatDisplay(f64);

impl std::fmt::Display for FloatDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// JSON of a value, wrapping nested non-plain-tagged members (spec §4.2).
pub fn to_json(v: &Value) -> Json {
    serde_json::to_value(Ser {
        v,
        mode: Mode::Json,
        wrap: true,
    })
    .unwrap_or(Json::Null)
}

/// JSON of a value whose direct members are not wrapped (the content of `say [..]`, §4.1).
pub fn to_json_unwrapped(v: &Value) -> Json {
    serde_json::to_value(Ser {
        v,
        mode: Mode::Json,
        wrap: false,
    })
    .unwrap_or(Json::Null)
}

/// A plain JSON value as a CSML value (objects keep key order).
pub fn from_json(j: &Json) -> Value {
    deep(|| from_json_inner(j))
}

fn from_json_inner(j: &Json) -> Value {
    match j {
        Json::Null => Value::null(),
        Json::Bool(b) => Value::bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::int(i),
            None => Value::float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::string(s.as_str()),
        Json::Array(a) => Value::array(a.iter().map(from_json).collect()),
        Json::Object(m) => {
            Value::object(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// The message `say v` emits (spec §4.1).
pub fn say_message(v: &Value) -> Message {
    let text = |t: Json| {
        let mut m = serde_json::Map::with_capacity(1);
        m.insert("text".to_string(), t);
        Message {
            content_type: "text".to_string(),
            content: Json::Object(m),
        }
    };
    match &v.kind {
        Kind::String(s) => text(Json::String(s.clone())),
        Kind::Null => text(Json::Null),
        Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => text(Json::String(to_display(v))),
        Kind::Array(_) => Message {
            content_type: v.tag().to_string(),
            content: to_json_unwrapped(v),
        },
        Kind::Object(_) => Message {
            content_type: v.tag().to_string(),
            content: to_json(v),
        },
        Kind::Closure(_) => Message {
            content_type: "closure".to_string(),
            content: Json::Null,
        },
    }
}

/// A value in the memory format: plain JSON for plain values, `{"_content", "_content_type"}`
/// for values with a non-plain tag (closures keep their captured variables). See the module
/// documentation.
pub fn to_memory(v: &Value) -> Json {
    serde_json::to_value(TopMem(v)).unwrap_or(Json::Null)
}

/// Where a closure's definition is written: its flow and the position of the definition. The
/// memory format stores this key; [`from_memory_with`] asks its resolver for it.
pub fn closure_key(c: &Closure) -> (&str, Pos) {
    (&c.flow, c.def.pos)
}

/// Inverse of [`to_memory`], without a way to find closure definitions: remembered closures
/// load as Null carrying an `error` info. The evaluator uses [`from_memory_with`].
pub fn from_memory(j: &Json) -> Value {
    from_memory_with(j, &mut |_, _| None)
}

/// Inverse of [`to_memory`]; `resolve(flow, pos)` finds the closure definition written at
/// `pos` in `flow` (see [`closure_key`]).
pub fn from_memory_with(
    j: &Json,
    resolve: &mut dyn FnMut(&str, Pos) -> Option<Arc<ClosureDef>>,
) -> Value {
    deep(|| from_memory_inner(j, resolve))
}

fn from_memory_inner(
    j: &Json,
    resolve: &mut dyn FnMut(&str, Pos) -> Option<Arc<ClosureDef>>,
) -> Value {
    match j {
        Json::Array(a) => Value::array(a.iter().map(|e| from_memory_with(e, resolve)).collect()),
        Json::Object(m) => {
            if m.len() == 2 {
                if let (Some(Json::String(t)), Some(c)) =
                    (m.get("_content_type"), m.get("_content"))
                {
                    if t == "closure" {
                        return load_closure(c, resolve);
                    }
                    return retag(from_memory_with(c, resolve), t);
                }
                if let (Some(Json::String(t)), Some(c)) = (m.get("content_type"), m.get("content"))
                    && !is_plain_tag(t)
                {
                    return retag(from_memory_with(c, resolve), t);
                }
            }
            Value::object(
                m.iter()
                    .map(|(k, v)| (k.clone(), from_memory_with(v, resolve)))
                    .collect(),
            )
        }
        _ => from_json(j),
    }
}

fn retag(v: Value, tag: &str) -> Value {
    if tag == v.kind_tag() {
        return v;
    }
    v.with_tag(intern_tag(tag))
}

/// A tag as a `Cow`, borrowing the static name for the tags the library itself creates.
pub fn intern_tag(tag: &str) -> Cow<'static, str> {
    const KNOWN: &[&str] = &[
        "button", "question", "card", "carousel", "url", "image", "video", "audio", "file",
        "typing", "wait", "text", "debug", "http", "smtp", "time", "jwt", "crypto", "base64",
        "hex", "event", "object", "array", "string", "int", "float", "boolean", "null", "closure",
    ];
    match KNOWN.iter().find(|k| **k == tag) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(tag.to_string()),
    }
}

fn load_closure(c: &Json, resolve: &mut dyn FnMut(&str, Pos) -> Option<Arc<ClosureDef>>) -> Value {
    let flow = c.get("flow").and_then(Json::as_str).unwrap_or_default();
    let num = |k: &str| c.get(k).and_then(Json::as_u64).unwrap_or(0) as u32;
    let pos = Pos::new(num("line"), num("column"));
    let Some(def) = resolve(flow, pos) else {
        return Value::error_null("remembered closure no longer exists in the bot");
    };
    let mut captured = Map::new();
    if let Some(Json::Object(m)) = c.get("captured") {
        for (k, v) in m {
            captured.insert(k.clone(), from_memory_with(v, resolve));
        }
    }
    Value::from_kind(Kind::Closure(Arc::new(Closure {
        def,
        captured,
        flow: flow.to_string(),
    })))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Output JSON: closures are `null`.
    Json,
    /// The memory format: closures keep their key and captured variables.
    Memory,
}

/// A value's own JSON (never wrapped itself); `wrap` says whether its direct members get the
/// `{"content_type", "content"}` wrapping when component-like. Deeper members always do.
struct Ser<'a> {
    v: &'a Value,
    mode: Mode,
    wrap: bool,
}

struct Member<'a> {
    v: &'a Value,
    mode: Mode,
    wrap: bool,
}

impl Serialize for Member<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = Ser {
            v: self.v,
            mode: self.mode,
            wrap: true,
        };
        if self.wrap && !self.v.has_plain_tag() {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("content_type", self.v.tag())?;
            m.serialize_entry("content", &inner)?;
            m.end()
        } else {
            inner.serialize(s)
        }
    }
}

impl Serialize for Ser<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        deep(|| self.serialize_inner(s))
    }
}

impl Ser<'_> {
    fn serialize_inner<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.v.kind {
            Kind::Null => s.serialize_unit(),
            Kind::Bool(b) => s.serialize_bool(*b),
            Kind::Int(i) => s.serialize_i64(*i),
            Kind::Float(f) => s.serialize_f64(*f),
            Kind::String(t) => s.serialize_str(t),
            Kind::Closure(c) => match self.mode {
                Mode::Json => s.serialize_unit(),
                Mode::Memory => ClosureMem(c).serialize(s),
            },
            Kind::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for e in a {
                    seq.serialize_element(&Member {
                        v: e,
                        mode: self.mode,
                        wrap: self.wrap,
                    })?;
                }
                seq.end()
            }
            Kind::Object(o) => {
                let mut m = s.serialize_map(Some(o.len()))?;
                for (k, e) in o.iter() {
                    m.serialize_entry(
                        k,
                        &Member {
                            v: e,
                            mode: self.mode,
                            wrap: self.wrap,
                        },
                    )?;
                }
                m.end()
            }
        }
    }
}

/// A value at the top of the memory format.
struct TopMem<'a>(&'a Value);

impl Serialize for TopMem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let inner = Ser {
            v,
            mode: Mode::Memory,
            wrap: true,
        };
        if let Kind::Closure(c) = &v.kind {
            return ClosureMem(c).serialize(s);
        }
        if v.has_plain_tag() {
            return inner.serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("_content", &inner)?;
        m.serialize_entry("_content_type", v.tag())?;
        m.end()
    }
}

struct ClosureMem<'a>(&'a Closure);

impl Serialize for ClosureMem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Body<'a>(&'a Closure);
        struct Captured<'a>(&'a Map);
        impl Serialize for Captured<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, &TopMem(v))?;
                }
                m.end()
            }
        }
        impl Serialize for Body<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (flow, pos) = closure_key(self.0);
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("flow", flow)?;
                m.serialize_entry("line", &pos.line)?;
                m.serialize_entry("column", &pos.column)?;
                m.serialize_entry("captured", &Captured(&self.0.captured))?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("_content", &Body(self.0))?;
        m.serialize_entry("_content_type", "closure")?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn btn(t: &str) -> Value {
        let mut m = Map::new();
        m.insert("title".into(), Value::string(t));
        m.insert("payload".into(), Value::string(t));
        Value::object(m).with_tag("button")
    }

    #[test]
    fn display_forms() {
        assert_eq!(to_display(&Value::float(1.0)), "1");
        assert_eq!(to_display(&Value::float(1.5)), "1.5");
        assert_eq!(to_display(&Value::float(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(to_display(&Value::float(1e21)), "1000000000000000000000");
        assert_eq!(to_display(&Value::float(f64::NAN)), "NaN");
        assert_eq!(to_display(&Value::float(f64::INFINITY)), "inf");
        assert_eq!(to_display(&Value::null()), "Null");
        assert_eq!(to_display(&Value::bool(true)), "true");
        assert_eq!(to_display(&Value::int(-42)), "-42");
        let o = from_json(&json!({"a": {"b": [10, 20]}, "k": "v", "n": null, "f": 1.0}));
        assert_eq!(
            to_display(&o),
            r#"{"a":{"b":[10,20]},"k":"v","n":null,"f":1.0}"#
        );
        let a = Value::array(vec![btn("x")]);
        assert_eq!(
            to_display(&a),
            r#"[{"content_type":"button","content":{"title":"x","payload":"x"}}]"#
        );
    }

    #[test]
    fn say_messages() {
        let m = say_message(&Value::int(42));
        assert_eq!(
            (m.content_type.as_str(), m.content),
            ("text", json!({"text": "42"}))
        );
        assert_eq!(say_message(&Value::null()).content, json!({"text": null}));
        assert_eq!(
            say_message(&Value::float(4.5)).content,
            json!({"text": "4.5"})
        );
        assert_eq!(
            say_message(&Value::bool(true)).content,
            json!({"text": "true"})
        );
        assert_eq!(
            say_message(&Value::string("hi").with_tag("text")).content,
            json!({"text": "hi"})
        );
        let a = say_message(&Value::array(vec![Value::int(1), btn("x")]));
        assert_eq!(a.content_type, "array");
        assert_eq!(a.content, json!([1, {"title": "x", "payload": "x"}]));
        let mut q = Map::new();
        q.insert("buttons".into(), Value::array(vec![btn("a")]));
        let m = say_message(&Value::object(q).with_tag("question"));
        assert_eq!(m.content_type, "question");
        assert_eq!(
            m.content,
            json!({"buttons": [{"content_type": "button", "content": {"title": "a", "payload": "a"}}]})
        );
        let c = say_message(&btn("a"));
        assert_eq!(c.content_type, "button");
    }

    #[test]
    fn memory_round_trip() {
        let plain = from_json(&json!({"a": [1, 2.5, "x", null, true]}));
        assert_eq!(to_memory(&plain), json!({"a": [1, 2.5, "x", null, true]}));
        let b = btn("ok");
        let j = to_memory(&b);
        assert_eq!(
            j,
            json!({"_content": {"title": "ok", "payload": "ok"}, "_content_type": "button"})
        );
        let back = from_memory(&j);
        assert_eq!(back.tag(), "button");
        let arr = Value::array(vec![btn("a")]);
        let back = from_memory(&to_memory(&arr));
        assert_eq!(back.as_array().unwrap()[0].tag(), "button");
        let t = Value::object(Map::new()).with_tag("time");
        assert_eq!(from_memory(&to_memory(&t)).tag(), "time");
    }

    #[test]
    fn closure_memory_round_trip() {
        let def = Arc::new(ClosureDef {
            params: vec!["x".into()],
            body: vec![],
            pos: Pos::new(3, 9),
        });
        let mut captured = Map::new();
        captured.insert("n".into(), Value::int(4));
        captured.insert("b".into(), btn("a"));
        let c = Value::from_kind(Kind::Closure(Arc::new(Closure {
            def: def.clone(),
            captured,
            flow: "main".into(),
        })));
        let j = to_memory(&Value::array(vec![c]));
        assert_eq!(
            j,
            json!([{"_content_type": "closure", "_content": {"flow": "main", "line": 3, "column": 9,
                "captured": {"n": 4, "b": {"_content": {"title": "a", "payload": "a"}, "_content_type": "button"}}}}])
        );
        let mut seen = None;
        let back = from_memory_with(&j, &mut |f, p| {
            seen = Some((f.to_string(), p));
            Some(def.clone())
        });
        assert_eq!(seen, Some(("main".to_string(), Pos::new(3, 9))));
        let Kind::Closure(c) = &back.as_array().unwrap()[0].kind else {
            panic!("not a closure")
        };
        assert_eq!(c.captured["n"].as_int(), Some(4));
        assert_eq!(c.captured["b"].tag(), "button");
        assert!(from_memory(&j).as_array().unwrap()[0].is_error());
        // In output JSON a closure is null.
        assert_eq!(
            to_json(&Value::array(vec![back.as_array().unwrap()[0].clone()])),
            json!([null])
        );
    }
}
