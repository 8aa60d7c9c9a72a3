//! The standard library (spec §5): methods of every value kind, builtin functions, native and
//! custom components, and the builder objects (HTTP, SMTP, Time, JWT, Crypto, Base64, Hex).
//!
//! The evaluator calls in through [`call_method`] and [`call_builtin`]; what the library needs
//! back from the evaluator (the host, calling closures, variable lookup) it asks through
//! [`Runtime`].
//!
//! Submodules: `generic` (§5.2), `string` (§5.3), `array` (§5.4), `number` (§5.5), `object`
//! (§5.11), `formats` (YAML/XML/URI/HTML text conversions), `event` (§3.9), `builtins` (§5.1),
//! `components` (§4.3–4.4), `http` (§5.7), `app` (§5.8), `smtp` (§5.9), `time` (§5.6),
//! `crypto` (Crypto, Base64, Hex of §5.10), `jwt` (§5.10); `limits` caps what one call may
//! build; `regexes` compiles and caches regexes under caps.
//!
//! Methods take their arguments in order, positional ones first and then the values of named
//! ones (a method has no parameter names).

mod app;
mod array;
mod builtins;
mod components;
mod crypto;
pub mod event;
mod formats;
mod generic;
mod http;
mod jwt;
mod limits;
mod number;
mod object;
pub(crate) mod regexes;
mod smtp;
mod string;
mod time;

use crate::api::Host;
use crate::value::{Closure, Kind, Value};

pub use components::add_values;
pub use event::{event_value, from_event};

/// Evaluated call arguments, in source order.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub positional: Vec<Value>,
    pub named: Vec<(String, Value)>,
}

impl Args {
    /// Positional arguments only.
    pub fn positional(values: Vec<Value>) -> Self {
        Args {
            positional: values,
            named: Vec::new(),
        }
    }

    /// The value of named argument `name`.
    pub fn named(&self, name: &str) -> Option<&Value> {
        self.named.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Total number of arguments.
    pub fn len(&self) -> usize {
        self.positional.len() + self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every argument value in order: positional ones, then named ones.
    pub fn into_values(self) -> Vec<Value> {
        let mut v = self.positional;
        v.extend(self.named.into_iter().map(|(_, x)| x));
        v
    }
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
    /// Call a closure whose local scope carries over from one call to the next: `map`,
    /// `filter` and `reduce` share one closure scope across their iterations (spec §5.4).
    /// `scope` holds the locals the previous iteration left (empty at first) and should be
    /// replaced by the locals this call leaves. The default ignores `scope`.
    fn call_closure_scoped(
        &mut self,
        closure: &Closure,
        args: Vec<Value>,
        scope: &mut crate::value::Map,
    ) -> Result<Value, Fault> {
        let _ = scope;
        self.call_closure(closure, args)
    }
    /// `Exists("name")`: a constant, local or memory with that name exists.
    fn exists(&self, name: &str) -> bool;
    /// A custom component template by name (`Component.Name(...)`).
    fn custom_component(&self, name: &str) -> Option<&serde_json::Value>;
    /// Whether native components are enabled for this bot.
    fn native_components(&self) -> bool;
    /// Current flow and step, for `App()` calls.
    fn position(&self) -> (&str, &str);
    /// Extra `info` entries for the Null that the `Fault::Error` about to be returned yields,
    /// besides `error`: a failed `HTTP(...).send()` reports `status`, `headers` and `body`
    /// this way (spec §5.7). The default drops them.
    fn error_info(&mut self, info: crate::value::Map) {
        let _ = info;
    }
    /// Whether the turn may go on: `Err(Fault::Fatal)` once one of its budgets is spent or its
    /// deadline has passed. The library calls it before every host call (HTTP, App, SMTP),
    /// before every regex search and while walking many matches, so neither starts past the
    /// deadline. The default always allows.
    fn check_budget(&mut self) -> Result<(), Fault> {
        Ok(())
    }
    /// The compiled regex for `pattern` (see [`regexes`] for the caps and caches); a bad or
    /// over-cap pattern is a non-fatal `invalid regex: ...` error. The default uses the
    /// per-thread cache only; the evaluator adds its per-turn cache.
    fn regex(&mut self, pattern: &str) -> Result<std::sync::Arc<regex::Regex>, Fault> {
        regexes::compile(None, pattern).map_err(Fault::Error)
    }
}

/// A method of one family: `None` when the family has no method of that name.
pub(crate) type MethodResult = Option<Result<Value, Fault>>;

pub(crate) fn error(msg: impl Into<String>) -> Fault {
    Fault::Error(msg.into())
}

pub(crate) fn usage(sig: &str) -> Fault {
    Fault::Error(format!("usage: {sig}"))
}

/// Check that `args` has between `min` and `max` values, else `usage: <sig>`.
pub(crate) fn arity(args: &[Value], min: usize, max: usize, sig: &str) -> Result<(), Fault> {
    if args.len() < min || args.len() > max {
        Err(usage(sig))
    } else {
        Ok(())
    }
}

/// The string argument at `i`, else `usage: <sig>`.
pub(crate) fn str_arg<'a>(args: &'a [Value], i: usize, sig: &str) -> Result<&'a str, Fault> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| usage(sig))
}

