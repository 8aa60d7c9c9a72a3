//! Outbound HTTP: what a bot's `HTTP(url).send()` and the channel webhooks go through.
//!
//! Policy first. A bot author controls the URL, so every call resolves the host name and then
//! checks **every resolved address** against [`OutboundPolicy`], which applies the address
//! policy plugins get too (`botyard-netpolicy`, where the ranges are listed): only public
//! unicast passes (IPv4 hidden in IPv6 is judged by its IPv4 part) unless an operator listed
//! the address in `allow` (tests allow `127.0.0.1`). Checking after
//! resolution and connecting to the very address that was checked closes the DNS-rebinding
//! gap. Redirects are not followed (a redirect to an internal address would bypass the check).
//!
//! Then bounds: a connect timeout, a total deadline, and a response size cap. One connection
//! per call (no pool): outbound calls are rare next to chat turns and a pool would have to
//! re-check addresses anyway. `https` uses rustls (ring) with the system's root certificates.
//!
//! [`Outbound::send`] is async (webhook workers). [`Outbound::send_blocking`] serves the
//! interpreter, which runs turns on blocking threads: it hands the call to the runtime and
//! waits on a plain channel, so it never panics for being "inside a runtime".
//! [`BotHost`] is the `csml::Host` the engine gives the interpreter.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An address or network an operator explicitly allows (`127.0.0.1`, `10.0.0.0/8`, `::1`):
/// the shared policy's network type, under the name this module's callers know.
pub use botyard_netpolicy::IpNet as Cidr;

/// Limits and address policy of outbound calls.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    /// Addresses allowed even though their class is refused.
    pub allow: Vec<Cidr>,
    pub connect_timeout: Duration,
    /// Deadline of the whole call, connect to last body byte.
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_response_bytes: 2 * 1024 * 1024,
        }
    }
}

impl OutboundPolicy {
    /// The one address policy of bots and plugins (`botyard-netpolicy`).
    pub fn permits(&self, ip: IpAddr) -> bool {
        botyard_netpolicy::permits(ip, &self.allow)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    InvalidUrl(String),
    /// Every resolved address is refused by the policy.
    Refused(String),
    Dns(String),
    Connect(String),
    Timeout,
    TooLarge(usize),
    Http(String),
    Tls(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            OutboundError::Refused(host) => {
                write!(f, "outbound call to {host} refused: address not allowed")
            }
            OutboundError::Dns(m) => write!(f, "could not resolve host: {m}"),
            OutboundError::Connect(m) => write!(f, "connection failed: {m}"),
            OutboundError::Timeout => write!(f, "request timed out"),
            OutboundError::TooLarge(n) => write!(f, "response larger than {n} bytes"),
            OutboundError::Http(m) => write!(f, "HTTP error: {m}"),
            OutboundError::Tls(m) => write!(f, "TLS error: {m}"),
        }
    }
}

impl std::error::Error for OutboundError {}

#[derive(Debug, Clone)]
pub struct OutRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Overrides the policy's total deadline (webhooks use 5 s).
    pub timeout: Option<Duration>,
}

