//! Issue 14, items 7–9, attacked through the real binary: admin login under parallel guessing,
//! spraying and floods (limits counted before argon2, per account and per client address,
//! argon2 on a bounded pool), client addresses from trusted proxies only, connector channel
//! keys on the Studio API, and the small 5xx (a broadcast for a just-deleted bot, OCS turns of
//! a bot whose flows do not compile).

mod common;
#[path = "common/ocs.rs"]
mod ocs;

use common::{Client, Response, Server, cli_json, text_event};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const PASSWORD: &str = "a long enough password";

/// `botyard admin create` through the real CLI (password on stdin).
fn admin_create(server: &Server, email: &str) {
    let mut child = Command::new(common::BIN)
        .args([
            "admin",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--json",
            "--data",
        ])
        .arg(&server.data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `POST /_/api/login` as client `from` (an `X-Forwarded-For` value; `None` = no header).
fn login_from(c: &Client, from: Option<&str>, email: &str, password: &str) -> Response {
    let mut h = Vec::new();
    if let Some(ip) = from {
        h.push(("X-Forwarded-For".to_string(), ip.to_string()));
    }
    c.post(
        "/_/api/login",
        &h,
        &json!({"email": email, "password": password}),
    )
}

fn retry_after(r: &Response) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After on {}: {}", r.status, r.text()))
}

/// The server process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn parallel_guesses_on_one_account_get_at_most_five_checks() {
    let s = Server::start_with(&["--trusted-proxy", "127.0.0.1"]);
    admin_create(&s, "target@example.com");
    let c = s.client();
    let gate = Barrier::new(40);
    let answers: Vec<Response> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..40)
            .map(|_| {
                let (c, gate) = (c.clone(), &gate);
                sc.spawn(move || {
                    gate.wait();
                    login_from(
                        &c,
                        Some("203.0.113.7"),
                        "target@example.com",
                        "wrong password!",
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let refused: Vec<&Response> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(checked <= 5, "{checked} guesses reached argon2");
    assert_eq!(checked + refused.len(), 40, "only 401 and 429 expected");
    for r in &refused {
        r.expect(429);
        assert!(retry_after(r) >= 1);
    }
    // That address stays refused for that account, even with the right password...
    login_from(&c, Some("203.0.113.7"), "target@example.com", PASSWORD).expect(429);
    // ... while the owner, from elsewhere, logs in.
    login_from(&c, Some("198.51.100.2"), "target@example.com", PASSWORD).expect(200);
}

#[test]
fn spraying_many_accounts_from_one_address_locks_no_one_else_out() {
    let s = Server::start_with(&["--trusted-proxy", "127.0.0.1/32"]);
    admin_create(&s, "boss@example.com");
    let c = s.client();
    let attacker = Some("203.0.113.66");
    for i in 0..20 {
        login_from(
            &c,
            attacker,
            &format!("u{i}@example.com"),
            "guess guess guess",
        )
        .expect(401);
    }
    // The 21st failure from that address is refused before any check, whatever the account.
    login_from(&c, attacker, "u20@example.com", "guess guess guess").expect(429);
    login_from(&c, attacker, "boss@example.com", PASSWORD).expect(429);
    // Another client logs in to an account; an attacker chain before the proxy's entry
    // changes nothing (the rightmost untrusted hop is the client).
    let r = login_from(
        &c,
        Some("203.0.113.66, 198.51.100.20"),
        "boss@example.com",
        PASSWORD,
    );
    r.expect(200);
    // A trusted proxy's `X-Forwarded-Proto: https` makes the cookies `Secure`.
    let r = c.post(
        "/_/api/login",
        &[
            ("X-Forwarded-For".into(), "198.51.100.20".into()),
            ("X-Forwarded-Proto".into(), "https".into()),
        ],
        &json!({"email": "boss@example.com", "password": PASSWORD}),
    );
    r.expect(200);
    let cookies: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("Secure")),
        "{cookies:?}"
    );
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let s = Server::start();
    admin_create(&s, "v@example.com");
    let c = s.client();
    // Each guess claims another address; the server counts them all for its TCP peer.
    for i in 0..5 {
        login_from(
            &c,
            Some(&format!("10.0.0.{i}")),
            "v@example.com",
            "wrong password!",
        )
        .expect(401);
    }
    login_from(&c, Some("10.9.9.9"), "v@example.com", PASSWORD).expect(429);
    // `X-Forwarded-Proto` from anyone is not a reason for `Secure` cookies either.
    admin_create(&s, "w@example.com");
    let r = c.post(
        "/_/api/login",
        &[("X-Forwarded-Proto".into(), "https".into())],
        &json!({"email": "w@example.com", "password": PASSWORD}),
    );
    r.expect(200);
    assert!(
        r.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .all(|(_, v)| !v.contains("Secure")),
        "{:?}",
        r.headers
    );
}

#[test]
fn a_login_flood_keeps_memory_bounded_while_another_org_chats() {
    let s = Server::start_with(&["--trusted-proxy", "127.0.0.1"]);
    admin_create(&s, "real@example.com");
    let (_, victim) = s.other_org("victim");
    let c = s.client();
    c.post("/v1/api/chat", &victim.public(), &text_event("v", "hi"))
        .expect(200);
    let gate = Barrier::new(121);
    let (answers, victim_turns) = std::thread::scope(|sc| {
        let chat = {
            let (c, gate, victim) = (c.clone(), &gate, victim.clone());
            sc.spawn(move || {
                gate.wait();
                let deadline = Instant::now() + Duration::from_secs(8);
                let mut turns = Vec::new();
                while Instant::now() < deadline {
                    turns.push(c.post("/v1/api/chat", &victim.public(), &text_event("v", "hello")));
                }
                turns
            })
        };
        let hs: Vec<_> = (0..120)
            .map(|i| {
                let (c, gate) = (c.clone(), &gate);
                sc.spawn(move || {
                    gate.wait();
                    let email = if i % 2 == 0 {
                        "real@example.com".to_string()
                    } else {
                        format!("nobody{i}@example.com")
                    };
                    let ip = format!("192.0.2.{}", i + 1);
                    login_from(&c, Some(&ip), &email, "wrong password!")
                })
            })
            .collect();
        let answers: Vec<Response> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        (answers, chat.join().unwrap())
    });
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let busy: Vec<&Response> = answers.iter().filter(|r| r.status == 503).collect();
    // Refused by the throttle (429: the account's limit over all addresses) is fine too.
    let throttled = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        checked + busy.len() + throttled,
        120,
        "only 401, 429 and 503 expected: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(checked >= 1, "no login was checked at all");
    for r in &busy {
        r.expect(503);
        assert!(retry_after(r) >= 1);
    }
    assert!(!victim_turns.is_empty());
    for t in &victim_turns {
        t.expect(200);
    }
    let peak = peak_rss_kib(&s);
    assert!(
        peak < 300 * 1024,
        "server peak RSS {} MiB under a login flood",
        peak / 1024
    );
    // The pool is free again: the real admin logs in.
    login_from(&c, Some("198.51.100.77"), "real@example.com", PASSWORD).expect(200);
}

#[test]
fn connector_channel_keys_authorize_nothing_on_the_studio_api() {
    let s = Server::start();
    let bot = s.creds().bot_id;
    let config = json!({"bot_token": "123:abc", "api_base": "http://127.0.0.1:9", "allow_hosts": ["127.0.0.1"], "webhook_secret": "s3cret"}).to_string();
    let ch = cli_json(
        &s.data,
        &[
            "channel", "create", "--kind", "telegram", "--bot", &bot, "--name", "tg", "--config",
            &config,
        ],
    );
    let key = ch["api_key"].as_str().expect("api_key").to_string();
    assert!(key.starts_with("pk_"), "{ch}");
    let c = s.client();
    let body = json!({"client": {"user_id": "-100123"}, "payload": {"content_type": "text", "content": {"text": "hello"}}});
    let unknown = c.post(
        "/v1/api/chat",
        &[("X-Api-Key".into(), format!("pk_{}", "x".repeat(43)))],
        &body,
    );
    unknown.expect(401);
    // Refused exactly like an unknown key (no oracle), whoever the "user" (a chat room).
    let bare = c.post("/v1/api/chat", &[("X-Api-Key".into(), key.clone())], &body);
    bare.expect(401);
    assert_eq!(bare.json(), unknown.json());
    let again = c.post("/v1/api/chat", &[("X-Api-Key".into(), key)], &body);
    assert_eq!(again.json(), unknown.json());
    // The Studio API channel's key still works.
    c.post("/v1/api/chat", &s.creds().public(), &body)
        .expect(200);
}

#[test]
fn a_broadcast_for_a_just_deleted_bot_is_a_4xx() {
    let s = Server::start();
    let (org, victim) = s.other_org("gone");
    let c = s.client();
    let bc = json!({"client": {"user_id": "u1"}, "payload": {"content_type": "text", "content": {"text": "hi"}}});
    // The key is in the server's auth cache.
    let first = c.post("/v1/api/broadcasts", &victim.signed(), &bc);
    assert!(first.status < 300, "{} {}", first.status, first.text());
    // Deleted by another process: the server learns it within about a second.
    common::open_store(&s.data, botyard::store::Durability::Normal)
        .delete_bot(&org, &victim.bot_id)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let r = c.post("/v1/api/broadcasts", &victim.signed(), &bc);
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
        r.expect(r.status);
        seen.push(r.status);
    }
    assert!(seen.iter().all(|s| *s == 404 || *s == 401), "{seen:?}");
    assert_eq!(seen.last(), Some(&401), "the key stops working: {seen:?}");
}

#[test]
fn ocs_turns_of_a_bot_that_does_not_compile_are_409() {
    let s = ocs::Ocs::start();
    let broken = s.bot_with(
        &s.org,
        "Broken",
        "start:\n  say \"unclosed\n  goto nowhere(\n",
        None,
    );
    let r = s.post(
        &format!("/channels/api/{broken}/incoming_message"),
        &json!({"message": "hi"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].is_string(), "{}", r.text());
    let r = s.post(
        &format!("/api/openai/{broken}/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].is_string(), "{}", r.text());
    // A bot that compiles still answers.
    let r = s.post(
        &format!("/channels/api/{}/incoming_message", s.bot),
        &json!({"message": "hi"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
