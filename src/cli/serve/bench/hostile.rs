//! `botyard bench --hostile`: each attack of the tenant-isolation issue runs against a
//! self-started server while a second organization's hello bot is measured (8 keep-alive
//! connections from `127.0.0.2`, so the attacker's per-address limits on `127.0.0.1` never
//! apply to it). The report gives the victim's p50/p99 with no attack and under each attack,
//! and what the attack got back (status counts).
//!
//! The attacks (the attacker is the demo organization, its bot is public):
//! * `regex_flow`: 4 clients chatting with a flow that loops 700 times over a failing
//!   `match_regex("\\w{300}")`;
//! * `say_loop`: 4 clients chatting with `while (true) { say "<15 KB>" }`;
//! * `silent_connections`: 10,050 TCP connections that send nothing;
//! * `multipart_upload`: 2 anonymous clients uploading 100 MB multipart bodies with a
//!   30,000-dash boundary to a keyless chat session;
//! * `logins`: 120 concurrent anonymous logins with wrong passwords.
//!
//! A hanging connector delivery and a connector key on the Studio API are not load attacks:
//! `tests/hostile_delivery.rs` and `tests/hostile_auth.rs` cover them.

use super::{BenchArgs, ServerProc, chat_spec, measure, put_flow};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Victim connections (the issue's figure: "victim's hello p50/p99 at 8 connections").
const VICTIM_CONNECTIONS: usize = 8;
/// The victim's source address on loopback.
const VICTIM_IP: [u8; 4] = [127, 0, 0, 2];

const VICTIM_FLOW: &str = "start:\n  say \"hello victim\"\n  goto end\n";
const REGEX_FLOW: &str = "start:\n  do i = 0\n  while (i < 700) {\n    do x = \"ab\".match_regex(\"\\\\w{300}\")\n    do i = i + 1\n  }\n  say \"done\"\n  goto end\n";

fn say_loop_flow() -> String {
    format!(
        "start:\n  while (true) {{\n    say \"{}\"\n  }}\n  goto end\n",
        "x".repeat(15 * 1024)
    )
}

/// Status counts of an attack's requests (`closed`: the server closed or refused the
/// connection; `timeout`: no answer within the client's patience).
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, what: impl Into<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what.into())
            .or_default() += 1;
    }
    fn add_result(&self, r: std::io::Result<u16>) {
        match r {
            Ok(s) => self.add(s.to_string()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                self.add("timeout")
            }
            Err(_) => self.add("closed"),
        }
    }
    fn json(&self) -> Json {
        json!(*self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One request on a new connection; the status of the answer.
fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    read_status(&mut s)
}

fn read_status(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(32)]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no answer"))
}

