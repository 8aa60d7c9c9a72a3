//! Wire shapes of the Studio API (spec §2): store rows → JSON, by hand, so the stored model can
//! change without changing the API. Times are ISO-8601 UTC with milliseconds.

use crate::engine::OpenConversation;
use crate::store::ids::iso_millis;
use crate::store::{Bot, BotVersion, Conversation, ConversationStatus, Flow};
use serde_json::{Map, Value as Json, json};

pub fn flow(f: &Flow) -> Json {
    json!({
        "id": f.id,
        "bot_id": f.bot_id,
        "organization_id": f.organization_id,
        "name": f.name,
        "description": f.description,
        "commands": f.commands,
        "content": f.content,
        "created_at": iso_millis(f.created_at),
        "updated_at": iso_millis(f.updated_at),
    })
}

pub fn bot(b: &Bot, flows: &[Flow]) -> Json {
    json!({
        "id": b.id,
        "organization_id": b.organization_id,
        "name": b.name,
        "description": b.description,
        "default_flow": b.default_flow_id,
        "created_at": iso_millis(b.created_at),
        "updated_at": iso_millis(b.updated_at),
        "env": env_strings(&b.env),
        "flows": flows.iter().map(flow).collect::<Vec<_>>(),
    })
}

/// Env values are strings on the wire (spec §2.3: "decrypted, string values").
pub fn env_strings(env: &Map<String, Json>) -> Json {
    Json::Object(
        env.iter()
            .map(|(k, v)| (k.clone(), Json::String(value_string(v))))
            .collect(),
    )
}

/// A JSON value as the string a form field would hold: strings as is, the rest as JSON text.
pub fn value_string(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// A build (spec §2.11): `id` is the **bot** id, flows trimmed to four keys.
pub fn build(v: &BotVersion) -> Json {
    json!({
        "id": v.bot_id,
        "name": v.snapshot.name,
        "default_flow": v.snapshot.default_flow,
        "created_at": iso_millis(v.created_at),
        "version_id": v.id,
        "engine_version": v.engine_version,
        "flows": v.snapshot.flows.iter().map(|f| json!({
            "id": f.id,
            "name": f.name,
            "commands": f.commands,
            "content": f.content,
        })).collect::<Vec<_>>(),
    })
}

/// `conversations/open` (spec §2.13).
pub fn open_conversation(open: &OpenConversation) -> Json {
    let c: &Conversation = &open.conversation;
    json!({
        "has_open": true,
        "conversation": {
            "id": c.id,
            "client": {"channel_id": c.channel_id, "user_id": c.user_id, "bot_id": c.bot_id},
            "flow_id": open.flow_id,
            "step_id": c.step,
            "metadata": c.metadata,
            "status": match c.status {
                ConversationStatus::Open => "OPEN",
                ConversationStatus::Closed => "CLOSED",
            },
            "last_interaction_at": iso_millis(c.last_interaction_at),
            "created_at": iso_millis(c.created_at),
        }
    })
}

/// Diagnostics in Studio's keys `{flow, step, line, column, message}`, plus `col` for the
/// Studio CLI (spec §2.10).
pub fn diagnostics(errors: &[csml::Diagnostic]) -> Json {
    Json::Array(
        errors
            .iter()
            .map(|d| {
                json!({
                    "flow": d.flow,
                    "step": d.step,
                    "line": d.line,
                    "column": d.column,
                    "col": d.column,
                    "message": d.message,
                })
            })
            .collect(),
    )
}

/// `{valid:true}` or `{valid:false, errors:[...]}`.
pub fn validation(report: &csml::Validation) -> Json {
    if report.valid {
        json!({"valid": true})
    } else {
        json!({"valid": false, "errors": diagnostics(&report.errors)})
    }
}
