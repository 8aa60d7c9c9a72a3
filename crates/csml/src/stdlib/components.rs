//! Components (spec §4.3–4.4): the template engine shared by native and custom components,
//! the native component templates, and the ⊕ ("add") operation.
//!
//! Parameter filling: parameter *i* takes the named argument of its name, else positional
//! argument *i* — but once any argument is named only parameter 0 can be filled positionally
//! (the reference's quirk), so further positional arguments are `to many arguments`. Extra
//! named arguments are copied into the content after the parameters. A `$_get` of a parameter
//! that ends up absent adds nothing. A `$_get` cycle is an error.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value as Json;

use super::{Args, Fault, Runtime, error};
use crate::json::{from_json, intern_tag};
use crate::value::{Kind, Map, Value};

/// One parameter of a template.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    required: bool,
    ty: String,
    default: Vec<Json>,
    add: Vec<Json>,
}

fn parse_template(t: &Json) -> Result<Vec<Param>, Fault> {
    let bad = || error("invalid component template: expecting {\"params\": [{name: {...}}]}");
    let obj = t.as_object().ok_or_else(bad)?;
    // An object without `params` is a component with no parameters (the reference renders
    // `{"Button": {}}` as empty content); a `params` that is not a list is still refused.
    let list = match obj.get("params") {
        None => return Ok(Vec::new()),
        Some(p) => p.as_array().ok_or_else(bad)?,
    };
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let obj = p.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
        let (name, spec) = obj.iter().next().ok_or_else(bad)?;
        let ops = |k: &str| {
            spec.get(k)
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
        };
        out.push(Param {
            name: name.clone(),
            required: spec
                .get("required")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            ty: spec
                .get("type")
                .and_then(Json::as_str)
                .unwrap_or("Null")
                .to_string(),
            default: ops("default_value"),
            add: ops("add_value"),
        });
    }
    Ok(out)
}

/// The native components' templates (spec §4.3 table).
const NATIVE_TEMPLATES: &[(&str, &str)] = &[
    (
        "Text",
        r#"{"params":[{"text":{"required":true,"type":"String"}}]}"#,
    ),
    (
        "Typing",
        r#"{"params":[{"duration":{"required":true,"type":"Number"}}]}"#,
    ),
    (
        "Wait",
        r#"{"params":[{"duration":{"required":true,"type":"Number"}}]}"#,
    ),
    (
        "Url",
        r#"{"params":[{"url":{"required":true,"type":"String"}},
            {"text":{"type":"String","default_value":[{"$_get":"url"}]}},
            {"title":{"type":"String","default_value":[{"$_get":"url"}]}}]}"#,
    ),
    (
        "Image",
        r#"{"params":[{"url":{"required":true,"type":"String"}}]}"#,
    ),
    (
        "Video",
        r#"{"params":[{"url":{"required":true,"type":"String"}}]}"#,
    ),
    (
        "Audio",
        r#"{"params":[{"url":{"required":true,"type":"String"}}]}"#,
    ),
    (
        "File",
        r#"{"params":[{"url":{"required":true,"type":"String"}}]}"#,
    ),
    (
        "Button",
        r#"{"params":[{"title":{"required":true,"type":"String"}},
            {"payload":{"type":"String","default_value":[{"$_get":"title"}]}},
            {"accepts":{"type":"Array","add_value":[{"$_get":"title"},{"$_get":"payload"}]}}]}"#,
    ),
    (
        "Question",
        r#"{"params":[{"title":{"type":"String"}},{"buttons":{"required":true,"type":"Array"}}]}"#,
    ),
    (
        "Card",
        r#"{"params":[{"title":{"required":true,"type":"String"}},{"buttons":{"type":"Array"}}]}"#,
    ),
    (
        "Carousel",
        r#"{"params":[{"cards":{"required":true,"type":"Array"}}]}"#,
    ),
];

fn native_templates() -> &'static HashMap<&'static str, Vec<Param>> {
    static T: OnceLock<HashMap<&'static str, Vec<Param>>> = OnceLock::new();
    T.get_or_init(|| {
        NATIVE_TEMPLATES
            .iter()
            .map(|(name, src)| {
                let json: Json = serde_json::from_str(src).expect("native template is valid JSON");
                (
                    *name,
                    parse_template(&json).expect("native template is well-formed"),
                )
            })
            .collect()
    })
}

/// A native component call (`Text(...)`, `Button(...)`, …).
pub(super) fn call_native(name: &str, args: Args) -> Result<Value, Fault> {
    let Some(params) = native_templates().get(name) else {
        return Err(error(format!("Unknown builtin [{name}]")));
    };
    let mut content = build(params, args)?;
    if name == "Text" {
        let text = content.shift_remove("text").unwrap_or_default();
        return Ok(text.plain().with_tag("text"));
    }
    Ok(Value::object(content).with_tag(intern_tag(&name.to_lowercase())))
}

/// `Component.Name(args)` with the bot's template for `Name`.
pub(super) fn call_custom(rt: &mut dyn Runtime, name: &str, args: Args) -> Result<Value, Fault> {
    let Some(template) = rt.custom_component(name) else {
        return Err(error("function does not exist for component"));
    };
    let params = parse_template(template)?;
    let content = build(&params, args)?;
    Ok(Value::object(content).with_tag(format!("Component.{}", name.to_lowercase())))
}

#[derive(Clone)]
enum Slot {
    Todo,
    Busy,
    Done(Option<Value>),
}

