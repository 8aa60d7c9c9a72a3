//! CORS for API families called from browsers (the Studio chat and broadcast endpoints are meant
//! to be called from web pages, spec §0). Authentication is by headers, never cookies, so any
//! origin may call: `Access-Control-Allow-Origin: *` without credentials.

use super::response::Body;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS");
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "X-Api-Key, X-Api-Signature, Content-Type, Accept, Authorization, X-Request-Id",
);
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("Retry-After, X-Request-Id");
const ANY: HeaderValue = HeaderValue::from_static("*");
const MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// Is this an `OPTIONS` request (a CORS preflight or a plain capability probe)?
pub fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
}

/// The answer to a preflight: 204 with the allow-lists. Given for any path of a CORS family,
/// so the browser learns what it may send; the real request still meets auth and routing.
pub fn preflight_response() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    h.insert(header::ALLOW, ALLOW_METHODS);
    resp
}

/// Headers every response of a CORS family carries (errors included, so a browser client can
/// read a 401 or 429 body).
pub fn decorate(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
}
