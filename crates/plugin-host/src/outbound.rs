//! Outbound HTTP of plugins (`wasi:http/outgoing-handler`): the policy and the client.
//!
//! Every request goes through [`OutboundHooks::send_request`]: the URL's host must match the
//! installation's allowlist; the name is resolved here and every address must be public
//! (loopback, private, link-local, CGNAT, multicast... are refused) unless the host
//! configuration lists that exact IP; the connection then goes to the vetted address (no second
//! DNS lookup, so no rebinding), TLS verifies the name against the web PKI roots, and the
//! response body is capped.

use crate::error::log;
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowlist entry: `[scheme://]host[:port]`. `host` may be `*` (any) or `*.example.com`
/// (subdomains only); no port or `:*` means any port; no scheme means http and https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = || format!("invalid allowed host {text:?}: expected [scheme://]host[:port]");
        let t = text.trim().to_ascii_lowercase();
        let (scheme, rest) = match t.split_once("://") {
            Some((s, r)) if s == "http" || s == "https" => (Some(s.to_string()), r.to_string()),
            Some(_) => return Err(bad()),
            None => (None, t.clone()),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() {
            return Err(bad());
        }
        // `[v6]:port`, `host:port`, `host`.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h.to_string(), after.strip_prefix(':'))
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').expect("one colon");
            (h.to_string(), Some(p))
        } else {
            (rest.to_string(), None)
        };
        let port = match port {
            None | Some("*") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(HostPattern { scheme, host, port })
    }

    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        }
    }
}

/// Addresses a plugin may never reach unless explicitly allowed: everything that is not a
/// public unicast address.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            // NAT64 well-known prefix 64:ff9b::/96 embeds an IPv4 address.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return forbidden_v4(v4);
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::from([0u8; 16])
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata lives here
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// An address or network (`10.0.0.0/8`, `127.0.0.1`, `::1/128`) exempted from the private
/// address refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let bad = || format!("invalid address or network {text:?}");
        let (a, p) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (x, w2)) = (bits(self.addr), bits(ip));
        if width != w2 {
            return false;
        }
        let shift = width - self.prefix as u32;
        shift >= width || (net >> shift) == (x >> shift)
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> IpNet {
        IpNet {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }
}

/// What one call may reach.
#[derive(Debug)]
pub struct OutboundPolicy {
    pub allowed: Vec<HostPattern>,
    /// Addresses allowed even though [`is_forbidden_ip`] says no (tests: 127.0.0.1).
    pub allow_private: Vec<IpNet>,
    pub max_response_bytes: usize,
    pub timeout: Duration,
    /// `org/plugin`, for log lines.
    pub label: String,
}

impl OutboundPolicy {
    fn host_allowed(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|p| p.matches(scheme, host, port))
    }
    fn ip_allowed(&self, ip: IpAddr) -> bool {
        !is_forbidden_ip(ip) || self.allow_private.iter().any(|n| n.contains(ip))
    }
}

/// The `wasi:http` hooks of one store.
pub struct OutboundHooks {
    pub policy: Arc<OutboundPolicy>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        drop(fut);
        let policy = self.policy.clone();
        Box::new(async move {
            let what = format!("{} {}", request.method(), request.uri());
            let result = send(&policy, request, options).await;
            if let Err(e) = &result {
                log(
                    "warn",
                    &policy.label,
                    &format!("outbound {what} failed: {e}"),
                );
            }
            result
        })
    }
}

async fn send(
    policy: &OutboundPolicy,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let tls = match scheme.as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(HttpError::HttpProtocolError),
    };
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if !policy.host_allowed(&scheme, &host, port) {
        return Err(HttpError::HttpRequestDenied);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((bare, port)),
        )
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(HttpError::DestinationNotFound);
    }
    // Refuse if any answer is forbidden: a name that resolves partly inside the network is
    // exactly what a rebinding attempt looks like.
    if addrs.iter().any(|a| !policy.ip_allowed(a.ip())) {
        return Err(HttpError::DestinationIpProhibited);
    }
    let timeout = |t: Option<Duration>| t.unwrap_or(policy.timeout).min(policy.timeout);
    let connect_timeout = timeout(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = timeout(options.and_then(|o| o.first_byte_timeout));
    let mut last_err = HttpError::ConnectionRefused;
    let mut stream = None;
    for addr in &addrs {
        match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = HttpError::Connect(e),
            Err(_) => last_err = HttpError::ConnectionTimeout,
        }
    }
    let stream = stream.ok_or(last_err)?;
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let total = policy.timeout;
    let (mut sender, conn_task): (_, IoFuture) = if tls {
        let name = rustls::pki_types::ServerName::try_from(bare.to_string())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let tls_stream =
            tokio::time::timeout(connect_timeout, tls_connector().connect(name, stream))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
        let (s, c) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls_stream))
                .await
                .map_err(HttpError::Hyper)?;
        (s, Box::new(drive(c, total)))
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(HttpError::Hyper)?;
        (s, Box::new(drive(c, total)))
    };
    let conn = tokio::spawn(Box::into_pin(conn_task));
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::Hyper)?;
    let limit = policy.max_response_bytes;
    let response = response.map(move |body| {
        http_body_util::Limited::new(body, limit)
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(h) => HttpError::Hyper(*h),
                Err(_) => HttpError::HttpResponseBodySize(None),
            })
            .boxed_unsync()
    });
    let io: IoFuture =
        Box::new(async move { conn.await.map_err(|_| HttpError::ConnectionTerminated)? });
    Ok((response, io))
}

/// Run a connection to its end, bounded by the call's timeout.
async fn drive<C>(conn: C, limit: Duration) -> Result<(), HttpError>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    match tokio::time::timeout(limit, conn).await {
        Ok(r) => r.map_err(HttpError::Hyper),
        Err(_) => Err(HttpError::ConnectionReadTimeout),
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = HostPattern::parse("api.telegram.org").unwrap();
        assert!(p.matches("https", "api.telegram.org", 443));
        assert!(p.matches("http", "API.telegram.org", 8080));
        assert!(!p.matches("https", "evil.org", 443));
        let w = HostPattern::parse("https://*.slack.com").unwrap();
        assert!(w.matches("https", "hooks.slack.com", 443));
        assert!(!w.matches("https", "slack.com", 443));
        assert!(!w.matches("http", "hooks.slack.com", 80));
        let port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(port.matches("http", "127.0.0.1", 8080) && !port.matches("http", "127.0.0.1", 80));
        assert!(HostPattern::parse("ftp://x").is_err());
        assert!(HostPattern::parse("x.org/path").is_err());
    }

    #[test]
    fn networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(
            n.contains("10.1.2.3".parse().unwrap()) && !n.contains("11.0.0.1".parse().unwrap())
        );
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(
            one.contains("127.0.0.1".parse().unwrap())
                && !one.contains("127.0.0.2".parse().unwrap())
        );
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(!one.contains("::1".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "149.154.167.220", "2606:4700::1111"] {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