impl OutRequest {
    pub fn post_json(url: &str, body: Vec<u8>) -> Self {
        OutRequest {
            method: Method::POST,
            url: url.to_string(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: Some(body),
            timeout: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The outbound HTTP client.
#[derive(Debug)]
pub struct Outbound {
    pub policy: OutboundPolicy,
    /// Runtime that performs calls made from blocking threads; `None` = a private one, made
    /// on first use (CLI commands that run bots without a server).
    handle: Option<tokio::runtime::Handle>,
}

static FALLBACK_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

impl Outbound {
    pub fn new(policy: OutboundPolicy, handle: Option<tokio::runtime::Handle>) -> Self {
        Outbound { policy, handle }
    }

    /// Performs the call from a blocking (non-async) thread.
    pub fn send_blocking(self: &Arc<Self>, req: OutRequest) -> Result<OutResponse, OutboundError> {
        let handle = match &self.handle {
            Some(h) => h.clone(),
            None => FALLBACK_RUNTIME
                .get_or_init(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .thread_name("botyard-outbound")
                        .enable_all()
                        .build()
                        .expect("failed to start the outbound runtime")
                })
                .handle()
                .clone(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let this = Arc::clone(self);
        handle.spawn(async move {
            let _ = tx.send(this.send(req).await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(OutboundError::Http("outbound task was dropped".into())))
    }

    pub async fn send(&self, req: OutRequest) -> Result<OutResponse, OutboundError> {
        let deadline = req.timeout.unwrap_or(self.policy.timeout);
        match tokio::time::timeout(deadline, self.send_inner(req)).await {
            Ok(r) => r,
            Err(_) => Err(OutboundError::Timeout),
        }
    }

    async fn send_inner(&self, req: OutRequest) -> Result<OutResponse, OutboundError> {
        let uri: Uri = req
            .url
            .parse()
            .map_err(|e| OutboundError::InvalidUrl(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(OutboundError::InvalidUrl(
                    "scheme must be http or https".into(),
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| OutboundError::InvalidUrl("missing host".into()))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(OutboundError::InvalidUrl(
                "credentials in URLs are not supported".into(),
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });

        let addrs = self.resolve(&host, port).await?;
        let stream = self.connect(&host, &addrs).await?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        if https {
            let name = server_name(&host)?;
            let tls = tls_connector()
                .map_err(OutboundError::Tls)?
                .connect(name, stream)
                .await
                .map_err(|e| OutboundError::Tls(format!("{host}: {e}")))?;
            self.exchange(tls, authority.as_str(), &path, req).await
        } else {
            self.exchange(stream, authority.as_str(), &path, req).await
        }
    }

    /// One request/response over an established (plain or TLS) stream.
    async fn exchange<S>(
        &self,
        stream: S,
        authority: &str,
        path: &str,
        req: OutRequest,
    ) -> Result<OutResponse, OutboundError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| OutboundError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });

        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONNECTION, "close");
        let mut has_ua = false;
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("host")
                || k.eq_ignore_ascii_case("connection")
                || k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            has_ua |= k.eq_ignore_ascii_case("user-agent");
            builder = builder.header(k.as_str(), v.as_str());
        }
        if !has_ua {
            builder = builder.header(
                hyper::header::USER_AGENT,
                concat!("botyard/", env!("CARGO_PKG_VERSION")),
            );
        }
        let body = Full::new(Bytes::from(req.body.unwrap_or_default()));
        let request = builder
            .body(body)
            .map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| OutboundError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let max = self.policy.max_response_bytes;
        let body = match Limited::new(resp.into_body(), max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(OutboundError::TooLarge(max));
            }
            Err(e) => return Err(OutboundError::Http(e.to_string())),
        };
        Ok(OutResponse {
            status,
            headers,
            body,
        })
    }

    /// Resolves and filters; the error names the host, never the internal address.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| OutboundError::Dns(format!("{host}: {e}")))?
                .collect(),
        };
        if resolved.is_empty() {
            return Err(OutboundError::Dns(format!("{host}: no address")));
        }
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| self.policy.permits(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(OutboundError::Refused(host.to_string()));
        }
        Ok(allowed)
    }

    async fn connect(
        &self,
        host: &str,
        addrs: &[SocketAddr],
    ) -> Result<tokio::net::TcpStream, OutboundError> {
        let mut last = String::new();
        for addr in addrs {
            match tokio::time::timeout(
                self.policy.connect_timeout,
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "connect timeout".into(),
            }
        }
        Err(OutboundError::Connect(format!("{host}: {last}")))
    }
}

/// The TLS client configuration: the system's root certificates (so operators add their own
/// CAs the usual way), ring as the crypto provider; built once. Outbound HTTP and the
/// PostgreSQL client both use it.
pub(crate) fn tls_client_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates found on this system".into());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    tls_client_config().map(tokio_rustls::TlsConnector::from)
}

fn server_name(
    host: &str,
) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, OutboundError> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| OutboundError::InvalidUrl(format!("`{host}` is not a valid TLS server name")))
}

/// The `csml::Host` of the platform: real clock, OS-seeded randomness, outbound HTTP through
/// the policy, interpreter logs into tracing. `App()` and SMTP are supplied by the engine
/// (it wraps this host) when the bot has them.
#[derive(Debug)]
pub struct BotHost {
    outbound: Arc<Outbound>,
    rng: u64,
    /// The turn's deadline: a call never waits past it.
    deadline: Option<std::time::Instant>,
}

impl BotHost {
    pub fn new(outbound: Arc<Outbound>) -> Self {
        let mut seed = 0u64;
        while seed == 0 {
            seed = crate::http::ids::random_u64();
        }
        BotHost {
            deadline: None,
            outbound,
            rng: seed,
        }
    }
}

