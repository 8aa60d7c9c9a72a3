//! Channel endpoints (ocs-api §5.5, §5.7): `trigger_bot`, the synchronous
//! `/channels/api/{id}/incoming_message` (with `/reset`), and the OpenAI-compatible chat
//! completions endpoint — which, beyond OCS, streams server-sent events in the OpenAI chunk
//! format when asked `"stream": true`, and always returns a zero-count `usage`.

use super::api::{PLATFORMS, history, team_json};
use super::{Answer, Call, Caller, is_uuid, ok};
use crate::ocs::sync::{IncomingReply, IncomingRequest, OpenAiRequest};
use crate::ocs::{OcsError, TriggerRequest, TriggerWhat, render};
use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use serde_json::{Value as Json, json};

// ---- trigger_bot ---------------------------------------------------------------------------------

/// Parse and validate the body (in the contract's order), then [`crate::ocs::Ocs::trigger`].
pub(crate) async fn trigger_bot(call: &mut Call, caller: &Caller) -> Answer {
    let body = call.body_json().await?;
    let s = |k: &str| {
        body.get(k)
            .and_then(Json::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |k: &str| s(k).ok_or_else(|| OcsError::field(k, "This field is required."));
    let identifier = required("identifier")?;
    let platform = required("platform")?;
    if !PLATFORMS.contains(&platform.as_str()) {
        return Err(OcsError::field(
            "platform",
            format!("\"{platform}\" is not a valid choice."),
        ));
    }
    let exp = required("experiment")?;
    if !is_uuid(&exp) {
        return Err(OcsError::field("experiment", "Must be a valid UUID."));
    }
    let what = match (s("prompt_text"), s("message_text")) {
        (None, None) => {
            return Err(OcsError::NonField(
                "Either 'prompt_text' or 'message_text' must be provided.".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(OcsError::NonField(
                "Provide either 'prompt_text' or 'message_text', not both.".into(),
            ));
        }
        (Some(p), None) => TriggerWhat::Prompt(p),
        (None, Some(t)) => TriggerWhat::Message(t),
    };
    let request = TriggerRequest {
        organization_id: caller.org().to_string(),
        bot_id: exp.to_ascii_lowercase(),
        platform: platform.clone(),
        identifier,
        what,
        start_new_session: body
            .get("start_new_session")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        session_data: body.get("session_data").filter(|v| v.is_object()).cloned(),
        participant_data: body
            .get("participant_data")
            .filter(|v| v.is_object())
            .cloned(),
    };
    let session = call.ocs.trigger(request).await?;
    let org = caller.org().to_string();
    let team = call.store(move |s| team_json(s, &org)).await?;
    let url = format!("{}/api/sessions/{}/", call.base, session.id);
    Ok(ok(
        &json!({"session_id": session.id, "url": url, "team": team, "channel": platform}),
    ))
}

// ---- incoming_message ----------------------------------------------------------------------------

pub(crate) async fn incoming(call: &mut Call, caller: &Caller) -> Answer {
    let body = call.body_json().await?;
    let text = match body.get("message") {
        None | Some(Json::Null) => {
            return Err(OcsError::field("message", "This field is required."));
        }
        Some(Json::String(s)) => s.clone(),
        Some(_) => return Err(OcsError::field("message", "Not a valid string.")),
    };
    let (ocs, org, version) = (call.ocs.clone(), caller.org(), call.params.version);
    if version.is_some() {
        ocs.route_bot(org, &call.params.id, version, false).await?;
    }
    let request = IncomingRequest {
        bot_id: call.params.id.clone(),
        text,
        identifier: caller.identifier(),
        key_id: caller.key.id.clone(),
        session: body
            .get("session")
            .and_then(Json::as_str)
            .map(str::to_string),
        version,
    };
    let rendered = match ocs.incoming(org, request).await? {
        IncomingReply::Reset => {
            return Ok(ok(
                &json!({"response": "Conversation reset", "attachments": []}),
            ));
        }
        IncomingReply::Replied(r) => r,
    };
    let attachments: Vec<Json> = rendered
        .iter()
        .filter_map(|r| r.file.as_ref())
        .map(|(name, link)| json!({"file_name": name, "link": link}))
        .collect();
    Ok(ok(
        &json!({"response": render::joined(&rendered), "attachments": attachments}),
    ))
}

// ---- OpenAI --------------------------------------------------------------------------------------

fn oai_error(msg: &str) -> OcsError {
    OcsError::OpenAi(msg.to_string())
}

/// `messages` → (history, last user text), OpenAI-style errors.
fn oai_messages(body: &Json) -> Result<(Json, String), OcsError> {
    let Some(items) = body
        .get("messages")
        .and_then(Json::as_array)
        .filter(|a| !a.is_empty())
    else {
        return Err(oai_error("No messages provided"));
    };
    let mut norm = Vec::new();
    for m in items {
        let role = m.get("role").and_then(Json::as_str).unwrap_or_default();
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(oai_error(&format!(
                "messages: \"{role}\" is not a valid role (system, user or assistant)"
            )));
        }
        let content = match m.get("content") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(parts)) => {
                let mut texts = Vec::new();
                for p in parts {
                    if p.get("type").and_then(Json::as_str) != Some("text") {
                        return Err(oai_error("Only text messages are supported"));
                    }
                    texts.push(
                        p.get("text")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                texts.join(" ")
            }
            Some(Json::Null) | None => String::new(),
            Some(_) => return Err(oai_error("Only text messages are supported")),
        };
        norm.push(json!({"role": role, "content": content}));
    }
    if norm.last().and_then(|m| m["role"].as_str()) != Some("user") {
        return Err(oai_error("Last message must be a user message"));
    }
    let last = norm
        .pop()
        .and_then(|m| m["content"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((Json::Array(norm), last))
}

pub(crate) async fn openai(call: &mut Call, caller: &Caller) -> Answer {
    let (ocs, org, version) = (call.ocs.clone(), caller.org(), call.params.version);
    let bot = ocs.route_bot(org, &call.params.id, version, true).await?;
    let body = call.body_json().await?;
    let (hist, last) = oai_messages(&body)?;
    let history = history(Some(&hist), "messages")?;
    let identifier = match body
        .get("user")
        .and_then(Json::as_str)
        .filter(|u| !u.trim().is_empty())
    {
        Some(u) => u.to_string(),
        None => caller.identifier(),
    };
    let stream = body.get("stream").and_then(Json::as_bool).unwrap_or(false);
    let request = OpenAiRequest {
        bot_id: bot.id,
        history,
        text: last,
        identifier,
        key_id: caller.key.id.clone(),
        // `/v{N}/` (0 = the default version) pins the session to version N.
        version: version.filter(|n| *n != 0),
    };
    let (session, rendered) = ocs.openai_turn(org, request).await?;
    let content = render::joined(&rendered);
    let created = crate::store::ids::now_millis() / 1000;
    let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    if !stream {
        return Ok(ok(&json!({
            "id": session.id, "object": "chat.completion", "created": created, "model": "",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": usage,
        })));
    }
    // The whole reply is known: send it as the OpenAI chunk sequence (role, content, stop,
    // usage) and `[DONE]`.
    let chunk = |delta: Json, finish: Json| {
        json!({"id": session.id, "object": "chat.completion.chunk", "created": created, "model": "",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Json::Null,
    )];
    if !content.is_empty() {
        events.push(chunk(json!({"content": content}), Json::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push(
        json!({"id": session.id, "object": "chat.completion.chunk", "created": created, "model": "",
                       "choices": [], "usage": usage}),
    );
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!("data: {e}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    let mut r = Response::new(Full::new(Bytes::from(sse)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}
