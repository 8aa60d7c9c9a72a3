//! Channel endpoints (ocs-api §5.5, §5.7): `trigger_bot`, the synchronous
//! `/channels/api/{id}/incoming_message` (with `/reset`), and the OpenAI-compatible chat
//! completions endpoint — which, beyond OCS, streams server-sent events in the OpenAI chunk
//! format when asked `"stream": true`, and always returns a zero-count `usage`.

use super::api::{PLATFORMS, history, team_json, versions_of};
use super::{Call, Caller, detail, field_error, internal, is_uuid, json_resp, ok};
use crate::http::response::Body;
use crate::ocs::render;
use crate::store::Bot;
use crate::store::ocs::{NewOcsMessage, NewSession, OcsSession, TurnInputs};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value as Json, json};

fn bot_404() -> Response<Body> {
    detail(
        StatusCode::NOT_FOUND,
        "No Experiment matches the given query.",
    )
}

async fn find_bot(call: &Call, caller: &Caller, id: &str) -> Result<Bot, Response<Body>> {
    let (org, id) = (caller.org().to_string(), id.to_string());
    match call
        .ocs
        .engine
        .blocking(move |s| Ok(s.get_bot(&org, &id).ok()))
        .await
    {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(bot_404()),
        Err(e) => Err(internal(e)),
    }
}

/// `/v{N}/`: N must be the working number or a build's; 0 means the default (OpenAI only).
async fn check_version(
    call: &Call,
    bot: &Bot,
    zero_is_default: bool,
) -> Result<(), Response<Body>> {
    let Some(n) = call.params.version else {
        return Ok(());
    };
    if n == 0 && zero_is_default {
        return Ok(());
    }
    let b = bot.clone();
    let (next, versions) = call.blocking(move |s| versions_of(s, &b)).await?;
    if n == next || versions.iter().any(|v| v["version_number"] == json!(n)) {
        Ok(())
    } else {
        Err(detail(
            StatusCode::NOT_FOUND,
            &format!("Experiment with version {n} not found"),
        ))
    }
}

// ---- trigger_bot ---------------------------------------------------------------------------------

