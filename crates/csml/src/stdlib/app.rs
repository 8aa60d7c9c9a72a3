//! `App(name, k=v, …)` and the deprecated `Fn(...)` (spec §5.8), routed to the host's
//! [`crate::api::Host::app`] with the `(function_id, data)` pair and the current position.
//!
//! The host answers with the app's `data` value (it maps plugin failures to the spec's
//! messages, e.g. `Apps service: status code <n>`); a failure is a non-fatal error whose text
//! is the host's message, and the call yields Null. Decision (§5.8): a String result is plain
//! data, never interpolated.

use super::{Args, Fault, Runtime, error, usage};
use crate::api::AppCall;
use crate::json::{from_json, to_json};

const USAGE: &str = "App(name: String, key = value, ...) => Value";

pub(super) fn call(rt: &mut dyn Runtime, args: Args) -> Result<crate::value::Value, Fault> {
    let Args { positional, named } = args;
    if positional.len() > 1 {
        return Err(error("to many arguments"));
    }
    let mut name = positional
        .first()
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if !positional.is_empty() && name.is_none() {
        return Err(usage(USAGE));
    }
    let mut data = serde_json::Map::with_capacity(named.len());
    for (k, v) in &named {
        if k == "fn_id" && name.is_none() {
            name = Some(v.as_str().ok_or_else(|| usage(USAGE))?.to_string());
            continue;
        }
        data.insert(k.clone(), to_json(v));
    }
    let name = name.ok_or_else(|| usage(USAGE))?;
    let (flow, step) = rt.position();
    let call = AppCall {
        name,
        args: serde_json::Value::Object(data),
        flow: flow.to_string(),
        step: step.to_string(),
    };
    // No host call starts past the turn's deadline.
    rt.check_budget()?;
    let result = rt.host().app(&call).map_err(error)?;
    Ok(from_json(&result))
}
