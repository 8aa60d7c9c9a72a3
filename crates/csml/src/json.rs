//! Values ↔ JSON: string forms (spec §3.8), `say` messages (§4.1), nested component wrapping
//! (§4.2), and the memory format of the test protocol.

use crate::api::Message;
use crate::value::Value;
use serde_json::Value as Json;

/// The string form used by interpolation, `to_string()`, `join` and `Debug` (spec §3.8).
pub fn to_display(v: &Value) -> String {
    let _ = v;
    todo!("to_display")
}

/// JSON of a value, wrapping nested non-plain-tagged members (spec §4.2).
pub fn to_json(v: &Value) -> Json {
    let _ = v;
    todo!("to_json")
}

/// A plain JSON value as a CSML value (objects keep key order).
pub fn from_json(j: &Json) -> Value {
    let _ = j;
    todo!("from_json")
}

/// The message `say v` emits (spec §4.1).
pub fn say_message(v: &Value) -> Message {
    let _ = v;
    todo!("say_message")
}

/// A value in the memory format: plain JSON for plain values, `{"_content", "_content_type"}`
/// for values with a non-plain tag (closures keep their captured variables).
pub fn to_memory(v: &Value) -> Json {
    let _ = v;
    todo!("to_memory")
}

/// Inverse of [`to_memory`].
pub fn from_memory(j: &Json) -> Value {
    let _ = j;
    todo!("from_memory")
}
