//! The Open Chat Studio API v1 (`/api/...`, `/api/v1/...`, `/channels/api/...`; ocs-api.md):
//! exact-path routing (trailing slashes matter), API-key authentication and authorization
//! (§3.1–3.4), rate-limit headers (§4.2), CORS on the chat API only (§3.8), and DRF-shaped
//! error bodies (§4.1). Handlers live in `api` (experiments, sessions, participants, files),
//! `chat` (the widget chat API), `upload` (chat uploads) and `channels` (trigger_bot,
//! incoming_message, OpenAI); each parses its request into the `ocs` service's plain inputs,
//! calls it and renders the result, returning `Result<Response, OcsError>` (an error is
//! rendered once, by [`render_error`]). Anonymous chat callers are rate limited per client IP
//! before any chat handler runs (`anonymous_gate`).
//!
//! Our extensions, documented here: an API key of the chatbot's organization sent as
//! `X-api-key` on `/api/chat/*` counts as a logged-in team member (so versions can be pinned);
//! OAuth2 is not implemented (a `Bearer` on chat start is refused with `chat_access_denied`).

mod api;
mod channels;
mod chat;
mod upload;

use super::AppState;
use super::request::RequestCtx;
use super::response::Body;
use crate::ocs::ratelimit::{Scope, Verdict};
use crate::ocs::{Ocs, OcsError};
use crate::store::ocs::OcsKey;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// Does this path belong to the OCS family?
pub fn is_ocs_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path.starts_with("/channels/api/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    ExperimentList,
    ExperimentGet,
    SessionList,
    SessionCreate,
    SessionGet,
    SessionEnd,
    TagsAdd,
    TagsRemove,
    UpdateState,
    ParticipantList,
    ParticipantPost,
    FileContent,
    TriggerBot,
    OpenAi,
    Incoming,
    ChatStart,
    ChatMessage,
    ChatPoll,
    ChatTaskPoll,
    ChatUpload,
}

/// Path parameters (raw strings; typed checks happen in `route`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pub id: String,
    pub task: String,
    pub version: Option<i64>,
}

const ROUTES: &[(&str, Method, Route)] = &[
    ("/api/experiments/", Method::GET, Route::ExperimentList),
    ("/api/experiments/:id/", Method::GET, Route::ExperimentGet),
    ("/api/sessions/", Method::GET, Route::SessionList),
    ("/api/sessions/", Method::POST, Route::SessionCreate),
    ("/api/sessions/:id/", Method::GET, Route::SessionGet),
    (
        "/api/sessions/:id/end_experiment_session/",
        Method::POST,
        Route::SessionEnd,
    ),
    ("/api/sessions/:id/tags/", Method::POST, Route::TagsAdd),
    ("/api/sessions/:id/tags/", Method::DELETE, Route::TagsRemove),
    (
        "/api/sessions/:id/update_state/",
        Method::PATCH,
        Route::UpdateState,
    ),
    ("/api/participants", Method::GET, Route::ParticipantList),
    ("/api/participants", Method::POST, Route::ParticipantPost),
    ("/api/participants/", Method::GET, Route::ParticipantList),
    ("/api/participants/", Method::POST, Route::ParticipantPost),
    ("/api/files/:int/content", Method::GET, Route::FileContent),
    ("/api/trigger_bot", Method::POST, Route::TriggerBot),
    (
        "/api/openai/:uuid/chat/completions",
        Method::POST,
        Route::OpenAi,
    ),
    (
        "/api/openai/:uuid/:ver/chat/completions",
        Method::POST,
        Route::OpenAi,
    ),
    (
        "/channels/api/:uuid/incoming_message",
        Method::POST,
        Route::Incoming,
    ),
    (
        "/channels/api/:uuid/:ver/incoming_message",
        Method::POST,
        Route::Incoming,
    ),
    ("/api/chat/start/", Method::POST, Route::ChatStart),
    ("/api/chat/:uuid/message/", Method::POST, Route::ChatMessage),
    ("/api/chat/:uuid/poll/", Method::GET, Route::ChatPoll),
    (
        "/api/chat/:uuid/:task/poll/",
        Method::GET,
        Route::ChatTaskPoll,
    ),
    ("/api/chat/:uuid/upload/", Method::POST, Route::ChatUpload),
];

pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `xs`: the path's segments (split once per request, not once per route).
fn match_pattern(pattern: &str, xs: &[&str]) -> Option<Params> {
    if pattern.split('/').count() != xs.len() {
        return None;
    }
    let mut p = Params::default();
    for (a, b) in pattern.split('/').zip(xs) {
        match a {
            ":id" if !b.is_empty() => p.id = super::router::percent_decode(b)?,
            ":uuid" if is_uuid(b) => p.id = b.to_ascii_lowercase(),
            ":int" if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                p.id = b.to_string()
            }
            ":task" if !b.is_empty() => p.task = super::router::percent_decode(b)?,
            ":ver" => {
                let n = b.strip_prefix('v')?;
                if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                p.version = Some(n.parse().ok()?);
            }
            lit if !lit.starts_with(':') && lit == *b => {}
            _ => return None,
        }
    }
    Some(p)
}

/// Find the route; `Err(Some(allowed))` = the path exists under other methods.
pub(crate) fn route(method: &Method, path: &str) -> Result<(Route, Params), Option<Vec<Method>>> {
    // `/api/v1/...` is an alias of `/api/...` (not for `/channels/api`).
    let owned;
    let path = match path.strip_prefix("/api/v1/") {
        Some(rest) => {
            owned = format!("/api/{rest}");
            owned.as_str()
        }
        None => path,
    };
    let xs: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for (pattern, m, r) in ROUTES {
        if let Some(p) = match_pattern(pattern, &xs) {
            if m == method || (*method == Method::HEAD && *m == Method::GET) {
                return Ok((*r, p));
            }
            if !allowed.contains(m) {
                allowed.push(m.clone());
            }
        }
    }
    Err((!allowed.is_empty()).then_some(allowed))
}

fn is_chat_path(path: &str) -> bool {
    path.starts_with("/api/chat/") || path.starts_with("/api/v1/chat/")
}

/// Everything a handler gets.
pub(crate) struct Call {
    pub ocs: Arc<Ocs>,
    pub ctx: RequestCtx,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub params: Params,
    /// `http://host` of the request (for absolute URLs in bodies).
    pub base: String,
    pub body: Option<Incoming>,
    /// Rate-limit verdict to report in headers.
    pub rate: Option<Verdict>,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<String> {
        super::router::query_param(self.query.as_deref(), name)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Read the body (at most `limit` bytes; 413 beyond).
    pub async fn read_bytes(&mut self, limit: usize) -> Result<Bytes, OcsError> {
        use super::request::{BodyError, collect_limited};
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        collect_limited(body, limit).await.map_err(|e| match e {
            BodyError::TooLarge(_) => OcsError::detail(413, "Request body too large."),
            BodyError::Stalled(idle) => OcsError::detail(
                408,
                format!(
                    "Request body timed out: no bytes for {} s.",
                    idle.as_secs().max(1)
                ),
            ),
            BodyError::Read(e) => {
                OcsError::detail(400, format!("Could not read the request body: {e}"))
            }
        })
    }
    /// The body as JSON (`{}` when empty). Malformed → 400 `{"detail":"JSON parse error - …"}`.
    pub async fn body_json(&mut self) -> Result<Json, OcsError> {
        let b = self.read_bytes(1024 * 1024).await?;
        if b.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&b)
            .map_err(|e| OcsError::detail(400, format!("JSON parse error - {e}")))
    }
    /// Run blocking store work.
    pub async fn store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> crate::store::Result<R> + Send + 'static,
    ) -> Result<R, OcsError> {
        Ok(self.ocs.engine.blocking(f).await?)
    }
}

/// An authenticated API-key caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub key: OcsKey,
}

impl Caller {
    pub fn org(&self) -> &str {
        &self.key.organization_id
    }
    /// The participant identifier of the caller (OCS: the key owner's e-mail).
    pub fn identifier(&self) -> String {
        self.key
            .owner_email
            .clone()
            .unwrap_or_else(|| format!("apikey:{}", self.key.prefix))
    }
}

