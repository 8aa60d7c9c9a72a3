//! Response building: the body type of the whole server and the JSON/empty helpers.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Every response of the server is built in memory: JSON documents are small and bounded.
pub type Body = Full<Bytes>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    // Serializing a `serde_json::Value` or a plain derive cannot fail; keep a fallback anyway
    // so a broken `Serialize` impl degrades to a 500 envelope instead of a panic.
    // Most bodies fit in 1 KiB: one allocation instead of serde_json's 128-byte start and a
    // realloc per doubling (~3% of the async side's CPU on a chat turn).
    let mut bytes = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut bytes, value) {
        Ok(()) => {}
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            return raw_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"code":500,"message":"internal server error"}"#.to_vec(),
            );
        }
    };
    raw_json(status, bytes)
}

pub fn ok_json<T: Serialize + ?Sized>(value: &T) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

pub fn raw_json(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
