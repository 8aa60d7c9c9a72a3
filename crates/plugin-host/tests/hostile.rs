//! Hostile plugins: each misbehaviour is a clean, logged, failed call and the host keeps
//! serving. The `hostile` fixture misbehaves on request (see plugins/hostile).

mod common;

use botyard_plugins::{AppContext, GuestError, Manifest, PluginError, PluginHost};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn call(host: &PluginHost, org: &str, args: Value) -> Result<Value, PluginError> {
    let p = load_built(host, "hostile").await;
    host.call_app(&p, &install(org, &[], &[]), &AppContext::default(), &args)
        .await
}

async fn still_serving(host: &PluginHost) {
    assert_eq!(
        call(host, "org-a", json!({"do": "ok"})).await.unwrap(),
        json!("ok")
    );
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline() {
    let mut c = config();
    c.app_timeout = Duration::from_millis(300);
    let host = PluginHost::new(c);
    still_serving(&host).await;
    let started = Instant::now();
    let err = call(&host, "org-a", json!({"do": "loop"}))
        .await
        .unwrap_err();
    assert_eq!(err, PluginError::Timeout(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn loops_do_not_block_other_calls() {
    let mut c = config();
    c.app_timeout = Duration::from_secs(3);
    let host = std::sync::Arc::new(PluginHost::new(c));
    still_serving(&host).await;
    // Busy loops yield at every epoch tick, so a normal call completes meanwhile even on this
    // single-threaded runtime, long before the loop's deadline.
    let h = host.clone();
    let started = Instant::now();
    let looping = tokio::spawn(async move { call(&h, "org-x", json!({"do": "loop"})).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_serving(&host).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(!looping.is_finished());
    assert!(matches!(
        looping.await.unwrap(),
        Err(PluginError::Timeout(_))
    ));
}

#[tokio::test]
async fn memory_bomb_hits_the_limit() {
    let mut c = config();
    c.memory_limit = 16 * 1024 * 1024;
    let host = PluginHost::new(c);
    let err = call(&host, "org-a", json!({"do": "bomb"}))
        .await
        .unwrap_err();
    assert_eq!(err, PluginError::MemoryLimit(16 * 1024 * 1024));
    still_serving(&host).await;
}

#[tokio::test]
async fn panic_is_a_trap() {
    let host = host();
    let err = call(&host, "org-a", json!({"do": "panic"}))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap(_)), "{err:?}");
    let err = call(&host, "org-a", json!({"do": "bad-json"}))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::BadOutput(_)), "{err:?}");
    still_serving(&host).await;
}

fn refused(result: Result<Value, PluginError>, why: &str) {
    match result {
        Err(PluginError::Guest(GuestError::Upstream(m))) => assert!(m.contains(why), "{m}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn outbound_requests_obey_the_allowlist_and_refuse_private_addresses() {
    let server = FakeServer::start(|_| (200, "\"hi\"".into())).await;
    let host = host();
    let p = load_built(&host, "hostile").await;
    let ctx = AppContext::default();
    let fetch = |url: String| json!({"do": "fetch", "url": url});

    // Allowed: 127.0.0.1 is in the installation's allowlist and the test host's private allowance.
    let mut inst = install("org-a", &[], &[]);
    let ok = host
        .call_app(&p, &inst, &ctx, &fetch(server.url()))
        .await
        .unwrap();
    assert_eq!(ok["status"], 200);
    assert_eq!(server.taken().len(), 1);

    // A host not in the allowlist.
    inst.allowed_hosts = vec!["api.example.org".into()];
    refused(
        host.call_app(&p, &inst, &ctx, &fetch(server.url())).await,
        "host not allowed",
    );
    refused(
        host.call_app(&p, &inst, &ctx, &fetch("http://evil.example.com/".into()))
            .await,
        "host not allowed",
    );
    assert!(server.taken().is_empty());

    // Allowlisted, but private / link-local (cloud metadata) addresses.
    inst.allowed_hosts = vec![
        "10.0.0.1".into(),
        "169.254.169.254".into(),
        "localhost".into(),
    ];
    refused(
        host.call_app(&p, &inst, &ctx, &fetch("http://10.0.0.1/".into()))
            .await,
        "private",
    );
    refused(
        host.call_app(
            &p,
            &inst,
            &ctx,
            &fetch("http://169.254.169.254/latest/meta-data/".into()),
        )
        .await,
        "private",
    );

    // A name that resolves to loopback is refused when loopback is not explicitly allowed.
    let mut strict = config();
    strict.allow_private.clear();
    let strict = PluginHost::new(strict);
    let p2 = load_built(&strict, "hostile").await;
    let url = format!("http://localhost:{}/", server.addr.port());
    refused(
        strict.call_app(&p2, &inst, &ctx, &fetch(url)).await,
        "private",
    );
    assert!(server.taken().is_empty());
}

#[tokio::test]
async fn response_bodies_are_capped() {
    let server = FakeServer::start(|_| (200, "x".repeat(64 * 1024))).await;
    let mut c = config();
    c.max_http_response_bytes = 1024;
    let host = PluginHost::new(c);
    let err = call(&host, "org-a", json!({"do": "fetch", "url": server.url()})).await;
    refused(err, "");
}

#[tokio::test]
async fn one_organization_cannot_read_another_ones_store() {
    let host = host();
    let set = |org: &'static str, v: &'static str| {
        call(
            &host,
            org,
            json!({"do": "kv-set", "key": "token", "value": v}),
        )
    };
    set("org-a", "secret-of-a").await.unwrap();
    set("org-b", "secret-of-b").await.unwrap();
    let get = |org: &'static str| call(&host, org, json!({"do": "kv-get", "key": "token"}));
    assert_eq!(get("org-a").await.unwrap(), json!("secret-of-a"));
    assert_eq!(get("org-b").await.unwrap(), json!("secret-of-b"));
    assert_eq!(get("org-c").await.unwrap(), json!(null));
    // Listing from the root of the key space shows only the caller's keys: the interface has no
    // way to name another scope.
    assert_eq!(
        call(&host, "org-c", json!({"do": "kv-list", "prefix": ""}))
            .await
            .unwrap(),
        json!([])
    );
    assert_eq!(
        call(&host, "org-a", json!({"do": "kv-list", "prefix": ""}))
            .await
            .unwrap(),
        json!(["token"])
    );
}

#[tokio::test]
async fn secrets_are_per_installation_and_declared_only() {
    let host = host();
    let p = load_built(&host, "hostile").await;
    let mut inst = install("org-a", &[], &[("token", "t-a"), ("undeclared", "x")]);
    let out = host
        .call_app(&p, &inst, &AppContext::default(), &json!({"do": "secret"}))
        .await
        .unwrap();
    assert_eq!(out, json!("t-a"));
    inst.secrets.clear();
    let out = host
        .call_app(&p, &inst, &AppContext::default(), &json!({"do": "secret"}))
        .await
        .unwrap();
    assert_eq!(out, json!(null));
}

#[tokio::test]
async fn malformed_components_fail_to_load_cleanly() {
    let host = host();
    let manifest = Manifest::from_wasm(&built_wasm("echo")).unwrap();
    for bytes in [&b"definitely not wasm"[..], b"\0asm\x01\0\0\0", b""] {
        let err = host.load(manifest.clone(), bytes).await.unwrap_err();
        assert!(
            matches!(&err, PluginError::Load(m) if m.contains("invalid WebAssembly component")),
            "{err:?}"
        );
    }
    assert!(Manifest::from_wasm(b"garbage").is_err());
    // A valid component of the other kind.
    let mut wrong = manifest.clone();
    wrong.kind = botyard_plugins::PluginKind::Channel;
    let err = host.load(wrong, &built_wasm("echo")).await.unwrap_err();
    assert!(
        err.to_string().contains("is not a `channel-connector`"),
        "{err}"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn unknown_api_versions_are_rejected_with_a_clear_message() {
    let host = host();
    let wasm = built_wasm("hostile_future_api");
    let manifest = Manifest::from_wasm(&wasm);
    let err = manifest.unwrap_err();
    assert!(
        err.contains("unsupported plugin API version `botyard-plugin@9.0.0`"),
        "{err}"
    );
    assert!(err.contains("botyard-plugin@0.1.0"), "{err}");
    // A manifest that lies about the version does not get it past the component check.
    let mut lying = Manifest::from_wasm(&built_wasm("echo")).unwrap();
    lying.name = "future-api".into();
    let err = host.load(lying, &wasm).await.unwrap_err();
    assert!(err.to_string().contains("botyard-plugin@9.0.0"), "{err}");
    assert!(
        err.to_string().contains("supports botyard-plugin@0.1.0"),
        "{err}"
    );
}

#[tokio::test]
async fn the_organization_concurrency_cap_holds() {
    let mut c = config();
    c.org_concurrency = 1;
    c.app_timeout = Duration::from_secs(3);
    c.slot_wait = Duration::from_millis(100);
    let host = std::sync::Arc::new(PluginHost::new(c));
    let p = load_built(&host, "hostile").await;
    let (h, p2) = (host.clone(), p.clone());
    let busy = tokio::spawn(async move {
        h.call_app(
            &p2,
            &install("org-a", &[], &[]),
            &AppContext::default(),
            &json!({"do": "loop"}),
        )
        .await
    });
    // Let the loop take the organization's only slot (the spawned task runs at the first
    // await of this one and keeps the slot until its deadline).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = |org: &'static str| {
        let (host, p) = (host.clone(), p.clone());
        async move {
            host.call_app(
                &p,
                &install(org, &[], &[]),
                &AppContext::default(),
                &json!({"do": "ok"}),
            )
            .await
        }
    };
    // Same organization: waits a little for the slot, then gives up.
    let err = call("org-a").await.unwrap_err();
    assert!(matches!(err, PluginError::Busy(_)), "{err:?}");
    // Another organization is not affected.
    assert_eq!(call("org-b").await.unwrap(), json!("ok"));
    assert!(matches!(busy.await.unwrap(), Err(PluginError::Timeout(_))));
}

#[tokio::test]
async fn a_bad_cache_entry_is_recompiled() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = config();
    c.cache_dir = Some(dir.clone());
    let wasm = built_wasm("echo");
    let host = PluginHost::new(c.clone());
    host.load(Manifest::from_wasm(&wasm).unwrap(), &wasm)
        .await
        .unwrap();
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].to_string_lossy().ends_with(".cwasm"));
    std::fs::write(&entries[0], b"corrupt").unwrap();
    let host = PluginHost::new(c);
    let p = host
        .load(Manifest::from_wasm(&wasm).unwrap(), &wasm)
        .await
        .unwrap();
    let out = host
        .call_app(
            &p,
            &install("o", &[], &[]),
            &AppContext::default(),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(out["calls"], 1);
    assert!(std::fs::read(&entries[0]).unwrap().len() > 1000);
    let _ = std::fs::remove_dir_all(&dir);
}
