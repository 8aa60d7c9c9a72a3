//! The OpenAI-compatible endpoint with the request and response shapes of the official
//! `openai` client libraries (Python and Node): `POST {base_url}/chat/completions` with
//! `Authorization: Bearer <key>`, the SDK's extra headers and fields, content parts, and
//! streaming as server-sent `chat.completion.chunk` events ending with `data: [DONE]`.
//! Covers OAI-01 (with a CSML flow in place of the LLM) and OAI-02.

mod common;
#[path = "common/ocs.rs"]
mod ocs;

use ocs::*;
use serde_json::{Value as Json, json};

const FLOW: &str = "start:\n  say \"got {{event}}\"\n  say \"history {{_metadata.history.length()}}\"\n  goto end\n";

/// The headers the Python SDK sends (besides Host/Content-Length).
fn sdk_headers(key: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {key}")),
        ("Content-Type".into(), "application/json".into()),
        ("Accept".into(), "application/json".into()),
        ("User-Agent".into(), "OpenAI/Python 1.99.0".into()),
        ("X-Stainless-Lang".into(), "python".into()),
        ("X-Stainless-Package-Version".into(), "1.99.0".into()),
        ("X-Stainless-Retry-Count".into(), "0".into()),
    ]
}

#[test]
fn completion_like_the_python_client() {
    // OAI-01
    let s = Ocs::start();
    let bot = s.bot_with(&s.org, "Singer", FLOW, None);
    let base = format!("/api/openai/{bot}");
    let body = json!({
        "model": "anything",
        "messages": [
            {"role": "system", "content": "You are a singer"},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello, what shall I sing?"},
            {"role": "user", "content": [{"type": "text", "text": "Sing a song for me"}, {"type": "text", "text": "Barracuda"}]}
        ],
        "temperature": 0.7, "n": 1, "max_tokens": 100
    });
    let r = s.client().post(
        &format!("{base}/chat/completions"),
        &sdk_headers(&s.key),
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "");
    assert!(v["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "got Sing a song for me Barracuda\n\nhistory 3"
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    );
    // completion.id is the new session; its history is system, user, assistant, user, replies.
    let sid = v["id"].as_str().unwrap();
    let d = s.get(&format!("/api/sessions/{sid}/")).json();
    let roles: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        vec![
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
            "assistant"
        ]
    );
    assert_eq!(d["messages"][3]["content"], "Sing a song for me Barracuda");
    // Always a new session.
    let r2 = s
        .client()
        .post(
            &format!("{base}/chat/completions"),
            &sdk_headers(&s.key),
            &body,
        )
        .json();
    assert_ne!(r2["id"], v["id"]);
    // `user` names the participant.
    let r3 = s.client().post(
        &format!("{base}/chat/completions"),
        &sdk_headers(&s.key),
        &json!({"model": "m", "user": "caller-7", "messages": [{"role": "user", "content": "x"}]}),
    );
    let sid3 = r3.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.get(&format!("/api/sessions/{sid3}/")).json()["participant"]["identifier"],
        "caller-7"
    );
    // Versioned base URL (0 = default); unknown version 404 before anything is created.
    let before = s.get("/api/sessions/").json()["count"].clone();
    assert_eq!(
        s.client()
            .post(
                &format!("{base}/v0/chat/completions"),
                &sdk_headers(&s.key),
                &body
            )
            .status,
        200
    );
    assert_eq!(
        s.client()
            .post(
                &format!("{base}/v1/chat/completions"),
                &sdk_headers(&s.key),
                &body
            )
            .status,
        200
    );
    assert_eq!(
        s.client()
            .post(
                &format!("{base}/v9/chat/completions"),
                &sdk_headers(&s.key),
                &body
            )
            .status,
        404
    );
    assert_eq!(
        s.get("/api/sessions/").json()["count"].as_i64().unwrap(),
        before.as_i64().unwrap() + 2
    );
}

#[test]
fn errors_in_openai_shape() {
    // OAI-02 and the other body errors; auth errors keep the DRF shape.
    let s = Ocs::start();
    let path = format!("/api/openai/{}/chat/completions", s.bot);
    let post = |b: Json| s.client().post(&path, &sdk_headers(&s.key), &b);
    let r = post(
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"code": null, "message": "Only text messages are supported", "param": null, "type": "error"}})
    );
    assert_eq!(
        post(json!({"model": "m", "messages": []})).json()["error"]["message"],
        "No messages provided"
    );
    assert_eq!(
        post(json!({"model": "m", "messages": [{"role": "assistant", "content": "x"}]})).json()["error"]
            ["message"],
        "Last message must be a user message"
    );
    let r = post(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "error");
    let r = s.client().post(
        &path,
        &bearer("ocs_wrong"),
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"detail": "Invalid token."}))
    );
    let ro = s.key_with(&s.org, "admin", true);
    assert_eq!(
        s.client()
            .post(
                &path,
                &bearer(&ro),
                &json!({"messages": [{"role": "user", "content": "x"}]})
            )
            .status,
        403
    );
    let r = s.client().post(
        "/api/openai/00000000-0000-0000-0000-000000000000/chat/completions",
        &bearer(&s.key),
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"detail": "No Experiment matches the given query."})
        )
    );
    // No CORS on the OpenAI endpoint.
    assert!(
        post(json!({"messages": [{"role": "user", "content": "x"}]}))
            .header("access-control-allow-origin")
            .is_none()
    );
}

/// Parse an SSE body like the SDKs do: `data:` lines, blank-line separated, until `[DONE]`.
fn sse_events(text: &str) -> (Vec<Json>, bool) {
    let mut out = Vec::new();
    let mut done = false;
    for block in text.split("\n\n") {
        for line in block.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    out.push(serde_json::from_str(data).expect("each event is JSON"));
                }
            }
        }
    }
    (out, done)
}

#[test]
fn streaming_chunks_like_the_sdks_expect() {
    let s = Ocs::start();
    let bot = s.bot_with(&s.org, "Singer", FLOW, None);
    let mut h = sdk_headers(&s.key);
    h.push(("Accept".into(), "text/event-stream".into()));
    let r = s.client().post(
        &format!("/api/openai/{bot}/chat/completions"),
        &h,
        &json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "la"}]}),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (events, done) = sse_events(&r.text());
    assert!(done, "ends with [DONE]");
    let id = events[0]["id"].as_str().unwrap().to_string();
    for e in &events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], id.as_str(), "one id for the stream");
        assert_eq!(e["model"], "");
        assert!(e["created"].is_i64());
    }
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| {
            e["choices"]
                .get(0)
                .and_then(|c| c["delta"]["content"].as_str())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "got la\n\nhistory 0");
    let finishes: Vec<&Json> = events
        .iter()
        .filter_map(|e| e["choices"].get(0).map(|c| &c["finish_reason"]))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, vec![&json!("stop")]);
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 0);
    // The streamed session exists like a plain one.
    assert_eq!(s.get(&format!("/api/sessions/{id}/")).status, 200);
}
