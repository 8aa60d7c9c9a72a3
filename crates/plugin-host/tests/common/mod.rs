//! Shared test helpers: a plugin host configured like production except that plugins may reach
//! 127.0.0.1 (where the fake platforms listen), the built plugins, and a fake HTTP server that
//! records every request it receives.
#![allow(dead_code)]

use botyard_plugins::{
    InMemoryKvStore, Installation, LoadedPlugin, Manifest, PluginHost, PluginHostConfig,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub fn config() -> PluginHostConfig {
    let mut c = PluginHostConfig::new(Arc::new(InMemoryKvStore::default()));
    // Shared by the test binaries so each component is compiled once (a debug-build host
    // takes ~1 s per compile).
    c.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
    c.allow_private = vec![botyard_plugins::outbound::IpNet::parse("127.0.0.1").unwrap()];
    c.max_instances = 32;
    c
}

pub fn host() -> PluginHost {
    PluginHost::new(config())
}

/// A plugin of the plugins workspace (test fixtures are not embedded in the binary).
pub fn built_wasm(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm32-wasip2/release")
        .join(format!("{file}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the build script builds it)", path.display()))
}

pub async fn load_first_party(host: &PluginHost, name: &str) -> LoadedPlugin {
    let wasm = botyard_plugins::builtin::wasm(name).expect("first-party plugin");
    let manifest = Manifest::from_wasm(wasm).expect("embedded manifest");
    host.load(manifest, wasm)
        .await
        .expect("load first-party plugin")
}

pub async fn load_built(host: &PluginHost, file: &str) -> LoadedPlugin {
    let wasm = built_wasm(file);
    let manifest = Manifest::from_wasm(&wasm).expect("embedded manifest");
    host.load(manifest, &wasm).await.expect("load plugin")
}

pub fn install(org: &str, config: &[(&str, &str)], secrets: &[(&str, &str)]) -> Installation {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    Installation {
        org: org.into(),
        allowed_hosts: vec!["127.0.0.1".into()],
        config: map(config),
        secrets: map(secrets),
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Responder = dyn Fn(&Recorded) -> (u16, String) + Send + Sync;

/// A fake platform API on 127.0.0.1: records requests, answers with `respond`.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    pub async fn start(
        respond: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let reqs = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let reqs = reqs.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let reqs = reqs.clone();
                            let respond = respond.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                let rec = Recorded {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_string(),
                                    query: parts.uri.query().unwrap_or("").to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.to_str().unwrap_or("").to_string())
                                        })
                                        .collect(),
                                    body,
                                };
                                let (status, text) = respond(&rec);
                                reqs.lock().unwrap().push(rec);
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeServer { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn taken(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    m.update(data);
    base64(&m.finalize().into_bytes())
}

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
