//! Runtime values (spec §3.1): a kind, a tag (the reference's `content_type`), a secure flag and
//! an info map. Objects keep insertion order.

use indexmap::IndexMap;
use std::borrow::Cow;
use std::sync::Arc;

use crate::ast::ClosureDef;

pub type Map = IndexMap<String, Value>;

#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Box<Map>),
    Closure(Arc<Closure>),
}

/// A closure value: its definition plus the variables it captured when it was stored or
/// evaluated (spec §3.13), and the flow it was written in (for constants and error positions).
#[derive(Debug, Clone)]
pub struct Closure {
    pub def: Arc<ClosureDef>,
    pub captured: Map,
    pub flow: String,
}

#[derive(Debug)]
pub struct Value {
    pub kind: Kind,
    /// `None` means the kind's default tag (see [`Value::tag`]).
    pub tag: Option<Cow<'static, str>>,
    pub secure: bool,
    /// Side metadata (`error`, HTTP `status`/`headers`/`body`, ...); not part of equality or output.
    pub info: Option<Box<Map>>,
}

impl Value {
    pub const fn from_kind(kind: Kind) -> Self {
        Value {
            kind,
            tag: None,
            secure: false,
            info: None,
        }
    }
    pub const fn null() -> Self {
        Value::from_kind(Kind::Null)
    }
    pub const fn bool(b: bool) -> Self {
        Value::from_kind(Kind::Bool(b))
    }
    pub const fn int(i: i64) -> Self {
        Value::from_kind(Kind::Int(i))
    }
    pub const fn float(f: f64) -> Self {
        Value::from_kind(Kind::Float(f))
    }
    pub fn string(s: impl Into<String>) -> Self {
        Value::from_kind(Kind::String(s.into()))
    }
    pub fn array(items: Vec<Value>) -> Self {
        Value::from_kind(Kind::Array(items))
    }
    pub fn object(map: Map) -> Self {
        Value::from_kind(Kind::Object(Box::new(map)))
    }

    /// Null carrying `info.error = message`: what a failed read or method yields, so that
    /// `Or()` and `is_error()` can see the failure.
    pub fn error_null(message: impl Into<String>) -> Self {
        let mut v = Value::null();
        v.set_info("error", Value::string(message));
        v
    }

    pub fn with_tag(mut self, tag: impl Into<Cow<'static, str>>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// The kind's default tag name (spec §3.1 table).
    pub fn kind_tag(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "int",
            Kind::Float(_) => "float",
            Kind::String(_) => "string",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
            Kind::Closure(_) => "closure",
        }
    }

    /// The value's tag: its explicit tag, or its kind's default.
    pub fn tag(&self) -> &str {
        self.tag.as_deref().unwrap_or_else(|| self.kind_tag())
    }

    /// The reference's primitive type name, used in operator errors (`PrimitiveInt`, ...).
    pub fn primitive_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "PrimitiveNull",
            Kind::Bool(_) => "PrimitiveBoolean",
            Kind::Int(_) => "PrimitiveInt",
            Kind::Float(_) => "PrimitiveFloat",
            Kind::String(_) => "PrimitiveString",
            Kind::Array(_) => "PrimitiveArray",
            Kind::Object(_) => "PrimitiveObject",
            Kind::Closure(_) => "PrimitiveClosure",
        }
    }

    /// The short type name used in method errors (`[m] is not a method of String`).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "Null",
            Kind::Bool(_) => "Boolean",
            Kind::Int(_) => "Int",
            Kind::Float(_) => "Float",
            Kind::String(_) => "String",
            Kind::Array(_) => "Array",
            Kind::Object(_) => "Object",
            Kind::Closure(_) => "Closure",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn info_get(&self, key: &str) -> Option<&Value> {
        self.info.as_ref().and_then(|m| m.get(key))
    }

    pub fn set_info(&mut self, key: &str, value: Value) {
        self.info
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
    }

    /// Whether this value came out of a failed operation (`info.error` present).
    pub fn is_error(&self) -> bool {
        self.info_get("error").is_some()
    }
}

/// Tags that are plain kind names: values with any other tag are "component-like" and get
/// wrapped as `{"content_type", "content"}` when nested in JSON (spec §4.2).
pub const PLAIN_TAGS: &[&str] = &[
    "closure", "object", "array", "text", "string", "int", "float", "boolean", "null",
];

/// Whether `tag` is one of [`PLAIN_TAGS`].
pub fn is_plain_tag(tag: &str) -> bool {
    PLAIN_TAGS.contains(&tag)
}

impl Value {
    /// The same value with its secure flag set to `secure`.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the value's tag is a plain kind tag (see [`PLAIN_TAGS`]).
    pub fn has_plain_tag(&self) -> bool {
        match &self.tag {
            None => true,
            Some(t) => is_plain_tag(t),
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// Int or Float as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match &self.kind {
            Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match &mut self.kind {
            Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The value without tag, secure flag or info: what an operator result or a plain copy of
    /// the data looks like.
    pub fn plain(self) -> Self {
        Value::from_kind(self.kind)
    }

    /// How many arrays/objects deep this value nests (a scalar is 0). Clone, equality, the
    /// string form and the memory writer handle any depth; dropping a value or a
    /// `serde_json` tree is recursive, so callers that let scripts build values may want to
    /// cap nesting (a few thousand levels are safe even on 2 MiB debug threads).
    pub fn depth(&self) -> usize {
        deep(|| match &self.kind {
            Kind::Array(a) => 1 + a.iter().map(Value::depth).max().unwrap_or(0),
            Kind::Object(m) => 1 + m.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        })
    }

    /// Whether this value, or anything nested in it, is secure (spec §3.12: a string, array
    /// or object built around a secure value can not be displayed either).
    pub fn contains_secure(&self) -> bool {
        if self.secure {
            return true;
        }
        match &self.kind {
            Kind::Array(a) => a.iter().any(Value::contains_secure),
            Kind::Object(m) => m.values().any(Value::contains_secure),
            _ => false,
        }
    }
}

/// Cloning walks nested values, so it grows the stack when needed (see [`deep`]); scalars
/// (the common case in loops) are copied without that check.
impl Clone for Value {
    #[inline]
    fn clone(&self) -> Self {
        let kind = match (&self.kind, &self.info) {
            (Kind::Null, None) => Kind::Null,
            (Kind::Bool(b), None) => Kind::Bool(*b),
            (Kind::Int(i), None) => Kind::Int(*i),
            (Kind::Float(f), None) => Kind::Float(*f),
            (Kind::String(t), None) => Kind::String(t.clone()),
            _ => return deep(|| self.clone_nested()),
        };
        Value {
            kind,
            tag: self.tag.clone(),
            secure: self.secure,
            info: None,
        }
    }
}

impl Value {
    #[inline(never)]
    fn clone_nested(&self) -> Self {
        Value {
            kind: self.kind.clone(),
            tag: self.tag.clone(),
            secure: self.secure,
            info: self.info.clone(),
        }
    }
}

impl Default for Value {
    fn default() -> Self {
        Value::null()
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::string(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::string(s)
    }
}

/// Run `f` on a fresh stack segment when little stack is left: values can nest as deep as a
/// script makes them, and the recursive walks over them (string form, JSON, equality) must
/// not overflow whatever thread runs the turn.
#[inline]
pub(crate) fn deep<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}
