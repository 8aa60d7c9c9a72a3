//! The chat API for widgets and other interactive clients (ocs-api §3.6, §3.7, §5.6, §6):
//! start, message → task, task poll, message poll, upload. Every denial on the session-bound
//! endpoints is a 403; the `chat_api` rate-limit scope applies to all five.

use super::api::{experiment_json, message_json, message_json_with};
use super::{Call, detail, error, field_error, is_uuid, json_resp, key_of, ok};
use crate::http::response::Body;
use crate::ocs::ratelimit::Scope;
use crate::ocs::{TOKEN_LIFETIME_SECS, TaskResult};
use crate::store::Store;
use crate::store::ocs::{ChatAccessRows, NewSession, OcsSession, OcsTask, WidgetChannel};
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value as Json, json};

/// Widget versions before this get RFC 8594 deprecation headers.
const WIDGET_CUTOFF: (u64, u64, u64) = (0, 6, 0);

fn now_ms() -> i64 {
    crate::store::ids::now_millis()
}

fn chat_rate(call: &mut Call, key: &str) -> Result<(), Response<Body>> {
    let v = call
        .ocs
        .limiter
        .hit(Scope::Chat, key, None, now_ms() / 1000);
    call.rate = Some(v);
    if v.blocked {
        let mut r = json_resp(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"detail": "Rate limit exceeded.", "available_in": v.reset}),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(v.reset));
        return Err(r);
    }
    Ok(())
}

/// Host of the request's `Origin`, else of its `Referer`.
fn origin_host(call: &Call) -> Option<String> {
    let raw = call.header("origin").or_else(|| call.header("referer"))?;
    let rest = raw.split_once("://").map(|(_, r)| r).unwrap_or(raw);
    let host = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?;
    let host = host.split(':').next()?.to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Does the request's origin match the channel's `allowed_domains`?
fn origin_ok(call: &Call, w: &WidgetChannel) -> bool {
    origin_allowed(origin_host(call).as_deref(), w)
}

/// Does `host` (of the request's origin, see [`origin_host`]) match `allowed_domains`?
fn origin_allowed(host: Option<&str>, w: &WidgetChannel) -> bool {
    let Some(host) = host else {
        return false;
    };
    w.allowed_domains.iter().any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "*"
            || d == host
            || d.strip_prefix("*.")
                .is_some_and(|base| host.ends_with(&format!(".{base}")) || host == base)
    })
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

fn access_denied() -> Response<Body> {
    json_resp(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "Authentication required to chat with this chatbot", "code": "chat_access_denied"}),
    )
}