pub(crate) async fn trigger_bot(call: &mut Call, caller: &Caller) -> Response<Body> {
    let body = match call.json().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = |k: &str| {
        body.get(k)
            .and_then(Json::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let Some(identifier) = s("identifier") else {
        return field_error("identifier", "This field is required.");
    };
    let Some(platform) = s("platform") else {
        return field_error("platform", "This field is required.");
    };
    if !PLATFORMS.contains(&platform.as_str()) {
        return field_error(
            "platform",
            &format!("\"{platform}\" is not a valid choice."),
        );
    }
    let Some(exp) = s("experiment") else {
        return field_error("experiment", "This field is required.");
    };
    if !is_uuid(&exp) {
        return field_error("experiment", "Must be a valid UUID.");
    }
    let (prompt, text) = (s("prompt_text"), s("message_text"));
    match (&prompt, &text) {
        (None, None) => {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"non_field_errors": ["Either 'prompt_text' or 'message_text' must be provided."]}),
            );
        }
        (Some(_), Some(_)) => {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"non_field_errors": ["Provide either 'prompt_text' or 'message_text', not both."]}),
            );
        }
        _ => {}
    }
    let bot = match find_bot(call, caller, &exp.to_ascii_lowercase()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The chatbot's own channel for the platform (api/web/evaluations are team-global in OCS,
    // so a chatbot never has one).
    let (org, bid, plat) = (caller.org().to_string(), bot.id.clone(), platform.clone());
    // `connector`: the channel's plugin delivers what the bot sends (its durable outbox).
    let channel_state = call
        .blocking(move |s| {
            if matches!(plat.as_str(), "api" | "web" | "evaluations") {
                return Ok(None);
            }
            if plat == "embedded_widget" {
                return Ok(s
                    .ocs_widgets_of_bot(&org, &bid)?
                    .first()
                    .map(|w| (w.enabled, None)));
            }
            Ok(s.list_channels(&org, Some(&bid))?
                .into_iter()
                .find(|c| c.kind == plat)
                .map(|c| (c.status == "active", Some(c).filter(|c| c.token.is_some()))))
        })
        .await;
    let connector = match channel_state {
        Ok(Some((true, connector))) => connector,
        Ok(Some((false, _))) => {
            return detail(
                StatusCode::BAD_REQUEST,
                &format!("The {platform} channel for this chatbot is disabled."),
            );
        }
        Ok(None) => {
            return detail(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Chatbot cannot send messages on the {platform} channel. Create the channel first."
                ),
            );
        }
        Err(r) => return r,
    };
    let identifier = if platform == "commcare_connect" {
        identifier.to_lowercase()
    } else {
        identifier
    };
    let start_new = body
        .get("start_new_session")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let session_data = body.get("session_data").filter(|v| v.is_object()).cloned();
    let pdata = body
        .get("participant_data")
        .filter(|v| v.is_object())
        .cloned();
    let (org, base, bid, plat) = (
        caller.org().to_string(),
        call.base.clone(),
        bot.id.clone(),
        platform.clone(),
    );
    let r = call
        .blocking(move |s| {
            let p = s.ocs_upsert_participant(&org, &plat, &identifier, None)?;
            s.ocs_merge_participant_data(&org, &p.id, &bid, pdata.unwrap_or(json!({})))?;
            let open = s.ocs_latest_session(
                &org,
                &bid,
                &plat,
                &identifier,
                &["pending-review", "complete", "unknown"],
            )?;
            let session = match open {
                Some(sess) if !start_new => sess,
                other => {
                    if let Some(old) = other {
                        s.ocs_set_session_status(&org, &old.id, "pending-review")?;
                    }
                    s.ocs_create_session(
                        &org,
                        NewSession {
                            bot_id: bid.clone(),
                            participant_platform: plat.clone(),
                            participant_identifier: identifier.clone(),
                            platform: plat.clone(),
                            channel_kind: "platform".into(),
                            status: "setup".into(),
                            session_token_required: true,
                            ..Default::default()
                        },
                    )?
                }
            };
            let session = match session_data {
                Some(d) => {
                    let state = s.ocs_set_session_state(&org, &session.id, d, true)?;
                    OcsSession {
                        state: state.unwrap_or(session.state.clone()),
                        ..session
                    }
                }
                None => session,
            };
            Ok((
                session.clone(),
                team_json(s, &org)?,
                format!("{base}/api/sessions/{}/", session.id),
            ))
        })
        .await;
    let (session, team, url) = match r {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Delivery runs after the answer, as OCS queues it; failures are logged only. On a
    // connector channel the messages are also queued in the plugins' durable outbox, to the
    // participant's identifier (the platform's chat id).
    let ocs = call.ocs.clone();
    let plugins = call.ocs.plugins.clone();
    let sess = session.clone();
    tokio::spawn(async move {
        let res = match (prompt, text) {
            (_, Some(t)) => {
                let (o, sid) = (sess.organization_id.clone(), sess.id.clone());
                let msg = NewOcsMessage {
                    role: "assistant".into(),
                    content: t.clone(),
                    metadata: json!({"direct_to_user": true}),
                    tags: vec![],
                    file_ids: vec![],
                };
                ocs.engine
                    .blocking(move |s| s.ocs_append_messages(&o, &sid, vec![msg]))
                    .await
                    .map(|_| vec![json!({"content_type": "text", "content": {"text": t}})])
            }
            (Some(p), None) => ocs
                .run_trigger(&sess, json!({"prompt": p, "source": "api"}))
                .await
                .map(|out| out.iter().map(render::Rendered::payload).collect()),
            (None, None) => Ok(vec![]),
        };
        let messages = match res {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, session = %sess.id, "trigger_bot delivery failed");
                return;
            }
        };
        let Some(channel) = connector.filter(|_| !messages.is_empty()) else {
            return;
        };
        let Some(rt) = plugins else {
            tracing::warn!(session = %sess.id, channel = %channel.id, "trigger_bot: no plugin runtime to deliver on the connector channel");
            return;
        };
        let id = format!("ocs-trigger-{}", crate::store::ids::new_id());
        let to = &sess.participant.identifier;
        if let Err(e) = rt.enqueue_delivery(&channel, to, &id, messages).await {
            tracing::warn!(error = %e, session = %sess.id, "trigger_bot: queueing the delivery failed");
        }
    });
    ok(&json!({"session_id": session.id, "url": url, "team": team, "channel": platform}))
}

// ---- incoming_message ----------------------------------------------------------------------------