struct Builder<'a> {
    params: &'a [Param],
    supplied: Vec<Option<Value>>,
    slots: Vec<Slot>,
}

fn build(params: &[Param], args: Args) -> Result<Map, Fault> {
    let Args { positional, named } = args;
    let limit = if named.is_empty() {
        params.len()
    } else {
        params.len().min(1)
    };
    if positional.len() > limit {
        return Err(error("to many arguments"));
    }
    let mut positional = positional.into_iter();
    let mut named = named;
    let mut supplied = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let by_name = named
            .iter()
            .position(|(k, _)| *k == p.name)
            .map(|at| named.remove(at).1);
        let by_pos = if i < limit { positional.next() } else { None };
        supplied.push(by_name.or(by_pos));
    }
    let mut b = Builder {
        params,
        supplied,
        slots: vec![Slot::Todo; params.len()],
    };
    let mut out = Map::with_capacity(params.len() + named.len());
    for (i, p) in params.iter().enumerate() {
        if let Some(v) = b.resolve(i)? {
            out.insert(p.name.clone(), v);
        }
    }
    for (k, v) in named {
        out.insert(k, v);
    }
    Ok(out)
}

impl Builder<'_> {
    fn resolve(&mut self, i: usize) -> Result<Option<Value>, Fault> {
        match &self.slots[i] {
            Slot::Done(v) => return Ok(v.clone()),
            Slot::Busy => {
                return Err(error(format!(
                    "circular reference between component parameters at [{}]",
                    self.params[i].name
                )));
            }
            Slot::Todo => {}
        }
        self.slots[i] = Slot::Busy;
        let p = &self.params[i];
        let value = if let Some(arg) = self.supplied[i].take() {
            let add = self.eval(&p.add, &p.ty)?;
            Some(add_values(arg, add)?)
        } else if p.required {
            return Err(error(format!("{} is a required parameter", p.name)));
        } else if p.default.is_empty() && p.add.is_empty() {
            None
        } else {
            let d = self.eval(&p.default, &p.ty)?;
            let a = self.eval(&p.add, &p.ty)?;
            Some(add_values(d, a)?)
        };
        self.slots[i] = Slot::Done(value.clone());
        Ok(value)
    }

    /// Fold ⊕ over `ops`, starting from the empty value of type `ty`.
    fn eval(&mut self, ops: &[Json], ty: &str) -> Result<Value, Fault> {
        let mut acc = empty_of(ty);
        for op in ops {
            if let Some(target) = op.get("$_get").and_then(Json::as_str) {
                let found = self.params.iter().position(|p| p.name == target);
                if let Some(v) = found.map(|j| self.resolve(j)).transpose()?.flatten() {
                    acc = add_values(acc, v)?;
                }
            } else if let Some(set) = op.get("$_set") {
                acc = add_values(acc, from_json(set))?;
            }
        }
        Ok(acc)
    }
}

fn empty_of(ty: &str) -> Value {
    match ty {
        "String" => Value::string(""),
        "Number" => Value::int(0),
        "Array" => Value::array(Vec::new()),
        "Object" => Value::object(Map::new()),
        "Bool" | "Boolean" => Value::bool(false),
        _ => Value::null(),
    }
}

/// The type names of the template vocabulary, used in ⊕ errors.
fn type_word(v: &Value) -> &'static str {
    match v.kind {
        Kind::Null => "Null",
        Kind::Bool(_) => "Bool",
        Kind::Int(_) | Kind::Float(_) => "Number",
        Kind::String(_) => "String",
        Kind::Array(_) => "Array",
        Kind::Object(_) => "Object",
        Kind::Closure(_) => "Closure",
    }
}

/// The template "add" operation ⊕ (spec §4.4).
pub fn add_values(l: Value, r: Value) -> Result<Value, Fault> {
    let type_error = |l: &Value, r: &Value| {
        error(format!(
            "Type Error expecting {} type but {} type was found",
            type_word(r),
            type_word(l)
        ))
    };
    Ok(match (l.kind, r.kind) {
        (Kind::Null, Kind::Null) => Value::null(),
        (Kind::Bool(a), Kind::Bool(b)) => Value::bool(a || b),
        (Kind::Int(a), Kind::Int(b)) => Value::int(
            a.checked_add(b)
                .ok_or_else(|| error("overflowing operation: PrimitiveInt + PrimitiveInt"))?,
        ),
        (Kind::Int(a), Kind::Float(b)) => Value::float(a as f64 + b),
        (Kind::Float(a), Kind::Int(b)) => Value::float(a + b as f64),
        (Kind::Float(a), Kind::Float(b)) => Value::float(a + b),
        (Kind::String(mut a), Kind::String(b)) => {
            a.push_str(&b);
            Value::string(a)
        }
        (Kind::Array(mut a), Kind::Array(b)) => {
            a.extend(b);
            Value::array(a)
        }
        (Kind::Object(mut a), Kind::Object(b)) => {
            a.extend(*b);
            Value::from_kind(Kind::Object(a))
        }
        // The string joins the array on its own side: `"x" ⊕ [a]` is `["x", a]`.
        (Kind::String(s), Kind::Array(a)) => {
            let mut out = Vec::with_capacity(a.len() + 1);
            out.push(Value::string(s));
            out.extend(a);
            Value::array(out)
        }
        (Kind::Array(mut a), Kind::String(s)) => {
            a.push(Value::string(s));
            Value::array(a)
        }
        (lk, rk) => {
            return Err(type_error(&Value::from_kind(lk), &Value::from_kind(rk)));
        }
    })
}