pub(crate) async fn start(call: &mut Call) -> Response<Body> {
    let body = match call.json().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(bot_id) = body
        .get("chatbot_id")
        .and_then(Json::as_str)
        .map(str::to_ascii_lowercase)
    else {
        return field_error("chatbot_id", "This field is required.");
    };
    if !is_uuid(&bot_id) {
        return field_error("chatbot_id", "Must be a valid UUID.");
    }
    for f in ["participant_remote_id", "participant_name"] {
        match body.get(f) {
            Some(Json::String(s)) if s.trim().is_empty() => {
                return field_error(f, "This field may not be blank.");
            }
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(_) => return field_error(f, "Not a valid string."),
        }
    }
    let remote_id = body
        .get("participant_remote_id")
        .and_then(Json::as_str)
        .map(str::to_string);
    let pname = body
        .get("participant_name")
        .and_then(Json::as_str)
        .map(str::to_string);
    let session_data = body.get("session_data").cloned().unwrap_or(Json::Null);
    let source_widget = session_data.get("source").and_then(Json::as_str) == Some("widget");
    let version = match body.get("version_number") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => return field_error("version_number", "A valid integer is required."),
        },
    };

    // Find the chatbot (any organization: the credentials are checked against it below).
    let embed = call.header("x-embed-key").map(str::to_string);
    let widget = match &embed {
        Some(k) => {
            let k = k.clone();
            match call.blocking(move |s| s.ocs_widget_by_key(&k)).await {
                Ok(w) => w,
                Err(r) => return r,
            }
        }
        None => None,
    };
    let member = key_of(&call.ocs, &call.headers).await;
    let org = match (&widget, &member) {
        (Some(w), _) => w.organization_id.clone(),
        (None, Some(k)) => k.organization_id.clone(),
        (None, None) => String::new(),
    };
    let b2 = bot_id.clone();
    let o2 = org.clone();
    let widget_org = widget.is_some();
    let bot = match call
        .blocking(move |s| {
            if !o2.is_empty()
                && let Ok(b) = s.get_bot(&o2, &b2)
            {
                return Ok(Some(b));
            }
            if widget_org {
                return Ok(None);
            }
            // Keyless (or a key of another organization): the bot decides the organization.
            s.ocs_bot_any_org(&b2)
        })
        .await
    {
        Ok(Some(b)) => b,
        Ok(None) => {
            return detail(
                StatusCode::NOT_FOUND,
                "No Experiment matches the given query.",
            );
        }
        Err(r) => return r,
    };
    let rate_key = widget
        .as_ref()
        .map(|w| format!("channel:{}", w.id))
        .unwrap_or_else(|| format!("ip:{}", call.ctx.client_ip));
    if let Err(r) = chat_rate(call, &rate_key) {
        return r;
    }
    let is_member = member
        .as_ref()
        .is_some_and(|k| k.organization_id == bot.organization_id);
    if call.header("authorization").is_some() && !is_member {
        return access_denied();
    }
    if embed.is_some() {
        let Some(w) = widget.as_ref().filter(|w| !w.deleted && w.bot_id == bot.id) else {
            return detail(StatusCode::UNAUTHORIZED, "Invalid widget embed key");
        };
        if !origin_ok(call, w) {
            return error(StatusCode::FORBIDDEN, "Origin not allowed for this chatbot");
        }
        if !w.enabled {
            return error(
                StatusCode::FORBIDDEN,
                w.disabled_message
                    .as_deref()
                    .unwrap_or("This chatbot is currently unavailable."),
            );
        }
    } else if !is_member && !bot.settings.web_chat_public {
        return access_denied();
    }
    // Version selection: team members only.
    let mut pinned = None;
    if let Some(n) = version.filter(|n| *n != 0) {
        if !is_member {
            return error(
                StatusCode::FORBIDDEN,
                "Version number requires authentication",
            );
        }
        let b = bot.clone();
        let (next, versions) = match call.blocking(move |s| super::api::versions_of(s, &b)).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        if n != next && !versions.iter().any(|v| v["version_number"] == json!(n)) {
            return detail(
                StatusCode::NOT_FOUND,
                &format!("Experiment with version {n} not found"),
            );
        }
        pinned = Some(n);
    }
    if let Some(w) = &widget {
        let recorded = call
            .header("x-ocs-widget-version")
            .map(str::to_string)
            .or_else(|| source_widget.then(|| "unknown".into()));
        if let Some(v) = recorded {
            let (o, id) = (w.organization_id.clone(), w.id.clone());
            let _ = call
                .blocking(move |s| s.ocs_record_widget_version(&o, &id, &v))
                .await;
        }
    }
    let (platform, kind, token_required) = match &widget {
        Some(w) => ("embedded_widget", "widget", w.auth_level >= 2),
        None => ("api", "api", true),
    };
    let (identifier, remote) = match (&member, is_member) {
        (Some(k), true) => (
            k.owner_email
                .clone()
                .unwrap_or_else(|| format!("apikey:{}", k.prefix)),
            remote_id.clone(),
        ),
        _ => (
            format!("anon:{}", crate::store::ids::new_id()),
            remote_id.clone(),
        ),
    };
    let embed_source = call
        .header("referer")
        .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
        .map(str::to_string);
    let state = if is_member && session_data.is_object() {
        session_data.clone()
    } else {
        json!({})
    };
    let new = NewSession {
        bot_id: bot.id.clone(),
        participant_platform: platform.into(),
        participant_identifier: identifier,
        participant_name: Some(pname.clone().unwrap_or_else(|| {
            if is_member {
                String::new()
            } else {
                "Anonymous".into()
            }
        }))
        .filter(|n| !n.is_empty()),
        participant_remote_id: remote,
        platform: platform.into(),
        channel_kind: kind.into(),
        widget_channel_id: widget.as_ref().map(|w| w.id.clone()),
        owner_key_id: member.as_ref().filter(|_| is_member).map(|k| k.id.clone()),
        status: "active".into(),
        state,
        version_number: pinned,
        session_token_required: token_required,
        embed_source,
        messages: vec![],
        data_name: pname,
    };
    let (org, base, b) = (bot.organization_id.clone(), call.base.clone(), bot.clone());
    let r = call
        .blocking(move |s| {
            let sess = s.ocs_create_session(&org, new)?;
            Ok((sess, experiment_json(s, &base, &b)?))
        })
        .await;
    let (sess, mut chatbot) = match r {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(n) = pinned {
        chatbot["version_number"] = json!(n);
    }
    let token = token_required.then(|| call.ocs.token.issue(&sess.id));
    let mut resp = json_resp(
        StatusCode::CREATED,
        &json!({"session_id": sess.id, "session_token": token, "chatbot": chatbot,
                "participant": {"identifier": sess.participant.identifier, "remote_id": sess.participant.remote_id}}),
    );
    if widget_deprecated(call, source_widget) {
        deprecation_headers(&mut resp);
    }
    resp
}