/// A second organization with a bot and a Studio API channel, through the CLI on the
/// server's data dir: `(api_key, api_secret)`.
fn victim_org(exe: &Path, dir: &Path) -> anyhow::Result<(String, String)> {
    let cli = |args: &[&str]| -> anyhow::Result<Json> {
        let out = Command::new(exe)
            .args(args)
            .args(["--json", "--data"])
            .arg(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let org = cli(&["org", "create", "victim"])?;
    let org = org["id"].as_str().unwrap_or_default().to_string();
    let bot = cli(&["bot", "create", "victim bot", "--org", &org])?;
    let bot = bot["id"].as_str().unwrap_or_default().to_string();
    let ch = cli(&["channel", "create", "--bot", &bot, "--org", &org])?;
    Ok((
        ch["api_key"].as_str().unwrap_or_default().to_string(),
        ch["api_secret"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Runs `attack` on `threads` threads until the victim's run ends.
fn with_attack(
    threads: usize,
    attack: impl Fn(usize, &AtomicBool, &Tally) + Send + Sync + 'static,
    victim: impl FnOnce() -> Json,
) -> (Json, Json) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let attack = Arc::new(attack);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, tally, attack) = (stop.clone(), tally.clone(), attack.clone());
            std::thread::spawn(move || attack(t, &stop, &tally))
        })
        .collect();
    // Let the attack get going before the victim is measured.
    std::thread::sleep(Duration::from_millis(500));
    let v = victim();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    (v, tally.json())
}

/// The victim's figures of one run.
fn victim_figures(m: &Json) -> Json {
    json!({"turns": m["turns"], "errors": m["errors"], "error_samples": m["error_samples"],
           "turns_per_second": m["turns_per_second"], "p50_ms": m["p50_ms"],
           "p99_ms": m["p99_ms"], "max_ms": m["max_ms"]})
}

/// `creds`: the setup's output (the attacker is its demo bot, `key`/`secret` its Studio
/// channel's).
pub(super) fn run(
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    dir: &Path,
    server: &ServerProc,
    creds: &Json,
    (key, secret): (&str, &str),
    args: &BenchArgs,
) -> anyhow::Result<Json> {
    crate::cli::serve::raise_open_file_limit();
    let addr = server.addr;
    let (key, secret) = (key.to_string(), secret.to_string());
    let demo_bot = creds["bot"]["id"].as_str().unwrap_or_default().to_string();
    let (vkey, vsecret) = victim_org(exe, dir)?;
    put_flow(rt, addr, &vkey, &vsecret, VICTIM_FLOW)?;
    let duration = args.hostile_duration;
    let pid = Some(server.pid());
    let bind = Some(IpAddr::from(VICTIM_IP));
    let mut run_no = 0;
    let mut victim = || {
        run_no += 1;
        let mut spec = chat_spec(
            addr,
            &vkey,
            VICTIM_CONNECTIONS,
            duration,
            &format!("victim{run_no}"),
            0,
        );
        spec.bind = bind;
        victim_figures(&measure(spec, pid))
    };

    let baseline = victim();
    let mut attacks = serde_json::Map::new();

    // 1. A flow looping over a failing, huge regex.
    put_flow(rt, addr, &key, &secret, REGEX_FLOW)?;
    let k = key.clone();
    let (v, a) = with_attack(
        4,
        move |t, stop, tally| chat_loop(addr, &k, t, stop, tally),
        &mut victim,
    );
    attacks.insert("regex_flow".into(), json!({"victim": v, "attack": a}));

    // 2. A say loop.
    put_flow(rt, addr, &key, &secret, &say_loop_flow())?;
    let k = key.clone();
    let (v, a) = with_attack(
        4,
        move |t, stop, tally| chat_loop(addr, &k, t, stop, tally),
        &mut victim,
    );
    attacks.insert("say_loop".into(), json!({"victim": v, "attack": a}));

    // 3. 10,050 silent connections from one address.
    let (v, a) = with_attack(
        1,
        move |_, stop, tally| silent_connections(addr, 10_050, stop, tally),
        &mut victim,
    );
    attacks.insert(
        "silent_connections".into(),
        json!({"victim": v, "attack": a}),
    );

    // 4. Huge multipart bodies with a 30,000-dash boundary, anonymous.
    let bot = demo_bot.clone();
    let (v, a) = with_attack(
        2,
        move |_, stop, tally| multipart_loop(addr, &bot, stop, tally),
        &mut victim,
    );
    attacks.insert("multipart_upload".into(), json!({"victim": v, "attack": a}));

    // 5. 120 concurrent anonymous logins.
    let (v, a) = with_attack(
        120,
        move |t, stop, tally| login_loop(addr, t, stop, tally),
        &mut victim,
    );
    attacks.insert("logins".into(), json!({"victim": v, "attack": a}));

    Ok(json!({
        "victim_connections": VICTIM_CONNECTIONS,
        "seconds_per_run": duration.as_secs_f64(),
        "target_victim_p99_ms": 25,
        "baseline": baseline,
        "attacks": attacks,
    }))
}

fn chat_loop(addr: SocketAddr, key: &str, t: usize, stop: &AtomicBool, tally: &Tally) {
    let headers = vec![
        ("x-api-key".to_string(), key.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!(
            r#"{{"client":{{"user_id":"attacker-{t}-{i}"}},"payload":{{"content_type":"text","content":{{"text":"go"}}}}}}"#
        );
        tally.add_result(raw_request(
            addr,
            "POST",
            "/v1/api/chat",
            &headers,
            body.as_bytes(),
        ));
        i += 1;
    }
}

fn silent_connections(addr: SocketAddr, n: usize, stop: &AtomicBool, tally: &Tally) {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => tally.add("connect_failed"),
        }
    }
    tally.add(format!("opened:{}", held.len()));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // How many the server had closed by the end of the run (its head deadline).
    let mut closed = 0;
    for s in &held {
        let _ = s.set_nonblocking(true);
        let mut b = [0u8; 1];
        if let Ok(0) = (&*s).read(&mut b) {
            closed += 1;
        }
    }
    tally.add(format!("closed_by_server:{closed}"));
}

fn multipart_loop(addr: SocketAddr, bot: &str, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        // A keyless chat session on the public demo bot.
        let start = serde_json::to_vec(&json!({"chatbot_id": bot})).unwrap_or_default();
        let sid = match session_of(addr, &start) {
            Some(s) => s,
            None => {
                tally.add("start_refused");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        tally.add_result(upload(addr, &sid, stop));
    }
}

fn session_of(addr: SocketAddr, body: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST /api/chat/start/ HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let json_start = text.find("\r\n\r\n")? + 4;
    let v: Json = serde_json::from_str(&text[json_start..]).ok()?;
    v["session_id"].as_str().map(str::to_string)
}

/// 100 MB of multipart body with a 30,000-dash boundary, streamed until the server answers
/// or closes.
fn upload(addr: SocketAddr, sid: &str, stop: &AtomicBool) -> std::io::Result<u16> {
    const TOTAL: usize = 100 * 1024 * 1024;
    let boundary = "-".repeat(30_000);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST /api/chat/{sid}/upload/ HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {TOTAL}\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    // Near-misses of the boundary: dashes all the way.
    let chunk = vec![b'-'; 64 * 1024];
    let mut sent = 0;
    while sent < TOTAL && !stop.load(Ordering::Relaxed) {
        let n = chunk.len().min(TOTAL - sent);
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n;
    }
    read_status(&mut s)
}

fn login_loop(addr: SocketAddr, t: usize, stop: &AtomicBool, tally: &Tally) {
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = serde_json::to_vec(
            &json!({"email": format!("nobody{t}-{i}@example.com"), "password": "wrong password"}),
        )
        .unwrap_or_default();
        tally.add_result(raw_request(addr, "POST", "/_/api/login", &headers, &body));
        i += 1;
    }
}
