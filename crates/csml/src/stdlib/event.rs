//! The event as scripts see it (spec §3.9).
//!
//! # How the evaluator represents the event
//! * Bare `event` is a String: [`event_string`] (the event's value, secure when the event is).
//! * `event` followed by a path or a method is the **event object** built by [`event_value`]
//!   (or [`from_event`]): an Object holding the event's `content` (its keys are what
//!   `event.text`, `event.payload`, … read), tagged `event`, with the secure flag of the event
//!   and two info entries that scripts never see directly: `event_type` (the content_type) and
//!   `event_value` (the plain value). Build it once per turn and clone it for each access.
//! * Key reads on it are ordinary object key reads (a missing key is the usual non-fatal
//!   `[k] key does not exist`). Method calls go through [`super::call_method`], which sends
//!   tag `event` here: `get_type`, `get_content`, `is_email`, `is_secure`, `match`,
//!   `match_array`; every other method is applied to the String in `content.text`, or failing
//!   that `content.payload` (so `event.keys()` is `[keys] is not a method of String`).
//! * `match` / `match_array` try their arguments in order (Decision of §3.9) and return the
//!   first one that the event's text (or payload) matches under `match` (§3.7), else Null.

use serde_json::Value as Json;

use super::{Fault, Runtime, arity, error, plain_method, string::is_email};
use crate::api::Event;
use crate::json::{from_json, intern_tag};
use crate::ops::matches;
use crate::value::{Kind, Map, Value};

/// The event object of a turn (see the module documentation).
pub fn event_value(content_type: &str, content_value: &str, content: &Json, secure: bool) -> Value {
    let body = match from_json(content) {
        v @ Value {
            kind: Kind::Object(_),
            ..
        } => v,
        _ => Value::object(Map::new()),
    };
    let mut v = body.with_tag("event").with_secure(secure);
    v.set_info("event_type", Value::string(content_type));
    v.set_info("event_value", Value::string(content_value));
    v
}

/// [`event_value`] of an [`Event`].
pub fn from_event(ev: &Event) -> Value {
    event_value(&ev.content_type, &ev.content_value, &ev.content, ev.secure)
}

/// Bare `event`: the event's value as a String, secure when the event is.
pub fn event_string(ev: &Event) -> Value {
    Value::string(ev.content_value.as_str()).with_secure(ev.secure)
}

fn event_type(recv: &Value) -> &str {
    recv.info_get("event_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The String the event passes other methods on to: `content.text`, else `content.payload`.
fn text_of(recv: &Value) -> Option<&Value> {
    let m = recv.as_object()?;
    match m.get("text") {
        Some(
            t @ Value {
                kind: Kind::String(_),
                ..
            },
        ) => Some(t),
        _ => m.get("payload").filter(|p| !p.is_null()),
    }
}

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> Result<Value, Fault> {
    match name {
        "get_type" => {
            arity(args, 0, 0, "get_type() => String")?;
            Ok(Value::string(event_type(recv)))
        }
        "get_content" => {
            arity(args, 0, 0, "get_content() => Object")?;
            let content = Value::from_kind(recv.kind.clone());
            let ty = event_type(recv);
            Ok(if ty.is_empty() {
                content
            } else {
                content.with_tag(intern_tag(ty))
            })
        }
        "is_email" => {
            arity(args, 0, 0, "is_email() => Boolean")?;
            Ok(Value::bool(
                text_of(recv).and_then(Value::as_str).is_some_and(is_email),
            ))
        }
        "is_secure" => {
            arity(args, 0, 0, "is_secure() => Boolean")?;
            Ok(Value::bool(recv.secure))
        }
        "match" => {
            if args.is_empty() {
                return Err(error("usage: match(value, ...) => primitive"));
            }
            Ok(first_match(recv, args))
        }
        "match_array" => {
            arity(args, 1, 1, "match_array(values: Array) => primitive")?;
            match &args[0].kind {
                Kind::Array(items) => Ok(first_match(recv, items)),
                _ => Err(error("usage: match_array(values: Array) => primitive")),
            }
        }
        _ => {
            let mut text = text_of(recv).map(|t| t.clone().plain()).unwrap_or_default();
            plain_method(rt, &mut text, name, args)
        }
    }
}

fn first_match(recv: &Value, candidates: &[Value]) -> Value {
    let Some(subject) = text_of(recv) else {
        return Value::null();
    };
    candidates
        .iter()
        .find(|c| matches(subject, c))
        .cloned()
        .unwrap_or_default()
}