fn token_err(code: &str, msg: &str) -> Response<Body> {
    json_resp(StatusCode::FORBIDDEN, &json!({"error": msg, "code": code}))
}

/// Session-bound access (§3.7). Returns the session and whether the caller is a team member.
pub(super) async fn access(call: &mut Call) -> Result<(OcsSession, bool), Response<Body>> {
    access_with(call, |_, _| Ok(()))
        .await
        .map(|(s, m, ())| (s, m))
}

/// [`access`], running the endpoint's own read (`extra`) in the same blocking call as the
/// access reads (one thread hop per poll). `extra`'s result is dropped when access is denied.
async fn access_with<R: Send + 'static>(
    call: &mut Call,
    extra: impl FnOnce(&Store, &OcsSession) -> crate::store::Result<R> + Send + 'static,
) -> Result<(OcsSession, bool, R), Response<Body>> {
    let ask = AccessAsk::of(call).await?;
    access_read(call, &ask, extra).await
}

/// The access reads (read pool) and `extra`, then [`AccessAsk::decide`].
async fn access_read<R: Send + 'static>(
    call: &Call,
    ask: &AccessAsk,
    extra: impl FnOnce(&Store, &OcsSession) -> crate::store::Result<R> + Send + 'static,
) -> Result<(OcsSession, bool, R), Response<Body>> {
    let (sid, embed) = (call.params.id.clone(), ask.embed.clone());
    let (rows, extra) = call
        .blocking(move |s| {
            let rows = s.ocs_chat_access_rows(&sid, embed.as_deref())?;
            let extra = match &rows.session {
                Some(sess) => Some(extra(s, sess)?),
                None => None,
            };
            Ok((rows, extra))
        })
        .await?;
    let (session, member) = ask.decide(&rows)?;
    let Some(extra) = extra else {
        return Err(detail(StatusCode::FORBIDDEN, "Session does not exist"));
    };
    Ok((session, member, extra))
}

