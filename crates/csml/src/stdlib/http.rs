//! `HTTP(url)` (spec §5.7): a builder object tagged `http` — `{url, method, header, query?,
//! body?, …}` — whose methods return a changed copy (`put(body)`/`post(body)` also set the
//! body on the receiver, as the reference engine does), and `.send()`, the only method that
//! reaches the network, through [`crate::api::Host::http`] (the host enforces the outbound
//! policy).
//!
//! `.send()` results: a 2xx response gives its body (parsed JSON, or the text as a String) with
//! info `status` (Int) and `headers` (Object, lowercase names). A non-2xx status is the
//! non-fatal error `<url>: status code <n>`; a transport failure is the host's message.

use base64::Engine;

use super::{Args, Fault, MethodResult, Runtime, arity, error, formats, str_arg, usage};
use crate::api::HttpRequest;
use crate::json::{from_json, to_display, to_json};
use crate::value::{Kind, Map, Value};

/// The usage text of `HTTP(...)` (also given by `Base64`/`Hex` for a non-String argument).
pub(super) const USAGE: &str = "HTTP(url: String) => HTTP object";

fn default_headers() -> Map {
    let mut h = Map::with_capacity(3);
    h.insert("Content-Type".into(), Value::string("application/json"));
    h.insert("Accept".into(), Value::string("application/json,text/*"));
    h.insert("User-Agent".into(), Value::string("csml/v1"));
    h
}

/// Merge `from` into `into`, each value in its string form.
fn merge_strings(into: &mut Map, from: &Map) {
    for (k, v) in from {
        into.insert(k.clone(), Value::string(to_display(v)));
    }
}

/// `HTTP(url, header=…, query=…, body=…, other=…)`.
pub(super) fn builder(args: Args) -> Result<Value, Fault> {
    let url = args
        .positional
        .first()
        .or_else(|| args.named("url"))
        .and_then(Value::as_str)
        .ok_or_else(|| usage(USAGE))?;
    if args.positional.len() > 1 {
        return Err(usage(USAGE));
    }
    let mut m = Map::with_capacity(4);
    m.insert("url".into(), Value::string(url));
    m.insert("method".into(), Value::string("get"));
    let mut headers = default_headers();
    let mut extra = Vec::new();
    for (k, v) in &args.named {
        match (k.as_str(), &v.kind) {
            ("url", _) => {}
            ("header", Kind::Object(h)) => merge_strings(&mut headers, h),
            ("query", Kind::Object(q)) => {
                let mut query = Map::new();
                merge_strings(&mut query, q);
                extra.push(("query".to_string(), Value::object(query)));
            }
            ("header" | "query", _) => return Err(usage(USAGE)),
            _ => extra.push((k.clone(), v.clone())),
        }
    }
    m.insert("header".into(), Value::object(headers));
    m.extend(extra);
    Ok(Value::object(m).with_tag("http"))
}

fn map_mut<'a>(b: &'a mut Value, key: &str) -> &'a mut Map {
    let m = b.as_object_mut().expect("http builder is an object");
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::object(Map::new()));
    if !matches!(slot.kind, Kind::Object(_)) {
        *slot = Value::object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn set_field(b: &mut Value, key: &str, v: Value) {
    if let Some(m) = b.as_object_mut() {
        m.insert(key.to_string(), v);
    }
}

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let obj_arg = |sig: &str| -> Result<&Map, Fault> {
        arity(args, 1, 1, sig)?;
        args[0].as_object().ok_or_else(|| usage(sig))
    };
    let mut b = recv.clone();
    let r = match name {
        "set" => obj_arg("set(header: Object) => HTTP object").map(|h| {
            merge_strings(map_mut(&mut b, "header"), h);
            b
        }),
        "query" => obj_arg("query(parameters: Object) => HTTP object").map(|q| {
            merge_strings(map_mut(&mut b, "query"), q);
            b
        }),
        "auth" => {
            let sig = "auth(username: String, password: String) => HTTP object";
            arity(args, 2, 2, sig).and_then(|_| {
                let (user, pass) = (str_arg(args, 0, sig)?, str_arg(args, 1, sig)?);
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                map_mut(&mut b, "header").insert(
                    "Authorization".into(),
                    Value::string(format!("Basic {token}")),
                );
                Ok(b)
            })
        }
        "get" => arity(args, 0, 0, "get() => HTTP object").map(|_| {
            set_field(&mut b, "method", Value::string("get"));
            if let Some(m) = b.as_object_mut() {
                m.shift_remove("body");
            }
            b
        }),
        "delete" | "post" | "put" | "patch" => {
            arity(args, 0, 1, "post(body: Optional<Object>) => HTTP object").map(|_| {
                set_field(&mut b, "method", Value::string(name));
                if let Some(body) = args.first() {
                    set_field(&mut b, "body", body.clone());
                    // The reference's quirk: `put(body)`/`post(body)` also leave the body on
                    // the receiver (its method unchanged) for the rest of the turn; `patch`
                    // and `delete` do not. Not a write method: the remembered value keeps
                    // the state of its `remember` (see `is_write_method`).
                    if matches!(name, "put" | "post") {
                        set_field(recv, "body", body.clone());
                    }
                }
                b
            })
        }
        "disable_ssl_verify" => {
            arity(args, 0, 0, "disable_ssl_verify() => HTTP object").map(|_| {
                set_field(&mut b, "disable_ssl_verify", Value::bool(true));
                b
            })
        }
        "send" => arity(args, 0, 0, "send() => Value").and_then(|_| send(rt, recv)),
        _ => return None,
    };
    Some(r)
}

/// The request a builder describes, query parameters appended to the URL.
pub(super) fn request_of(b: &Value) -> Result<HttpRequest, Fault> {
    let m = b.as_object().ok_or_else(|| usage(USAGE))?;
    let mut url = m
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| usage(USAGE))?
        .to_string();
    if let Some(Kind::Object(q)) = m.get("query").map(|v| &v.kind) {
        for (i, (k, v)) in q.iter().enumerate() {
            url.push(if i == 0 && !url.contains('?') {
                '?'
            } else {
                '&'
            });
            url.push_str(&formats::encode_uri_component(k));
            url.push('=');
            url.push_str(&formats::encode_uri_component(&to_display(v)));
        }
    }
    let method = m
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("get")
        .to_uppercase();
    let headers = match m.get("header").map(|v| &v.kind) {
        Some(Kind::Object(h)) => h.iter().map(|(k, v)| (k.clone(), to_display(v))).collect(),
        _ => Vec::new(),
    };
    let body = m.get("body").map(to_json);
    Ok(HttpRequest {
        method,
        url,
        headers,
        body,
    })
}

fn send(rt: &mut dyn Runtime, b: &Value) -> Result<Value, Fault> {
    let req = request_of(b)?;
    // No host call starts past the turn's deadline.
    rt.check_budget()?;
    let resp = rt.host().http(&req).map_err(error)?;
    let headers: Map = resp
        .headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), Value::string(v.as_str())))
        .collect();
    let status = Value::int(resp.status as i64);
    if !(200..300).contains(&resp.status) {
        let mut info = Map::with_capacity(3);
        info.insert("status".into(), status);
        info.insert("headers".into(), Value::object(headers));
        info.insert("body".into(), from_json(&resp.body));
        rt.error_info(info);
        return Err(error(format!("{}: status code {}", req.url, resp.status)));
    }
    let mut out = from_json(&resp.body);
    out.set_info("status", status);
    out.set_info("headers", Value::object(headers));
    Ok(out)
}
