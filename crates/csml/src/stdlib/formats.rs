//! Text formats used by string and object methods: percent-encoding (`encode_uri*`), YAML and
//! XML (`to_json`, `to_yaml`, `to_xml`).
//!
//! Choices: `"…".to_json()` tries XML only when the text starts with `<` (otherwise any plain
//! word would be "XML text"), then YAML, which also reads JSON.
//!
//! XML → value, the shape the reference engine answers: the root element is the single
//! top-level key (`<Item><name>Banana</name></Item>` → `{"Item": {"name": "Banana"}}`), so
//! `to_xml()` gives the document back. An element with only text becomes that text as a scalar
//! (Int, Float or Bool when it reads as one; numbers with a leading zero such as `007` stay
//! Strings); attributes become `@name` keys (typed the same way), the text of an element that
//! also has attributes or children goes under `$text`, repeated child elements become an Array,
//! empty child elements are left out (an empty root is Null). Namespace prefixes and
//! declarations are dropped.
//!
//! `to_xml()` writes each key as an element, arrays as repeated elements, `@name`/`$text` keys
//! back as attributes/text, with no extra root element. `to_yaml()` leaves `y`/`n` (either
//! case) unquoted, as the reference's writer does (YAML 1.2 has no such booleans).

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use super::{Fault, error};
use crate::json::{to_display, to_json};
use crate::value::{Kind, Map, Value, deep};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Percent-encode everything except `A-Z a-z 0-9 - _ . ~`.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode(s, is_unreserved, &mut out);
    out
}

/// Keep the part before `?`; percent-encode the query values and the fragment, keeping `,`.
pub fn encode_uri(s: &str) -> String {
    let keep = |b: u8| is_unreserved(b) || b == b',';
    let (rest, fragment) = match s.find('#') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut out = String::with_capacity(s.len() + 16);
    match rest.find('?') {
        None => out.push_str(rest),
        Some(q) => {
            out.push_str(&rest[..=q]);
            for (i, pair) in rest[q + 1..].split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.find('=') {
                    Some(e) => {
                        out.push_str(&pair[..=e]);
                        percent_encode(&pair[e + 1..], keep, &mut out);
                    }
                    None => out.push_str(pair),
                }
            }
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        percent_encode(f, keep, &mut out);
    }
    out
}

/// Decode `%XX` sequences; the bytes must form UTF-8.
pub fn percent_decode(s: &str, method: &str) -> Result<String, Fault> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| error(format!("[{method}] the decoded text is not valid UTF-8")))
}

const BAD_FORMAT: &str = "Invalid format string is not a valid yaml or xml";

/// `"…".to_json()`: XML when the text looks like XML, else YAML (which also reads JSON).
pub fn text_to_value(s: &str) -> Result<Value, Fault> {
    // The parsers and the values they build nest as deep as the text does; user text must
    // not be able to exhaust the stack.
    if nesting_bound(s) > MAX_NESTING {
        return Err(error(BAD_FORMAT));
    }
    if s.trim_start().starts_with('<')
        && let Some(v) = xml_to_value(s)
    {
        return Ok(v);
    }
    let docs = YamlLoader::load_from_str(s).map_err(|_| error(BAD_FORMAT))?;
    Ok(docs.first().map(yaml_to_value).unwrap_or_default())
}

/// An element being read: its attributes and children so far, and its text.
struct XmlNode {
    name: String,
    fields: Map,
    text: String,
}

impl XmlNode {
    fn open(e: &BytesStart<'_>) -> Option<XmlNode> {
        let name = String::from_utf8(e.local_name().as_ref().to_vec()).ok()?;
        let mut fields = Map::new();
        for a in e.attributes() {
            let a = a.ok()?;
            let full = a.key.as_ref();
            if full == b"xmlns" || full.starts_with(b"xmlns:") {
                continue;
            }
            let key = std::str::from_utf8(a.key.local_name().into_inner()).ok()?;
            let value = a.unescape_value().ok()?;
            fields.insert(format!("@{key}"), xml_scalar_value(&value));
        }
        Some(XmlNode {
            name,
            fields,
            text: String::new(),
        })
    }

