//! The admin family, mounted at `/_`: the embedded UI ([`assets`]) at `/_/…` and its JSON API
//! at `/_/api/…`.
//!
//! Every API request goes through one pipeline: route → session (cookie; 401) → on writes,
//! CSRF (header + cookie = the session's token; 403) and a JSON content type (415) → body →
//! organization role (`:org` in the path; a non-member gets 404, a too-low role 403) →
//! handler. Handlers call the same engine and store functions as the public APIs.
//!
//! Handlers: [`auth`] (setup, login, logout, session), [`orgs`] (organizations, members, OCS
//! API keys), [`bots`] (bots, flows, validate, build, versions, try-it, usage), [`channels`],
//! [`convs`] (conversations, participants, organization usage), [`plugins`] (installed and
//! first-party plugins, upload, settings, allowed hosts, recent errors).
//!
//! The one body that is not JSON: a plugin upload (`POST /orgs/:org/plugins`) is the raw
//! `.wasm` (`Content-Type: application/wasm`). Like JSON, that content type cannot be sent by
//! a cross-site form without a CORS preflight, and the CSRF token is checked all the same.

mod assets;
mod auth;
mod bots;
mod channels;
mod convs;
mod orgs;
mod plugins;
mod wire;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::request::{RequestCtx, parse_object, read_body};
use super::response::Body;
use super::router::{Match, Params, Router};
use crate::admin::{roles, session};
use crate::store::admin::AdminSession;
use crate::store::{Role, User};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value as Json};
use std::sync::{Arc, OnceLock};

pub use crate::admin::setup::announce as announce_setup;

/// Response headers of every admin response.
pub(crate) mod headers {
    use hyper::header::{HeaderMap, HeaderValue};

    /// No inline script or style anywhere in the UI, so the policy can be strict.
    pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
        img-src 'self' data: https:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
        base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

