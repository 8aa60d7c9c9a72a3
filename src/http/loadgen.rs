//! The load generator of `botyard bench`: N keep-alive HTTP/1.1 connections, each sending one
//! request after another for a fixed duration, recording per-request latency. It runs on a
//! single-threaded runtime so the client's own CPU use stays bounded and predictable next to
//! the server it measures on the same machine.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the body of request number `seq` on connection `conn`.
pub type BodyFn = Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

#[derive(Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub duration: Duration,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Extra headers of connection `i`: entry `i % len` (empty: none).
    pub conn_headers: Vec<Vec<(String, String)>>,
    pub body: BodyFn,
    /// Stop after this many requests in total (0 = only the duration counts).
    pub max_requests: u64,
    /// Local address the connections come from (e.g. `127.0.0.2`, so that a client is told
    /// apart from another one on loopback); `None`: the system's choice.
    pub bind: Option<std::net::IpAddr>,
    /// More servers of one cluster: connection `i` goes to `[addr, also..][i % (1 + len)]`.
    pub also: Vec<SocketAddr>,
}

impl LoadSpec {
    /// The server connection `conn` talks to (round-robin over `addr` and `also`).
    pub fn addr_of(&self, conn: usize) -> SocketAddr {
        match conn % (1 + self.also.len()) {
            0 => self.addr,
            k => self.also[k - 1],
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    /// First few error descriptions, for the report.
    pub error_samples: Vec<String>,
    /// Latency of each successful request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Add one connection's counts and latencies (the first few error samples are kept).
    fn absorb(&mut self, r: LoadResult) {
        self.ok += r.ok;
        self.errors += r.errors;
        self.latencies_us.extend(r.latencies_us);
        for e in r.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }
}

/// Runs the load; blocks the calling thread.
pub fn run(spec: LoadSpec) -> LoadResult {
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (r, _) = run_connections(spec.duration, |deadline| {
        (0..spec.connections)
            .map(|conn| {
                let (spec, budget) = (spec.clone(), Arc::clone(&budget));
                async move { (connection(conn, spec, deadline, budget).await, 0) }
            })
            .collect()
    });
    r
}

/// One future per connection (built by `start` from the run's deadline) on a single-threaded
/// runtime, blocking the calling thread; their results merged, with the sum of the counts they
/// return beside them (OCS task polls; 0 for plain loads).
fn run_connections<F>(
    duration: Duration,
    start: impl FnOnce(Instant) -> Vec<F>,
) -> (LoadResult, u64)
where
    F: std::future::Future<Output = (LoadResult, u64)> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("load generator runtime");
    rt.block_on(async move {
        let started = Instant::now();
        let tasks: Vec<_> = start(started + duration)
            .into_iter()
            .map(tokio::spawn)
            .collect();
        let (mut total, mut count) = (LoadResult::default(), 0);
        for t in tasks {
            if let Ok((r, n)) = t.await {
                count += n;
                total.absorb(r);
            }
        }
        total.elapsed = started.elapsed();
        total.latencies_us.sort_unstable();
        (total, count)
    })
}

async fn connection(
    conn: usize,
    spec: LoadSpec,
    deadline: Instant,
    budget: Arc<std::sync::atomic::AtomicU64>,
) -> LoadResult {
    let mut r = LoadResult::default();
    let mut seq: u64 = 0;
    let mut stream: Option<RawConn> = None;
    let note = |r: &mut LoadResult, e: String| {
        r.errors += 1;
        if r.error_samples.len() < 5 {
            r.error_samples.push(e);
        }
    };
    let head = request_head(&spec, conn);
    let mut req = Vec::with_capacity(head.len() + 512);
    while Instant::now() < deadline {
        if spec.max_requests > 0
            && budget.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= spec.max_requests
        {
            break;
        }
        if stream.is_none() {
            match RawConn::connect(spec.addr_of(conn), spec.bind).await {
                Ok(c) => stream = Some(c),
                Err(e) => {
                    note(&mut r, e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let body = (spec.body)(conn, seq);
        seq += 1;
        req.clear();
        req.extend_from_slice(&head);
        req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(&body);
        let t0 = Instant::now();
        match s.exchange(&req).await {
            Ok((status, _)) if (200..300).contains(&status) => {
                r.ok += 1;
                r.latencies_us
                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok((status, body)) => {
                let msg = format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                );
                note(&mut r, msg)
            }
            Err(e) => {
                stream = None;
                note(&mut r, e);
            }
        }
    }
    r
}

/// An Open Chat Studio chat session of the async-chat load: its id and session token.
#[derive(Clone)]
pub struct ChatSession {
    pub id: String,
    pub token: String,
}

/// The OCS async chat load: one keep-alive connection per session, each sending a message
/// (`POST /api/chat/{id}/message/`, 202 with a task id), then polling its task (right after
/// the 202, then every 3 ms, as a widget polling eagerly would) until `complete`, and again.
/// A turn's latency is message sent → `complete` read; `ok` counts completed turns. A session
/// stops at its first error. Also returns the number of polls sent.
pub fn run_ocs_chat(
    addr: SocketAddr,
    sessions: Vec<ChatSession>,
    duration: Duration,
) -> (LoadResult, u64) {
    run_connections(duration, |deadline| {
        sessions
            .into_iter()
            .map(|s| ocs_session(addr, s, deadline))
            .collect()
    })
}

async fn ocs_session(addr: SocketAddr, s: ChatSession, deadline: Instant) -> (LoadResult, u64) {
    let (mut r, mut polls) = (LoadResult::default(), 0u64);
    if let Err(e) = ocs_turns(addr, &s, deadline, &mut r, &mut polls).await {
        r.errors += 1;
        r.error_samples.push(e);
    }
    (r, polls)
}

/// A session's turns until the deadline, recorded in `r` and `polls`; the first error ends them.
async fn ocs_turns(
    addr: SocketAddr,
    s: &ChatSession,
    deadline: Instant,
    r: &mut LoadResult,
    polls: &mut u64,
) -> Result<(), String> {
    let mut conn = RawConn::connect(addr, None).await?;
    let body = r#"{"message":"hi"}"#;
    let message = format!(
        "POST /api/chat/{}/message/ HTTP/1.1\r\nhost: {addr}\r\nx-session-token: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        s.id,
        s.token,
        body.len(),
    )
    .into_bytes();
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let task = match conn.exchange(&message).await? {
            (202, b) => task_id(b).ok_or("202 without a task_id")?,
            (st, b) => {
                return Err(format!(
                    "message: status {st}: {}",
                    String::from_utf8_lossy(b)
                ));
            }
        };
        let poll = format!(
            "GET /api/chat/{}/{task}/poll/ HTTP/1.1\r\nhost: {addr}\r\nx-session-token: {}\r\n\r\n",
            s.id, s.token
        )
        .into_bytes();
        loop {
            *polls += 1;
            match conn.exchange(&poll).await? {
                (200, b) if contains(b, br#""status":"complete""#) => break,
                (200, b) if contains(b, br#""status":"processing""#) => {
                    tokio::time::sleep(Duration::from_millis(3)).await
                }
                (st, b) => {
                    return Err(format!("poll: status {st}: {}", String::from_utf8_lossy(b)));
                }
            }
        }
        r.ok += 1;
        r.latencies_us
            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `task_id` of a 202 answer to a chat message.
fn task_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(v.get("task_id")?.as_str()?.to_string())
}

/// The request line and fixed headers of every request of a connection (the body and its
/// length vary per request).
fn request_head(spec: &LoadSpec, conn: usize) -> Vec<u8> {
    let mut h = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        spec.method,
        spec.path,
        spec.addr_of(conn)
    );
    let own = match spec.conn_headers.len() {
        0 => &[][..],
        n => &spec.conn_headers[conn % n][..],
    };
    for (k, v) in spec.headers.iter().chain(own) {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.into_bytes()
}

/// One keep-alive HTTP/1.1 connection driven by hand. The measured server's responses are
/// always framed by `content-length`; anything else is reported as an error (and the
/// connection dropped) rather than guessed at. Hand-rolled because a general client (hyper's
/// runs a driver task per connection) spent ~30 µs of the shared machine's CPU per request,
/// time the server being measured could not use.
struct RawConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    async fn connect(addr: SocketAddr, bind: Option<std::net::IpAddr>) -> Result<RawConn, String> {
        let s = match bind {
            None => tokio::net::TcpStream::connect(addr).await,
            Some(ip) => {
                let sock = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(|e| format!("socket: {e}"))?;
                sock.bind(SocketAddr::new(ip, 0))
                    .map_err(|e| format!("bind {ip}: {e}"))?;
                sock.connect(addr).await
            }
        }
        .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(RawConn {
            stream: s,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Send `req`, read one response: its status and body (in the connection's buffer).
    async fn exchange(&mut self, req: &[u8]) -> Result<(u16, &[u8]), String> {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(req)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&self.buf)? {
                while self.buf.len() < head_len + body_len {
                    self.read_more().await?;
                }
                if self.buf.len() > head_len + body_len {
                    return Err("more bytes than the response announced".into());
                }
                return Ok((status, &self.buf[head_len..]));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), String> {
        use tokio::io::AsyncReadExt;
        let at = self.buf.len();
        self.buf.resize(at + 8192, 0);
        let n = self
            .stream
            .read(&mut self.buf[at..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        self.buf.truncate(at + n);
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }
}

/// A complete response head in `buf`: (status, head length, body length).
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| format!("status {status}: response without content-length"))?;
    Ok(Some((status, head_len, len)))
}

async fn open(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on a fresh connection (set-up calls of the bench): status and body.
pub async fn request_once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let mut sender = open(addr).await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
