//! Hostile clients at the edge (issue 14, items 4 and 5): connections held open without being
//! used, stalled bodies, idle HTTP/2, hostile multipart uploads, upload quotas and the
//! anonymous chat rate limit. Every attack runs from 127.0.0.1 while a second organization's
//! bot chats from 127.0.0.2 (Linux routes all of 127/8 to lo), and every victim turn must
//! succeed. Deadlines are shortened by flags; bounds are generous.

mod common;

use common::*;
use serde_json::{Value as Json, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const VICTIM_IP: &str = "127.0.0.2";

/// A TCP connection from `src` (a loopback address) to `addr`.
fn connect_from(src: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(format!("{src}:0").parse().unwrap())?;
        let s = sock.connect(addr).await?;
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// One `Connection: close` request from `src`: `(status, body)`, or an error when the server
/// closed the connection without an answer.
fn request_from(
    src: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = connect_from(src, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    s.write_all(&out)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

/// Status and body of a raw HTTP/1.1 answer with a `Content-Length` body.
fn parse(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = || std::io::Error::new(ErrorKind::InvalidData, "no HTTP answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn header_of(raw_head: &str, name: &str) -> Option<String> {
    raw_head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A second organization's bot chatting from 127.0.0.2 until stopped: every turn must answer
/// 200 with a message, and so must `/healthz` in between.
struct Victim {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl Victim {
    fn start(s: &Server) -> Victim {
        let (_, creds) = s.other_org("Victim");
        let c = s.client();
        c.put(
            &format!("/v1/api/bot/flows/{}", default_flow(s, &creds)),
            &creds.signed(),
            &json!({"content": "start:\n  say \"hello from the victim\"\n  goto end\n"}),
        )
        .expect(200);
        c.post("/v1/api/bot/build", &creds.signed(), &json!({}))
            .expect(200);
        let addr = s.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut turns = 0;
            let mut failures = Vec::new();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let body = text_event(&format!("victim-{}", n % 7), "hi").to_string();
                match request_from(
                    VICTIM_IP,
                    addr,
                    "POST",
                    "/v1/api/chat",
                    &creds.public(),
                    Some(body.as_bytes()),
                ) {
                    Ok((200, b)) => {
                        let v: Json = serde_json::from_slice(&b).unwrap_or(Json::Null);
                        if v["messages"][0]["payload"]["content"]["text"] == "hello from the victim"
                        {
                            turns += 1;
                        } else {
                            failures.push(format!("turn {n}: {v}"));
                        }
                    }
                    Ok((st, b)) => {
                        failures.push(format!("turn {n}: {st} {}", String::from_utf8_lossy(&b)))
                    }
                    Err(e) => failures.push(format!("turn {n}: {e}")),
                }
                match request_from(VICTIM_IP, addr, "GET", "/healthz", &[], None) {
                    Ok((200, _)) => {}
                    other => failures.push(format!("healthz {n}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (turns, failures)
        });
        Victim {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the victim and asserts that it chatted and that nothing failed.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (turns, failures) = self.handle.take().unwrap().join().unwrap();
        assert!(failures.is_empty(), "victim failures: {failures:#?}");
        assert!(turns >= 1, "the victim never chatted");
    }
}

fn default_flow(s: &Server, creds: &Creds) -> String {
    let bot = s.client().get("/v1/api/bot", &creds.signed()).json();
    bot["default_flow"].as_str().unwrap().to_string()
}

/// Is the connection closed by the server? Waits at most `wait` for an answer from it.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn silent_connections_past_the_per_ip_cap_are_closed_at_accept() {
    let s = Server::start_with(&["--max-connections-per-ip", "50", "--head-timeout", "60"]);
    let victim = Victim::start(&s);
    let mut silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(s.addr).expect("connect"))
        .collect();
    // The server closes every connection past the first 50 at accept; the first 50 wait for
    // their head deadline (60 s, far beyond this test).
    let mut closed = vec![false; silent.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while closed.iter().filter(|c| **c).count() < 250 && Instant::now() < deadline {
        for (i, conn) in silent.iter_mut().enumerate() {
            if !closed[i] {
                closed[i] = closed_within(conn, Duration::from_millis(5));
            }
        }
    }
    assert_eq!(closed.iter().filter(|c| **c).count(), 250);
    // From 127.0.0.1 no new connection is served while the 50 are held...
    let r = request_from("127.0.0.1", s.addr, "GET", "/healthz", &[], None);
    assert!(r.is_err(), "{r:?}");
    // ... while another client is.
    let (st, _) = request_from(VICTIM_IP, s.addr, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(st, 200);
    for (i, conn) in silent.iter_mut().enumerate() {
        if !closed[i] {
            assert!(!closed_within(conn, Duration::from_millis(5)), "held {i}");
        }
    }
    // Once they are gone, 127.0.0.1 is served again.
    drop(silent);
    let back = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        matches!(
            request_from("127.0.0.1", s.addr, "GET", "/healthz", &[], None),
            Ok((200, _))
        )
    });
    assert!(back, "127.0.0.1 not served again");
    victim.finish();
    assert!(s.logs().contains("too many connections from one client"));
}

#[test]
fn stalled_heads_bodies_and_idle_connections_are_cut() {
    let s = Server::start_with(&[
        "--head-timeout",
        "2",
        "--idle-timeout",
        "3",
        "--body-idle-timeout",
        "2",
    ]);
    let key = s.creds().api_key;
    let victim = Victim::start(&s);
    let wait = Duration::from_secs(20);

    // A connection that sends nothing.
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(s.addr).unwrap();
    assert!(closed_within(&mut silent, wait), "silent connection kept");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "closed before its deadline"
    );

    // A head that never ends.
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(closed_within(&mut slow, wait), "unfinished head kept");

    // HTTP/2 prior knowledge: the preface and an empty SETTINGS frame, then nothing.
    let mut h2 = TcpStream::connect(s.addr).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    assert!(closed_within(&mut h2, wait), "idle h2c connection kept");

    // A kept-alive HTTP/1.1 connection after its request: closed after the idle deadline.
    let mut ka = TcpStream::connect(s.addr).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    ka.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let n = ka.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t1 = Instant::now();
    assert!(
        closed_within(&mut ka, wait),
        "idle keep-alive connection kept"
    );
    assert!(
        t1.elapsed() >= Duration::from_millis(2000),
        "closed before its idle deadline"
    );

    // Bodies announced and not sent: 408 with the family's JSON error, then closed.
    for (path, headers, studio) in [
        ("/v1/api/chat", format!("X-Api-Key: {key}\r\n"), true),
        ("/api/chat/start/", String::new(), false),
    ] {
        let mut b = TcpStream::connect(s.addr).unwrap();
        b.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"client\":"
            )
            .as_bytes(),
        )
        .unwrap();
        b.set_read_timeout(Some(wait)).unwrap();
        let mut raw = Vec::new();
        let _ = b.read_to_end(&mut raw);
        let (status, body) = parse(&raw).expect("an answer");
        assert_eq!(status, 408, "{path}: {}", String::from_utf8_lossy(&body));
        let v: Json = serde_json::from_slice(&body).unwrap();
        if studio {
            assert_eq!(v["code"], 408, "{v}");
            assert!(v["message"].as_str().unwrap().contains("timed out"), "{v}");
        } else {
            assert!(v["detail"].as_str().unwrap().contains("timed out"), "{v}");
        }
    }
    victim.finish();
}

/// A multipart upload of `len` bytes streamed from another thread (the server may answer
/// before it has read the body): `fill` makes the body (given the bytes sent so far), ending
/// with the closing delimiter of `boundary`. The answer's status, head and body.
fn stream_upload(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    boundary: &str,
    len: usize,
    fill: fn(&mut Vec<u8>, usize),
) -> (u16, String, Json) {
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut sent = 0;
        let mut chunk = Vec::with_capacity(1 << 20);
        let filled = len - tail.len();
        while sent < filled {
            chunk.clear();
            fill(&mut chunk, sent);
            chunk.truncate((filled - sent).min(1 << 20));
            if w.write_all(&chunk).is_err() {
                return;
            }
            sent += chunk.len();
        }
        let _ = w.write_all(&tail);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    // Read until the answer is complete (or the connection ends).
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let want = header_of(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= split + 4 + want {
                break;
            }
        }
    }
    drop(s);
    let _ = writer.join();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Json::Null);
    (status, head, body)
}

/// A keyless chat session on the setup's public demo bot: `(session id, token header)`.
fn anonymous_session(s: &Server) -> (String, Vec<(String, String)>) {
    let bot = s.setup["bot"]["id"].as_str().unwrap();
    let r = s
        .client()
        .post("/api/chat/start/", &[], &json!({"chatbot_id": bot}));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["session_id"].as_str().unwrap().to_string(),
        vec![(
            "X-Session-Token".into(),
            v["session_token"].as_str().unwrap().to_string(),
        )],
    )
}

fn healthz_watch(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut bad = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match request_from(VICTIM_IP, addr, "GET", "/healthz", &[], None) {
                Ok((200, _)) => {}
                other => bad.push(format!("{other:?}")),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bad
    })
}

