//! The CSML Studio client API, `/v1/api` (alias `/prod/api`), spec §1–§3: routing, the auth
//! mode of each endpoint, and the handlers. A handler parses and checks its input, makes one
//! store or engine call, and shapes the answer; the rules live in the engine and the store.

mod bot;
mod chat;
pub mod dto;

use super::AppState;
use super::auth::{Mode, StudioAuth};
use super::error::{ApiError, ApiResult};
use super::request::{RequestCtx, parse_object, read_body};
use super::response::Body;
use super::router::{Match, Params, Router};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Map, Value as Json};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Broadcasts,
    GetBot,
    PutBot,
    ListFlows,
    CreateFlow,
    GetFlow,
    UpdateFlow,
    DeleteFlow,
    Usage,
    Validate,
    Build,
    GetBuild,
    ConversationsOpen,
}

impl Route {
    fn mode(self) -> Mode {
        match self {
            Route::Chat | Route::Broadcasts => Mode::Public,
            _ => Mode::Signed,
        }
    }
}

fn router() -> &'static Router<Route> {
    static ROUTER: OnceLock<Router<Route>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        Router::new()
            .route(Method::POST, "/chat", Route::Chat)
            .route(Method::POST, "/broadcasts", Route::Broadcasts)
            .route(Method::GET, "/bot", Route::GetBot)
            .route(Method::PUT, "/bot", Route::PutBot)
            .route(Method::GET, "/bot/flows", Route::ListFlows)
            .route(Method::POST, "/bot/flows", Route::CreateFlow)
            .route(Method::GET, "/bot/flows/:flow_id", Route::GetFlow)
            .route(Method::PUT, "/bot/flows/:flow_id", Route::UpdateFlow)
            .route(Method::DELETE, "/bot/flows/:flow_id", Route::DeleteFlow)
            .route(Method::GET, "/bot/usage", Route::Usage)
            .route(Method::POST, "/bot/validate", Route::Validate)
            .route(Method::POST, "/bot/build", Route::Build)
            .route(Method::GET, "/bot/build", Route::GetBuild)
            .route(
                Method::POST,
                "/conversations/open",
                Route::ConversationsOpen,
            )
    })
}

/// What a handler receives: the caller's identity, path parameters, query, and the body as a
/// JSON object (empty when the method has no body).
pub(crate) struct Call<'a> {
    pub state: &'a Arc<AppState>,
    pub ctx: &'a RequestCtx,
    pub auth: StudioAuth,
    pub params: Params,
    pub query: Option<String>,
    pub body: Map<String, Json>,
}

impl Call<'_> {
    fn org(&self) -> &str {
        &self.auth.org_id
    }
    fn bot(&self) -> &str {
        &self.auth.bot_id
    }
    /// The `:flow_id` path parameter (routes that have one always match it).
    fn flow_id(&self) -> &str {
        self.params.get("flow_id").unwrap_or_default()
    }
}

pub async fn handle(
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
    let auth = Box::pin(state.auth.authenticate(
        &parts.headers,
        ctx.client_ip,
        route.mode(),
        now_secs(),
    ))
    .await?;
    tracing::debug!(org = %auth.org_id, bot = %auth.bot_id, channel = %auth.channel_id, "authenticated");
    // Bodies are read after authentication: an anonymous client cannot make us buffer 1 MiB.
    let body = match parts.method {
        Method::GET | Method::HEAD | Method::DELETE => Map::new(),
        _ => {
            let bytes = Box::pin(read_body(body, &parts.headers, state.config.body_limit)).await?;
            parse_object(&bytes, matches!(route, Route::Build))?
        }
    };
    let call = Call {
        state,
        ctx,
        auth,
        params,
        query: parts.uri.query().map(str::to_string),
        body,
    };
    match route {
        Route::Chat => Box::pin(chat::chat(call)).await,
        Route::Broadcasts => Box::pin(chat::broadcast(call)).await,
        Route::ConversationsOpen => Box::pin(chat::conversations_open(call)).await,
        Route::GetBot => Box::pin(bot::get_bot(call)).await,
        Route::PutBot => Box::pin(bot::put_bot(call)).await,
        Route::ListFlows => Box::pin(bot::list_flows(call)).await,
        Route::CreateFlow => Box::pin(bot::create_flow(call)).await,
        Route::GetFlow => Box::pin(bot::get_flow(call)).await,
        Route::UpdateFlow => Box::pin(bot::update_flow(call)).await,
        Route::DeleteFlow => Box::pin(bot::delete_flow(call)).await,
        Route::Usage => Box::pin(bot::usage(call)).await,
        Route::Validate => Box::pin(bot::validate(call)).await,
        Route::Build => Box::pin(bot::build(call)).await,
        Route::GetBuild => Box::pin(bot::get_build(call)).await,
    }
}

fn now_secs() -> i64 {
    crate::store::ids::now_millis().div_euclid(1000)
}