    /// The element's value; `None` for an empty element.
    fn close(self) -> Option<Value> {
        let text = self.text.trim();
        let mut fields = self.fields;
        if fields.is_empty() {
            return (!text.is_empty()).then(|| xml_scalar_value(text));
        }
        if !text.is_empty() {
            fields.insert("$text".into(), Value::string(text));
        }
        Some(Value::object(fields))
    }

    /// Add a child element; a repeated name turns into an Array.
    fn add_child(&mut self, name: String, v: Value) {
        match self.fields.get_mut(&name) {
            None => {
                self.fields.insert(name, v);
            }
            Some(prev) => match &mut prev.kind {
                Kind::Array(items) => items.push(v),
                _ => {
                    let first = std::mem::take(prev);
                    *prev = Value::array(vec![first, v]);
                }
            },
        }
    }
}

/// Text read as Int, Float or Bool when it is one, else a String.
fn xml_scalar_value(t: &str) -> Value {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    let numeric = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if numeric && !leading_zero {
        if let Ok(i) = t.parse::<i64>() {
            return Value::int(i);
        }
        if let Ok(f) = t.parse::<f64>()
            && f.is_finite()
        {
            return Value::float(f);
        }
    }
    match t {
        "true" => Value::bool(true),
        "false" => Value::bool(false),
        _ => Value::string(t),
    }
}

/// A well-formed XML document with one root element, as `{root: value}` (module notes).
/// Iterative: the nesting is bounded by the caller's [`nesting_bound`] check only.
fn xml_to_value(s: &str) -> Option<Value> {
    let mut reader = Reader::from_str(s);
    let mut stack: Vec<XmlNode> = Vec::new();
    let mut root: Option<Value> = None;
    loop {
        let event = reader.read_event().ok()?;
        let closed = match event {
            Event::Start(e) => {
                if root.is_some() {
                    return None;
                }
                stack.push(XmlNode::open(&e)?);
                None
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return None;
                }
                Some(XmlNode::open(&e)?)
            }
            Event::End(_) => Some(stack.pop()?),
            Event::Text(t) => {
                let text = t.xml_content().ok()?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return None,
                }
                None
            }
            Event::CData(t) => {
                let text = t.xml_content().ok()?;
                stack.last_mut()?.text.push_str(&text);
                None
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().ok()? {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&r.decode().ok()?)?.to_string(),
                };
                stack.last_mut()?.text.push_str(&resolved);
                None
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => None,
        };
        if let Some(node) = closed {
            let name = node.name.clone();
            let v = node.close();
            match stack.last_mut() {
                Some(parent) => {
                    if let Some(v) = v {
                        parent.add_child(name, v);
                    }
                }
                None => {
                    let mut m = Map::with_capacity(1);
                    m.insert(name, v.unwrap_or_default());
                    root = Some(Value::object(m));
                }
            }
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

/// Deepest nesting accepted by `to_json()`.
const MAX_NESTING: usize = 256;

/// An upper bound of the nesting depth of a YAML, JSON or XML text: flow brackets and XML
/// elements currently open, plus the deepest block structure a line can open (its
/// indentation and leading `-`/`?`/`:` indicators).
fn nesting_bound(s: &str) -> usize {
    let (mut open, mut max_open, mut max_line) = (0usize, 0usize, 0usize);
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'[' | b'{' => open += 1,
            b']' | b'}' => open = open.saturating_sub(1),
            b'<' => match b.get(i + 1) {
                Some(b'/') => open = open.saturating_sub(1),
                Some(b'?' | b'!') => {}
                _ => open += 1,
            },
            b'>' if i > 0 && b[i - 1] == b'/' => open = open.saturating_sub(1),
            _ => {}
        }
        max_open = max_open.max(open);
    }
    for line in s.lines() {
        let lead = line
            .bytes()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'-' | b'?' | b':'))
            .count();
        max_line = max_line.max(lead);
    }
    max_open + max_line
}

fn yaml_key(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        other => to_display(&yaml_to_value(other)),
    }
}

fn yaml_to_value(y: &Yaml) -> Value {
    deep(|| yaml_to_value_inner(y))
}