/// The Int argument at `i`, else `usage: <sig>`.
pub(crate) fn int_arg(args: &[Value], i: usize, sig: &str) -> Result<i64, Fault> {
    args.get(i)
        .and_then(Value::as_int)
        .ok_or_else(|| usage(sig))
}

pub(crate) fn not_a_method(name: &str, recv: &Value) -> Fault {
    error(format!("[{name}] is not a method of {}", recv.type_name()))
}

/// Which method table a receiver uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Event,
    Time,
    Smtp,
    Jwt,
    Crypto,
    Codec,
    Http,
    Plain,
}

impl Family {
    fn of(v: &Value) -> Family {
        // Builder and event tags only mean something on objects (a tag restored from memory
        // could sit on any kind).
        if !matches!(v.kind, Kind::Object(_)) {
            return Family::Plain;
        }
        match v.tag.as_deref() {
            None => Family::Plain,
            Some("event") => Family::Event,
            Some("time") => Family::Time,
            Some("smtp") => Family::Smtp,
            Some("jwt") => Family::Jwt,
            Some("crypto") => Family::Crypto,
            Some("base64" | "hex") => Family::Codec,
            Some("http") => Family::Http,
            Some(_) => Family::Plain,
        }
    }
}

/// Call method `name` on `recv`. Write methods (spec §3.4 point 5) mutate `recv` in place; the
/// evaluator writes the receiver back to its variable when [`is_write_method`] says so.
pub fn call_method(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: Args,
) -> Result<Value, Fault> {
    let args = args.into_values();
    let own = match Family::of(recv) {
        Family::Event => return event::call(rt, recv, name, &args),
        Family::Time => time::call(rt, recv, name, &args),
        Family::Smtp => smtp::call(rt, recv, name, &args),
        Family::Jwt => jwt::call(rt, recv, name, &args),
        Family::Crypto => crypto::call_crypto(recv, name, &args),
        Family::Codec => crypto::call_codec(recv, name, &args),
        Family::Http => match http::call(rt, recv, name, &args) {
            Some(r) => return r,
            None => return plain_method(rt, recv, name, &args),
        },
        Family::Plain => return plain_method(rt, recv, name, &args),
    };
    own.unwrap_or_else(|| Err(not_a_method(name, recv)))
}

/// Methods of the value's kind, then the generic ones.
pub(crate) fn plain_method(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> Result<Value, Fault> {
    let r = match &recv.kind {
        Kind::String(_) => string::call(rt, recv, name, args),
        Kind::Int(_) | Kind::Float(_) => number::call(recv, name, args),
        Kind::Array(_) => array::call(rt, recv, name, args),
        Kind::Object(_) => object::call(recv, name, args),
        _ => None,
    };
    r.or_else(|| generic::call(recv, name, args))
        .unwrap_or_else(|| Err(not_a_method(name, recv)))
}

/// Whether `name` on a value like `recv` mutates the receiver.
///
/// HTTP `put(body)`/`post(body)` do set `body` on the receiver in place (the reference's
/// builder quirk) but are not write methods: the change lasts for the turn only and a
/// remembered builder keeps the value of its `remember`, as the reference answers.
pub fn is_write_method(recv: &Value, name: &str) -> bool {
    match Family::of(recv) {
        Family::Time => matches!(name, "at" | "add" | "sub" | "with_timezone" | "unix"),
        Family::Event | Family::Smtp | Family::Jwt | Family::Crypto | Family::Codec => false,
        Family::Http | Family::Plain => match recv.kind {
            Kind::Array(_) => matches!(name, "push" | "pop" | "insert_at" | "remove_at"),
            Kind::Object(_) => matches!(name, "insert" | "assign" | "remove" | "clear_values"),
            _ => false,
        },
    }
}

/// Call builtin or native component `name` (not `Or`, which the evaluator handles because its
/// arguments are evaluated silently). `None` when `name` is neither.
pub fn call_builtin(rt: &mut dyn Runtime, name: &str, args: Args) -> Option<Result<Value, Fault>> {
    if is_native_component(name) && rt.native_components() {
        return Some(components::call_native(name, args));
    }
    builtins::call(rt, name, args)
}

/// `Component.Name(args)` with the bot's custom component templates.
pub fn call_custom_component(rt: &mut dyn Runtime, name: &str, args: Args) -> Result<Value, Fault> {
    components::call_custom(rt, name, args)
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

/// A uniformly random index below `n` (`n > 0`) from the host's generator.
pub(crate) fn random_index(rt: &mut dyn Runtime, n: usize) -> usize {
    (rt.host().random_u64() % n as u64) as usize
}

/// A random Float in [0, 1) from the host's generator.
pub(crate) fn random_float(rt: &mut dyn Runtime) -> f64 {
    (rt.host().random_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A shuffled copy of `items` (Fisher–Yates with the host's generator).
pub(crate) fn shuffled(rt: &mut dyn Runtime, items: &[Value]) -> Vec<Value> {
    let mut v = items.to_vec();
    for i in (1..v.len()).rev() {
        let j = random_index(rt, i + 1);
        v.swap(i, j);
    }
    v
}
