//! The chat API for widgets and other interactive clients (ocs-api §3.6, §3.7, §5.6, §6):
//! start, message → task, task poll, message poll, upload. Every denial on the session-bound
//! endpoints is a 403; the `chat_api` rate-limit scope applies to all five.

use super::api::{experiment_json, message_json_with};
use super::{Answer, Call, is_uuid, json_resp, key_of, ok};
use crate::http::response::Body;
use crate::ocs::OcsError;
use crate::ocs::chat::{ChatAsk, StartChat, TaskPoll};
use crate::ocs::ratelimit::Scope;
use crate::store::ocs::{OcsFile, OcsMessage};
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value as Json, json};

/// Widget versions before this get RFC 8594 deprecation headers.
const WIDGET_CUTOFF: (u64, u64, u64) = (0, 6, 0);

fn now_ms() -> i64 {
    crate::store::ids::now_millis()
}

/// The `chat_api` limit of a session-bound request (its verdict goes into the answer's
/// headers, error or not).
fn chat_rate(call: &mut Call) -> Result<(), OcsError> {
    let key = format!("session:{}", call.params.id);
    let v = call
        .ocs
        .limiter
        .hit(Scope::Chat, &key, None, now_ms() / 1000);
    call.rate = Some(v);
    if v.blocked {
        return Err(OcsError::Throttled {
            available_in: v.reset,
        });
    }
    Ok(())
}

/// The rate limit first (a limited caller learns nothing more), then what the request
/// presents for its access decision.
async fn ask_of(call: &mut Call) -> Result<ChatAsk, OcsError> {
    chat_rate(call)?;
    let member_org = key_of(&call.ocs, &call.headers)
        .await
        .map(|k| k.organization_id);
    Ok(ChatAsk {
        embed: call.header("x-embed-key").map(str::to_string),
        origin: origin_host(call),
        token: call.header("x-session-token").map(str::to_string),
        member_org,
    })
}

/// A field's 400.
fn field(name: &str, message: &str) -> OcsError {
    OcsError::field(name, message)
}

/// Host of the request's `Origin`, else of its `Referer`.
fn origin_host(call: &Call) -> Option<String> {
    let raw = call.header("origin").or_else(|| call.header("referer"))?;
    let rest = raw.split_once("://").map(|(_, r)| r).unwrap_or(raw);
    let host = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?;
    let host = host.split(':').next()?.to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u64>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

fn deprecation_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("deprecation", HeaderValue::from_static("true"));
    h.insert(
        "sunset",
        HeaderValue::from_static("Thu, 01 Oct 2026 00:00:00 GMT"),
    );
    h.insert(
        "link",
        HeaderValue::from_static(
            "<https://docs.openchatstudio.com/chat_widget/>; rel=\"successor-version\"",
        ),
    );
}

fn widget_deprecated(call: &Call, source_widget: bool) -> bool {
    match call.header("x-ocs-widget-version") {
        Some(v) => parse_version(v).is_some_and(|v| v < WIDGET_CUTOFF),
        None => source_widget,
    }
}

pub(crate) async fn start(call: &mut Call) -> Answer {
    let body = call.body_json().await?;
    let Some(bot_id) = body
        .get("chatbot_id")
        .and_then(Json::as_str)
        .map(str::to_ascii_lowercase)
    else {
        return Err(field("chatbot_id", "This field is required."));
    };
    if !is_uuid(&bot_id) {
        return Err(field("chatbot_id", "Must be a valid UUID."));
    }
    for f in ["participant_remote_id", "participant_name"] {
        match body.get(f) {
            Some(Json::String(s)) if s.trim().is_empty() => {
                return Err(field(f, "This field may not be blank."));
            }
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(_) => return Err(field(f, "Not a valid string.")),
        }
    }
    let text = |f: &str| body.get(f).and_then(Json::as_str).map(str::to_string);
    let session_data = body.get("session_data").cloned().unwrap_or(Json::Null);
    let source_widget = session_data.get("source").and_then(Json::as_str) == Some("widget");
    let version = match body.get("version_number") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => return Err(field("version_number", "A valid integer is required.")),
        },
    };
    let req = StartChat {
        bot_id,
        participant_remote_id: text("participant_remote_id"),
        participant_name: text("participant_name"),
        session_data,
        version,
        embed_key: call.header("x-embed-key").map(str::to_string),
        member: key_of(&call.ocs, &call.headers).await,
        authorization: call.header("authorization").is_some(),
        origin: origin_host(call),
        client_ip: call.ctx.client_ip.to_string(),
        widget_version: call.header("x-ocs-widget-version").map(str::to_string),
        referer: call.header("referer").map(str::to_string),
    };
    let ocs = call.ocs.clone();
    let started = ocs.start_chat(req, &mut call.rate).await?;
    let (base, bot) = (call.base.clone(), started.bot);
    let mut chatbot = call.store(move |s| experiment_json(s, &base, &bot)).await?;
    if let Some(n) = started.pinned {
        chatbot["version_number"] = json!(n);
    }
    let sess = started.session;
    let mut resp = json_resp(
        StatusCode::CREATED,
        &json!({"session_id": sess.id, "session_token": started.token, "chatbot": chatbot,
                "participant": {"identifier": sess.participant.identifier, "remote_id": sess.participant.remote_id}}),
    );
    if widget_deprecated(call, source_widget) {
        deprecation_headers(&mut resp);
    }
    Ok(resp)
}