    pub fn security(h: &mut HeaderMap) {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
        h.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// Any logged-in admin.
    Session,
    /// A member of `:org` with at least this role.
    Org(Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    SetupState,
    Setup,
    Login,
    Logout,
    Session,
    Orgs,
    CreateOrg,
    Members,
    AddMember,
    SetMember,
    RemoveMember,
    ApiKeys,
    CreateApiKey,
    RevokeApiKey,
    Bots,
    CreateBot,
    GetBot,
    UpdateBot,
    DeleteBot,
    CreateFlow,
    UpdateFlow,
    DeleteFlow,
    Validate,
    Build,
    Versions,
    GetVersion,
    Publish,
    Try,
    TryReset,
    BotUsage,
    BotChannels,
    CreateChannel,
    UpdateChannel,
    RotateChannel,
    DeleteChannel,
    OrgChannels,
    Conversations,
    Conversation,
    EndConversation,
    Participants,
    OrgUsage,
    Plugins,
    InstallPlugin,
    UpdatePlugin,
    RemovePlugin,
}

impl Route {
    fn access(self) -> Access {
        use Route::*;
        match self {
            SetupState | Setup | Login => Access::Public,
            Logout | Session | Orgs | CreateOrg => Access::Session,
            Members | ApiKeys | Bots | GetBot | Validate | Versions | GetVersion | BotUsage
            | BotChannels | OrgChannels | Conversations | Conversation | Participants
            | OrgUsage | Plugins => Access::Org(Role::Viewer),
            CreateBot | UpdateBot | CreateFlow | UpdateFlow | DeleteFlow | Build | Publish
            | Try | TryReset | CreateChannel | UpdateChannel | RotateChannel | DeleteChannel
            | EndConversation => Access::Org(Role::Editor),
            AddMember | SetMember | RemoveMember | CreateApiKey | RevokeApiKey | DeleteBot
            | InstallPlugin | UpdatePlugin | RemovePlugin => Access::Org(Role::Owner),
        }
    }
}

fn router() -> &'static Router<Route> {
    static R: OnceLock<Router<Route>> = OnceLock::new();
    R.get_or_init(|| {
        use Method as M;
        use Route::*;
        Router::new()
            .route(M::GET, "/setup", SetupState)
            .route(M::POST, "/setup", Setup)
            .route(M::POST, "/login", Login)
            .route(M::POST, "/logout", Logout)
            .route(M::GET, "/session", Session)
            .route(M::GET, "/orgs", Orgs)
            .route(M::POST, "/orgs", CreateOrg)
            .route(M::GET, "/orgs/:org/members", Members)
            .route(M::POST, "/orgs/:org/members", AddMember)
            .route(M::PUT, "/orgs/:org/members/:user", SetMember)
            .route(M::DELETE, "/orgs/:org/members/:user", RemoveMember)
            .route(M::GET, "/orgs/:org/apikeys", ApiKeys)
            .route(M::POST, "/orgs/:org/apikeys", CreateApiKey)
            .route(M::DELETE, "/orgs/:org/apikeys/:key", RevokeApiKey)
            .route(M::GET, "/orgs/:org/bots", Bots)
            .route(M::POST, "/orgs/:org/bots", CreateBot)
            .route(M::GET, "/orgs/:org/bots/:bot", GetBot)
            .route(M::PUT, "/orgs/:org/bots/:bot", UpdateBot)
            .route(M::DELETE, "/orgs/:org/bots/:bot", DeleteBot)
            .route(M::POST, "/orgs/:org/bots/:bot/flows", CreateFlow)
            .route(M::PUT, "/orgs/:org/bots/:bot/flows/:flow", UpdateFlow)
            .route(M::DELETE, "/orgs/:org/bots/:bot/flows/:flow", DeleteFlow)
            .route(M::POST, "/orgs/:org/bots/:bot/validate", Validate)
            .route(M::POST, "/orgs/:org/bots/:bot/build", Build)
            .route(M::GET, "/orgs/:org/bots/:bot/versions", Versions)
            .route(M::GET, "/orgs/:org/bots/:bot/versions/:version", GetVersion)
            .route(
                M::POST,
                "/orgs/:org/bots/:bot/versions/:version/publish",
                Publish,
            )
            .route(M::POST, "/orgs/:org/bots/:bot/try", Try)
            .route(M::POST, "/orgs/:org/bots/:bot/try/reset", TryReset)
            .route(M::GET, "/orgs/:org/bots/:bot/usage", BotUsage)
            .route(M::GET, "/orgs/:org/bots/:bot/channels", BotChannels)
            .route(M::POST, "/orgs/:org/bots/:bot/channels", CreateChannel)
            .route(
                M::PUT,
                "/orgs/:org/bots/:bot/channels/:channel",
                UpdateChannel,
            )
            .route(
                M::POST,
                "/orgs/:org/bots/:bot/channels/:channel/rotate",
                RotateChannel,
            )
            .route(
                M::DELETE,
                "/orgs/:org/bots/:bot/channels/:channel",
                DeleteChannel,
            )
            .route(M::GET, "/orgs/:org/channels", OrgChannels)
            .route(M::GET, "/orgs/:org/conversations", Conversations)
            .route(M::GET, "/orgs/:org/conversations/:conv", Conversation)
            .route(
                M::POST,
                "/orgs/:org/conversations/:conv/end",
                EndConversation,
            )
            .route(M::GET, "/orgs/:org/participants", Participants)
            .route(M::GET, "/orgs/:org/usage", OrgUsage)
            .route(M::GET, "/orgs/:org/plugins", Plugins)
            .route(M::POST, "/orgs/:org/plugins", InstallPlugin)
            .route(M::PUT, "/orgs/:org/plugins/:name", UpdatePlugin)
            .route(M::DELETE, "/orgs/:org/plugins/:name", RemovePlugin)
    })
}

/// What a handler gets.
pub(crate) struct Call<'a> {
    pub state: &'a Arc<AppState>,
    pub ctx: &'a RequestCtx,
    pub headers: HeaderMap,
    pub params: Params,
    pub query: Option<String>,
    pub body: Map<String, Json>,
    /// The raw body of a plugin upload (`application/wasm`).
    pub raw: Option<hyper::body::Bytes>,
    /// The logged-in admin (`None` only on public routes).
    pub user: Option<User>,
    pub session: Option<AdminSession>,
    /// The caller's role in `:org` (org routes only).
    pub role: Option<Role>,
}

