//! Outbound HTTP for plugins, over the standard `wasi:http/outgoing-handler`. The host decides
//! which hosts are reachable (the installation's allowlist) and caps response sizes; a refused
//! request comes back as an `Err` naming the reason.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// A request to send. Build with [`Request::new`], [`Request::header`], [`Request::json`]...
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("response is not JSON: {e}"))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        self.body = crate::form::encode_pairs(pairs).into_bytes();
        self.header("content-type", "application/x-www-form-urlencoded")
    }
    pub fn send(self) -> Result<Response, String> {
        send(self)
    }
}

/// Split `scheme://authority/path?query`.
fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not an absolute URL: {url}"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("unsupported URL scheme {other}")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(format!("no host in URL {url}"));
    }
    Ok((scheme, authority.to_string(), path))
}

fn method_of(m: &str) -> Method {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => "request denied by the host (host not allowed)".into(),
        ErrorCode::DestinationIpProhibited => {
            "request denied by the host (private or loopback address)".into()
        }
        ErrorCode::HttpResponseBodySize(_) => "response too large".into(),
        other => format!("{other:?}"),
    }
}

/// Send a request and read the whole response.
pub fn send(req: Request) -> Result<Response, String> {
    let (scheme, authority, path) = split_url(&req.url)?;
    let mut headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes()))
        .collect();
    if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        headers.push((
            "content-length".into(),
            req.body.len().to_string().into_bytes(),
        ));
    }
    let fields = Fields::from_list(&headers).map_err(|e| format!("bad header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method_of(&req.method))
        .map_err(|_| "bad method")?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| "bad scheme")?;
    request
        .set_authority(Some(&authority))
        .map_err(|_| format!("bad authority {authority}"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|_| format!("bad path {path}"))?;
    let body = request.body().map_err(|_| "request body taken twice")?;
    let stream = body
        .write()
        .map_err(|_| "request body stream taken twice")?;
    // A body that fits the host's buffer goes in one write before the request is sent. A
    // larger one is streamed after handing the request over (the host drains the buffer
    // while sending); a write refused because the server already answered is not an error
    // of its own: the response says what happened.
    let permit = match stream.check_write() {
        Ok(0) => {
            stream.subscribe().block();
            stream.check_write().unwrap_or(0)
        }
        Ok(n) => n,
        Err(_) => 0,
    };
    let future = if (req.body.len() as u64) <= permit {
        if !req.body.is_empty() {
            stream
                .write(&req.body)
                .map_err(|e| format!("writing body: {e:?}"))?;
        }
        drop(stream);
        OutgoingBody::finish(body, None).map_err(|e| describe(&e))?;
        outgoing_handler::handle(request, None).map_err(|e| describe(&e))?
    } else {
        let future = outgoing_handler::handle(request, None).map_err(|e| describe(&e))?;
        let mut complete = true;
        for chunk in req.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                complete = false;
                break;
            }
        }
        drop(stream);
        if complete {
            OutgoingBody::finish(body, None).map_err(|e| describe(&e))?;
        }
        future
    };
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(describe(&e)),
        Some(Err(())) => return Err("response taken twice".into()),
        None => return Err("response not ready".into()),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|_| "response body taken twice")?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|_| "response stream taken twice")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("reading response: {}", e.to_debug_string()));
                }
            }
        }
    }
    let _ = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Send and require a 2xx JSON answer; map platform failures to a retry class.
pub fn send_json(req: Request) -> Result<serde_json::Value, Failure> {
    let resp = send(req).map_err(Failure::Upstream)?;
    classify(&resp)?;
    resp.json().map_err(Failure::Upstream)
}

/// Why a platform call failed, matching the WIT `plugin-error` cases a connector returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 400/404...: retrying will not help.
    Invalid(String),
    /// 401/403: credentials are wrong.
    Unauthorized(String),
    /// 429: retry after this many seconds.
    RateLimited(u32),
    /// 5xx or transport error: retry later.
    Upstream(String),
}

/// `Ok` for 2xx, else the failure class of the status.
pub fn classify(resp: &Response) -> Result<(), Failure> {
    let snippet = || {
        let text = String::from_utf8_lossy(&resp.body);
        format!(
            "HTTP {}: {}",
            resp.status,
            text.chars().take(300).collect::<String>()
        )
    };
    match resp.status {
        200..=299 => Ok(()),
        401 | 403 => Err(Failure::Unauthorized(snippet())),
        429 => Err(Failure::RateLimited(
            resp.header("retry-after")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1),
        )),
        400..=499 => Err(Failure::Invalid(snippet())),
        _ => Err(Failure::Upstream(snippet())),
    }
}
