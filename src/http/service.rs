//! The per-request pipeline shared by every API family: request id and tracing span, panic
//! catching, the body idle deadline of its body readers, top-level dispatch by path prefix,
//! CORS for browser-facing families, the `X-Request-Id` response header and one access-log
//! line per request.
//!
//! Adding an API family (OCS `/api/...`, admin `/_/api/...`, `/hooks/{token}`): write a sibling
//! module with `async fn handle(state, ctx, req, rest_of_path) -> Response<Body>` built on
//! [`super::router::Router`] and [`super::error::ApiError`], then add one arm to [`dispatch`].

use super::AppState;
use super::error::ApiError;
use super::request::{RequestCtx, request_id, with_body_idle};
use super::response::{Body, ok_json};
use super::{cors, ocs, studio};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// Entry point of hyper's `service_fn`: never fails, never panics outward.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (client_ip, https) =
        super::request::client_of(peer.ip(), req.headers(), &state.config.trusted_proxies);
    let ctx = RequestCtx {
        id: request_id(req.headers()),
        peer,
        client_ip,
        https,
        started: Instant::now(),
    };
    let span = tracing::info_span!("req", id = %ctx.id);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    async move {
        let idle = state.config.body_idle_timeout;
        let fut: Pin<Box<dyn Future<Output = Response<Body>> + Send>> =
            Box::pin(with_body_idle(idle, dispatch(state, ctx.clone(), req)));
        let mut resp = match (CatchUnwind { inner: fut }).await {
            Ok(resp) => resp,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(panic = %what, "handler panicked");
                ApiError::new(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error",
                )
                .into_response()
            }
        };
        if let Ok(v) = HeaderValue::from_str(&ctx.id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        tracing::info!(
            target: "botyard::access",
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            micros = ctx.started.elapsed().as_micros() as u64,
            peer = %ctx.peer,
            // Only behind a trusted proxy, where it differs from the peer.
            client = (ctx.client_ip != ctx.peer.ip().to_canonical())
                .then(|| tracing::field::display(ctx.client_ip)),
        );
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// The prefixes of the Studio API (spec §0: `/prod/api` is the legacy alias).
const STUDIO_PREFIXES: [&str; 2] = ["/v1/api", "/prod/api"];

/// Each API family's future is boxed here (and each route's in the families): a future
/// holds the state of every branch it may take, and futures are moved by value when they
/// are created and boxed, so unboxed branches made the Studio chat path copy ~95 KB of
/// future state per request (measured: 33 KB dispatch, 33 KB Studio, 16 KB chat, 8 KB
/// engine), about 7 µs of `memmove` per turn.
async fn dispatch(state: Arc<AppState>, ctx: RequestCtx, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/healthz" {
        return healthz(req.method());
    }
    if let Some(rest) = strip_family(path, &STUDIO_PREFIXES) {
        let rest = rest.to_string();
        let mut resp = if cors::is_preflight(&req) {
            cors::preflight_response()
        } else {
            Box::pin(studio::handle(&state, &ctx, req, &rest))
                .await
                .unwrap_or_else(ApiError::into_response)
        };
        cors::decorate(resp.headers_mut());
        return resp;
    }
    if let Some(rest) = strip_family(path, &["/_"]) {
        let rest = rest.to_string();
        return Box::pin(super::admin::handle(&state, &ctx, req, &rest)).await;
    }
    if let Some(rest) = strip_family(path, &["/hooks"]) {
        let rest = rest.to_string();
        return Box::pin(super::hooks::handle(&state, &ctx, req, &rest)).await;
    }
    if ocs::is_ocs_path(path) {
        return Box::pin(ocs::handle(&state, &ctx, req)).await;
    }
    ApiError::route_not_found(path).into_response()
}

/// `Some(rest)` when `path` is `prefix` or lies under it (`rest` starts with `/` or is empty).
fn strip_family<'p>(path: &'p str, prefixes: &[&str]) -> Option<&'p str> {
    prefixes.iter().find_map(|p| {
        let rest = path.strip_prefix(p)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    })
}

fn healthz(method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed(method, &[Method::GET, Method::HEAD]).into_response();
    }
    ok_json(&json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Turns a panic while polling the handler into an `Err` (the `futures` crate's
/// `catch_unwind`, without the dependency).
struct CatchUnwind {
    inner: Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
}

impl Future for CatchUnwind {
    type Output = Result<Response<Body>, Box<dyn std::any::Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_prefixes() {
        assert_eq!(
            strip_family("/v1/api/chat", &STUDIO_PREFIXES),
            Some("/chat")
        );
        assert_eq!(
            strip_family("/prod/api/bot/flows", &STUDIO_PREFIXES),
            Some("/bot/flows")
        );
        assert_eq!(strip_family("/v1/api", &STUDIO_PREFIXES), Some(""));
        assert_eq!(strip_family("/v1/apix", &STUDIO_PREFIXES), None);
        assert_eq!(strip_family("/api/chat", &STUDIO_PREFIXES), None);
    }

    #[tokio::test]
    async fn panics_become_errors() {
        let fut: Pin<Box<dyn Future<Output = Response<Body>> + Send>> =
            Box::pin(async { panic!("boom") });
        let r = CatchUnwind { inner: fut }.await;
        assert!(r.is_err());
    }
}
