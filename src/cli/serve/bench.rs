//! `botyard bench`: a load benchmark over loopback.
//!
//! By default it sets up a fresh data dir, starts `botyard serve` as a child process (rate
//! limit off, so one channel key can carry the load) and measures, in this order:
//!
//! 1. **cold start**: process spawn → first answered `/chat`;
//! 2. **hello**: demo-bot chat turns, every request from a new user (a new conversation),
//!    over `--connections` keep-alive connections for `--duration`: turns/s, p50/p99 latency,
//!    errors, and server CPU per turn (utime+stime of the server from `/proc/<pid>/stat`);
//!    `--runs N` repeats it and reports the median run, then a `/healthz` run as the bare HTTP
//!    stack's baseline on the same machine at the same moment;
//! 3. **RSS** after topping the store up to `--conversations` conversations;
//! 4. **Open Chat Studio** (`--ocs-sessions`, 0 skips): the default flow is replaced (signed
//!    Studio API calls, then a build) by a hello flow; then `--ocs-sessions` chat sessions on
//!    their own connections each send a message and poll its task until `complete` (right
//!    after the 202, then every 3 ms), back to back: message → complete latency, turns/s and
//!    polls per turn; then `incoming_message` with one API key per connection;
//! 5. **loop bot**: the default flow is replaced by a step that loops over 100 items and
//!    remembers 3 values; same figures as hello.
//!
//! `--addr URL --api-key K` measures a running server instead (hello only; CPU when `--pid`).
//! The load generator runs on one thread of this process, on the same machine as the server.