pub(crate) async fn incoming(call: &mut Call, caller: &Caller) -> Response<Body> {
    let body = match call.json().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = match body.get("message") {
        None | Some(Json::Null) => return field_error("message", "This field is required."),
        Some(Json::String(s)) => s.clone(),
        Some(_) => return field_error("message", "Not a valid string."),
    };
    if call.params.version.is_some() {
        let bot = match find_bot(call, caller, &call.params.id.clone()).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(r) = check_version(call, &bot, false).await {
            return r;
        }
    }
    let ident = caller.identifier();
    let (org, bid) = (caller.org().to_string(), call.params.id.clone());
    let wanted = body
        .get("session")
        .and_then(Json::as_str)
        .map(str::to_string);
    let key_id = caller.key.id.clone();
    let reset = text.trim().eq_ignore_ascii_case("/reset");
    // `/v{N}/`: this turn (and a session it creates) runs version N.
    let route_version = call.params.version;
    // One blocking call: the chatbot (404 first) and the session to continue or create.
    let r = call
        .blocking(move |s| {
            if s.get_bot(&org, &bid).is_err() {
                return Ok(Err(()));
            }
            let new = |s: &crate::store::Store| {
                s.ocs_create_session(
                    &org,
                    NewSession {
                        bot_id: bid.clone(),
                        participant_platform: "api".into(),
                        participant_identifier: ident.clone(),
                        platform: "api".into(),
                        channel_kind: "api".into(),
                        owner_key_id: Some(key_id.clone()),
                        status: "active".into(),
                        session_token_required: true,
                        version_number: route_version,
                        ..Default::default()
                    },
                )
            };
            let current = match &wanted {
                Some(id) => match s.ocs_session(&org, id)? {
                    Some(sess)
                        if sess.bot_id == bid
                            && sess.platform == "api"
                            && sess.participant.platform == "api"
                            && sess.participant.identifier == ident =>
                    {
                        Some(sess)
                    }
                    _ => return Ok(Ok(None)),
                },
                None => s.ocs_latest_session(
                    &org,
                    &bid,
                    "api",
                    &ident,
                    &["pending-review", "complete", "unknown"],
                )?,
            };
            if reset {
                if let Some(c) = &current {
                    s.ocs_set_session_status(&org, &c.id, "complete")?;
                }
                new(s)?;
                return Ok(Ok(Some(None)));
            }
            let sess = match current {
                Some(c) => {
                    if c.status == "setup" {
                        s.ocs_set_session_status(&org, &c.id, "active")?;
                    }
                    c
                }
                None => new(s)?,
            };
            let inputs = s.ocs_turn_inputs(&org, &sess.id, &sess.participant.id, &sess.bot_id)?;
            Ok(Ok(Some(Some((sess, inputs)))))
        })
        .await;
    let (mut session, inputs) = match r {
        Ok(Ok(Some(Some(s)))) => s,
        Ok(Ok(Some(None))) => {
            return ok(&json!({"response": "Conversation reset", "attachments": []}));
        }
        Ok(Ok(None)) => return detail(StatusCode::NOT_FOUND, "Not found."),
        Ok(Err(())) => return bot_404(),
        Err(r) => return r,
    };
    if route_version.is_some() {
        session.version_number = route_version;
    }
    match run_sync(call, &session, &text, Some(inputs)).await {
        Ok(rendered) => {
            let attachments: Vec<Json> = rendered
                .iter()
                .filter_map(|r| r.file.as_ref())
                .map(|(name, link)| json!({"file_name": name, "link": link}))
                .collect();
            ok(&json!({"response": render::joined(&rendered), "attachments": attachments}))
        }
        Err(r) => r,
    }
}

/// Run a synchronous text turn (its messages stored in its own commit, see
/// [`crate::ocs::Ocs::run_sync_text`]); the rendered replies.
async fn run_sync(
    call: &Call,
    session: &OcsSession,
    text: &str,
    inputs: Option<TurnInputs>,
) -> Result<Vec<render::Rendered>, Response<Body>> {
    call.ocs
        .run_sync_text(session, text, inputs)
        .await
        .map_err(super::engine_error)
}

// ---- OpenAI --------------------------------------------------------------------------------------

fn oai_error(msg: &str) -> Response<Body> {
    json_resp(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": msg, "type": "error", "param": null, "code": null}}),
    )
}

/// `messages` → (history, last user text), OpenAI-style errors.
fn oai_messages(body: &Json) -> Result<(Json, String), Response<Body>> {
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

pub(crate) async fn openai(call: &mut Call, caller: &Caller) -> Response<Body> {
    let bot = match find_bot(call, caller, &call.params.id.clone()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_version(call, &bot, true).await {
        return r;
    }
    let body = match call.json().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (hist, last) = match oai_messages(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let hist = match history(Some(&hist), "messages") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let ident = match body
        .get("user")
        .and_then(Json::as_str)
        .filter(|u| !u.trim().is_empty())
    {
        Some(u) => u.to_string(),
        None => caller.identifier(),
    };
    let stream = body.get("stream").and_then(Json::as_bool).unwrap_or(false);
    let (org, bid, key_id) = (
        caller.org().to_string(),
        bot.id.clone(),
        caller.key.id.clone(),
    );
    // `/v{N}/` (0 = the default version) pins the session to version N.
    let version_number = call.params.version.filter(|n| *n != 0);
    let session = match call
        .blocking(move |s| {
            let sess = s.ocs_create_session(
                &org,
                NewSession {
                    bot_id: bid,
                    participant_platform: "api".into(),
                    participant_identifier: ident,
                    platform: "api".into(),
                    channel_kind: "api".into(),
                    owner_key_id: Some(key_id),
                    status: "active".into(),
                    session_token_required: true,
                    messages: hist,
                    version_number,
                    ..Default::default()
                },
            )?;
            let inputs = s.ocs_turn_inputs(&org, &sess.id, &sess.participant.id, &sess.bot_id)?;
            Ok((sess, inputs))
        })
        .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (session, inputs) = session;
    let rendered = match run_sync(call, &session, &last, Some(inputs)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let content = render::joined(&rendered);
    let created = crate::store::ids::now_millis() / 1000;
    let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    if !stream {
        return ok(&json!({
            "id": session.id, "object": "chat.completion", "created": created, "model": "",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": usage,
        }));
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
    r
}