fn yaml_to_value_inner(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => match s.parse::<f64>() {
            Ok(f) => Value::float(f),
            Err(_) => yaml_special_float(s)
                .map(Value::float)
                .unwrap_or_else(|| Value::string(s.as_str())),
        },
        Yaml::Integer(i) => Value::int(*i),
        Yaml::String(s) => Value::string(s.as_str()),
        Yaml::Boolean(b) => Value::bool(*b),
        Yaml::Array(a) => Value::array(a.iter().map(yaml_to_value).collect()),
        Yaml::Hash(h) => Value::object(
            h.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_value(v)))
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::null(),
    }
}

fn yaml_special_float(s: &str) -> Option<f64> {
    match s.trim_start_matches('+') {
        ".inf" | ".Inf" | ".INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => None,
    }
}

fn value_to_yaml(v: &Value) -> Yaml {
    deep(|| value_to_yaml_inner(v))
}

fn value_to_yaml_inner(v: &Value) -> Yaml {
    match &v.kind {
        Kind::Null | Kind::Closure(_) => Yaml::Null,
        Kind::Bool(b) => Yaml::Boolean(*b),
        Kind::Int(i) => Yaml::Integer(*i),
        Kind::Float(f) => Yaml::Real(serde_json::to_string(f).unwrap_or_else(|_| f.to_string())),
        Kind::String(s) => yaml_string(s),
        Kind::Array(a) => Yaml::Array(a.iter().map(value_to_yaml).collect()),
        Kind::Object(m) => Yaml::Hash(map_to_hash(m)),
    }
}

/// A string scalar for the emitter. The emitter quotes `y`/`n` (YAML 1.1 booleans); the
/// reference's writer leaves them plain, so they go out as raw scalars (`Yaml::Real` is
/// written verbatim), which YAML 1.2 reads back as the same strings.
fn yaml_string(s: &str) -> Yaml {
    match s {
        "y" | "Y" | "n" | "N" => Yaml::Real(s.to_string()),
        _ => Yaml::String(s.to_string()),
    }
}

fn map_to_hash(m: &Map) -> Hash {
    let mut h = Hash::new();
    for (k, v) in m {
        h.insert(yaml_string(k), value_to_yaml(v));
    }
    h
}

/// The YAML emitter and XML writer recurse without stack checks: refuse deeper values.
pub fn check_depth(m: &Map, method: &str) -> Result<(), Fault> {
    if m.values().any(|v| v.depth() >= MAX_NESTING) {
        return Err(error(format!("[{method}] the object is nested too deeply")));
    }
    Ok(())
}

/// `obj.to_yaml()`: a YAML document, e.g. `---\nw: ~\n`.
pub fn to_yaml(m: &Map) -> String {
    let mut out = String::new();
    let doc = Yaml::Hash(map_to_hash(m));
    if YamlEmitter::new(&mut out).dump(&doc).is_err() {
        return String::new();
    }
    out.push('\n');
    out
}

fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

fn xml_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn xml_element(name: &str, v: &serde_json::Value, out: &mut String) {
    deep(|| xml_element_inner(name, v, out))
}

fn xml_element_inner(name: &str, v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Array(items) => {
            for item in items {
                xml_element(name, item, out);
            }
        }
        J::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        J::Object(m) => {
            out.push('<');
            out.push_str(name);
            for (k, a) in m {
                if let Some(attr) = k.strip_prefix('@') {
                    out.push(' ');
                    out.push_str(attr);
                    out.push_str("=\"");
                    xml_escape(&xml_scalar(a), out);
                    out.push('"');
                }
            }
            out.push('>');
            for (k, c) in m {
                if k == "$text" || k == "$value" {
                    xml_escape(&xml_scalar(c), out);
                } else if !k.starts_with('@') {
                    xml_element(k, c, out);
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        scalar => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            xml_escape(&xml_scalar(scalar), out);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

/// `obj.to_xml()`: each key as an element (see the module notes).
pub fn to_xml(m: &Map) -> String {
    let mut out = String::new();
    for (k, v) in m {
        xml_element(k, &to_json(v), &mut out);
    }
    out
}