// ---- responses ---------------------------------------------------------------------------

pub(crate) fn json_resp(status: StatusCode, v: &Json) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn ok(v: &Json) -> Response<Body> {
    json_resp(StatusCode::OK, v)
}

pub(crate) fn detail(status: StatusCode, msg: &str) -> Response<Body> {
    json_resp(status, &json!({"detail": msg}))
}

pub(crate) fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_resp(status, &json!({"error": msg}))
}

pub(crate) fn field_error(field: &str, msg: &str) -> Response<Body> {
    json_resp(StatusCode::BAD_REQUEST, &json!({ field: [msg] }))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "OCS internal error");
    detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "A server error occurred.",
    )
}

/// The one place an [`OcsError`] becomes this family's JSON answer.
pub(crate) fn render_error(e: OcsError) -> Response<Body> {
    let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        OcsError::Detail { status: s, message } => detail(status(s), &message),
        OcsError::Error {
            status: s,
            message,
            code: None,
        } => error(status(s), &message),
        OcsError::Error {
            status: s,
            message,
            code: Some(code),
        } => json_resp(status(s), &json!({"error": message, "code": code})),
        OcsError::Field { field, message } => field_error(&field, &message),
        OcsError::NonField(message) => json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"non_field_errors": [message]}),
        ),
        OcsError::OpenAi(message) => json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"message": message, "type": "error", "param": null, "code": null}}),
        ),
        OcsError::Busy {
            message,
            retry_after_secs,
        } => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &message);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
            r
        }
        OcsError::Unauthenticated(message) => {
            let mut r = detail(StatusCode::UNAUTHORIZED, &message);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
            r
        }
        OcsError::Throttled { available_in } => {
            let mut r = json_resp(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"detail": "Rate limit exceeded.", "available_in": available_in}),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(available_in));
            r
        }
        OcsError::Body { status: s, body } => json_resp(status(s), &body),
        OcsError::Internal(cause) => internal(cause),
    }
}

/// A handler's answer: its success, or the error [`render_error`] renders.
pub(crate) type Answer = Result<Response<Body>, OcsError>;

pub(crate) fn forbidden() -> OcsError {
    OcsError::detail(403, "You do not have permission to perform this action.")
}

fn rate_headers(h: &mut HeaderMap, v: &Verdict) {
    h.insert("x-ratelimit-limit", HeaderValue::from(v.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(v.reset));
}

// ---- CORS (chat API only) ---------------------------------------------------------------

const CORS_HEADERS: &str = "accept, accept-encoding, content-type, dnt, origin, user-agent, \
     x-requested-with, x-ocs-widget-version, x-embed-key, x-session-token, authorization";

fn cors(h: &mut HeaderMap, preflight: bool) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After",
        ),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("DELETE, GET, OPTIONS, PATCH, POST, PUT"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
}

// ---- auth ------------------------------------------------------------------------------------

fn now_secs() -> i64 {
    crate::store::ids::now_millis().div_euclid(1000)
}

/// The API key presented (`X-api-key`, else `Authorization: Bearer`), in precedence order.
fn presented_keys(h: &HeaderMap) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        keys.push(k.trim().to_string());
    }
    if let Some(a) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, rest)) = a.trim().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        keys.push(rest.trim().to_string());
    }
    keys
}

/// Resolve a valid API key from the headers, if any (no errors, no counting).
pub(crate) async fn key_of(ocs: &Ocs, h: &HeaderMap) -> Option<OcsKey> {
    for k in presented_keys(h) {
        if let Some(key) = ocs.resolve_key(&k).await {
            return Some(key);
        }
    }
    None
}