#[test]
fn hostile_multipart_bodies_are_refused_quickly() {
    let s = Server::start();
    let victim = Victim::start(&s);
    let (sid, token) = anonymous_session(&s);
    let path = format!("/api/chat/{sid}/upload/");
    let stop = Arc::new(AtomicBool::new(false));
    let health = healthz_watch(s.addr, Arc::clone(&stop));

    // ~100 MB with a boundary of 30,000 dashes, the body full of near-misses of it.
    fn near_misses(out: &mut Vec<u8>, _: usize) {
        while out.len() < 1 << 20 {
            out.extend_from_slice(b"\r\n");
            out.extend(std::iter::repeat_n(b'-', 29_999));
            out.push(b'x');
        }
    }
    let long = "-".repeat(30_000);
    let t0 = Instant::now();
    let (status, _, body) = stream_upload(s.addr, &path, &token, &long, 100 << 20, near_misses);
    assert_eq!(
        (status, body),
        (400, json!({"error": "Malformed multipart body"}))
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // The longest boundary RFC 2046 allows, ~100 MB of near-misses of it in one file part:
    // read in linear time, not kept, refused by OCS's size rule.
    fn part_then_near_misses(out: &mut Vec<u8>, sent: usize) {
        if sent == 0 {
            out.extend_from_slice(b"--");
            out.extend(std::iter::repeat_n(b'-', 70));
            out.extend_from_slice(
                b"\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\n",
            );
        }
        while out.len() < 1 << 20 {
            out.extend_from_slice(b"\r\n--");
            out.extend(std::iter::repeat_n(b'-', 69));
            out.push(b'x');
        }
    }
    let b70 = "-".repeat(70);
    let t0 = Instant::now();
    let (status, _, body) = stream_upload(
        s.addr,
        &path,
        &token,
        &b70,
        100 << 20,
        part_then_near_misses,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("exceeds maximum size"),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // Past the request limit: 413 as soon as the limit is passed.
    let (status, _, body) = stream_upload(
        s.addr,
        &path,
        &token,
        &b70,
        200 << 20,
        part_then_near_misses,
    );
    assert_eq!(
        (status, body),
        (413, json!({"detail": "Request body too large."}))
    );

    stop.store(true, Ordering::Relaxed);
    let bad = health.join().unwrap();
    assert!(bad.is_empty(), "healthz failed: {bad:?}");
    victim.finish();
    let incoming = s.data.join("ocs-files").join("incoming");
    let left = std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spool files left");
}

/// A multipart body of files of `size` bytes each.
fn multipart_files(n: usize, size: usize) -> (String, Vec<u8>) {
    let b = "edge-test-boundary-5f2c";
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f{i}.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes(),
        );
        body.extend(std::iter::repeat_n(b'a', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn upload(c: &Client, sid: &str, token: &[(String, String)], n: usize, size: usize) -> Response {
    let (ct, body) = multipart_files(n, size);
    let mut h = token.to_vec();
    h.push(("Content-Type".into(), ct));
    c.request("POST", &format!("/api/chat/{sid}/upload/"), &h, Some(&body))
}

fn stored_files(s: &Server) -> (i64, usize) {
    let db = rusqlite::Connection::open(s.data.join("botyard.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM ocs_files", [], |r| r.get(0))
        .unwrap();
    let contents: i64 = db
        .query_row("SELECT COUNT(*) FROM ocs_file_content", [], |r| r.get(0))
        .unwrap();
    (rows, contents as usize)
}

#[test]
fn upload_quotas_hold_under_parallel_uploads() {
    const MB: usize = 1024 * 1024;
    let s = Server::start_with(&[
        "--upload-quota-session",
        &(2 * MB).to_string(),
        "--upload-quota-org",
        &(4 * MB).to_string(),
    ]);
    let victim = Victim::start(&s);
    let c = s.client();

    // Within the session's quota, then past it: refused, nothing stored.
    let (sid, token) = anonymous_session(&s);
    let r = upload(&c, &sid, &token, 2, 600 * 1024);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(stored_files(&s), (2, 2));
    let r = upload(&c, &sid, &token, 1, MB);
    assert_eq!(
        (r.status, r.json()),
        (
            413,
            json!({"error": "Upload quota exceeded: this chat session may store at most 2 MB of files"})
        )
    );
    assert_eq!(stored_files(&s), (2, 2), "nothing stored");

    // Four parallel uploads of 0.7 MB to a fresh session of 2 MB: exactly two fit.
    let (sid2, token2) = anonymous_session(&s);
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (c, sid2, token2) = (c.clone(), sid2.clone(), token2.clone());
            std::thread::spawn(move || upload(&c, &sid2, &token2, 1, 700 * 1024))
        })
        .collect();
    let mut statuses: Vec<u16> = racers
        .into_iter()
        .map(|t| t.join().unwrap().status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [201, 201, 413, 413]);
    assert_eq!(stored_files(&s), (4, 4));

    // The organization's quota (4 MB; 2.57 MB used) holds across sessions.
    let (sid3, token3) = anonymous_session(&s);
    let r = upload(&c, &sid3, &token3, 1, 1200 * 1024);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = upload(&c, &sid3, &token3, 1, 300 * 1024);
    assert_eq!(
        (r.status, r.json()),
        (
            413,
            json!({"error": "Upload quota exceeded: this chatbot's team may store at most 4 MB of files"})
        )
    );
    assert_eq!(stored_files(&s), (5, 5));
    let incoming = s.data.join("ocs-files").join("incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    victim.finish();
}

#[test]
fn anonymous_chat_is_rate_limited_per_ip() {
    let s = Server::start_with(&["--anon-chat-rate", "6/60", "--anon-upload-rate", "1/600"]);
    let victim = Victim::start(&s);
    let c = s.client();
    let (sid, token) = anonymous_session(&s); // 1
    let poll = format!("/api/chat/{sid}/poll/");
    let r = upload(&c, &sid, &token, 1, 10); // 2 (and the only upload)
    assert_eq!(r.status, 201, "{}", r.text());
    let r = upload(&c, &sid, &token, 1, 10);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    for _ in 0..3 {
        assert_eq!(c.get(&poll, &token).status, 200); // 3..5
    }
    // A made-up key is no key.
    let mut fake = token.clone();
    fake.push(("X-api-key".into(), "made-up".into()));
    assert_eq!(c.get(&poll, &fake).status, 200); // 6
    let r = c.get(&poll, &fake);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        r.json(),
        json!({"detail": "Rate limit exceeded.", "available_in": wait})
    );
    assert_eq!(c.get(&poll, &token).status, 429);
    let r = c.post(
        "/api/chat/start/",
        &[],
        &json!({"chatbot_id": s.setup["bot"]["id"]}),
    );
    assert_eq!(r.status, 429);
    // A team member's key is not anonymous; another client IP has its own budget.
    let key = s.setup["ocs"]["api_key"].as_str().unwrap();
    let mut member = token.clone();
    member.push(("X-api-key".into(), key.to_string()));
    assert_eq!(c.get(&poll, &member).status, 200);
    let (st, _) = request_from(VICTIM_IP, s.addr, "GET", &poll, &token, None).unwrap();
    assert_eq!(st, 200);
    victim.finish();
}
