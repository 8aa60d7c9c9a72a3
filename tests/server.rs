//! The server itself over real HTTP: health, routing errors, body limit, CORS, HTTP/2, request
//! ids and access logs, graceful shutdown.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn healthz() {
    let s = Server::start();
    let r = s.client().get("/healthz", &[]);
    r.expect(200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert!(v["version"].is_string());
    assert_eq!(r.header("content-type"), Some("application/json"));
    s.client()
        .request("POST", "/healthz", &[], Some(b"{}"))
        .expect(405);
}

#[test]
fn unknown_routes_and_methods_are_json() {
    let s = Server::start();
    let c = s.client();
    let r = c.get("/nope", &[]);
    r.expect(404);
    c.get("/v1/api/nope", &s.creds().signed()).expect(404);
    c.get("/v1/apix", &[]).expect(404);
    let r = c.delete("/v1/api/chat", &s.creds().public());
    r.expect(405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.request("PATCH", "/v1/api/bot", &s.creds().signed(), Some(b"{}"));
    r.expect(405);
    assert_eq!(r.header("allow"), Some("GET, PUT"));
    // Legacy prefix routes the same API.
    c.get("/prod/api/bot", &s.creds().signed()).expect(200);
}

#[test]
fn body_limit_is_413() {
    let s = Server::start();
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = s
        .client()
        .request("POST", "/v1/api/chat", &s.creds().public(), Some(&big));
    r.expect(413);
    // Just under the limit is read (and then refused as not-JSON, not as too large).
    let mut ok = b"{\"x\":\"".to_vec();
    ok.extend(std::iter::repeat_n(b'a', 1024 * 1024 - 16));
    ok.extend_from_slice(b"\"}");
    let r = s
        .client()
        .request("POST", "/v1/api/chat", &s.creds().public(), Some(&ok));
    r.expect(400);
    // The limit is configurable.
    let small = Server::start_with(&["--body-limit", "100"]);
    let body = text_event("u", &"x".repeat(200)).to_string();
    small
        .client()
        .request(
            "POST",
            "/v1/api/chat",
            &small.creds().public(),
            Some(body.as_bytes()),
        )
        .expect(413);
}

#[test]
fn malformed_bodies_are_400() {
    let s = Server::start();
    let c = s.client();
    let h = s.creds().public();
    let r = c.request("POST", "/v1/api/chat", &h, Some(b"{not json"));
    r.expect(400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );
    c.request("POST", "/v1/api/chat", &h, Some(b"[1,2]"))
        .expect(400);
    c.request("POST", "/v1/api/chat", &h, Some(b"")).expect(400);
}

#[test]
fn cors_preflight_and_headers() {
    let s = Server::start();
    let r = s.client().request(
        "OPTIONS",
        "/v1/api/chat",
        &[
            ("Origin".into(), "https://shop.example".into()),
            ("Access-Control-Request-Method".into(), "POST".into()),
            (
                "Access-Control-Request-Headers".into(),
                "x-api-key, content-type".into(),
            ),
        ],
        None,
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["x-api-key", "x-api-signature", "content-type", "accept"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let methods = r.header("access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    // Real responses, errors included, carry the origin header too.
    let r = s.client().post(
        "/v1/api/chat",
        &[("Origin".into(), "https://shop.example".into())],
        &text_event("u", "hi"),
    );
    r.expect(401);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn request_ids_and_access_log() {
    let s = Server::start();
    let r = s.client().get(
        "/healthz",
        &[("X-Request-Id".into(), "trace-abc-123".into())],
    );
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    let generated = s.client().get("/healthz", &[]);
    let id = generated.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16);
    // One access-log line per request, carrying the request id.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = s.logs();
        if logs
            .lines()
            .any(|l| l.contains(&id) && l.contains("path=/healthz") && l.contains("status=200"))
        {
            assert_eq!(
                logs.lines().filter(|l| l.contains(&id)).count(),
                1,
                "{logs}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {id}:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn http2_prior_knowledge() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let s = Server::start();
    let addr = s.addr;
    let key = s.creds().api_key;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{addr}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let req = hyper::Request::post(format!("http://{addr}/v1/api/chat"))
            .header("x-api-key", key)
            .body(Full::new(Bytes::from(
                text_event("h2-user", "hello").to_string(),
            )))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(!v["messages"].as_array().unwrap().is_empty());
    });
}

/// A fake slow API for `HTTP()` calls: answers after `delay`.
fn slow_api(delay: Duration) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let body = r#"{"answer":42}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

#[test]
fn graceful_shutdown_finishes_in_flight_turns() {
    let mut s = Server::start();
    let api = slow_api(Duration::from_millis(800));
    let creds = s.creds();
    let flow = format!(
        "start:\n  do r = HTTP(\"{api}\").get().send()\n  say \"answer {{{{r.answer}}}}\"\n  goto end\n"
    );
    s.set_default_flow(&flow);
    let c = s.client();

    let c2 = c.clone();
    let h = creds.public();
    let inflight =
        std::thread::spawn(move || c2.post("/v1/api/chat", &h, &text_event("slow", "go")));
    std::thread::sleep(Duration::from_millis(300));
    s.signal("TERM");
    let r = inflight.join().unwrap();
    r.expect(200);
    let text = r.json()["messages"][0]["payload"]["content"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(text, "answer 42", "{}", r.text());
    let status = s.wait_exit(Duration::from_secs(10)).expect("server exited");
    assert!(status.success(), "{status:?}\n{}", s.logs());
    // Stopped accepting.
    assert!(c.try_request("GET", "/healthz", &[], None).is_err());
}

#[test]
fn sigint_also_stops_cleanly() {
    let mut s = Server::start();
    s.client().get("/healthz", &[]).expect(200);
    s.signal("INT");
    let status = s.wait_exit(Duration::from_secs(10)).expect("server exited");
    assert!(status.success());
    assert!(s.logs().contains("stopped"), "{}", s.logs());
}

#[test]
fn first_run_prints_credentials_once() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tmp.path().join("botyard.db").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains("API key") && out.contains("API secret"),
        "{out}"
    );
    assert!(out.contains("curl"), "{out}");
    assert!(out.contains("pk_"), "{out}");
}

/// A clean SIGTERM closes the store: every handle on it (the Studio and OCS services alike)
/// is dropped, so the writer's final `wal_checkpoint(TRUNCATE)` runs and the WAL is folded
/// back into the database file.
#[test]
fn sigterm_closes_the_store_and_truncates_the_wal() {
    if common::backend_is_pg() {
        eprintln!("SQLite's WAL: nothing to check on PostgreSQL");
        return;
    }
    let mut s = Server::start();
    let c = s.client();
    let creds = s.creds();
    // Studio: a few turns.
    for i in 0..5 {
        c.post(
            "/v1/api/chat",
            &creds.public(),
            &text_event(&format!("u{i}"), "hello"),
        )
        .expect(200);
    }
    // OCS: a chat session, a message, its task polled to the end.
    let key = s.setup["ocs"]["api_key"].as_str().unwrap().to_string();
    let bot = s.setup["bot"]["id"].as_str().unwrap().to_string();
    let h = vec![("X-api-key".to_string(), key)];
    let r = c.post(
        "/api/chat/start/",
        &h,
        &serde_json::json!({"chatbot_id": bot}),
    );
    r.expect(201);
    let sid = r.json()["session_id"].as_str().unwrap().to_string();
    let token = r.json()["session_token"].as_str().unwrap().to_string();
    let h = [h, vec![("X-session-token".to_string(), token)]].concat();
    let r = c.post(
        &format!("/api/chat/{sid}/message/"),
        &h,
        &serde_json::json!({"message": "hello"}),
    );
    r.expect(202);
    let task = r.json()["task_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = c.get(&format!("/api/chat/{sid}/{task}/poll/"), &h).json();
        if v["status"] == "complete" {
            break;
        }
        assert!(Instant::now() < deadline, "task never completed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let wal = s.data.join("botyard.db-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "the chats wrote to the WAL"
    );
    s.signal("TERM");
    let status = s.wait_exit(Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}\n{}", s.logs());
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "WAL left after a clean stop\n{}", s.logs());
}