impl Call<'_> {
    pub fn param(&self, name: &str) -> ApiResult<String> {
        self.params
            .get(name)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("missing {name}")))
    }
    pub fn org(&self) -> ApiResult<String> {
        self.param("org")
    }
    pub fn user(&self) -> ApiResult<&User> {
        self.user
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("log in first"))
    }
    pub fn query(&self, name: &str) -> Option<String> {
        super::router::query_param(self.query.as_deref(), name).filter(|v| !v.is_empty())
    }
    /// Behind an HTTPS proxy the cookies get `Secure` (a trusted proxy's word only: see
    /// `RequestCtx::https`).
    pub fn secure(&self) -> bool {
        self.ctx.https
    }
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| session::cookie(h, name).map(str::to_string))
    }
    /// Run blocking store work off the runtime.
    pub async fn store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> crate::store::Result<R> + Send + 'static,
    ) -> ApiResult<R> {
        Ok(self.state.engine.blocking(f).await?)
    }
}

/// Entry point for everything under `/_` (`rest` is the path after `/_`).
pub async fn handle(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    if rest.is_empty() {
        let mut r = Response::new(Body::new(hyper::body::Bytes::new()));
        *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/_/"));
        return r;
    }
    let rest = &rest[1..];
    let api_path = if rest == "api" {
        Some("")
    } else {
        rest.strip_prefix("api/").map(|_| &rest[3..])
    };
    let mut resp = match api_path {
        Some(p) => {
            let p = p.to_string();
            let mut r = api(state, ctx, req, &p)
                .await
                .unwrap_or_else(ApiError::into_response);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        None => {
            assets::serve(req.method(), rest, req.headers()).unwrap_or_else(ApiError::into_response)
        }
    };
    headers::security(resp.headers_mut());
    resp
}

async fn api(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    req: Request<Incoming>,
    path: &str,
) -> ApiResult<Response<Body>> {
    let (route, params) = match router().lookup(req.method(), path) {
        Match::Found(r, p) => (*r, p),
        Match::NotFound => return Err(ApiError::route_not_found(req.uri().path())),
        Match::MethodNotAllowed(allowed) => {
            return Err(ApiError::method_not_allowed(req.method(), &allowed));
        }
    };
    let (parts, body) = req.into_parts();
    let mut call = Call {
        state,
        ctx,
        headers: parts.headers,
        params,
        query: parts.uri.query().map(str::to_string),
        body: Map::new(),
        raw: None,
        user: None,
        session: None,
        role: None,
    };
    let write = !matches!(parts.method, Method::GET | Method::HEAD);
    if route.access() != Access::Public {
        let (sess, user) = authenticate(&call).await?;
        if write
            && !session::csrf_ok(
                &sess,
                call.headers
                    .get(session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok()),
                call.cookie(session::CSRF_COOKIE).as_deref(),
            )
        {
            return Err(ApiError::forbidden(
                "missing or wrong CSRF token (X-CSRF-Token)",
            ));
        }
        call.session = Some(sess);
        call.user = Some(user);
    }
    if let Access::Org(need) = route.access() {
        let org = call.org()?;
        let uid = call.user()?.id.clone();
        let role = call
            .store(move |s| {
                Ok(s.user_orgs(&uid)?
                    .into_iter()
                    .find(|(o, _)| o.id == org)
                    .map(|(_, r)| r))
            })
            .await?
            .ok_or_else(|| ApiError::not_found("organization not found"))?;
        if !roles::allows(role, need) {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role in this organization",
                need.as_str()
            )));
        }
        call.role = Some(role);
    }
    if write {
        // A JSON body needs a CORS preflight cross-site: forms cannot forge these requests.
        let ct = call
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let has_body = call.headers.contains_key(hyper::header::TRANSFER_ENCODING)
            || call
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v != "0");
        let wasm_ct = ["application/wasm", "application/octet-stream"]
            .iter()
            .any(|t| ct.starts_with(t));
        if route == Route::InstallPlugin && wasm_ct {
            let limit = crate::plugins::manage::MAX_UPLOAD_BYTES;
            call.raw = Some(read_body(body, &call.headers, limit).await?);
            return dispatch(route, call).await;
        }
        if has_body && !ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send JSON (Content-Type: application/json)",
            ));
        }
        let limit = state.config.body_limit;
        let bytes = read_body(body, &call.headers, limit).await?;
        call.body = parse_object(&bytes, true)?;
    }
    dispatch(route, call).await
}

