//! What a handler gets to know about a request beyond its head: the per-request context
//! (request id, peer, client address and scheme, start time), the body read under a size cap
//! and an idle deadline, and JSON field accessors whose errors name the offending field
//! (`missing field: client.user_id`).
//!
//! Body idle deadline: a client that announces a body and stalls (no bytes for
//! `--body-idle-timeout`) gets 408 and its connection is closed. hyper has no such deadline of
//! its own, and the connection watchdog of `server` cannot tell a stalled body from a handler
//! that is busy without reading it, so every body reader here waits for each chunk under the
//! deadline. The deadline is set per request by `service::handle` ([`with_body_idle`]) as a
//! task-local value, so that every reader (Studio, admin, hooks, OCS, uploads) applies it
//! without each handler passing it along.

use super::error::{ApiError, ApiResult};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use serde_json::{Map, Value as Json};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The body idle deadline outside [`with_body_idle`] (unit tests, spawned tasks).
pub const DEFAULT_BODY_IDLE: Duration = Duration::from_secs(30);

tokio::task_local! {
    static BODY_IDLE: Duration;
}

/// Runs `fut` (one request) with `idle` as the body idle deadline of its body readers.
pub fn with_body_idle<F: Future>(idle: Duration, fut: F) -> impl Future<Output = F::Output> {
    BODY_IDLE.scope(idle, fut)
}

/// The body idle deadline of the current request.
pub fn body_idle() -> Duration {
    BODY_IDLE.try_with(|d| *d).unwrap_or(DEFAULT_BODY_IDLE)
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit (bytes).
    TooLarge(usize),
    /// No bytes for the body idle deadline.
    Stalled(Duration),
    /// The connection failed or the framing was invalid.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "request body larger than {limit} bytes"),
            BodyError::Stalled(d) => write!(
                f,
                "request body timed out: no bytes for {} s",
                d.as_secs().max(1)
            ),
            BodyError::Read(e) => write!(f, "could not read request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => ApiError::payload_too_large(limit),
            BodyError::Stalled(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            BodyError::Read(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

/// The next data chunk of `body` (`None` at its end), waiting at most the body idle deadline.
/// Trailers are skipped.
pub async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, BodyError> {
    let idle = body_idle();
    loop {
        if body.is_end_stream() {
            return Ok(None);
        }
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled(idle)),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads the whole body, at most `limit` bytes, each chunk under the body idle deadline.
pub async fn collect_limited(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    let Some(first) = next_chunk(&mut body).await? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge(limit));
    }
    // Most bodies arrive in one chunk: no copy then.
    let Some(second) = next_chunk(&mut body).await? else {
        return Ok(first);
    };
    let announced = body.size_hint().lower().min(limit as u64) as usize;
    let mut all = Vec::with_capacity((first.len() + second.len() + announced).min(limit));
    all.extend_from_slice(&first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if all.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        all.extend_from_slice(&chunk);
        next = next_chunk(&mut body).await?;
    }
    Ok(Bytes::from(all))
}

/// Per-request facts shared by every layer (logging, auth, handlers).
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// Echoed as `X-Request-Id` and present on every log line of the request.
    pub id: String,
    /// The TCP peer (a proxy, when there is one).
    pub peer: SocketAddr,
    /// The client's address: the peer's, or what a trusted proxy reports (see
    /// [`client_of`]). Everything that keys on "who is asking" uses this, never `peer`.
    pub client_ip: IpAddr,
    /// The client reached us over HTTPS (only a trusted proxy can say so).
    pub https: bool,
    pub started: Instant,
}

/// Hops of `X-Forwarded-For` looked at, at most (the rest is ignored).
const MAX_FORWARDED_HOPS: usize = 32;

/// The client address and scheme of a request from `peer`.
///
/// `X-Forwarded-For` and `X-Forwarded-Proto` are anyone's to write, so they are believed only
/// when the TCP peer is in `trusted` (`--trusted-proxy`). Then the client is the rightmost
/// address of `X-Forwarded-For` that is not itself a trusted proxy (entries left of it were
/// written by the client and prove nothing); an unparsable entry stops the walk at the last
/// trusted hop. The scheme is the rightmost `X-Forwarded-Proto` value, the one our proxy set.
pub fn client_of(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[crate::outbound::Cidr],
) -> (IpAddr, bool) {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|c| c.contains(peer)) {
        return (peer, false);
    }
    let https = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let Some(ip) = parse_hop(hop.trim()) else {
            break;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    (client, https)
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// Reads the whole body, refusing more than `limit` bytes with a 413 (early, from
/// `Content-Length`, when the client announces it) and a stalled body with a 408.
pub async fn read_body(body: Incoming, headers: &HeaderMap, limit: usize) -> ApiResult<Bytes> {
    if let Some(len) = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok())
        && len.parse::<u64>().is_ok_and(|n| n > limit as u64)
    {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(collect_limited(body, limit).await?)
}

/// Parses a body that must be a JSON object. An empty body counts as `{}` only when
/// `empty_ok` (endpoints whose body is optional, e.g. `POST /bot/build`).
pub fn parse_object(bytes: &[u8], empty_ok: bool) -> ApiResult<Map<String, Json>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(Map::new())
        } else {
            Err(ApiError::bad_request("request body must be a JSON object"))
        };
    }
    match serde_json::from_slice::<Json>(bytes) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// Typed access to fields of a JSON object, by dotted path, with 400s naming the field.
pub trait JsonFields {
    fn at(&self, path: &str) -> Option<&Json>;

    fn req(&self, path: &str) -> ApiResult<&Json> {
        match self.at(path) {
            None | Some(Json::Null) => Err(ApiError::missing_field(path)),
            Some(v) => Ok(v),
        }
    }
    fn req_str(&self, path: &str) -> ApiResult<&str> {
        self.req(path)?
            .as_str()
            .ok_or_else(|| wrong_type(path, "a string"))
    }
    /// A required string that must not be empty or only spaces.
    fn req_nonempty_str(&self, path: &str) -> ApiResult<&str> {
        let s = self.req_str(path)?;
        if s.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "field {path} must not be empty"
            )));
        }
        Ok(s)
    }
    fn req_object(&self, path: &str) -> ApiResult<&Map<String, Json>> {
        self.req(path)?
            .as_object()
            .ok_or_else(|| wrong_type(path, "an object"))
    }
    fn opt_str(&self, path: &str) -> ApiResult<Option<&str>> {
        match self.at(path) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(path, "a string")),
        }
    }
    fn opt_bool(&self, path: &str) -> ApiResult<Option<bool>> {
        match self.at(path) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(path, "a boolean")),
        }
    }
    fn opt_object(&self, path: &str) -> ApiResult<Option<&Map<String, Json>>> {
        match self.at(path) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(m)) => Ok(Some(m)),
            Some(_) => Err(wrong_type(path, "an object")),
        }
    }
    fn opt_string_array(&self, path: &str) -> ApiResult<Option<Vec<String>>> {
        match self.at(path) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| wrong_type(path, "an array of strings")),
            Some(_) => Err(wrong_type(path, "an array of strings")),
        }
    }
}