/// What a session-bound chat request presents for its access decision, taken from the
/// request up front so that the decision can be made on rows read from the read pool or, for
/// [`message_at_once`], by a job of the store's writer.
struct AccessAsk {
    ocs: std::sync::Arc<crate::ocs::Ocs>,
    embed: Option<String>,
    /// Host of the request's origin ([`origin_host`]).
    origin: Option<String>,
    token: Option<String>,
    /// Organization of the caller's API key, if it presented a valid one.
    member_org: Option<String>,
}

impl AccessAsk {
    /// The rate limit first (a limited caller learns nothing more), then the caller's key.
    async fn of(call: &mut Call) -> Result<AccessAsk, Response<Body>> {
        chat_rate(call, &format!("session:{}", call.params.id))?;
        let member_org = key_of(&call.ocs, &call.headers)
            .await
            .map(|k| k.organization_id);
        Ok(AccessAsk {
            ocs: call.ocs.clone(),
            embed: call.header("x-embed-key").map(str::to_string),
            origin: origin_host(call),
            token: call.header("x-session-token").map(str::to_string),
            member_org,
        })
    }

    /// The session and whether the caller is a team member, or the denial (every one a
    /// 403, in the contract's order).
    fn decide(&self, rows: &ChatAccessRows) -> Result<(OcsSession, bool), Response<Body>> {
        let Some(session) = &rows.session else {
            return Err(detail(StatusCode::FORBIDDEN, "Session does not exist"));
        };
        if self.embed.is_some() {
            let Some(w) = rows
                .key_widget
                .as_ref()
                .filter(|w| w.bot_id == session.bot_id && !w.deleted)
            else {
                return Err(detail(StatusCode::FORBIDDEN, "Invalid widget embed key"));
            };
            if !origin_allowed(self.origin.as_deref(), w) {
                return Err(detail(
                    StatusCode::FORBIDDEN,
                    "Origin not allowed for this chatbot",
                ));
            }
        }
        let member = self.member_org.as_ref() == Some(&session.organization_id);
        if rows.by_token() {
            let Some(token) = &self.token else {
                return Err(token_err(
                    "session_token_required",
                    "Session token required",
                ));
            };
            if !self.ocs.token.verify(&session.id, token) {
                return Err(token_err("session_token_invalid", "Invalid session token"));
            }
            let lifetime = rows
                .own_widget
                .as_ref()
                .and_then(|w| w.session_token_lifetime)
                .unwrap_or(TOKEN_LIFETIME_SECS);
            if now_ms() > session.created_at + lifetime * 1000 {
                return Err(token_err("session_expired", "Session has expired"));
            }
            return Ok((session.clone(), member));
        }
        if rows.by_key() {
            let ok = match (&rows.key_widget, &rows.own_widget) {
                (Some(k), Some(w)) => k.id == w.id && !w.deleted,
                _ => false,
            };
            if !ok {
                return Err(detail(StatusCode::FORBIDDEN, "Invalid widget embed key"));
            }
        } else {
            if let Some(k) = &rows.key_widget
                && Some(&k.id) != session.widget_channel_id.as_ref()
            {
                return Err(detail(StatusCode::FORBIDDEN, "Invalid widget embed key"));
            }
            if !rows.public && !member {
                return Err(detail(
                    StatusCode::FORBIDDEN,
                    "You do not have access to this chatbot",
                ));
            }
        }
        Ok((session.clone(), member))
    }
}

/// The stored request of a chat message: its text, attachments, `context` and version.
fn message_request(text: &str, ids: &[i64], body: &Json) -> Json {
    json!({"message": text, "attachment_ids": ids,
           "context": body.get("context").cloned().unwrap_or(Json::Null),
           "version_number": body.get("version_number").cloned().unwrap_or(Json::Null)})
}

