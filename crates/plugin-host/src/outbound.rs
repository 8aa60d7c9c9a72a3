//! Outbound HTTP of plugins (`wasi:http/outgoing-handler`): the policy and the client.
//!
//! Every request goes through [`OutboundHooks::send_request`]: the URL's host must match the
//! installation's allowlist; the name is resolved here and every address must pass the
//! outbound address policy botyard's bots use too (`botyard-netpolicy`: only public unicast,
//! IPv4 hidden in IPv6 judged by its IPv4 part) unless the host configuration lists it; the connection then goes to the vetted address (no second
//! DNS lookup, so no rebinding), TLS verifies the name against the web PKI roots, and the
//! response body is capped.

use crate::error::log;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
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

/// Exempted addresses and networks are the shared policy's [`IpNet`].
pub use botyard_netpolicy::IpNet;

/// What one call may reach.
#[derive(Debug)]
pub struct OutboundPolicy {
    pub allowed: Vec<HostPattern>,
    /// Addresses allowed although the shared policy refuses them (tests: 127.0.0.1).
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
        botyard_netpolicy::permits(ip, &self.allow_private)
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

    fn policy(allow_private: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: vec![],
            allow_private: allow_private.iter().map(|a| a.parse().unwrap()).collect(),
            max_response_bytes: 1,
            timeout: Duration::from_secs(1),
            label: "test".into(),
        }
    }

    /// Plugins are held to the one shared policy: the addresses this host's own copy let
    /// through (6to4 and IPv4-compatible embeddings, Teredo, documentation, unallocated) are
    /// refused, public ones pass, and the operator's allow list still opens exactly what it
    /// names.
    #[test]
    fn uses_the_shared_address_policy() {
        let strict = policy(&[]);
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "::10.0.0.1",
            "::127.0.0.1",
            "2001::1",
            "fec0::1",
            "3fff::1",
            "4000::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!strict.ip_allowed(ip), "{ip}");
            assert!(!botyard_netpolicy::permits(ip, &[]), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "149.154.167.220",
            "2606:4700::1111",
            "2002:808:808::1",
        ] {
            assert!(strict.ip_allowed(ip.parse().unwrap()), "{ip}");
        }
        let open = policy(&["127.0.0.1", "10.0.0.0/8"]);
        assert!(open.ip_allowed("127.0.0.1".parse().unwrap()));
        assert!(open.ip_allowed("10.9.8.7".parse().unwrap()));
        assert!(!open.ip_allowed("127.0.0.2".parse().unwrap()));
        assert!(!open.ip_allowed("2002:a00:1::1".parse().unwrap()));
    }
}