impl JsonFields for Map<String, Json> {
    fn at(&self, path: &str) -> Option<&Json> {
        let mut parts = path.split('.');
        let mut cur = self.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_object()?.get(p)?;
        }
        Some(cur)
    }
}

fn wrong_type(path: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("field {path} must be {what}"))
}

/// A short random request id (16 hex chars). Client-supplied `X-Request-Id` values are kept
/// when they are short and printable, so a caller can correlate its own logs.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return v.to_string();
    }
    format!("{:016x}", crate::http::ids::random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parse_object_errors() {
        assert_eq!(parse_object(b"", true).unwrap().len(), 0);
        assert_eq!(parse_object(b"  ", false).unwrap_err().status, 400);
        let e = parse_object(b"{\"a\":", false).unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        assert_eq!(
            parse_object(b"[1]", false).unwrap_err().message,
            "request body must be a JSON object"
        );
    }

    #[test]
    fn field_access_names_the_field() {
        let m = obj(json!({"client": {"user_id": 3}, "payload": {"content": {}}, "s": " "}));
        assert_eq!(
            m.req_str("client.user_id").unwrap_err().message,
            "field client.user_id must be a string"
        );
        assert_eq!(
            m.req_str("payload.content_type").unwrap_err().message,
            "missing field: payload.content_type"
        );
        assert_eq!(
            m.req_nonempty_str("s").unwrap_err().message,
            "field s must not be empty"
        );
        assert!(m.req_object("payload.content").is_ok());
        assert_eq!(m.opt_str("nope").unwrap(), None);
        assert!(m.opt_bool("s").is_err());
        let m = obj(json!({"c": ["a", "b"], "d": ["a", 1]}));
        assert_eq!(
            m.opt_string_array("c").unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        assert!(m.opt_string_array("d").is_err());
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let trusted: Vec<crate::outbound::Cidr> =
            vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        h.append("x-forwarded-for", "10.1.1.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let untrusted: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_of(untrusted, &h, &trusted), (untrusted, false));
        // From a trusted proxy: the rightmost address that is not a trusted proxy.
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_of(proxy, &h, &trusted),
            ("1.2.3.4".parse().unwrap(), true)
        );
        // No header: the peer. Garbage: the last trusted hop.
        assert_eq!(
            client_of(proxy, &HeaderMap::new(), &trusted),
            (proxy, false)
        );
        let mut g = HeaderMap::new();
        g.insert(
            "x-forwarded-for",
            "1.2.3.4, junk, 10.0.0.9:80".parse().unwrap(),
        );
        assert_eq!(
            client_of(proxy, &g, &trusted).0,
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        // No trusted proxies configured: headers are ignored even from loopback.
        assert_eq!(client_of(proxy, &h, &[]), (proxy, false));
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 16);
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", "bad id with spaces".parse().unwrap());
        assert_eq!(request_id(&h).len(), 16);
    }
}