async fn authenticate(call: &Call<'_>) -> ApiResult<(AdminSession, User)> {
    let token = call
        .cookie(session::SESSION_COOKIE)
        .ok_or_else(|| ApiError::unauthorized("log in first"))?;
    let now = crate::store::ids::now_millis();
    let hash = session::token_hash(&token);
    let found = call.store(move |s| s.admin_session(&hash, now)).await?;
    let (sess, user) =
        found.ok_or_else(|| ApiError::unauthorized("your session has ended: log in again"))?;
    if let Some(exp) = session::touch(&sess, now) {
        let h = sess.token_hash.clone();
        call.store(move |s| s.touch_admin_session(&h, now, exp))
            .await?;
    }
    Ok((sess, user))
}

async fn dispatch(route: Route, call: Call<'_>) -> ApiResult<Response<Body>> {
    use Route::*;
    match route {
        SetupState => auth::setup_state(call).await,
        Setup => auth::setup(call).await,
        Login => auth::login(call).await,
        Logout => auth::logout(call).await,
        Session => auth::session(call).await,
        Orgs => orgs::list(call).await,
        CreateOrg => orgs::create(call).await,
        Members => orgs::members(call).await,
        AddMember => orgs::add_member(call).await,
        SetMember => orgs::set_member(call).await,
        RemoveMember => orgs::remove_member(call).await,
        ApiKeys => orgs::api_keys(call).await,
        CreateApiKey => orgs::create_api_key(call).await,
        RevokeApiKey => orgs::revoke_api_key(call).await,
        Bots => bots::list(call).await,
        CreateBot => bots::create(call).await,
        GetBot => bots::get(call).await,
        UpdateBot => bots::update(call).await,
        DeleteBot => bots::delete(call).await,
        CreateFlow => bots::create_flow(call).await,
        UpdateFlow => bots::update_flow(call).await,
        DeleteFlow => bots::delete_flow(call).await,
        Validate => bots::validate(call).await,
        Build => bots::build(call).await,
        Versions => bots::versions(call).await,
        GetVersion => bots::version(call).await,
        Publish => bots::publish(call).await,
        Try => bots::try_it(call).await,
        TryReset => bots::try_reset(call).await,
        BotUsage => bots::usage(call).await,
        BotChannels => channels::list(call).await,
        CreateChannel => channels::create(call).await,
        UpdateChannel => channels::update(call).await,
        RotateChannel => channels::rotate(call).await,
        DeleteChannel => channels::delete(call).await,
        OrgChannels => channels::org_list(call).await,
        Conversations => convs::list(call).await,
        Conversation => convs::get(call).await,
        EndConversation => convs::end(call).await,
        Participants => convs::participants(call).await,
        OrgUsage => convs::org_usage(call).await,
        Plugins => plugins::list(call).await,
        InstallPlugin => plugins::upload(call).await,
        UpdatePlugin => plugins::update(call).await,
        RemovePlugin => plugins::remove(call).await,
    }
}

/// A JSON response with extra `Set-Cookie` headers.
pub(crate) fn with_cookies(mut resp: Response<Body>, cookies: &[String]) -> Response<Body> {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(hyper::header::SET_COOKIE, v);
        }
    }
    resp
}
