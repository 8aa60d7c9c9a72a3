//! The case/result shapes of the `botyard csml test` protocol (shared spec
//! `csml-test-protocol.md`): one JSON case in, one JSON answer out, no I/O. The `botyard csml
//! test` command and the crate's table-driven tests both go through [`handle_case`], so the
//! tests exercise exactly what the conformance harness sees.
//!
//! Choices: a `run` case whose bot does not parse answers a normal result whose messages are
//! the parse errors (as `error` messages) with status `error`; bots are compiled without
//! linting, as the reference runs them.

use serde_json::{Map, Value as Json, json};

use crate::api::{BotSource, Context, Event, Host, TurnOptions, TurnStatus};
use crate::bot::Bot;

/// Parse one input line and answer it.
pub fn handle_line(line: &str, host: &mut dyn Host) -> Json {
    match serde_json::from_str::<Json>(line) {
        Ok(case) => handle_case(&case, host),
        Err(e) => bad(Json::Null, &format!("invalid JSON: {e}")),
    }
}

/// Answer one case (`kind` `run` or `validate`).
pub fn handle_case(case: &Json, host: &mut dyn Host) -> Json {
    let id = case.get("id").cloned().unwrap_or(Json::Null);
    let Some(obj) = case.as_object() else {
        return bad(id, "a case must be a JSON object");
    };
    match obj.get("kind").and_then(Json::as_str) {
        Some("run") => run_case(id, obj, host),
        Some("validate") => validate_case(id, obj),
        Some(other) => bad(id, &format!("unknown kind {other:?}")),
        None => bad(id, "missing field `kind`"),
    }
}

/// `{"id": ..., "error": "..."}` for a line that cannot be handled.
pub fn bad(id: Json, why: &str) -> Json {
    json!({"id": id, "error": why})
}

fn field<T: serde::de::DeserializeOwned>(obj: &Map<String, Json>, name: &str) -> Result<T, String> {
    let v = obj
        .get(name)
        .ok_or_else(|| format!("missing field `{name}`"))?;
    serde_json::from_value(v.clone()).map_err(|e| format!("invalid `{name}`: {e}"))
}

fn validate_case(id: Json, obj: &Map<String, Json>) -> Json {
    let source: BotSource = match field(obj, "bot") {
        Ok(s) => s,
        Err(e) => return bad(id, &e),
    };
    let syntax_only = obj
        .get("syntax_only")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let v = crate::api::validate(&source, syntax_only);
    json!({"id": id, "valid": v.valid, "errors": v.errors, "warnings": v.warnings})
}

fn run_case(id: Json, obj: &Map<String, Json>, host: &mut dyn Host) -> Json {
    let parsed = (|| -> Result<(BotSource, Context, Event), String> {
        Ok((
            field(obj, "bot")?,
            field(obj, "context")?,
            field(obj, "event")?,
        ))
    })();
    let (source, mut ctx, event) = match parsed {
        Ok(p) => p,
        Err(e) => return bad(id, &e),
    };
    if !ctx.metadata.is_object() {
        ctx.metadata = Json::Object(Map::new());
    }
    let bot = match Bot::compile_unchecked(source) {
        Ok(b) => b,
        Err(v) => {
            let messages: Vec<Json> = v
                .errors
                .iter()
                .map(|d| json!({"content_type": "error", "content": {"error": d.message}}))
                .collect();
            return json!({"id": id, "messages": messages, "memories": [], "status": "error",
                          "flow": ctx.flow, "step": ctx.step, "hold": null});
        }
    };
    let r = crate::run_turn(&bot, ctx, event, host, &TurnOptions::default());
    let status = match r.status {
        TurnStatus::End => "end",
        TurnStatus::Hold => "hold",
        TurnStatus::Error => "error",
    };
    json!({
        "id": id,
        "messages": r.messages,
        "memories": r.memories,
        "status": status,
        "flow": r.flow,
        "step": r.step,
        "hold": r.hold,
    })
}
