//! The accept loop and the life of a connection: hyper-util's auto builder (HTTP/1.1 and
//! HTTP/2 prior knowledge on one port), caps on concurrent connections (global, and per client
//! IP below it), deadlines that close connections a client holds open without using them,
//! backoff on accept errors (fd exhaustion), and graceful shutdown (stop accepting, let
//! in-flight requests finish, bounded wait).
//!
//! Deadlines ([`ConnLimits`], set by `serve` flags):
//! * **head**: from accept to the first complete request head, whatever the protocol. This also
//!   bounds hyper-util's protocol sniffing, which waits for a first byte with no deadline of its
//!   own (a connection that sends nothing used to be kept forever), and an HTTP/2 connection
//!   that sends its preface and SETTINGS but no request. On a kept-alive HTTP/1.1 connection
//!   the same deadline runs from the first byte of the next request to its complete head.
//! * **idle**: a connection with no request in flight (HTTP/1.1: and no byte of a next
//!   request; HTTP/2: no open stream) is closed this long after its last request finished.
//!   HTTP/2 frames that carry no request (PING, SETTINGS, WINDOW_UPDATE) do not keep it open.
//! * **body idle**: enforced by the body readers (`request`), not here: only they know whether
//!   a handler is waiting for body bytes or busy with a turn.
//! * HTTP/2 keep-alive PINGs find dead peers while streams are open.
//!
//! While a request is in flight the connection has no deadline of its own: its handler is
//! bounded by the turn budget, its body by the body idle deadline.
//!
//! The deadlines are checked by a timer polled together with the connection's own future (no
//! extra task per connection); the request path only bumps two atomics and, on HTTP/1.1, the
//! first read after a response notes the time.
//!
//! Caps: when the global cap or the client's per-IP cap is reached, the new connection is
//! closed at accept. The per-IP cap is keyed by the TCP peer address ([`client_key`]: an IPv6
//! client by its /64), never by a header, since it must hold before any byte is parsed; behind
//! a reverse proxy, raise it (the proxy is one peer).

use super::AppState;
use super::ratelimit::client_key;
use super::service;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Time given to in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keep-alive: a PING this often, and the peer must answer it within the timeout.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Refused connections are logged at most this often (with a count), so a flood cannot
/// flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Caps and deadlines of connections (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client IP (IPv6: one /64).
    pub max_per_ip: usize,
    /// From accept (or from the first byte of a kept-alive connection's next request) to a
    /// complete request head.
    pub head_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            max_per_ip: 256,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves until `shutdown` resolves, then drains. Returns once every connection has closed
/// (or the drain timeout passed).
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let limits = state.config.conn;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // A backstop only: the watchdog closes earlier (hyper's timer starts when the
        // connection goes idle, so it bounds idle + head).
        .header_read_timeout(limits.idle_timeout + limits.head_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);

    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(PerIp {
        max: limits.max_per_ip.max(1),
        counts: Mutex::new(HashMap::new()),
    });
    // Every connection task holds a receiver; shutdown sends on it, and the drain waits until
    // every receiver is gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut refusals = Refusals::default();
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refusals.note(peer, "too many connections");
            continue;
        };
        let Some(ip_slot) = per_ip.take(peer.ip()) else {
            refusals.note(peer, "too many connections from one client");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let (st, act) = (Arc::clone(&state), Arc::clone(&activity));
        let svc = service_fn(move |req: Request<Incoming>| {
            let guard = InFlight::start(&act, req.version() == Version::HTTP_2);
            let fut = service::handle(Arc::clone(&st), peer, req);
            async move {
                let resp = fut.await;
                drop(guard);
                resp
            }
        });
        let io = Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _held = (permit, ip_slot);
            tokio::pin!(conn);
            let mut draining = false;
            loop {
                // While a request is in flight there is no deadline; look again later.
                let wake = activity
                    .deadline(&limits)
                    .unwrap_or_else(|| Instant::now() + limits.head_timeout);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !draining => {
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    _ = tokio::time::sleep_until(wake.into()) => {
                        if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                            tracing::debug!(%peer, "closing a connection past its head or idle deadline");
                            break;
                        }
                    }
                }
            }
        });
    }

    drop(listener);
    drop(stop_rx);
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    let _ = stop_tx.send(());
    tokio::select! {
        _ = stop_tx.closed() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("drain timeout passed; closing remaining connections");
        }
    }
}

