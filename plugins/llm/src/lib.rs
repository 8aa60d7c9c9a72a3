//! `llm`: chat completions against any OpenAI-compatible server (`POST {base_url}/chat/completions`).
//!
//! `App("llm", prompt="Hi")` or `App("llm", messages=[{"role": "user", "content": "Hi"}])`,
//! optional `system`, `temperature`, `max_tokens`, `model`. Returns
//! `{"text", "model", "finish_reason", "usage"}`; a server error is a plugin error, which CSML
//! reports in-band while `App()` gives `null`.

wit_bindgen::generate!({
    world: "custom-app",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::host;
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use serde_json::{Value, json};

struct Llm;

fn invalid(m: impl Into<String>) -> PluginError {
    PluginError::InvalidInput(m.into())
}

fn failure(f: Failure) -> PluginError {
    match f {
        Failure::Invalid(m) => PluginError::Upstream(m),
        Failure::Unauthorized(m) => PluginError::Unauthorized(m),
        Failure::RateLimited(s) => PluginError::RateLimited(s),
        Failure::Upstream(m) => PluginError::Upstream(m),
    }
}

/// The `messages` array of the request from the app's arguments.
fn messages(args: &Value) -> Result<Vec<Value>, PluginError> {
    let mut out = Vec::new();
    let system = args
        .get("system")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| host::config("system"));
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": s}));
    }
    match (args.get("messages"), args.get("prompt")) {
        (Some(Value::Array(list)), _) => {
            for m in list {
                let role = m
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("each message needs a role"))?;
                let content = m
                    .get("content")
                    .ok_or_else(|| invalid("each message needs a content"))?;
                out.push(json!({"role": role, "content": content}));
            }
        }
        (Some(_), _) => return Err(invalid("messages must be an array of {role, content}")),
        (None, Some(Value::String(p))) => out.push(json!({"role": "user", "content": p})),
        (None, Some(other)) => out.push(json!({"role": "user", "content": other.to_string()})),
        (None, None) => return Err(invalid("give prompt=\"...\" or messages=[...]")),
    }
    Ok(out)
}

impl Guest for Llm {
    fn call(_ctx: CallContext, args: String) -> Result<String, PluginError> {
        let args: Value = serde_json::from_str(&args).map_err(|e| invalid(format!("args: {e}")))?;
        let base = host::config("base_url").unwrap_or_else(|| "https://api.openai.com/v1".into());
        let model = args
            .get("model")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| host::config("model"))
            .ok_or_else(|| PluginError::Config("no model configured".into()))?;
        let mut body = json!({"model": model, "messages": messages(&args)?});
        for key in ["temperature", "max_tokens", "top_p"] {
            if let Some(v) = args.get(key) {
                body[key] = v.clone();
            }
        }
        let mut req =
            Request::post(format!("{}/chat/completions", base.trim_end_matches('/'))).json(&body);
        if let Some(key) = host::secret("api_key").filter(|k| !k.is_empty()) {
            req = req.bearer(&key);
        }
        let resp = send_json(req).map_err(failure)?;
        let choice = resp
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| PluginError::Upstream("no choices in the completion".into()))?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(json!({
            "text": text,
            "model": resp.get("model").cloned().unwrap_or(Value::String(model)),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
            "usage": resp.get("usage").cloned().unwrap_or(Value::Null),
        })
        .to_string())
    }
}

export!(Llm);
