//! The one error type of every HTTP handler, and its JSON rendering.
//!
//! Every non-2xx answer of the server is `{"code": <status>, "message": "..."}` (the Studio
//! spec's envelope, §0), optionally with extra keys (e.g. `errors` of a failed build). Internal
//! failures are logged with their cause and answered with a generic message: causes never leak.

use super::response::{Body, json_response};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Map, Value as Json, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra keys merged into the envelope (`errors` of a build, ...); boxed to keep
    /// `Result<_, ApiError>` small on the happy path.
    pub extra: Option<Box<Map<String, Json>>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
            headers: Vec::new(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn missing_field(path: &str) -> Self {
        Self::bad_request(format!("missing field: {path}"))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn route_not_found(path: &str) -> Self {
        Self::not_found(format!("no route for {path}"))
    }
    pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> Self {
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            e.headers.push((hyper::header::ALLOW, v));
        }
        e
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )
    }
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message).with_retry_after(retry_after_secs)
    }
    /// Adds `Retry-After` (seconds, at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.headers
            .push((hyper::header::RETRY_AFTER, HeaderValue::from(secs.max(1))));
        self
    }
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    /// A failure that is ours, not the client's: the cause goes to the log, never to the wire.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
    pub fn with_extra(mut self, key: &str, value: Json) -> Self {
        self.extra
            .get_or_insert_default()
            .insert(key.to_string(), value);
        self
    }

    pub fn into_response(self) -> Response<Body> {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.status.as_u16()));
        body.insert("message".into(), Json::String(self.message));
        for (k, v) in self.extra.map(|b| *b).unwrap_or_default() {
            body.entry(k).or_insert(v);
        }
        let mut resp = json_response(self.status, &Json::Object(body));
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: Response<Body>) -> Json {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn envelope_has_code_and_message() {
        let resp = ApiError::missing_field("client.user_id").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v = body_json(resp).await;
        assert_eq!(
            v,
            json!({"code": 400, "message": "missing field: client.user_id"})
        );
    }

    #[tokio::test]
    async fn retry_after_and_allow_headers() {
        let resp = ApiError::too_many_requests("slow down", 0).into_response();
        assert_eq!(resp.headers()["retry-after"], "1");
        let resp = ApiError::method_not_allowed(&Method::PATCH, &[Method::GET, Method::PUT])
            .into_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()["allow"], "GET, PUT");
    }

    #[tokio::test]
    async fn extra_keys_never_override_the_envelope() {
        let e = ApiError::bad_request("invalid bot")
            .with_extra("errors", json!([1]))
            .with_extra("code", json!(999));
        let v = body_json(e.into_response()).await;
        assert_eq!(v["code"], 400);
        assert_eq!(v["errors"], json!([1]));
    }
}
