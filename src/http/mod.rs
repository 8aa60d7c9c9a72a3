//! The HTTP server and its API families: the only module that knows HTTP.
//!
//! Shared pieces, reusable by every family: [`server`] (accept loop, HTTP/1.1 + HTTP/2,
//! graceful shutdown), [`service`] (request ids, access log, panic catching, dispatch by path
//! prefix), [`router`] (a small path matcher giving 404/405), [`error`] (the JSON error
//! envelope), [`request`] (body limits, JSON field access), [`response`], [`cors`],
//! [`ratelimit`], [`signature`] (Studio HMAC), [`auth`] (Studio key resolution). Families:
//! [`studio`] (`/v1/api`). Background delivery: [`webhook`]. [`loadgen`] is the client side
//! of `botyard bench`.

pub mod admin;
pub mod auth;
pub mod cors;
pub mod error;
pub mod hooks;
pub mod ids;
pub mod loadgen;
pub mod ocs;
pub mod ratelimit;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod service;
pub mod signature;
pub mod studio;
pub mod webhook;

use crate::engine::{Engine, EngineError};
use crate::outbound::Outbound;
use crate::store::uploads::UploadQuota;
use auth::Authenticator;
use error::ApiError;
use hyper::StatusCode;
use ratelimit::{RateLimiter, RateSpec};
use std::sync::Arc;
use std::time::Duration;
use webhook::WebhookDispatcher;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body (413 above).
    pub body_limit: usize,
    /// Requests per second per API key (0 = unlimited).
    #[expect(
        dead_code,
        reason = "never read: `serve` builds the Authenticator from its own arguments; \
                  remove together with its setting in cli/serve.rs"
    )]
    pub rate_per_key: u32,
    /// Accepted clock distance of signed requests, in seconds.
    #[expect(
        dead_code,
        reason = "never read: `serve` builds the Authenticator from its own arguments; \
                  remove together with its setting in cli/serve.rs"
    )]
    pub signature_window: i64,
    /// Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed (see
    /// [`request::client_of`]); empty = none.
    pub trusted_proxies: Vec<crate::outbound::Cidr>,
    /// Connection caps and deadlines ([`server`]).
    pub conn: server::ConnLimits,
    /// A request body that sends no byte for this long is cut with 408 ([`request`]).
    pub body_idle_timeout: Duration,
    /// Bytes of OCS chat uploads a session and an organization may store.
    pub upload_quota: UploadQuota,
    /// Anonymous OCS chat requests (no valid API key) per client IP.
    pub anon_chat_rate: RateSpec,
    /// Anonymous OCS chat uploads per client IP (also counted as chat requests).
    pub anon_upload_rate: RateSpec,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 1024 * 1024,
            rate_per_key: 50,
            signature_window: signature::DEFAULT_WINDOW_SECS,
            trusted_proxies: Vec::new(),
            conn: server::ConnLimits::default(),
            body_idle_timeout: request::DEFAULT_BODY_IDLE,
            upload_quota: UploadQuota::default(),
            anon_chat_rate: RateSpec {
                count: 1200,
                window: Duration::from_secs(60),
            },
            anon_upload_rate: RateSpec {
                count: 30,
                window: Duration::from_secs(600),
            },
        }
    }
}

/// Per-client-IP limits of anonymous callers ([`ratelimit::client_key`]).
pub struct AnonLimits {
    pub chat: RateLimiter,
    pub upload: RateLimiter,
}

impl AnonLimits {
    pub fn new(config: &HttpConfig) -> AnonLimits {
        AnonLimits {
            chat: RateLimiter::per_window(config.anon_chat_rate),
            upload: RateLimiter::per_window(config.anon_upload_rate),
        }
    }
}

/// Everything a request handler may use. One per server, shared by `Arc`.
pub struct AppState {
    pub config: HttpConfig,
    pub engine: Engine,
    pub auth: Arc<Authenticator>,
    #[expect(
        dead_code,
        reason = "never read (the engine holds its own); remove with cli/serve.rs"
    )]
    pub outbound: Arc<Outbound>,
    #[expect(
        dead_code,
        reason = "never read (serve drains its own handle); remove with cli/serve.rs"
    )]
    pub webhooks: Arc<WebhookDispatcher>,
    /// WASM plugins: connector webhooks (`/hooks/{token}`); `None` = no connector channels.
    pub plugins: Option<Arc<crate::plugins::PluginRuntime>>,
    /// Every argon2 hash and check of the server (logins, new accounts, setup).
    pub passwords: crate::secrets::PasswordPool,
    /// Rate limits of anonymous chat callers, from `config`.
    pub anon: AnonLimits,
    /// The Open Chat Studio service (`/api`, `/channels/api`): owned here, not by a static,
    /// so that dropping the state at shutdown drops its store handle too.
    pub ocs: Arc<crate::ocs::Ocs>,
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Internal(m) => ApiError::internal(m),
            EngineError::Busy {
                message,
                retry_after_secs,
            } => ApiError::service_unavailable(message).with_retry_after(retry_after_secs),
            EngineError::Invalid { message, errors } => ApiError::bad_request(message)
                .with_extra("errors", studio::dto::diagnostics(&errors)),
            other => ApiError::new(
                StatusCode::from_u16(other.status()).unwrap_or(StatusCode::BAD_REQUEST),
                other.message(),
            ),
        }
    }
}