/// Roles allowed on a route (ocs-api §3.4); `None` = any member.
fn roles(route: Route) -> Option<&'static [&'static str]> {
    const ADMINS: &[&str] = &["admin", "chatbot_admin"];
    Some(match route {
        Route::ExperimentList | Route::ExperimentGet => ADMINS,
        Route::SessionList | Route::SessionGet => &[
            "admin",
            "chatbot_admin",
            "chat_viewer",
            "annotation_reviewer",
        ],
        Route::SessionCreate
        | Route::SessionEnd
        | Route::TagsAdd
        | Route::TagsRemove
        | Route::UpdateState => ADMINS,
        Route::FileContent => &[
            "admin",
            "chatbot_admin",
            "chat_viewer",
            "assistant_admin",
            "annotation_reviewer",
        ],
        Route::ParticipantList | Route::ParticipantPost | Route::TriggerBot => ADMINS,
        _ => return None,
    })
}

/// The caller's API key, its organization's `api` limit (the verdict left in `call.rate`),
/// and its permission for the route.
async fn authenticate(ocs: &Ocs, call: &mut Call, route: Route) -> Result<Caller, OcsError> {
    if presented_keys(&call.headers).is_empty() {
        return Err(OcsError::Unauthenticated(
            "Authentication credentials were not provided.".into(),
        ));
    }
    let Some(key) = key_of(ocs, &call.headers).await else {
        let v = ocs.limiter.hit(
            Scope::Credentials,
            &call.ctx.client_ip.to_string(),
            None,
            now_secs(),
        );
        if v.blocked {
            call.rate = Some(v);
            return Err(OcsError::Throttled {
                available_in: v.reset,
            });
        }
        return Err(OcsError::Unauthenticated("Invalid token.".into()));
    };
    let v = ocs.limiter.hit(
        Scope::Api,
        &key.organization_id,
        Some(&key.organization_id),
        now_secs(),
    );
    call.rate = Some(v);
    if v.blocked {
        return Err(OcsError::Throttled {
            available_in: v.reset,
        });
    }
    let safe = matches!(call.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if key.read_only && !safe {
        return Err(forbidden());
    }
    if let Some(allowed) = roles(route)
        && !allowed.contains(&key.role.as_str())
    {
        return Err(forbidden());
    }
    Ok(Caller { key })
}

/// Anonymous chat callers (no valid API key) are limited per client IP (`--anon-chat-rate`,
/// uploads also `--anon-upload-rate`), before anything else is looked at. Ours, and enforced
/// by default, unlike OCS's own limits (§4.2): a keyless `chat/start` on a public bot and the
/// session token it hands out are open to anyone. A presented key that is not valid counts
/// as none, so a made-up key does not escape the limit.
async fn anonymous_gate(
    state: &AppState,
    ocs: &Ocs,
    call: &Call,
    route: Route,
) -> Result<(), OcsError> {
    if !presented_keys(&call.headers).is_empty() && key_of(ocs, &call.headers).await.is_some() {
        return Ok(());
    }
    let client = super::ratelimit::client_key(call.ctx.client_ip).to_string();
    let upload = (route == Route::ChatUpload).then_some(&state.anon.upload);
    for limiter in upload.into_iter().chain([&state.anon.chat]) {
        if let Err(wait) = limiter.check(&client) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as i64;
            return Err(OcsError::Throttled { available_in: secs });
        }
    }
    Ok(())
}

/// Entry point of the family.
pub async fn handle(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let chat = is_chat_path(&path);
    if chat && req.method() == Method::OPTIONS {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::OK;
        cors(r.headers_mut(), true);
        return r;
    }
    let mut resp = dispatch(state, ctx, req).await;
    if chat {
        cors(resp.headers_mut(), false);
    }
    resp
}

async fn dispatch(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    req: Request<Incoming>,
) -> Response<Body> {
    let (route, params) = match route(req.method(), req.uri().path()) {
        Ok(r) => r,
        Err(None) => return detail(StatusCode::NOT_FOUND, "Not found."),
        Err(Some(allowed)) => {
            let mut r = detail(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("Method \"{}\" not allowed.", req.method()),
            );
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return r;
        }
    };
    let ocs = &state.ocs;
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let mut call = Call {
        ocs: Arc::clone(ocs),
        ctx: ctx.clone(),
        method: parts.method.clone(),
        headers: parts.headers,
        query: parts.uri.query().map(str::to_string),
        params,
        base: format!("http://{host}"),
        body: Some(body),
        rate: None,
    };
    let mut resp = answer(state, route, &mut call)
        .await
        .unwrap_or_else(render_error);
    if let Some(v) = &call.rate {
        rate_headers(resp.headers_mut(), v);
    }
    resp
}

