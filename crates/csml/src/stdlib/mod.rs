//! The standard library (spec §5): methods of every value kind, builtin functions, native and
//! custom components, and the builder objects (HTTP, SMTP, Time, JWT, Crypto, Base64, Hex).
//!
//! The evaluator calls in through [`call_method`] and [`call_builtin`]; what the library needs
//! back from the evaluator (the host, calling closures, variable lookup) it asks through
//! [`Runtime`].

use crate::api::Host;
use crate::value::{Closure, Value};

/// Evaluated call arguments, in source order.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub positional: Vec<Value>,
    pub named: Vec<(String, Value)>,
}

/// How a library call failed. `Error` is non-fatal (the evaluator emits the message and the
/// call yields Null carrying `info.error`); `Fatal` stops the turn. The text is the reason
/// only; the evaluator appends ` at line L, column C at flow [F]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Error(String),
    Fatal(String),
}

/// What the library needs from the evaluator.
pub trait Runtime {
    fn host(&mut self) -> &mut dyn Host;
    /// Call a closure value with positional arguments (map/filter/reduce, ...).
    fn call_closure(&mut self, closure: &Closure, args: Vec<Value>) -> Result<Value, Fault>;
    /// `Exists("name")`: a constant, local or memory with that name exists.
    fn exists(&self, name: &str) -> bool;
    /// A custom component template by name (`Component.Name(...)`).
    fn custom_component(&self, name: &str) -> Option<&serde_json::Value>;
    /// Whether native components are enabled for this bot.
    fn native_components(&self) -> bool;
    /// Current flow and step, for `App()` calls.
    fn position(&self) -> (&str, &str);
}

/// Call method `name` on `recv`. Write methods (spec §3.4 point 5) mutate `recv` in place; the
/// evaluator writes the receiver back to its variable when [`is_write_method`] says so.
pub fn call_method(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: Args,
) -> Result<Value, Fault> {
    let _ = (rt, recv, name, args);
    todo!("call_method")
}

/// Whether `name` on a value like `recv` mutates the receiver.
pub fn is_write_method(recv: &Value, name: &str) -> bool {
    let _ = (recv, name);
    todo!("is_write_method")
}

/// Call builtin or native component `name` (not `Or`, which the evaluator handles because its
/// arguments are evaluated silently). `None` when `name` is neither.
pub fn call_builtin(rt: &mut dyn Runtime, name: &str, args: Args) -> Option<Result<Value, Fault>> {
    let _ = (rt, name, args);
    todo!("call_builtin")
}

/// `Component.Name(args)` with the bot's custom component templates.
pub fn call_custom_component(rt: &mut dyn Runtime, name: &str, args: Args) -> Result<Value, Fault> {
    let _ = (rt, name, args);
    todo!("call_custom_component")
}

/// Builtin functions of spec §5.1 (without `Or`, which the evaluator handles).
pub const BUILTINS: &[&str] = &[
    "OneOf", "Shuffle", "Length", "Find", "Random", "Floor", "UUID", "Time", "Exists", "Object",
    "Debug", "HTTP", "App", "Fn", "SMTP", "JWT", "Crypto", "Base64", "Hex",
];

/// Native components of spec §4.3.
pub const NATIVE_COMPONENTS: &[&str] = &[
    "Text", "Typing", "Wait", "Url", "Image", "Video", "Audio", "File", "Button", "Question",
    "Card", "Carousel",
];

/// Whether `name` is a builtin function (for the linter's unknown-function check).
pub fn is_builtin_name(name: &str) -> bool {
    BUILTINS.contains(&name)
}

/// Whether `name` is a native component.
pub fn is_native_component(name: &str) -> bool {
    NATIVE_COMPONENTS.contains(&name)
}