/// The `202` of an accepted message.
fn accepted(call: &Call, task: &str) -> Response<Body> {
    let mut resp = json_resp(
        StatusCode::ACCEPTED,
        &json!({"task_id": task, "status": "processing"}),
    );
    if widget_deprecated(call, false) {
        deprecation_headers(&mut resp);
    }
    resp
}

pub(crate) async fn message(call: &mut Call) -> Answer {
    let ask = ask_of(call).await?;
    // Read before access is decided; its errors still come after a denial.
    let body = call.body_json().await;
    let ocs = call.ocs.clone();
    let task = ocs
        .accept_message(&call.params.id, &ask, body, access_fingerprint(call))
        .await?;
    Ok(accepted(call, &task))
}

/// The credentials a chat request presents, as one string: its session and every header an
/// access decision reads (token, embed key, origin, referer, API key). Two requests with
/// equal fingerprints get the same decision from the same stored state (see
/// [`crate::ocs::TaskSlot::access`]).
fn access_fingerprint(call: &Call) -> String {
    let mut f = call.params.id.clone();
    for h in [
        "x-session-token",
        "x-embed-key",
        "origin",
        "referer",
        "authorization",
        "x-api-key",
    ] {
        // Header values hold neither newlines nor NULs: absent and empty stay distinct.
        f.push('\n');
        f.push_str(call.header(h).unwrap_or("\0"));
    }
    f
}

/// A message as the API shows it, from the message and its files.
fn message_of(base: &str, (m, files): &(OcsMessage, Vec<OcsFile>)) -> Json {
    message_json_with(base, m, files)
}

/// Task poll ([`crate::ocs::Ocs::poll_task`]).
pub(crate) async fn task_poll(call: &mut Call) -> Answer {
    let ask = ask_of(call).await?;
    let ocs = call.ocs.clone();
    let poll = ocs
        .poll_task(
            &call.params.id,
            &call.params.task,
            &ask,
            &access_fingerprint(call),
        )
        .await?;
    Ok(match poll {
        TaskPoll::Processing => ok(&json!({"message": null, "status": "processing"})),
        TaskPoll::NoMessage => ok(&json!({"status": "processing"})),
        TaskPoll::Complete(m, files) => {
            ok(&json!({"message": message_json_with(&call.base, &m, &files), "status": "complete"}))
        }
        TaskPoll::Failed(e, status) => {
            let status = if status == 400 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json_resp(status, &json!({"error": e, "status": "error"}))
        }
    })
}

pub(crate) async fn poll(call: &mut Call) -> Answer {
    // Parameters are checked after access (a denied caller gets 403, not 400).
    let since = match call.query("since") {
        None => Ok(None),
        Some(s) => crate::ocs::time::parse_iso(&s)
            .map(Some)
            .ok_or("Invalid 'since' parameter format. Use ISO format."),
    };
    let limit = match call.query("limit") {
        None => Ok(50u32),
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| "Invalid 'limit' parameter. Use a non-negative integer."),
    };
    let params = match (since, limit) {
        (Ok(s), Ok(l)) => Ok((s, l)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let ask = ask_of(call).await?;
    let ocs = call.ocs.clone();
    let page = ocs.poll_messages(&call.params.id, &ask, params).await?;
    let messages: Vec<Json> = page
        .messages
        .iter()
        .map(|m| message_of(&call.base, m))
        .collect();
    Ok(ok(&json!({
        "messages": messages,
        "has_more": page.more,
        "session_status": if page.session.status == "complete" { "ended" } else { "active" },
    })))
}

/// Session-bound access for an endpoint without its own read (uploads): the session.
pub(super) async fn session_access(
    call: &mut Call,
) -> Result<crate::store::ocs::OcsSession, OcsError> {
    let ask = ask_of(call).await?;
    let ocs = call.ocs.clone();
    let (session, _, ()) = ocs
        .chat_access(&call.params.id, &ask, |_, _| Ok(()))
        .await?;
    Ok(session)
}