use super::super::Cli;
use crate::http::loadgen::{self, LoadResult, LoadSpec};
use crate::http::signature::sign;
use clap::Args;
use hyper::Method;
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cluster;
mod hostile;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Length of the hello run (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Hello runs, back to back; the report's `hello` is the run with the median turns/s
    /// (on a shared machine one run is one sample of a moving speed), `hello_runs` all of them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// Length of the loop-bot run.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub loop_duration: Duration,
    /// Stored conversations before RSS is read (self-started server only; 0 skips).
    #[arg(long, default_value_t = 100_000)]
    pub conversations: u64,
    /// Skip the loop-bot run.
    #[arg(long)]
    pub skip_loop: bool,
    /// Measure a running server at this base URL (`http://127.0.0.1:8080`) instead of
    /// starting one.
    #[arg(long)]
    pub addr: Option<String>,
    /// Studio API key of the running server's channel (with `--addr`).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Pid of the running server, to report its CPU (with `--addr`).
    #[arg(long)]
    pub pid: Option<u32>,
    /// `BOTYARD_LOG` of the self-started server; its log is shown when this is not `info`.
    #[arg(long, default_value = "info")]
    pub server_log: String,
    /// Open Chat Studio sessions of the OCS runs (async chat and `incoming_message`, each
    /// session on its own connection, sending back to back); 0 skips them.
    #[arg(long, default_value_t = 32)]
    pub ocs_sessions: usize,
    /// Length of each OCS run.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ocs_duration: Duration,
    /// `--workers` of the self-started server.
    #[arg(long)]
    pub server_workers: Option<usize>,
    /// Run the hostile section instead of the others: each attack of the tenant-isolation
    /// issue against the server while a second organization's hello bot is measured at 8
    /// connections (its p50/p99 with no attack and under each attack).
    #[arg(long)]
    pub hostile: bool,
    /// With `--database URL`: botyard nodes to start on that PostgreSQL database, the hello
    /// load spread over them connection by connection (see `bench::cluster`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub nodes: u32,
    /// Length of each victim run of `--hostile`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hostile_duration: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration `{s}`"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// The hello bot of the OCS runs (issue 4: "a hello bot"): one answer, no hold.
const HELLO_FLOW: &str = "start:\n  say \"hello from OCS\"\n  goto end\n";

/// A turn that loops over 100 items and remembers 3 values (issue 3's second bench bot).
const LOOP_FLOW: &str = r#"start:
  do items = []
  do i = 0
  while (i < 100) {
    do items.push(i)
    do i = i + 1
  }
  do total = 0
  foreach (item) in items {
    do total = total + item
  }
  remember total = total
  remember count = items.length()
  remember last = items[99]
  say "total {{total}}"
  goto end
"#;

pub fn run(cli: &Cli, args: &BenchArgs) -> ExitCode {
    match run_inner(cli, args) {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_human(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(cli: &Cli, args: &BenchArgs) -> anyhow::Result<Json> {
    if let Some(url) = &cli.database {
        return cluster::run(url, args);
    }
    if let Some(url) = &args.addr {
        let addr = parse_base(url)?;
        let key = args
            .api_key
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--addr needs --api-key"))?;
        let hello = measure(
            chat_spec(addr, &key, args.connections, args.duration, "ext", 0),
            args.pid,
        );
        return Ok(json!({"machine": machine(), "connections": args.connections, "hello": hello}));
    }

    let exe = std::env::current_exe()?;
    let Fresh {
        dir,
        _cleanup,
        creds,
        key,
        secret,
    } = fresh_setup(&exe, "botyard-bench", &[])?;
    anyhow::ensure!(!key.is_empty(), "setup printed no Studio API key");

    // 1. Cold start: spawn → first answered chat.
    let t0 = Instant::now();
    let mut server = ServerProc::spawn(&exe, &dir, args)?;
    let listening_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let first = loop {
        let body = chat_body("cold", 0, 0);
        match rt.block_on(loadgen::request_once(
            server.addr,
            Method::POST,
            "/v1/api/chat",
            &key_header(&key),
            body,
        )) {
            Ok((200, _)) => break t0.elapsed(),
            Ok((s, b)) => anyhow::bail!("first chat answered {s}: {}", String::from_utf8_lossy(&b)),
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => anyhow::bail!("first chat failed: {e}"),
        }
    };
    let cold = json!({
        "to_listening_ms": round2(listening_ms),
        "to_first_chat_ms": round2(first.as_secs_f64() * 1000.0),
    });
    if args.hostile {
        let hostile = hostile::run(&rt, &exe, &dir, &server, &creds, (&key, &secret), args)?;
        server.stop();
        return Ok(json!({"machine": machine(), "hostile": hostile}));
    }

    // Warm-up (not counted), then 2. the hello run.
    let warm = run_load(
        server.addr,
        &key,
        args.connections,
        Duration::from_millis(500),
        "warm",
        0,
    );
    let warm_conversations = 1 + warm.ok;
    let mut runs: Vec<Json> = (0..args.runs)
        .map(|i| {
            // Each run its own users: every turn stays a new user's first turn.
            let tag = format!("hello{i}");
            measure(
                chat_spec(server.addr, &key, args.connections, args.duration, &tag, 0),
                Some(server.pid()),
            )
        })
        .collect();
    let hello_turns: u64 = runs.iter().filter_map(|r| r["turns"].as_u64()).sum();
    let hello_runs: Vec<Json> = runs
        .iter()
        .map(|r| {
            json!({"turns_per_second": r["turns_per_second"], "p99_ms": r["p99_ms"],
                   "server_cpu_us_per_turn": r["server_cpu_us_per_turn"]})
        })
        .collect();
    runs.sort_by(|a, b| {
        let tps = |r: &Json| r["turns_per_second"].as_f64().unwrap_or(0.0);
        tps(a).total_cmp(&tps(b))
    });
    let hello = runs.swap_remove(runs.len() / 2);
    let baseline = measure(
        healthz_spec(server.addr, args.connections, Duration::from_secs(3)),
        Some(server.pid()),
    );
    let mut conversations = warm_conversations + hello_turns;

    // 3. RSS after N stored conversations.
    let mut rss = Json::Null;
    if args.conversations > 0 {
        if conversations < args.conversations {
            let missing = args.conversations - conversations;
            let r = run_load(
                server.addr,
                &key,
                args.connections,
                Duration::from_secs(600),
                "fill",
                missing,
            );
            conversations += r.ok;
        }
        rss = json!({
            "conversations": conversations,
            "rss_mib": rss_kib(server.pid()).map(|k| round2(k as f64 / 1024.0)),
        });
    }

    // 4. Open Chat Studio on a hello flow (in place of the demo flow).
    let (mut ocs_chat, mut ocs_incoming) = (Json::Null, Json::Null);
    if args.ocs_sessions > 0 {
        install_flow(
            &rt,
            server.addr,
            &key,
            &secret,
            HELLO_FLOW,
            "hello from OCS",
        )?;
        (ocs_chat, ocs_incoming) = ocs_runs(&rt, &exe, &dir, &server, &creds, args)?;
    }

    // 5. The loop bot: replace the default flow, build, measure.
    let mut looped = Json::Null;
    if !args.skip_loop {
        install_flow(&rt, server.addr, &key, &secret, LOOP_FLOW, "total 4950")?;
        looped = measure(
            chat_spec(
                server.addr,
                &key,
                args.connections,
                args.loop_duration,
                "loop",
                0,
            ),
            Some(server.pid()),
        );
    }

    let stopped = server.stop();
    Ok(json!({
        "machine": machine(),
        "connections": args.connections,
        "server_log": args.server_log,
        "cold_start": cold,
        "hello": hello,
        "hello_runs": hello_runs,
        "http_baseline_healthz": baseline,
        "memory": rss,
        "loop_bot": looped,
        "ocs_chat": ocs_chat,
        "ocs_incoming_message": ocs_incoming,
        "graceful_stop_ms": stopped.map(|d| round2(d.as_secs_f64() * 1000.0)),
    }))
}

/// The OCS runs on the demo bot (public web chat): `ocs_sessions` chat sessions each sending a
/// message and polling its task until `complete`, back to back (latency: message sent →
/// `complete` read); then `incoming_message` with one API key per connection (each key
/// continues its own session).
fn ocs_runs(
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    dir: &Path,
    server: &ServerProc,
    creds: &Json,
    args: &BenchArgs,
) -> anyhow::Result<(Json, Json)> {
    let bot = creds["bot"]["id"].as_str().unwrap_or_default();
    let start = |_| -> anyhow::Result<loadgen::ChatSession> {
        let body = serde_json::to_vec(&json!({"chatbot_id": bot}))?;
        let (st, b) = rt
            .block_on(loadgen::request_once(
                server.addr,
                Method::POST,
                "/api/chat/start/",
                &[],
                body,
            ))
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            st == 201 || st == 200,
            "chat start: {st} {}",
            String::from_utf8_lossy(&b)
        );
        let v: Json = serde_json::from_slice(&b)?;
        Ok(loadgen::ChatSession {
            id: v["session_id"].as_str().unwrap_or_default().to_string(),
            token: v["session_token"].as_str().unwrap_or_default().to_string(),
        })
    };
    let n = args.ocs_sessions;
    // Warm-up on sessions of its own (not counted).
    let warm = (0..4).map(start).collect::<anyhow::Result<Vec<_>>>()?;
    loadgen::run_ocs_chat(server.addr, warm, Duration::from_millis(300));
    let sessions = (0..n).map(start).collect::<anyhow::Result<Vec<_>>>()?;
    let mut polls = 0;
    let mut chat = measure_with(Some(server.pid()), || {
        let (r, p) = loadgen::run_ocs_chat(server.addr, sessions, args.ocs_duration);
        polls = p;
        r
    });
    let turns = chat["turns"].as_u64().unwrap_or(0).max(1);
    chat["sessions"] = json!(n);
    chat["polls_per_turn"] = json!(round2(polls as f64 / turns as f64));

    let mut keys = vec![
        creds["ocs"]["api_key"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ];
    for i in 1..n {
        let out = Command::new(exe)
            .args(["apikey", "create", "--json", "--name"])
            .arg(format!("bench {i}"))
            .arg("--data")
            .arg(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "apikey create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Json = serde_json::from_slice(&out.stdout)?;
        keys.push(v["api_key"].as_str().unwrap_or_default().to_string());
    }
    let spec = LoadSpec {
        addr: server.addr,
        connections: n,
        duration: args.ocs_duration,
        method: Method::POST,
        path: format!("/channels/api/{bot}/incoming_message"),
        headers: vec![("content-type".into(), "application/json".into())],
        conn_headers: keys
            .into_iter()
            .map(|k| vec![("x-api-key".into(), k)])
            .collect(),
        body: Arc::new(|_, _| br#"{"message":"hi"}"#.to_vec()),
        max_requests: 0,
        bind: None,
        also: vec![],
    };
    // Warm-up: each key's first call creates its session.
    loadgen::run(LoadSpec {
        duration: Duration::from_millis(300),
        ..spec.clone()
    });
    let mut incoming = measure(spec, Some(server.pid()));
    incoming["sessions"] = json!(n);
    Ok((chat, incoming))
}

fn key_header(key: &str) -> Vec<(String, String)> {
    vec![("x-api-key".into(), key.to_string())]
}

fn chat_body(run: &str, conn: usize, seq: u64) -> Vec<u8> {
    format!(
        r#"{{"client":{{"user_id":"{run}-{conn}-{seq}"}},"payload":{{"content_type":"text","content":{{"text":"hi there"}}}}}}"#
    )
    .into_bytes()
}

fn chat_spec(
    addr: SocketAddr,
    key: &str,
    connections: usize,
    duration: Duration,
    run: &str,
    max: u64,
) -> LoadSpec {
    LoadSpec {
        addr,
        connections,
        duration,
        method: Method::POST,
        path: "/v1/api/chat".into(),
        headers: vec![
            ("x-api-key".into(), key.into()),
            ("content-type".into(), "application/json".into()),
        ],
        conn_headers: vec![],
        body: {
            let run = run.to_string();
            Arc::new(move |conn, seq| chat_body(&run, conn, seq))
        },
        max_requests: max,
        bind: None,
        also: vec![],
    }
}

fn run_load(
    addr: SocketAddr,
    key: &str,
    connections: usize,
    duration: Duration,
    run: &'static str,
    max: u64,
) -> LoadResult {
    loadgen::run(chat_spec(addr, key, connections, duration, run, max))
}

/// `GET /healthz` over the same connections: the cost of the bare HTTP stack (hyper, the
/// request pipeline, the access log) without auth, JSON or a turn.
fn healthz_spec(addr: SocketAddr, connections: usize, duration: Duration) -> LoadSpec {
    LoadSpec {
        addr,
        connections,
        duration,
        method: Method::GET,
        path: "/healthz".into(),
        headers: vec![],
        conn_headers: vec![],
        body: Arc::new(|_, _| Vec::new()),
        max_requests: 0,
        bind: None,
        also: vec![],
    }
}

/// One timed run with the server's CPU before and after, in total and per thread name
/// (`botyard` = async workers and the blocking pool, `botyard-db-writ…` = the store's writer).
fn measure(spec: LoadSpec, pid: Option<u32>) -> Json {
    measure_with(pid, || loadgen::run(spec))
}

/// [`measure`] of any load run by `load`.
fn measure_with(pid: Option<u32>, load: impl FnOnce() -> LoadResult) -> Json {
    let cpu0 = pid.and_then(cpu_seconds);
    let threads0 = pid.map(thread_cpu).unwrap_or_default();
    let me0 = cpu_seconds(std::process::id());
    let r = load();
    let me1 = cpu_seconds(std::process::id());
    let cpu1 = pid.and_then(cpu_seconds);
    let threads1 = pid.map(thread_cpu).unwrap_or_default();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let per_turn = |c: f64| (r.ok > 0).then(|| round2(c * 1e6 / r.ok as f64));
    let mut by_thread = serde_json::Map::new();
    for (name, after) in &threads1 {
        let before = threads0.get(name).copied().unwrap_or(0.0);
        by_thread.insert(name.clone(), json!(per_turn((after - before).max(0.0))));
    }
    let mut out = load_figures(&r);
    out["max_ms"] = json!(round2(r.percentile_ms(1.0)));
    out["server_cpu_seconds"] = json!(cpu.map(round2));
    out["server_cpu_us_per_turn"] = json!(cpu.and_then(per_turn));
    out["server_cpu_us_per_turn_by_thread"] = json!(by_thread);
    // The load generator runs on the same cores: what it took from the server.
    out["client_cpu_seconds"] = json!(me0.zip(me1).map(|(a, b)| round2(b - a)));
    out
}

/// What every load run reports: counts, errors, rate and latency.
fn load_figures(r: &LoadResult) -> Json {
    json!({
        "turns": r.ok,
        "errors": r.errors,
        "error_samples": r.error_samples,
        "seconds": round2(r.elapsed.as_secs_f64()),
        "turns_per_second": round2(r.per_second()),
        "p50_ms": round2(r.percentile_ms(0.50)),
        "p99_ms": round2(r.percentile_ms(0.99)),
    })
}

/// Replace the demo bot's default flow with `flow` (signed Studio API calls, then a build) and
/// check that a first chat's answer contains `expect`.
fn install_flow(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    key: &str,
    secret: &str,
    flow_text: &str,
    expect: &str,
) -> anyhow::Result<()> {
    put_flow(rt, addr, key, secret, flow_text)?;
    // Check the bot really runs the loop before timing it.
    let (st, body) = rt
        .block_on(loadgen::request_once(
            addr,
            Method::POST,
            "/v1/api/chat",
            &key_header(key),
            chat_body(&format!("check-{}", crate::store::ids::now_millis()), 0, 0),
        ))
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        st == 200 && String::from_utf8_lossy(&body).contains(expect),
        "the new flow answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Replace the default flow of `key`'s bot with `flow_text` and build it.
fn put_flow(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    key: &str,
    secret: &str,
    flow_text: &str,
) -> anyhow::Result<()> {
    let signed = || {
        let k = format!("{key}|{}", crate::store::ids::now_millis() / 1000);
        let sig = sign(secret.as_bytes(), &k);
        vec![
            ("x-api-key".to_string(), k),
            ("x-api-signature".to_string(), sig),
        ]
    };
    let (st, body) = rt
        .block_on(loadgen::request_once(
            addr,
            Method::GET,
            "/v1/api/bot",
            &signed(),
            vec![],
        ))
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        st == 200,
        "GET /bot: {st} {}",
        String::from_utf8_lossy(&body)
    );
    let bot: Json = serde_json::from_slice(&body)?;
    let flow = bot["default_flow"].as_str().unwrap_or_default().to_string();
    let put = serde_json::to_vec(&json!({"content": flow_text}))?;
    let (st, body) = rt
        .block_on(loadgen::request_once(
            addr,
            Method::PUT,
            &format!("/v1/api/bot/flows/{flow}"),
            &signed(),
            put,
        ))
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        st == 200,
        "PUT flow: {st} {}",
        String::from_utf8_lossy(&body)
    );
    let (st, body) = rt
        .block_on(loadgen::request_once(
            addr,
            Method::POST,
            "/v1/api/bot/build",
            &signed(),
            vec![],
        ))
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(st == 200, "build: {st} {}", String::from_utf8_lossy(&body));
    Ok(())
}

struct ServerProc {
    child: Child,
    addr: SocketAddr,
    /// The database round trips the server reported when it stopped (PostgreSQL only).
    round_trips: Arc<std::sync::atomic::AtomicU64>,
}

impl ServerProc {
    fn spawn(exe: &Path, data: &Path, args: &BenchArgs) -> anyhow::Result<ServerProc> {
        Self::spawn_with(exe, data, args, &[])
    }

    /// [`ServerProc::spawn`] with more `serve` arguments (e.g. `--database URL`).
    fn spawn_with(
        exe: &Path,
        data: &Path,
        args: &BenchArgs,
        extra: &[String],
    ) -> anyhow::Result<ServerProc> {
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(extra)
            .args(["--addr", "127.0.0.1:0", "--rate-limit", "0"])
            .env("BOTYARD_LOG", &args.server_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(w) = args.server_workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        let mut child = cmd.spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let round_trips = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rt_seen = Arc::clone(&round_trips);
        // The server's own log is shown only when asked for by a non-default `--server-log`
        // (at `info` it has an access-log line per request).
        let echo = args.server_log != "info";
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("server: {line}");
                }
                if let Some(n) = line
                    .strip_prefix("database round trips: ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    rt_seen.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(i) = line.find("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(
                        line[i + 20..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| anyhow::anyhow!("the server did not start"))?
            .parse()?;
        Ok(ServerProc {
            child,
            addr,
            round_trips,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait; the time the graceful stop took.
    fn stop(&mut self) -> Option<Duration> {
        let t0 = Instant::now();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        for _ in 0..3000 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh temp data dir set up by `botyard setup` (with `extra` arguments, e.g.
/// `--database URL`): the setup's credentials and its Studio key and secret. The dir goes
/// when this is dropped.
struct Fresh {
    dir: PathBuf,
    _cleanup: RemoveDir,
    creds: Json,
    key: String,
    secret: String,
}

fn fresh_setup(exe: &Path, tag: &str, extra: &[&str]) -> anyhow::Result<Fresh> {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cleanup = RemoveDir(dir.clone());
    let setup = Command::new(exe)
        .args(["setup", "--json"])
        .args(extra)
        .arg("--data")
        .arg(&dir)
        .output()?;
    anyhow::ensure!(
        setup.status.success(),
        "setup failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let creds: Json = serde_json::from_slice(&setup.stdout)?;
    let field = |f: &str| creds["studio"][f].as_str().unwrap_or_default().to_string();
    let (key, secret) = (field("api_key"), field("api_secret"));
    Ok(Fresh {
        dir,
        _cleanup: cleanup,
        creds,
        key,
        secret,
    })
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse_base(url: &str) -> anyhow::Result<SocketAddr> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(hostport)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {url}"))
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)` field, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// utime + stime per thread name, in seconds (`/proc/<pid>/task/*/stat`).
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn machine() -> Json {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    json!({"cores": cores, "cpu": model, "build": if cfg!(debug_assertions) { "debug" } else { "release" }})
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn print_human(r: &Json) {
    println!(
        "botyard bench ({} build, {} cores)",
        r["machine"]["build"].as_str().unwrap_or("?"),
        r["machine"]["cores"]
    );
    if let Some(h) = r.get("hostile") {
        let line = |name: &str, v: &Json| {
            println!(
                "  {name:<20} victim p50 {} ms, p99 {} ms, {} turns/s, {} errors",
                v["p50_ms"], v["p99_ms"], v["turns_per_second"], v["errors"]
            )
        };
        println!(
            "  hostile: victim at {} connections (target p99 <= {} ms)",
            h["victim_connections"], h["target_victim_p99_ms"]
        );
        line("no attack", &h["baseline"]);
        if let Some(attacks) = h["attacks"].as_object() {
            for (name, a) in attacks {
                line(name, &a["victim"]);
                println!("  {:<20} attack got {}", "", a["attack"]);
            }
        }
        return;
    }
    if !r["cold_start"].is_null() {
        println!(
            "  cold start: listening {} ms, first chat answered {} ms",
            r["cold_start"]["to_listening_ms"], r["cold_start"]["to_first_chat_ms"]
        );
    }
    if let Some(runs) = r["hello_runs"].as_array().filter(|r| r.len() > 1) {
        for (i, run) in runs.iter().enumerate() {
            println!(
                "  hello run {}: {} turns/s, p99 {} ms, server CPU {} µs/turn",
                i + 1,
                run["turns_per_second"],
                run["p99_ms"],
                run["server_cpu_us_per_turn"]
            );
        }
    }
    for (name, key) in [
        ("hello (median run)", "hello"),
        ("GET /healthz baseline", "http_baseline_healthz"),
        ("loop bot", "loop_bot"),
        ("OCS chat, message → task complete", "ocs_chat"),
        ("OCS incoming_message", "ocs_incoming_message"),
    ] {
        let m = &r[key];
        if m.is_null() {
            continue;
        }
        println!(
            "  {name}: {} turns/s over {} connections ({} turns, {} errors), p50 {} ms, p99 {} ms, server CPU {} µs/turn",
            m["turns_per_second"],
            m.get("sessions").unwrap_or(&r["connections"]),
            m["turns"],
            m["errors"],
            m["p50_ms"],
            m["p99_ms"],
            m["server_cpu_us_per_turn"]
        );
        if let Some(t) = m["server_cpu_us_per_turn_by_thread"].as_object() {
            let parts: Vec<String> = t
                .iter()
                .filter(|(_, v)| v.as_f64().is_some_and(|v| v > 0.5))
                .map(|(k, v)| format!("{k} {v} µs"))
                .collect();
            println!(
                "    by thread: {}; load generator CPU {} s",
                parts.join(", "),
                m["client_cpu_seconds"]
            );
        }
        if let Some(p) = m.get("polls_per_turn") {
            println!("    task polls per turn: {p}");
        }
        if let Some(samples) = m["error_samples"].as_array().filter(|s| !s.is_empty()) {
            println!("    first errors: {samples:?}");
        }
    }
    if !r["memory"].is_null() {
        println!(
            "  RSS after {} conversations: {} MiB",
            r["memory"]["conversations"], r["memory"]["rss_mib"]
        );
    }
}