impl csml::Host for BotHost {
    fn random_u64(&mut self) -> u64 {
        // xorshift64*, seeded per host from the OS-seeded generator.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn http(&mut self, req: &csml::HttpRequest) -> Result<csml::HttpResponse, String> {
        let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("invalid HTTP method `{}`", req.method))?;
        let mut headers = req.headers.clone();
        let body = match &req.body {
            None => None,
            Some(Json::String(s)) => Some(s.clone().into_bytes()),
            Some(v) => {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Some(serde_json::to_vec(v).map_err(|e| e.to_string())?)
            }
        };
        // Within the turn's deadline (the interpreter starts no call past it).
        let timeout = match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err("the turn's deadline has passed".into());
                }
                Some(left.min(self.outbound.policy.timeout))
            }
            None => None,
        };
        let out = OutRequest {
            method,
            url: req.url.clone(),
            headers,
            body,
            timeout,
        };
        let resp = self
            .outbound
            .send_blocking(out)
            .map_err(|e| e.to_string())?;
        let body = match serde_json::from_slice::<Json>(&resp.body) {
            Ok(v) => v,
            Err(_) => Json::String(String::from_utf8_lossy(&resp.body).into_owned()),
        };
        Ok(csml::HttpResponse {
            status: resp.status,
            headers: resp.headers,
            body,
        })
    }

    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    fn log(&mut self, level: csml::ast::LogLevel, message: &str) {
        tracing::info!(target: "botyard::csml", level = ?level, "{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bots are held to the one shared policy: every class it refuses is refused here,
    /// including the IPv6 forms that embed a private IPv4 address.
    #[test]
    fn uses_the_shared_address_policy() {
        let p = OutboundPolicy::default();
        for ip in [
            "8.8.8.8",
            "2606:4700::1111",
            "2002:808:808::1",
            "127.0.0.1",
            "10.1.2.3",
            "100.64.0.1",
            "169.254.169.254",
            "192.0.2.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                p.permits(ip),
                botyard_netpolicy::classify(ip) == botyard_netpolicy::AddrClass::Public,
                "{ip}"
            );
        }
        assert!(!p.permits("2002:a00:1::1".parse().unwrap()));
        assert!(!p.permits("::127.0.0.1".parse().unwrap()));
        assert!(p.permits("2002:808:808::1".parse().unwrap()));
    }

    #[test]
    fn allow_list() {
        let mut p = OutboundPolicy::default();
        assert!(!p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("8.8.8.8".parse().unwrap()));
        p.allow.push("127.0.0.1".parse().unwrap());
        p.allow.push("10.0.0.0/8".parse().unwrap());
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!p.permits("127.0.0.2".parse().unwrap()));
        assert!(p.permits("10.200.3.4".parse().unwrap()));
        assert!(!p.permits("192.168.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert!(
            "::/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("fe80::1".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn refused_after_resolution() {
        let out = Outbound::new(OutboundPolicy::default(), None);
        let req = |url: &str| OutRequest {
            method: Method::GET,
            url: url.into(),
            headers: vec![],
            body: None,
            timeout: None,
        };
        // `localhost` resolves to loopback: refused although the name looks harmless.
        let err = out.send(req("http://localhost:9/x")).await.unwrap_err();
        assert_eq!(err, OutboundError::Refused("localhost".into()));
        let err = out.send(req("http://[::1]:9/")).await.unwrap_err();
        assert_eq!(err, OutboundError::Refused("::1".into()));
        let err = out
            .send(req("http://169.254.169.254/latest"))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Refused(_)));
        assert!(matches!(
            out.send(req("ftp://x/")).await,
            Err(OutboundError::InvalidUrl(_))
        ));
        assert!(matches!(
            out.send(req("http://u:p@8.8.8.8/")).await,
            Err(OutboundError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn round_trip_to_an_allowed_loopback_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\"ping\"") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got).to_string();
            assert!(text.starts_with("POST /hook?x=1 HTTP/1.1"), "{text}");
            let body = br#"{"pong":true}"#;
            let head = format!(
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
        });
        let mut policy = OutboundPolicy::default();
        policy.allow.push("127.0.0.1".parse().unwrap());
        let out = Arc::new(Outbound::new(
            policy,
            Some(tokio::runtime::Handle::current()),
        ));
        let resp = out
            .send(OutRequest::post_json(
                &format!("http://{addr}/hook?x=1"),
                br#"{"ping":1}"#.to_vec(),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(&resp.body[..], br#"{"pong":true}"#);
    }

    #[tokio::test]
    async fn https_goes_through_tls() {
        use tokio::io::AsyncWriteExt;
        // A plain-text server: the TLS handshake must fail, not fall back to clear text.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let mut policy = OutboundPolicy::default();
        policy.allow.push("127.0.0.1".parse().unwrap());
        let out = Outbound::new(policy, None);
        let req = OutRequest {
            method: Method::GET,
            url: format!("https://{addr}/"),
            headers: vec![],
            body: None,
            timeout: Some(Duration::from_secs(5)),
        };
        let err = out.send(req).await.unwrap_err();
        assert!(matches!(err, OutboundError::Tls(_)), "{err:?}");
        // The policy applies to https too.
        let out = Outbound::new(OutboundPolicy::default(), None);
        let req = OutRequest {
            method: Method::GET,
            url: "https://localhost/".into(),
            headers: vec![],
            body: None,
            timeout: None,
        };
        assert_eq!(
            out.send(req).await.unwrap_err(),
            OutboundError::Refused("localhost".into())
        );
    }

    #[test]
    fn bot_host_http_from_a_blocking_thread() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain");
        });
        let mut policy = OutboundPolicy::default();
        policy.allow.push("127.0.0.1".parse().unwrap());
        // No runtime handle: the host uses its own (CLI case), called from a plain thread.
        let mut host = BotHost::new(Arc::new(Outbound::new(policy, None)));
        let resp = csml::Host::http(
            &mut host,
            &csml::HttpRequest {
                method: "get".into(),
                url: format!("http://{addr}/x"),
                headers: vec![],
                body: None,
            },
        )
        .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, Json::String("plain".into()));
        let refused = csml::Host::http(
            &mut host,
            &csml::HttpRequest {
                method: "get".into(),
                url: "http://10.0.0.1/".into(),
                headers: vec![],
                body: None,
            },
        )
        .unwrap_err();
        assert!(refused.contains("refused"), "{refused}");
    }
}
