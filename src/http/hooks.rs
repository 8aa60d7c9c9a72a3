//! `POST|GET /hooks/{channel_token}`: webhooks of connector channels (Telegram, Slack,
//! WhatsApp, Twilio, Messenger...). The channel's connector verifies and normalizes the call;
//! the events are stored before the answer (see `crate::plugins::channels`). The platform gets
//! the connector's own answer when it gives one (challenges), else `200 {"ok": true}`; a
//! refused signature is a 401, a malformed call a 400, our own failure a 503 so the platform
//! retries.

use super::AppState;
use super::error::ApiError;
use super::request::{RequestCtx, read_body};
use super::response::{Body, ok_json};
use crate::plugins::channels::HookAnswer;
use botyard_plugins::Webhook;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// `rest` is the path after `/hooks`.
pub async fn handle(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    let token = rest.trim_start_matches('/');
    if token.is_empty() || token.contains('/') {
        return ApiError::route_not_found(&format!("/hooks{rest}")).into_response();
    }
    if req.method() != Method::POST && req.method() != Method::GET {
        return ApiError::method_not_allowed(req.method(), &[Method::GET, Method::POST])
            .into_response();
    }
    let Some(plugins) = state.plugins.clone() else {
        return ApiError::not_found("no connector channels on this server").into_response();
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, state.config.body_limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // The scheme of the public base URL: `https` only on a trusted proxy's word.
    let scheme = if ctx.https { "https" } else { "http" };
    let webhook = Webhook {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    match plugins
        .ingest(token, &format!("{scheme}://{host}"), webhook)
        .await
    {
        HookAnswer::Reply(None) => ok_json(&json!({"ok": true})),
        HookAnswer::Reply(Some(r)) => {
            let mut resp = Response::new(Full::new(Bytes::from(r.body)));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            for (k, v) in r.headers {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(k.as_bytes()),
                    hyper::header::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            resp
        }
        HookAnswer::NotFound => ApiError::not_found("unknown channel").into_response(),
        HookAnswer::Unauthorized(m) => ApiError::unauthorized(m).into_response(),
        HookAnswer::BadRequest(m) => ApiError::bad_request(m).into_response(),
        HookAnswer::Unavailable(m) => {
            tracing::warn!(target: "botyard::plugins", "webhook not processed: {m}");
            ApiError::service_unavailable("the webhook could not be processed; retry later")
                .into_response()
        }
    }
}
