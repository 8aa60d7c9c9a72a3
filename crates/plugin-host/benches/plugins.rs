//! Plugin host benchmarks (`cargo bench -p botyard-plugins`), printed as plain figures:
//! 1. an `App()` round trip (fresh store + instantiate + call + drop), echo app: p50/p99;
//! 2. a connector round trip: Telegram webhook ingest, then delivery of the reply to a fake
//!    Bot API on 127.0.0.1: p50/p99;
//! 3. resident memory of idle loaded plugins: N distinct components (each a distinct `.wasm`,
//!    so nothing is shared) and 1,000 installations over the 7 first-party plugins.

use botyard_plugins::{
    AppContext, BotMessage, ChannelContext, InMemoryKvStore, Installation, LoadedPlugin, Manifest,
    PluginHost, PluginHostConfig, Webhook,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentiles(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// The same component with a distinct custom section appended: a different `.wasm` hash.
fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"bench-variant";
    let payload = format!("{i}");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend(section);
    out
}

async fn fake_telegram() -> std::net::SocketAddr {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        hyper::body::Bytes::from_static(
                            br#"{"ok":true,"result":{"message_id":1}}"#,
                        ),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn load(host: &PluginHost, wasm: &[u8]) -> LoadedPlugin {
    host.load(Manifest::from_wasm(wasm).unwrap(), wasm)
        .await
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = PluginHostConfig::new(Arc::new(InMemoryKvStore::default()));
        config.allow_private = vec![botyard_plugins::outbound::IpNet::parse("127.0.0.1").unwrap()];
        let host = PluginHost::new(config.clone());

        // 1. App round trip.
        let echo = load(&host, botyard_plugins::builtin::wasm("echo").unwrap()).await;
        let inst = Installation { org: "bench".into(), ..Default::default() };
        let ctx = AppContext { bot: "b".into(), participant: "p".into(), channel: "c".into(), flow: "f".into(), step: "s".into() };
        let args = json!({"name": "bench", "n": 41});
        for _ in 0..500 {
            host.call_app(&echo, &inst, &ctx, &args).await.unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            host.call_app(&echo, &inst, &ctx, &args).await.unwrap();
            times.push(t.elapsed());
        }
        let (p50, p99) = percentiles(times);
        println!("app call round trip (echo, fresh instance, KV read+write): p50 {p50:.1} µs, p99 {p99:.1} µs");

        // 2. Connector round trip against a fake Bot API.
        let addr = fake_telegram().await;
        let tg = load(&host, botyard_plugins::builtin::wasm("telegram").unwrap()).await;
        let tinst = Installation {
            org: "bench".into(),
            allowed_hosts: vec!["127.0.0.1".into()],
            config: [("api_base".to_string(), format!("http://{addr}"))].into(),
            secrets: [("bot_token".to_string(), "1:x".to_string())].into(),
        };
        let cctx = ChannelContext { bot: "b".into(), channel: "c".into(), webhook_url: "http://x/hooks/t".into() };
        let update = json!({"update_id": 1, "message": {"message_id": 1, "from": {"id": 7}, "chat": {"id": 7}, "text": "hi"}}).to_string();
        let hook = Webhook { method: "POST".into(), path: "/hooks/t".into(), query: String::new(), headers: vec![], body: update.into_bytes() };
        let reply = [BotMessage { content_type: "text".into(), content: json!({"text": "hello"}) }];
        let mut times = Vec::new();
        for i in 0..1100 {
            let t = Instant::now();
            let out = host.connector_ingest(&tg, &tinst, &cctx, &hook).await.unwrap();
            host.connector_deliver(&tg, &tinst, &cctx, &out.events[0].conversation, &reply).await.unwrap();
            if i >= 100 {
                times.push(t.elapsed());
            }
        }
        let (p50, p99) = percentiles(times);
        println!("connector round trip (telegram ingest + sendMessage to a fake API on 127.0.0.1): p50 {p50:.1} µs, p99 {p99:.1} µs");

        // 3. Memory of idle plugins.
        let n: usize = std::env::var("BENCH_DISTINCT").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        let fresh = PluginHost::new(config.clone());
        let base = botyard_plugins::builtin::wasm("echo").unwrap();
        let variants: Vec<Vec<u8>> = (0..n).map(|i| variant(base, i)).collect();
        let before = rss_kib();
        let t = Instant::now();
        let mut loaded = Vec::new();
        for v in &variants {
            loaded.push(load(&fresh, v).await);
        }
        let per = (rss_kib() - before) as f64 / n as f64;
        println!(
            "{n} distinct idle components: +{} KiB RSS ({per:.0} KiB each, ~{:.0} MiB per 1,000), compiled in {:.1} s",
            rss_kib() - before,
            per * 1000.0 / 1024.0,
            t.elapsed().as_secs_f64()
        );
        drop(loaded);

        let shared = PluginHost::new(config);
        let before = rss_kib();
        let mut installs: Vec<(LoadedPlugin, Installation)> = Vec::new();
        let mut first_party = Vec::new();
        for (_, wasm) in botyard_plugins::builtin::FIRST_PARTY {
            first_party.push(load(&shared, wasm).await);
        }
        for i in 0..1000 {
            let p = first_party[i % first_party.len()].clone();
            installs.push((p, Installation { org: format!("org-{i}"), ..Default::default() }));
        }
        println!(
            "1,000 idle installations over the 7 first-party plugins: +{} KiB RSS ({} compiled components)",
            rss_kib() - before,
            shared.compiled_count()
        );
    });
}