/// What the watchdog knows of one connection. Times are milliseconds after `accepted`.
struct Activity {
    accepted: Instant,
    /// Requests whose handler is running.
    in_flight: AtomicU32,
    /// Requests started so far.
    started: AtomicU64,
    http2: AtomicBool,
    /// When `in_flight` last fell to 0.
    idle_since: AtomicU64,
    /// Set when the connection goes idle; the first read after it clears it and records
    /// `head_since` (HTTP/1.1: a next request has begun).
    awaiting_byte: AtomicBool,
    head_since: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            awaiting_byte: AtomicBool::new(false),
            head_since: AtomicU64::new(NEVER),
        }
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    fn bytes_read(&self) {
        if self.awaiting_byte.load(Ordering::Relaxed)
            && self.awaiting_byte.swap(false, Ordering::AcqRel)
        {
            self.head_since.store(self.now_ms(), Ordering::Release);
        }
    }

    /// When the connection must be closed, or `None` while a request is in flight.
    fn deadline(&self, l: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.started.load(Ordering::Acquire) == 0 {
            return Some(self.accepted + l.head_timeout);
        }
        if !self.http2.load(Ordering::Relaxed) {
            let head = self.head_since.load(Ordering::Acquire);
            if head != NEVER {
                return Some(self.at(head) + l.head_timeout);
            }
        }
        Some(self.at(self.idle_since.load(Ordering::Acquire)) + l.idle_timeout)
    }
}

/// One request's handler running on a connection; dropped when it finishes (or is cancelled).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>, http2: bool) -> InFlight {
        if http2 && !a.http2.load(Ordering::Relaxed) {
            a.http2.store(true, Ordering::Relaxed);
        }
        // In flight first: the watchdog never sees a started request as idle.
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.started.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Noted by every finishing request before it leaves, so that whichever is last, the
        // watchdog never sees the connection idle with an older idle time (HTTP/2 streams
        // finish concurrently); harmless while others are still in flight.
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Release);
        a.head_since.store(NEVER, Ordering::Release);
        a.awaiting_byte.store(true, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TCP stream, telling the watchdog when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per client key.
struct PerIp {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            key,
        })
    }
}

/// One connection's place in its client's count.
struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Refused connections since the last warning.
#[derive(Default)]
struct Refusals {
    last_warn: Option<Instant>,
    count: u64,
}

impl Refusals {
    fn note(&mut self, peer: SocketAddr, why: &str) {
        self.count += 1;
        tracing::debug!(%peer, "{why}; closing the new connection");
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(%peer, refused = self.count, "{why}; closing new connections");
            self.last_warn = Some(Instant::now());
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ConnLimits::default()
        }
    }

    #[test]
    fn deadlines_follow_the_connection() {
        let l = limits();
        let a = Arc::new(Activity::new());
        // Nothing yet: the head deadline from accept, even as bytes arrive.
        assert_eq!(a.deadline(&l), Some(a.accepted + l.head_timeout));
        a.bytes_read();
        assert_eq!(a.deadline(&l), Some(a.accepted + l.head_timeout));
        // A request in flight: none.
        let g = InFlight::start(&a, false);
        assert_eq!(a.deadline(&l), None);
        drop(g);
        // Idle: the idle deadline, until a byte of the next request starts the head one.
        let idle = a.at(a.idle_since.load(Ordering::Relaxed));
        assert_eq!(a.deadline(&l), Some(idle + l.idle_timeout));
        a.bytes_read();
        let head = a.at(a.head_since.load(Ordering::Relaxed));
        assert_eq!(a.deadline(&l), Some(head + l.head_timeout));
        // HTTP/2: bytes without a request never replace the idle deadline.
        let h2 = Arc::new(Activity::new());
        drop(InFlight::start(&h2, true));
        h2.bytes_read();
        let idle = h2.at(h2.idle_since.load(Ordering::Relaxed));
        assert_eq!(h2.deadline(&l), Some(idle + l.idle_timeout));
    }

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let t = Arc::new(PerIp {
            max: 2,
            counts: Mutex::new(HashMap::new()),
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b) = (t.take(ip).unwrap(), t.take(ip).unwrap());
        assert!(t.take(ip).is_none());
        assert!(t.take("10.0.0.2".parse().unwrap()).is_some());
        drop(a);
        let c = t.take(ip).unwrap();
        drop((b, c));
        assert!(t.counts.lock().unwrap().is_empty());
        // One IPv6 /64 is one client.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _x = t.take(v6("2001:db8::1")).unwrap();
        let _y = t.take(v6("2001:db8::2")).unwrap();
        assert!(t.take(v6("2001:db8::3")).is_none());
    }
}
