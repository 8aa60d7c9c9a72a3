//! WASM plugins through the real binary: the plugin commands, `App()` from a CSML flow, and
//! a Telegram channel end to end (webhook in → stored → turn → reply delivered to a fake Bot
//! API on 127.0.0.1), with platform retries deduplicated.

mod common;

use common::*;
use serde_json::{Value as Json, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A two-worker runtime for the tests that drive the engine and the plugin runtime in process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn default_org(s: &Server) -> String {
    let orgs = cli_json(&s.data, &["org", "list"]);
    let list = orgs
        .as_array()
        .cloned()
        .or_else(|| orgs["organizations"].as_array().cloned())
        .unwrap();
    list[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn plugin_list_shows_the_first_party_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let list = cli_json(dir.path(), &["plugin", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "telegram",
        "slack",
        "whatsapp",
        "twilio-sms",
        "messenger",
        "llm",
        "echo",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    for p in list.as_array().unwrap() {
        assert_eq!(p["first_party"], true);
        assert!(p["kind"] == "app" || p["kind"] == "channel", "{p}");
        assert!(p["version"].is_string());
    }
    let echo = cli_json(dir.path(), &["plugin", "inspect", "echo"]);
    assert_eq!(echo["api"], "botyard-plugin@0.1.0");
}

#[test]
fn app_calls_from_a_flow_and_installations() {
    let s = Server::start();
    s.set_default_flow("start:\n  do r = App(\"echo\", word=\"hi\", n=2)\n  say \"echo {{r.args.word}} {{r.args.n}} {{r.context.step}}\"\n  goto end\n",
    );
    let c = s.client();
    let h = s.creds().public();
    let r = c.post("/v1/api/chat", &h, &text_event("u1", "go")).json();
    assert_eq!(
        r["messages"][0]["payload"]["content"]["text"], "echo hi 2 start",
        "{r}"
    );

    // An unknown app: in-band error, the flow goes on with null.
    s.set_default_flow("start:\n  do r = App(\"nope\")\n  say \"after {{r}}\"\n  goto end\n");
    let r = c.post("/v1/api/chat", &h, &text_event("u2", "go")).json();
    let texts: Vec<String> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("nope") && t.contains("error")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("after")), "{texts:?}");

    // Install a first-party app with settings; inspect, list, remove.
    let org = default_org(&s);
    let inst = cli_json(
        &s.data,
        &[
            "plugin",
            "install",
            "echo",
            "--org",
            &org,
            "--config",
            "greeting=bonjour",
        ],
    );
    assert_eq!(inst["name"], "echo");
    let list = cli_json(&s.data, &["plugin", "list", "--org", &org]);
    assert_eq!(list[0]["name"], "echo");
    assert_eq!(list[0]["first_party"], false);
    s.set_default_flow("start:\n  do r = App(\"echo\")\n  say \"{{r.greeting}}\"\n  goto end\n");
    let r = c.post("/v1/api/chat", &h, &text_event("u3", "go")).json();
    assert_eq!(
        r["messages"][0]["payload"]["content"]["text"], "bonjour",
        "{r}"
    );
    cli_json(&s.data, &["plugin", "remove", "echo", "--org", &org]);
    assert_eq!(
        cli_json(&s.data, &["plugin", "list", "--org", &org]),
        json!([])
    );
}

#[test]
fn telegram_channel_end_to_end() {
    let s = Server::start();
    s.set_default_flow("start:\n  say \"You said {{event}}\"\n  goto end\n");
    let api = FakeApi::start(r#"{"ok":true,"result":{"message_id":9}}"#);
    let bot = s.creds().bot_id;
    let config = json!({"bot_token": "123:abc", "api_base": api.url, "allow_hosts": ["127.0.0.1"], "webhook_secret": "s3cret"}).to_string();
    let ch = cli_json(
        &s.data,
        &[
            "channel", "create", "--kind", "telegram", "--bot", &bot, "--name", "tg", "--config",
            &config,
        ],
    );
    let token = ch["token"].as_str().expect("channel token").to_string();
    let c = s.client();
    let hook = format!("/hooks/{token}");
    let update = json!({"update_id": 5001, "message": {"message_id": 1, "from": {"id": 42, "first_name": "Ada"}, "chat": {"id": 42}, "text": "hello"}});
    let secret = vec![(
        "X-Telegram-Bot-Api-Secret-Token".to_string(),
        "s3cret".to_string(),
    )];

    // A bad secret is refused before anything is stored.
    c.post(
        &hook,
        &[(
            "X-Telegram-Bot-Api-Secret-Token".to_string(),
            "x".to_string(),
        )],
        &update,
    )
    .expect(401);
    let r = c.post(&hook, &secret, &update);
    r.expect(200);
    assert_eq!(r.json(), json!({"ok": true}));
    let calls = api.wait_for(1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{}", s.logs());
    assert_eq!(calls[0].0, "/bot123:abc/sendMessage");
    assert_eq!(calls[0].1["chat_id"], "42");
    assert_eq!(calls[0].1["text"], "You said hello");

    // Telegram retries the same update: acknowledged, not run again.
    c.post(&hook, &secret, &update).expect(200);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(api.wait_for(2, Duration::from_millis(10)).len(), 1);

    // Unknown tokens are 404 with a JSON error.
    let r = c.post("/hooks/nope", &secret, &update);
    r.expect(404);
    assert_eq!(r.json()["message"], "unknown channel", "{}", r.text());
}

#[test]
fn plugin_test_prints_normalized_events() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample.json");
    let body = json!({"update_id": 7, "message": {"message_id": 1, "from": {"id": 3}, "chat": {"id": 3}, "text": "hey"}}).to_string();
    std::fs::write(
        &sample,
        json!({"method": "POST", "path": "/hooks/t", "query": "", "headers": [], "body": body})
            .to_string(),
    )
    .unwrap();
    let out = cli_json(
        dir.path(),
        &[
            "plugin",
            "test",
            "telegram",
            "--webhook",
            sample.to_str().unwrap(),
        ],
    );
    assert_eq!(out["events"][0]["event_id"], "7");
    assert_eq!(out["events"][0]["content"], json!({"text": "hey"}));
}

fn telegram_channel(s: &Server, api: &FakeApi) -> String {
    let bot = s.creds().bot_id;
    let config =
        json!({"bot_token": "1:x", "api_base": api.url, "allow_hosts": ["127.0.0.1"]}).to_string();
    let ch = cli_json(
        &s.data,
        &[
            "channel", "create", "--kind", "telegram", "--bot", &bot, "--name", "tg", "--config",
            &config,
        ],
    );
    format!("/hooks/{}", ch["token"].as_str().unwrap())
}

fn update(id: u64, text: &str) -> Json {
    json!({"update_id": id, "message": {"message_id": id, "from": {"id": 7}, "chat": {"id": 7}, "text": text}})
}

#[test]
fn failed_deliveries_are_retried_with_backoff() {
    let s = Server::start();
    s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n");
    let api = FakeApi::flaky(r#"{"ok":true,"result":{"message_id":1}}"#, 2);
    let hook = telegram_channel(&s, &api);
    s.client().post(&hook, &[], &update(1, "one")).expect(200);
    // Two 503s, then success: three calls of the same message, the last one after ~1 + 2 s.
    let calls = api.wait_for(3, Duration::from_secs(15));
    assert_eq!(calls.len(), 3, "{}", s.logs());
    assert!(
        calls.iter().all(|(_, b)| b["text"] == "echo one"),
        "{calls:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.wait_for(4, Duration::from_millis(10)).len(), 3);
}

#[test]
fn stored_events_survive_a_crash_before_delivery() {
    let mut s = Server::start();
    s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n");
    // The platform API is down: the reply stays in the outbox.
    let down = FakeApi::flaky(r#"{"ok":true,"result":{"message_id":1}}"#, usize::MAX);
    let hook = telegram_channel(&s, &down);
    s.client().post(&hook, &[], &update(10, "kept")).expect(200);
    down.wait_for(1, Duration::from_secs(10));
    s.kill();
    // Restart with the API back (the operator points the channel at a working endpoint).
    let up = FakeApi::start(r#"{"ok":true,"result":{"message_id":1}}"#);
    let data = s.data.clone();
    {
        use botyard::store::{ChannelPatch, Durability};
        let store = common::open_store(&data, Durability::Normal);
        let org = store.default_org().unwrap().unwrap();
        let ch = store
            .list_channels(&org.id, None)
            .unwrap()
            .into_iter()
            .find(|c| c.kind == "telegram")
            .unwrap();
        let mut config = ch.config.clone();
        config["api_base"] = json!(up.url);
        store
            .update_channel(
                &org.id,
                &ch.id,
                ChannelPatch {
                    config: Some(config),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let s2 = Server::spawn(&data, &[]);
    let calls = up.wait_for(1, Duration::from_secs(20));
    assert_eq!(calls.len(), 1, "{}", s2.logs());
    assert_eq!(calls[0].1["text"], "echo kept");
}

#[test]
#[ignore = "benchmark: cargo test --release --test plugins -- --ignored --nocapture"]
fn webhook_to_reply_latency() {
    let s = Server::start();
    s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n");
    let api = FakeApi::start(r#"{"ok":true,"result":{"message_id":1}}"#);
    let hook = telegram_channel(&s, &api);
    let c = s.client();
    let mut times = Vec::new();
    let mut acks = Vec::new();
    for i in 0..300u64 {
        let t = Instant::now();
        c.post(&hook, &[], &update(1000 + i, "x")).expect(200);
        let ack = t.elapsed();
        api.wait_for(i as usize + 1, Duration::from_secs(10));
        if i >= 20 {
            times.push(t.elapsed());
            acks.push(ack);
        }
    }
    acks.sort();
    println!("webhook acknowledged: p50 {:?}", acks[acks.len() / 2]);
    times.sort();
    println!(
        "webhook -> reply delivered to the fake platform: p50 {:?}, p99 {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
}

#[test]
fn app_key_value_data_is_per_organization_on_sqlite() {
    let s = Server::start();
    let flow = "start:\n  do r = App(\"echo\")\n  say \"calls {{r.calls}}\"\n  goto end\n";
    s.set_default_flow(flow);
    let (_, b) = s.other_org("second");
    let c = s.client();
    c.put(
        "/v1/api/bot/flows/Default",
        &b.signed(),
        &json!({"content": flow}),
    )
    .expect(200);
    c.post("/v1/api/bot/build", &b.signed(), &json!({}))
        .expect(200);
    let say = |h: &[(String, String)], user: &str| {
        c.post("/v1/api/chat", h, &text_event(user, "go")).json()["messages"][0]["payload"]["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let a = s.creds().public();
    assert_eq!(say(&a, "u1"), "calls 1");
    assert_eq!(say(&a, "u2"), "calls 2");
    // The echo app of the second organization starts from an empty store.
    assert_eq!(say(&b.public(), "u1"), "calls 1");
    assert_eq!(say(&a, "u3"), "calls 3");
}

/// `(config, plain)` of every connector channel and plugin installation, read from the file.
fn stored_settings(data: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT config FROM channels WHERE token IS NOT NULL",
        "SELECT config FROM plugins",
    ] {
        out.extend(common::sql(data, sql).into_iter().map(|r| r.join("|")));
    }
    out
}

#[test]
fn connector_and_plugin_secrets_are_sealed_at_rest() {
    let mut s = Server::start();
    s.set_default_flow("start:\n  say \"got {{event}}\"\n  goto end\n");
    let api = FakeApi::start(r#"{"ok":true,"result":{"message_id":1}}"#);
    let bot = s.creds().bot_id;
    let org = default_org(&s);
    let config = json!({"bot_token": "777:sealed-token", "webhook_secret": "hook-secret-1",
                        "api_base": api.url, "allow_hosts": ["127.0.0.1"]})
    .to_string();
    let ch = cli_json(
        &s.data,
        &[
            "channel", "create", "--kind", "telegram", "--bot", &bot, "--config", &config,
        ],
    );
    let hook = format!("/hooks/{}", ch["token"].as_str().unwrap());
    cli_json(
        &s.data,
        &[
            "plugin",
            "install",
            "llm",
            "--org",
            &org,
            "--secret",
            "api_key=sk-plain-key-1",
        ],
    );
    // Not in the file: neither the rows nor any page of the database or its WAL.
    for file in ["botyard.db", "botyard.db-wal"] {
        let bytes = std::fs::read(s.data.join(file)).unwrap_or_default();
        for secret in ["777:sealed-token", "hook-secret-1", "sk-plain-key-1"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {file}"
            );
        }
    }
    let stored = stored_settings(&s.data);
    assert!(
        stored.iter().any(|c| c.contains("\"sealed\"")),
        "{stored:?}"
    );
    assert!(
        stored.iter().any(|c| c.contains(&api.url)),
        "config stays readable"
    );
    // Opened for the call: the webhook secret is checked, the token is in the API path.
    let secret = vec![(
        "X-Telegram-Bot-Api-Secret-Token".to_string(),
        "hook-secret-1".to_string(),
    )];
    s.client()
        .post(&hook, &secret, &update(1, "one"))
        .expect(200);
    let calls = api.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        calls[0].0,
        "/bot777:sealed-token/sendMessage",
        "{}",
        s.logs()
    );

    // Rows written in the clear (an older SQLite binary) are sealed at the next start; no
    // older binary wrote to PostgreSQL.
    if common::backend_is_pg() {
        return;
    }
    s.kill();
    let db = rusqlite::Connection::open(s.data.join("botyard.db")).unwrap();
    let plain = json!({"bot_token": "777:sealed-token", "webhook_secret": "hook-secret-1",
                       "api_base": api.url, "allow_hosts": ["127.0.0.1"]});
    db.execute(
        "UPDATE channels SET config = ?1 WHERE token IS NOT NULL",
        [plain.to_string()],
    )
    .unwrap();
    db.execute(
        "UPDATE plugins SET config = ?1",
        [json!({"api_key": "sk-plain-key-1"}).to_string()],
    )
    .unwrap();
    drop(db);
    let s2 = Server::spawn(&s.data, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_settings(&s2.data)
        .iter()
        .any(|c| c.contains("sealed-token") || c.contains("sk-plain"))
    {
        assert!(Instant::now() < deadline, "not sealed: {}", s2.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    s2.client()
        .post(&hook, &secret, &update(2, "two"))
        .expect(200);
    let calls = api.wait_for(2, Duration::from_secs(10));
    assert_eq!(calls.len(), 2, "{}", s2.logs());
    assert_eq!(calls[1].0, "/bot777:sealed-token/sendMessage");
}

/// `botyard ARGS --data DATA`: (success, stdout, stderr).
fn cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .args(common::database_args(data))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn channel_create_needs_a_connector_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let setup = cli_json(dir.path(), &["setup"]);
    let bot = creds_from_setup(&setup).bot_id;
    let create = |kind: &str, config: &str| {
        cli(
            dir.path(),
            &[
                "channel", "create", "--kind", kind, "--bot", &bot, "--config", config,
            ],
        )
    };
    let (ok, _, err) = create("fax", "{}");
    assert!(!ok, "a kind without a connector plugin is refused");
    assert!(err.contains("no connector plugin `fax`"), "{err}");
    assert!(
        err.contains("telegram"),
        "names the first-party connectors: {err}"
    );
    let (ok, _, err) = create("echo", "{}");
    assert!(
        !ok && err.contains("is an app, not a channel connector"),
        "{err}"
    );
    let (ok, _, err) = create("telegram", "{}");
    assert!(!ok && err.contains("needs: bot_token"), "{err}");
    let (ok, _, err) = create("telegram", r#"{"bot_token": "1:x", "colour": "red"}"#);
    assert!(!ok && err.contains("declares no setting `colour`"), "{err}");
    let none: Vec<Json> = cli_json(dir.path(), &["channel", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] != "api")
        .cloned()
        .collect();
    assert!(none.is_empty(), "nothing created: {none:?}");

    // An installed connector (here the Telegram component under another name) is a kind.
    let wasm = dir.path().join("tg.wasm");
    std::fs::write(&wasm, botyard_plugins::builtin::wasm("telegram").unwrap()).unwrap();
    let org = cli_json(dir.path(), &["org", "list"]);
    let org = org
        .as_array()
        .cloned()
        .or_else(|| org["organizations"].as_array().cloned())
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Json = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plugins/telegram/plugin.json"
        ))
        .unwrap(),
    )
    .unwrap();
    manifest["name"] = json!("my-tg");
    let manifest_file = dir.path().join("my-tg.json");
    std::fs::write(&manifest_file, manifest.to_string()).unwrap();
    cli_json(
        dir.path(),
        &[
            "plugin",
            "install",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest_file.to_str().unwrap(),
            "--org",
            &org,
        ],
    );
    let ch = cli_json(
        dir.path(),
        &[
            "channel",
            "create",
            "--kind",
            "my-tg",
            "--bot",
            &bot,
            "--config",
            r#"{"bot_token": "1:x"}"#,
        ],
    );
    assert_eq!(ch["kind"], "my-tg");
    assert!(ch["token"].as_str().is_some_and(|t| !t.is_empty()));
}

/// The `App()` router of a benchmark: the server's plugin runtime, timed.
struct TimedApps {
    inner: Arc<botyard::plugins::PluginRuntime>,
    samples: Mutex<Vec<Duration>>,
}

impl botyard::engine::AppRouter for TimedApps {
    fn call(
        &self,
        ctx: &botyard::engine::AppContext,
        call: &csml::AppCall,
    ) -> Result<Json, String> {
        let t = Instant::now();
        let r = self.inner.call(ctx, call);
        self.samples.lock().unwrap().push(t.elapsed());
        r
    }
}

fn percentiles(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    (d[d.len() / 2], d[(d.len() * 99 / 100).min(d.len() - 1)])
}

/// `App("echo", ...)` from a real engine turn (in process: store, engine, plugin runtime as
/// `botyard serve` wires them). Reports the `App()` round trip as the interpreter sees it
/// (resolve, instantiate with a fresh store, call, JSON back; the echo app also reads and
/// writes its key-value counter in SQLite), and whole turns with and without the call.
#[test]
#[ignore = "benchmark: cargo test --release -p botyard --test plugins app_round_trip -- --ignored --nocapture"]
fn app_round_trip_from_a_csml_turn() {
    use botyard::engine::{ChatRequest, Engine, EngineConfig};
    use botyard::store::{Durability, NewBot, NewChannel, NewFlow};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (store, setup) = botyard::store::setup::ensure(&common::location(dir.path()), Durability::Normal).unwrap();
        let org = setup.organization.id.clone();
        let plugins = botyard::plugins::PluginRuntime::new(store.clone(), dir.path(), vec![]);
        let timed = Arc::new(TimedApps {
            inner: plugins.clone(),
            samples: Mutex::new(Vec::new()),
        });
        let engine = Engine::new(
            store.clone(),
            EngineConfig {
                apps: Some(timed.clone()),
                ..Default::default()
            },
        );
        plugins.set_engine(engine.clone());
        let bot_with = |name: &str, content: &str| {
            let (b, _) = store
                .create_bot(
                    &org,
                    NewBot {
                        name: name.into(),
                        flows: vec![NewFlow {
                            name: "Default".into(),
                            content: content.into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )
                .unwrap();
            let (ch, _) = store
                .create_channel(&org, &b.id, NewChannel::default())
                .unwrap();
            (b, ch)
        };
        let (app_bot, app_ch) = bot_with(
            "with app",
            "start:\n  do r = App(\"echo\", word=\"hi\", n=2)\n  say \"{{r.args.word}}\"\n  goto end\n",
        );
        let (plain_bot, plain_ch) = bot_with("without", "start:\n  say \"hi\"\n  goto end\n");
        engine.build(&org, &app_bot.id).await.unwrap();
        engine.build(&org, &plain_bot.id).await.unwrap();
        let turn = |ch: botyard::store::Channel, i: usize| {
            let engine = engine.clone();
            async move {
                let t = Instant::now();
                let r = engine
                    .chat(ChatRequest {
                        channel: ch,
                        user_id: format!("u{i}"),
                        payload: json!({"content_type": "text", "content": {"text": "go"}}),
                        metadata: Json::Null,
                        turn_metadata: Default::default(),
                        request_id: None,
                        received_at: 0,
                    })
                    .await
                    .unwrap();
                assert_eq!(r.messages[0].payload.content["text"], "hi", "{r:?}");
                t.elapsed()
            }
        };
        const WARMUP: usize = 50;
        const N: usize = 2000;
        let mut with_app = Vec::new();
        let mut without = Vec::new();
        for i in 0..WARMUP + N {
            let a = turn(app_ch.clone(), i).await;
            let b = turn(plain_ch.clone(), i).await;
            if i >= WARMUP {
                with_app.push(a);
                without.push(b);
            }
        }
        let samples = timed.samples.lock().unwrap()[WARMUP..].to_vec();
        assert_eq!(samples.len(), N);
        let (p50, p99) = percentiles(samples);
        println!("App(\"echo\") round trip inside a CSML turn: p50 {p50:?}, p99 {p99:?} (n = {N})");
        let (t50, t99) = percentiles(with_app);
        let (u50, u99) = percentiles(without);
        println!("turn with App(): p50 {t50:?}, p99 {t99:?}; without: p50 {u50:?}, p99 {u99:?}");
        // Where the round trip goes: resolving the plugin (installation lookup, cached
        // component), and the echo app's own key-value read + write (a SQLite commit).
        let mut resolve = Vec::new();
        let mut kv = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            plugins.resolve(&org, "echo").await.unwrap().unwrap();
            resolve.push(t.elapsed());
            let st = store.clone();
            let o = org.clone();
            kv.push(
                tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    st.plugin_kv_get(&o, "echo", "calls").unwrap();
                    st.plugin_kv_set(&o, "echo", "calls", b"1", i64::MAX).unwrap();
                    t.elapsed()
                })
                .await
                .unwrap(),
            );
        }
        let (r50, _) = percentiles(resolve);
        let (k50, _) = percentiles(kv);
        let r = plugins.resolve(&org, "echo").await.unwrap().unwrap();
        let ctx = botyard_plugins::AppContext::default();
        let args = json!({"word": "hi", "n": 2});
        let mut host = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            plugins
                .host()
                .call_app(&r.plugin, &r.install, &ctx, &args)
                .await
                .unwrap();
            host.push(t.elapsed());
        }
        let (h50, _) = percentiles(host);
        let mut direct = Vec::new();
        for _ in 0..N {
            let p2 = plugins.clone();
            let o = org.clone();
            direct.push(
                tokio::task::spawn_blocking(move || {
                    use botyard::engine::AppRouter;
                    let ctx = botyard::engine::AppContext {
                        organization_id: o,
                        bot_id: "b".into(),
                        channel_id: "c".into(),
                        user_id: "u".into(),
                    };
                    let call = csml::AppCall {
                        name: "echo".into(),
                        args: json!({"word": "hi"}),
                        flow: "f".into(),
                        step: "s".into(),
                    };
                    let t = Instant::now();
                    p2.call(&ctx, &call).unwrap();
                    t.elapsed()
                })
                .await
                .unwrap(),
            );
        }
        let (d50, _) = percentiles(direct);
        println!("  App() through the router from a blocking thread, no turn: p50 {d50:?}");
        println!(
            "  of which: resolve p50 {r50:?}; the host's call (fresh instance, echo incl. its \
             key-value get + set) p50 {h50:?}; key-value get + set alone p50 {k50:?}"
        );
    });
}

/// A connector event's turn commits the event as done and its replies in the outbox in one
/// transaction: stopping right after the turn (before anything else runs) loses nothing and
/// runs nothing twice; running the same event again is refused without writing.
#[test]
fn inbound_events_run_exactly_once() {
    use botyard::engine::{ChatRequest, Engine, EngineConfig, EngineError};
    use botyard::store::{Durability, NewBot, NewFlow};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (org, channel, event_id) = rt.block_on(async {
        let (store, setup) =
            botyard::store::setup::ensure(&common::location(dir.path()), Durability::Normal)
                .unwrap();
        let org = setup.organization.id.clone();
        let plugins = botyard::plugins::PluginRuntime::new(store.clone(), dir.path(), vec![]);
        let engine = Engine::new(
            store.clone(),
            EngineConfig {
                apps: Some(plugins.clone()),
                ..Default::default()
            },
        );
        plugins.set_engine(engine.clone());
        let (bot, _) = store
            .create_bot(
                &org,
                NewBot {
                    name: "once".into(),
                    flows: vec![NewFlow {
                        name: "Default".into(),
                        content: "start:\n  say \"once {{event}}\"\n  goto end\n".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .unwrap();
        engine.build(&org, &bot.id).await.unwrap();
        let settings = json!({"bot_token": "1:x", "api_base": "http://127.0.0.1:9"});
        let channel = botyard::plugins::manage::create_connector_channel(
            &store,
            &org,
            &bot.id,
            "telegram",
            "tg",
            settings.as_object().unwrap(),
        )
        .unwrap();
        let event = json!({"event_id": "u-1", "conversation": "42", "user_id": "42",
                           "content_type": "text", "content": {"text": "hello"}});
        assert!(
            store
                .enqueue_inbound(&org, &channel.id, "u-1", &event)
                .unwrap()
        );
        assert!(
            !store
                .enqueue_inbound(&org, &channel.id, "u-1", &event)
                .unwrap()
        );
        let row = store.pending_inbound(10).unwrap().remove(0);
        let req = || ChatRequest {
            channel: channel.clone(),
            user_id: "42".into(),
            payload: json!({"content_type": "text", "content": {"text": "hello"}}),
            metadata: Json::Null,
            turn_metadata: Default::default(),
            request_id: Some(format!("in-{}", row.id)),
            received_at: 0,
        };
        let r = engine.chat_inbound(req(), row.id.clone()).await.unwrap();
        assert_eq!(r.messages.len(), 1);
        // The same event again: refused, and nothing of that second turn is written.
        match engine.chat_inbound(req(), row.id.clone()).await {
            Err(EngineError::Conflict(m)) => assert!(m.contains("not pending"), "{m}"),
            other => panic!("a second run of the event: {other:?}"),
        }
        (org, channel, row.id)
        // Everything is dropped here, right after the commit: the "crash" point.
    });
    drop(rt);

    let store = common::open_store(dir.path(), Durability::Normal);
    assert_eq!(
        store.inbound_status(&event_id).unwrap(),
        Some(("done".to_string(), 1))
    );
    assert!(store.pending_inbound(10).unwrap().is_empty());
    let outbox = botyard::store::plugins::inbound_outbox_id(&event_id);
    assert_eq!(
        store
            .outbox_status(&outbox)
            .unwrap()
            .map(|(s, a, _)| (s, a)),
        Some(("pending".to_string(), 0)),
        "the reply is queued by the same commit"
    );
    let due = store
        .claim_outbox(botyard::store::plugins::OutboxClaim {
            now: 4_000_000_000_000,
            lease_ms: 1000,
            per_org: 4,
            limit: 10,
        })
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].conversation, "42");
    assert_eq!(due[0].messages[0]["content"]["text"], "once hello");
    let convs = store
        .list_conversations(
            &org,
            &botyard::store::ConversationFilter {
                channel_id: Some(channel.id.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(convs.len(), 1, "one turn, one conversation");
    let messages = store.list_messages(&org, &convs[0].id, None, 100).unwrap();
    assert_eq!(messages.len(), 2, "one RECEIVE and one SEND: {messages:?}");

    // A restarted worker finds nothing to run.
    let rt = runtime();
    rt.block_on(async {
        let plugins = botyard::plugins::PluginRuntime::new(store.clone(), dir.path(), vec![]);
        plugins.set_engine(Engine::new(store.clone(), EngineConfig::default()));
        assert_eq!(plugins.run_inbound_batch().await, 0);
    });
}

/// The inbound worker's selection, with a runtime limited to one turn per organization: a
/// conversation's events run one at a time in order, an organization's other conversations
/// wait for its slot, another organization's events do not.
#[test]
fn inbound_events_run_in_order_per_conversation_within_the_org_cap() {
    use botyard::engine::{Engine, EngineConfig};
    use botyard::plugins::channels::ChannelLimits;
    use botyard::store::{Durability, NewBot, NewFlow};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (store, setup) =
            botyard::store::setup::ensure(&common::location(dir.path()), Durability::Normal)
                .unwrap();
        let a = setup.organization.id.clone();
        let b = store.create_org("second", false).unwrap().id;
        let limits = ChannelLimits {
            inbound_per_org: 1,
            ..Default::default()
        };
        let plugins =
            botyard::plugins::PluginRuntime::with_limits(store.clone(), dir.path(), vec![], limits);
        let engine = Engine::new(
            store.clone(),
            EngineConfig {
                apps: Some(plugins.clone()),
                ..Default::default()
            },
        );
        plugins.set_engine(engine.clone());
        let mut channels = Vec::new();
        for org in [&a, &b] {
            let (bot, _) = store
                .create_bot(
                    org,
                    NewBot {
                        name: "ordered".into(),
                        flows: vec![NewFlow {
                            name: "Default".into(),
                            content: "start:\n  say \"got {{event}}\"\n  goto end\n".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )
                .unwrap();
            engine.build(org, &bot.id).await.unwrap();
            let settings = json!({"bot_token": "1:x", "api_base": "http://127.0.0.1:9"});
            channels.push(
                botyard::plugins::manage::create_connector_channel(
                    &store,
                    org,
                    &bot.id,
                    "telegram",
                    "tg",
                    settings.as_object().unwrap(),
                )
                .unwrap(),
            );
        }
        let mut ids = Vec::new();
        for (org, ch, external, conversation) in [
            (&a, &channels[0], "e1", "1"),
            (&a, &channels[0], "e2", "1"),
            (&a, &channels[0], "e3", "2"),
            (&b, &channels[1], "e4", "9"),
        ] {
            let event = json!({"event_id": external, "conversation": conversation,
                               "user_id": conversation, "content_type": "text",
                               "content": {"text": external}});
            store
                .enqueue_inbound(org, &ch.id, external, &event)
                .unwrap();
            let row = store
                .pending_inbound(10)
                .unwrap()
                .into_iter()
                .find(|r| r.external_id == external)
                .unwrap();
            ids.push(row.id);
        }
        let done = |i: usize| store.inbound_status(&ids[i]).unwrap().unwrap().0 == "done";
        // e1 (A's slot) and e4 (B's own); e2 waits behind e1, e3 for A's slot.
        assert_eq!(plugins.run_inbound_batch().await, 2);
        assert!(done(0) && done(3) && !done(1) && !done(2));
        assert_eq!(plugins.run_inbound_batch().await, 1);
        assert!(done(1) && !done(2), "conversation 1's second event next");
        assert_eq!(plugins.run_inbound_batch().await, 1);
        assert!(done(2));
        assert_eq!(plugins.run_inbound_batch().await, 0);
        // Each turn queued its reply; conversation 1's second reply waits behind its first.
        let claimed = store
            .claim_outbox(botyard::store::plugins::OutboxClaim {
                now: 4_000_000_000_000,
                lease_ms: 1000,
                per_org: 4,
                limit: 10,
            })
            .unwrap();
        let mut texts: Vec<String> = claimed
            .iter()
            .map(|r| {
                r.messages[0]["content"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        texts.sort();
        assert_eq!(texts, ["got e1", "got e3", "got e4"]);
    });
}
