//! `SMTP(host)` (spec §5.9): a builder tagged `smtp` — `{smtp_server, port, tls, …}` — whose
//! methods return a changed copy, and `.send(email)`, which checks the e-mail and hands it to
//! [`crate::api::Host::smtp`]. Host failures read `Could not send email: <reason>`.

use super::{Args, Fault, MethodResult, Runtime, arity, error, int_arg, str_arg, usage};
use crate::api::SmtpRequest;
use crate::json::to_json;
use crate::value::{Kind, Map, Value};

const USAGE: &str = "SMTP(host: String) => SMTP object";

pub(super) fn builder(args: Args) -> Result<Value, Fault> {
    let host = args
        .positional
        .first()
        .or_else(|| args.named("smtp_server"))
        .or_else(|| args.named("host"))
        .and_then(Value::as_str)
        .ok_or_else(|| usage(USAGE))?;
    let mut m = Map::with_capacity(3);
    m.insert("smtp_server".into(), Value::string(host));
    m.insert("port".into(), Value::int(465));
    m.insert("tls".into(), Value::bool(true));
    Ok(Value::object(m).with_tag("smtp"))
}

fn with(recv: &Value, fields: &[(&str, Value)]) -> Value {
    let mut b = recv.clone();
    if let Some(m) = b.as_object_mut() {
        for (k, v) in fields {
            m.insert((*k).to_string(), v.clone());
        }
    }
    b
}

fn bool_arg(args: &[Value], sig: &str) -> Result<bool, Fault> {
    arity(args, 1, 1, sig)?;
    match args[0].kind {
        Kind::Bool(b) => Ok(b),
        _ => Err(usage(sig)),
    }
}

pub(super) fn call(
    rt: &mut dyn Runtime,
    recv: &mut Value,
    name: &str,
    args: &[Value],
) -> MethodResult {
    let r = match name {
        "auth" => {
            let sig = "auth(username: String, password: String) => SMTP object";
            arity(args, 2, 2, sig).and_then(|_| {
                let (u, p) = (str_arg(args, 0, sig)?, str_arg(args, 1, sig)?);
                Ok(with(
                    recv,
                    &[
                        ("username", Value::string(u)),
                        ("password", Value::string(p)),
                    ],
                ))
            })
        }
        "port" => {
            let sig = "port(port: Integer) => SMTP object";
            arity(args, 1, 1, sig)
                .and_then(|_| int_arg(args, 0, sig))
                .map(|p| with(recv, &[("port", Value::int(p))]))
        }
        "tls" => bool_arg(args, "tls(enabled: Boolean) => SMTP object")
            .map(|b| with(recv, &[("tls", Value::bool(b))])),
        "starttls" => bool_arg(args, "starttls(enabled: Boolean) => SMTP object")
            .map(|b| with(recv, &[("starttls", Value::bool(b))])),
        "set_auth_mechanism" => {
            let sig = "set_auth_mechanism(mechanism: String | Array) => SMTP object";
            arity(args, 1, 1, sig).and_then(|_| match &args[0].kind {
                Kind::String(_) | Kind::Array(_) => {
                    Ok(with(recv, &[("auth_mechanism", args[0].clone())]))
                }
                _ => Err(usage(sig)),
            })
        }
        "send" => send(rt, recv, args),
        _ => return None,
    };
    Some(r)
}

fn send(rt: &mut dyn Runtime, recv: &Value, args: &[Value]) -> Result<Value, Fault> {
    let sig = "send(email: Object) => Boolean";
    arity(args, 1, 1, sig)?;
    let email = args[0].as_object().ok_or_else(|| usage(sig))?;
    let config = recv.as_object().ok_or_else(|| usage(USAGE))?;
    if !config.contains_key("username") {
        return Err(error(
            "username is missing, set it with .auth(username, password)",
        ));
    }
    for field in ["from", "to"] {
        if email.get(field).and_then(Value::as_str).is_none() {
            return Err(error(format!("email {field} parameter is mandatory")));
        }
    }
    if !email.contains_key("text") && !email.contains_key("html") {
        return Err(error("email text/html parameter is mandatory"));
    }
    let req = SmtpRequest {
        config: to_json(recv),
        email: to_json(&args[0]),
    };
    // No host call starts past the turn's deadline.
    rt.check_budget()?;
    rt.host()
        .smtp(&req)
        .map_err(|e| error(format!("Could not send email: {e}")))?;
    Ok(Value::bool(true))
}