/// The route's answer: anonymous chat callers' limit, or the API key's checks, then the
/// handler.
async fn answer(state: &Arc<AppState>, route: Route, call: &mut Call) -> Answer {
    let ocs = &state.ocs;
    let chat_route = matches!(
        route,
        Route::ChatStart
            | Route::ChatMessage
            | Route::ChatPoll
            | Route::ChatTaskPoll
            | Route::ChatUpload
    );
    if chat_route {
        anonymous_gate(state, ocs, call, route).await?;
        return match route {
            Route::ChatStart => chat::start(call).await,
            Route::ChatMessage => chat::message(call).await,
            Route::ChatPoll => chat::poll(call).await,
            Route::ChatTaskPoll => chat::task_poll(call).await,
            _ => upload::upload(call, state.config.upload_quota).await,
        };
    }
    let caller = authenticate(ocs, call, route).await?;
    match route {
        Route::ExperimentList => api::experiment_list(call, &caller).await,
        Route::ExperimentGet => api::experiment_get(call, &caller).await,
        Route::SessionList => api::session_list(call, &caller).await,
        Route::SessionCreate => api::session_create(call, &caller).await,
        Route::SessionGet => api::session_get(call, &caller).await,
        Route::SessionEnd => api::session_end(call, &caller).await,
        Route::TagsAdd => api::tags(call, &caller, true).await,
        Route::TagsRemove => api::tags(call, &caller, false).await,
        Route::UpdateState => api::update_state(call, &caller).await,
        Route::ParticipantList => api::participant_list(call, &caller).await,
        Route::ParticipantPost => api::participant_post(call, &caller).await,
        Route::FileContent => api::file_content(call, &caller).await,
        Route::TriggerBot => channels::trigger_bot(call, &caller).await,
        Route::OpenAi => channels::openai(call, &caller).await,
        Route::Incoming => channels::incoming(call, &caller).await,
        _ => Err(OcsError::detail(404, "Not found.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_exact() {
        let u = "0190f3a2-7c1e-7b3d-9f2a-3c4d5e6f7a8b";
        assert_eq!(
            route(&Method::GET, "/api/experiments/").unwrap().0,
            Route::ExperimentList
        );
        assert_eq!(
            route(&Method::GET, "/api/v1/experiments/").unwrap().0,
            Route::ExperimentList
        );
        assert!(route(&Method::GET, "/api/v2/experiments/").is_err());
        assert!(route(&Method::GET, "/api/experiments").is_err());
        assert_eq!(
            route(&Method::GET, "/api/participants").unwrap().0,
            Route::ParticipantList
        );
        assert_eq!(
            route(&Method::GET, "/api/participants/").unwrap().0,
            Route::ParticipantList
        );
        let (r, p) = route(
            &Method::POST,
            &format!("/api/openai/{u}/v3/chat/completions"),
        )
        .unwrap();
        assert_eq!((r, p.version), (Route::OpenAi, Some(3)));
        assert!(route(&Method::POST, "/api/openai/nope/chat/completions").is_err());
        assert!(
            route(
                &Method::POST,
                &format!("/api/v1/../channels/api/{u}/incoming_message")
            )
            .is_err()
        );
        assert!(route(&Method::GET, "/api/chat/not-a-uuid/poll/").is_err());
        let (r, p) = route(&Method::GET, &format!("/api/chat/{u}/abc/poll/")).unwrap();
        assert_eq!((r, p.task.as_str()), (Route::ChatTaskPoll, "abc"));
        assert_eq!(
            route(&Method::GET, "/api/files/12/content").unwrap().0,
            Route::FileContent
        );
        assert!(route(&Method::GET, "/api/files/x/content").is_err());
        assert_eq!(
            route(&Method::PUT, "/api/sessions/").unwrap_err(),
            Some(vec![Method::GET, Method::POST])
        );
    }
}