/// The request of the common message, `None` for any other: a non-blank text, no version
/// pin, no attachments.
fn plain_message(body: &Json) -> Option<Json> {
    let text = body
        .get("message")?
        .as_str()
        .filter(|t| !t.trim().is_empty())?;
    let unpinned = body
        .get("version_number")
        .is_none_or(|v| v.is_null() || *v == json!(0));
    let no_files = match body.get("attachment_ids") {
        None | Some(Json::Null) => true,
        Some(Json::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    (unpinned && no_files).then(|| message_request(text, &[], body))
}

/// The common message ([`plain_message`]) to a session with nothing queued (reserved by
/// the caller, see [`crate::ocs::Ocs::reserve`]): its access rows are read as a job of the
/// store's writer (SQL only, warm pages), the decision is made here, and the task with its
/// user message is created in one more writer job, with [`message`]'s answers in
/// [`message`]'s order. A busy session's message queues the usual way.
async fn message_at_once(call: &Call, ask: AccessAsk, request: Json) -> Response<Body> {
    let sid = call.params.id.clone();
    let decided = match call
        .ocs
        .store
        .ocs_chat_access_rows_now(sid.clone(), ask.embed.clone())
        .await
    {
        Ok(rows) => match ask.decide(&rows) {
            Ok((s, _)) if s.status == "complete" => {
                Err(error(StatusCode::BAD_REQUEST, "Session has ended"))
            }
            Ok((s, _)) => Ok(s),
            Err(r) => Err(r),
        },
        Err(e) => Err(super::internal(e)),
    };
    let started = match decided {
        Ok(session) => call
            .ocs
            .store
            .ocs_create_started_task(&session, crate::ocs::new_task(request.clone()))
            .await
            .map(|(id, inputs)| (session, id, inputs))
            .map_err(super::internal),
        Err(r) => Err(r),
    };
    match started {
        Ok((session, id, inputs)) => {
            let access = access_fingerprint(call);
            call.ocs
                .start_reserved(&session, &id, request, inputs, access);
            accepted(call, &id)
        }
        Err(resp) => {
            call.ocs.release(sid);
            resp
        }
    }
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

pub(crate) async fn message(call: &mut Call) -> Response<Body> {
    let ask = match AccessAsk::of(call).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Read before access is decided; its errors still come after a denial.
    let body = call.json().await;
    if let Some(request) = body.as_ref().ok().and_then(plain_message)
        && call.ocs.reserve(&call.params.id)
    {
        return message_at_once(call, ask, request).await;
    }
    let (session, member, ()) = match access_read(call, &ask, |_, _| Ok(())).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match body {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = match body.get("message") {
        None | Some(Json::Null) => return field_error("message", "This field is required."),
        Some(Json::String(s)) if s.trim().is_empty() => {
            return field_error("message", "This field may not be blank.");
        }
        Some(Json::String(s)) => s.clone(),
        Some(_) => return field_error("message", "Not a valid string."),
    };
    if session.status == "complete" {
        return error(StatusCode::BAD_REQUEST, "Session has ended");
    }
    if let Some(v) = body
        .get("version_number")
        .filter(|v| !v.is_null() && **v != json!(0))
    {
        if !member {
            return error(
                StatusCode::FORBIDDEN,
                "Version number requires authentication",
            );
        }
        let (o, b) = (session.organization_id.clone(), session.bot_id.clone());
        let bot = match call.blocking(move |s| s.get_bot(&o, &b)).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let (next, versions) = match call
            .blocking(move |s| super::api::versions_of(s, &bot))
            .await
        {
            Ok(x) => x,
            Err(r) => return r,
        };
        if *v != json!(next) && !versions.iter().any(|x| x["version_number"] == *v) {
            return detail(
                StatusCode::NOT_FOUND,
                &format!("Experiment with version {v} not found"),
            );
        }
    }
    let ids: Vec<i64> = match body.get("attachment_ids") {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(a)) => match a.iter().map(Json::as_i64).collect::<Option<Vec<_>>>() {
            Some(v) => v,
            None => return field_error("attachment_ids", "A valid integer is required."),
        },
        Some(_) => return field_error("attachment_ids", "Expected a list of items."),
    };
    if !ids.is_empty() {
        let mut uniq = ids.clone();
        uniq.sort_unstable();
        uniq.dedup();
        let (ids2, o) = (ids.clone(), session.organization_id.clone());
        let found = match call.blocking(move |s| s.ocs_files_of(&o, &ids2)).await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let valid = uniq.len() == ids.len()
            && found.len() == ids.len()
            && found.iter().all(|f| {
                f.organization_id == session.organization_id
                    && f.purpose == "message_media"
                    && f.metadata.get("session_id").and_then(Json::as_str)
                        == Some(session.id.as_str())
            });
        if !valid {
            return error(StatusCode::BAD_REQUEST, "One or more file IDs are invalid");
        }
    }
    let request = message_request(&text, &ids, &body);
    let access = access_fingerprint(call);
    match call.ocs.enqueue_message(&session, request, access).await {
        Ok(task) => accepted(call, &task),
        Err(e) => super::internal(e),
    }
}

/// Longest time a task poll holds a `processing` answer of a task this process is running
/// (see [`task_poll`]).
pub const POLL_HOLD: std::time::Duration = std::time::Duration::from_millis(25);

/// A task and, when it completed in `sess`, its first message as the API shows it.
type TaskRead = Option<(OcsTask, Option<Json>)>;

fn read_task(
    s: &Store,
    tid: &str,
    base: &str,
    sess: &OcsSession,
) -> crate::store::Result<TaskRead> {
    let Some(task) = s.ocs_task(&sess.organization_id, tid)? else {
        return Ok(None);
    };
    let message = match (
        task.session_id == sess.id,
        task.status.as_str(),
        task.message_id,
    ) {
        (true, "complete", Some(mid)) => {
            match s.ocs_message(&sess.organization_id, &sess.id, mid)? {
                Some(m) => Some(message_json(s, &sess.organization_id, base, &m)?),
                None => None,
            }
        }
        _ => None,
    };
    Ok(Some((task, message)))
}

/// The credentials a chat request presents, as one string: its session and every header an
/// access decision reads ([`access_with`]: token, embed key, origin, referer, API key). Two
/// requests with equal fingerprints get the same decision from the same stored state.
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

/// The `complete` answer of a task from its in-process slot; `None` for anything else, and
/// for a reply with files (their metadata is read from the store as usual).
fn complete_from_slot(result: &TaskResult, base: &str) -> Option<Response<Body>> {
    match result {
        TaskResult::Complete(m) if m.file_ids.is_empty() => Some(ok(
            &json!({"message": message_json_with(base, m, &[]), "status": "complete"}),
        )),
        _ => None,
    }
}

fn task_error(e: &str, status: i64) -> Response<Body> {
    let status = if status == 400 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    json_resp(status, &json!({"error": e, "status": "error"}))
}

/// Task poll. Our extension of timing only (the answers are exactly OCS's): while a task this
/// process accepted is still queued or running, the poll holds its `processing` answer for at
/// most [`POLL_HOLD`], woken by the task's completion (an in-process notifier per task id,
/// armed before the task is read, so a completion between the read and the wait is not
/// missed). A client polling right after the 202 thus usually gets `complete` in one request,
/// as soon as the result is committed; a slower turn still reads `processing` after the hold.
/// A poll presenting exactly the credentials its task's message was accepted with (same
/// session, same headers, see [`access_fingerprint`]) was granted access moments ago: it is
/// answered from the task's slot without reading the store.
pub(crate) async fn task_poll(call: &mut Call) -> Response<Body> {
    let (tid, base) = (call.params.task.clone(), call.base.clone());
    let slot = call.ocs.task_waiter(&tid);
    let mut done = std::pin::pin!(slot.as_ref().map(|s| s.done.notified()));
    if let Some(d) = done.as_mut().as_pin_mut() {
        d.enable();
    }
    if let Some(sl) = slot.as_ref().filter(|sl| {
        !sl.access.is_empty() && sl.session_id == call.params.id && {
            let fp = access_fingerprint(call);
            sl.access == fp
        }
    }) {
        if let Err(r) = chat_rate(call, &format!("session:{}", call.params.id)) {
            return r;
        }
        if sl.result.get().is_none()
            && let Some(d) = done.as_mut().as_pin_mut()
        {
            let _ = tokio::time::timeout(POLL_HOLD, d).await;
        }
        match sl.result.get() {
            None => return ok(&json!({"message": null, "status": "processing"})),
            Some(TaskResult::Error(e, status)) => {
                call.ocs.task_result_taken(&tid);
                return task_error(e, *status);
            }
            Some(result) => {
                if let Some(r) = complete_from_slot(result, &base) {
                    call.ocs.task_result_taken(&tid);
                    return r;
                }
            }
        }
    }
    // One read: access, the task and, when it completed in this session, its first message.
    let (t2, b2) = (tid.clone(), base.clone());
    let found = access_with(call, move |s, sess| read_task(s, &t2, &b2, sess)).await;
    let (session, mut found) = match found {
        Ok((session, _, found)) => (session, found),
        Err(r) => return r,
    };
    let pending = |f: &TaskRead| {
        f.as_ref().is_some_and(|(t, _)| {
            t.session_id == session.id && matches!(t.status.as_str(), "queued" | "running")
        })
    };
    if pending(&found)
        && let Some(d) = done.as_mut().as_pin_mut()
    {
        let _ = tokio::time::timeout(POLL_HOLD, d).await;
        // The result as committed, when the task finished (no read back); else as stored.
        if let Some(r) = slot
            .as_ref()
            .and_then(|s| s.result.get())
            .and_then(|result| complete_from_slot(result, &base))
        {
            return r;
        }
        let sess = session.clone();
        found = match call
            .blocking(move |s| read_task(s, &tid, &base, &sess))
            .await
        {
            Ok(f) => f,
            Err(r) => return r,
        };
    }
    let Some((task, message)) = found else {
        // Unknown or never-issued ids read "processing", as OCS does.
        return ok(&json!({"message": null, "status": "processing"}));
    };
    if task.session_id != session.id {
        return detail(StatusCode::NOT_FOUND, "Not found.");
    }
    match (task.status.as_str(), message) {
        ("queued" | "running", _) => ok(&json!({"message": null, "status": "processing"})),
        ("error", _) => task_error(
            task.error.as_deref().unwrap_or_default(),
            task.error_status.unwrap_or(500),
        ),
        (_, Some(m)) => ok(&json!({"message": m, "status": "complete"})),
        (_, None) if task.message_id.is_none() => ok(&json!({"status": "processing"})),
        (_, None) => json_resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "Unknown error"}),
        ),
    }
}

pub(crate) async fn poll(call: &mut Call) -> Response<Body> {
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
    let (p2, base) = (params, call.base.clone());
    let r = access_with(call, move |s, sess| {
        let Ok((since, limit)) = p2 else {
            return Ok(None);
        };
        let org = &sess.organization_id;
        let mut msgs = s.ocs_messages(org, &sess.id, since, Some(limit.saturating_add(1)))?;
        let more = msgs.len() > limit as usize;
        msgs.truncate(limit as usize);
        let mut out = Vec::with_capacity(msgs.len());
        for m in &msgs {
            out.push(message_json(s, org, &base, m)?);
        }
        Ok(Some((out, more)))
    })
    .await;
    match (r, params) {
        (Err(r), _) => r,
        (Ok(_), Err(e)) => error(StatusCode::BAD_REQUEST, e),
        (Ok((session, _, found)), Ok(_)) => {
            let (messages, more) = found.unwrap_or_default();
            ok(&json!({
                "messages": messages,
                "has_more": more,
                "session_status": if session.status == "complete" { "ended" } else { "active" },
            }))
        }
    }
}
