//! The Studio API (`/v1/api`, spec §1–§3) over real HTTP against the real binary: every
//! endpoint's happy path and bad input, authentication modes, the signature window,
//! throttling, webhooks and broadcasts.

mod common;

use common::*;
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

fn texts(chat: &Json) -> Vec<String> {
    chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["payload"]["content"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn chat_runs_a_conversation() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let r = c.post("/v1/api/chat", &creds.public(), &text_event("ada", "hello"));
    r.expect(200);
    let v = r.json();
    assert_eq!(
        texts(&v),
        ["Hello! I am the botyard demo bot.", "What is your name?"]
    );
    assert_eq!(v["conversation_end"], false);
    assert_eq!(
        v["client"],
        json!({"bot_id": creds.bot_id, "channel_id": creds.channel_id, "user_id": "ada"})
    );
    let conv = v["messages"][0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    for m in v["messages"].as_array().unwrap() {
        assert_eq!(m["direction"], "SEND");
        assert_eq!(m["conversation_id"], conv.as_str());
        assert_eq!(
            m["interaction_order"],
            v["messages"][0]["interaction_order"]
        );
    }
    let req_id = v["request_id"].as_str().unwrap();
    assert_eq!(req_id.len(), 36, "generated UUID: {req_id}");
    let received = v["received_at"].as_str().unwrap();
    assert!(
        received.ends_with('Z') && received.len() == 24,
        "{received}"
    );

    // The hold resumes with the user's answer; the same conversation continues; request_id echoes.
    let mut body = text_event("ada", "Ada");
    body["request_id"] = json!("my-req-1");
    let v = c.post("/v1/api/chat", &creds.public(), &body).json();
    assert_eq!(v["request_id"], "my-req-1");
    assert_eq!(texts(&v)[0], "Nice to meet you, Ada!");
    assert_eq!(v["messages"][1]["payload"]["content_type"], "question");
    assert_eq!(v["messages"][0]["conversation_id"], conv.as_str());
    // A button click is a payload event; `goto end` closes the conversation.
    let v = c
        .post("/v1/api/chat", &creds.public(), &json!({"client": {"user_id": "ada"}, "payload": {"content_type": "payload", "content": {"payload": "BYE"}}}))
        .json();
    assert_eq!(texts(&v), ["Goodbye, Ada!"]);
    assert_eq!(v["conversation_end"], true);
    // Memories persist across conversations.
    let v = c
        .post("/v1/api/chat", &creds.public(), &text_event("ada", "hi"))
        .json();
    assert_eq!(texts(&v)[1], "Welcome back, Ada!");
    assert_ne!(v["messages"][0]["conversation_id"], conv.as_str());
}

#[test]
fn chat_identity_comes_from_the_key() {
    let s = Server::start();
    let creds = s.creds();
    let mut body = text_event("u1", "hi");
    body["client"]["bot_id"] = json!("someone-else");
    body["client"]["channel_id"] = json!("another-channel");
    let v = s
        .client()
        .post("/v1/api/chat", &creds.public(), &body)
        .json();
    assert_eq!(v["client"]["bot_id"], creds.bot_id.as_str());
    assert_eq!(v["client"]["channel_id"], creds.channel_id.as_str());
}

#[test]
fn chat_flow_trigger_and_event_types() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let trig = |flow: &str, close: bool| json!({"client": {"user_id": "t"}, "payload": {"content_type": "flow_trigger", "content": {"flow_id": flow, "close_flows": close}}});
    let v = c
        .post("/v1/api/chat", &creds.public(), &trig("default", true))
        .json();
    assert_eq!(texts(&v)[0], "Hello! I am the botyard demo bot.");
    // Unknown flow falls back to the default flow (no error).
    c.post(
        "/v1/api/chat",
        &creds.public(),
        &trig("no-such-flow", false),
    )
    .expect(200);
    for (ct, content) in [
        ("image", json!({"url": "https://example.org/a.png"})),
        ("url", json!({"url": "https://example.org"})),
        ("payload", json!({"payload": "X"})),
    ] {
        let body = json!({"client": {"user_id": format!("ev-{ct}")}, "payload": {"content_type": ct, "content": content}});
        c.post("/v1/api/chat", &creds.public(), &body).expect(200);
    }
}

#[test]
fn chat_bad_input_is_400() {
    let s = Server::start();
    let h = s.creds().public();
    let c = s.client();
    let cases: Vec<(Json, &str)> = vec![
        (
            json!({"payload": {"content_type": "text", "content": {"text": "x"}}}),
            "client.user_id",
        ),
        (
            json!({"client": {"user_id": ""}, "payload": {"content_type": "text", "content": {"text": "x"}}}),
            "client.user_id",
        ),
        (
            json!({"client": {"user_id": 5}, "payload": {"content_type": "text", "content": {"text": "x"}}}),
            "client.user_id",
        ),
        (json!({"client": {"user_id": "u"}}), "payload"),
        (
            json!({"client": {"user_id": "u"}, "payload": {"content": {}}}),
            "payload.content_type",
        ),
        (
            json!({"client": {"user_id": "u"}, "payload": {"content_type": "text", "content": {"text": "x"}}, "metadata": 3}),
            "metadata",
        ),
        (
            json!({"client": {"user_id": "u"}, "payload": {"content_type": "sticker", "content": {}}}),
            "",
        ),
        (
            json!({"client": {"user_id": "u"}, "payload": {"content_type": "text", "content": {}}}),
            "",
        ),
        (
            json!({"client": {"user_id": "u"}, "payload": {"content_type": "image", "content": {"text": "x"}}}),
            "",
        ),
    ];
    for (body, field) in cases {
        let r = c.post("/v1/api/chat", &h, &body);
        assert_eq!(r.status, 400, "{body} → {}", r.text());
        r.expect(400);
        assert!(
            r.json()["message"].as_str().unwrap().contains(field),
            "{body} → {}",
            r.text()
        );
    }
}

#[test]
fn auth_modes_and_signature_window() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    // Public endpoint: bare key or signed pair.
    c.post("/v1/api/chat", &creds.public(), &text_event("p", "hi"))
        .expect(200);
    c.post("/v1/api/chat", &creds.signed(), &text_event("p2", "hi"))
        .expect(200);
    // `key|ts` without a signature on a public endpoint.
    let stamped = vec![(
        "X-Api-Key".to_string(),
        format!("{}|{}", creds.api_key, now_secs()),
    )];
    c.post("/v1/api/chat", &stamped, &text_event("p", "hi"))
        .expect(401);
    // Private endpoint: the bare key is not enough.
    let r = c.get("/v1/api/bot", &creds.public());
    r.expect(401);
    assert_eq!(r.json()["message"], "missing X-Api-Signature header");
    c.get("/v1/api/bot", &[]).expect(401);
    let unknown = Creds {
        api_key: "pk_nope".into(),
        ..creds.clone()
    };
    assert_eq!(
        c.get("/v1/api/bot", &unknown.signed()).json()["message"],
        "invalid API key"
    );
    c.post("/v1/api/chat", &unknown.public(), &text_event("p", "hi"))
        .expect(401);
    // Window: ±300 s accepted, beyond refused.
    let now = now_secs();
    c.get("/v1/api/bot", &creds.signed_at(now - 290))
        .expect(200);
    c.get("/v1/api/bot", &creds.signed_at(now + 290))
        .expect(200);
    let r = c.get("/v1/api/bot", &creds.signed_at(now - 320));
    r.expect(401);
    assert_eq!(r.json()["message"], "expired or future timestamp");
    c.get("/v1/api/bot", &creds.signed_at(now + 320))
        .expect(401);
    // Bad signatures.
    let wrong = Creds {
        api_secret: "sk_wrong".into(),
        ..creds.clone()
    };
    assert_eq!(
        c.get("/v1/api/bot", &wrong.signed()).json()["message"],
        "invalid signature"
    );
    let mut h = creds.signed();
    h[1].1 = h[1].1.trim_start_matches("sha256=").to_string();
    c.get("/v1/api/bot", &h).expect(200); // prefix is optional
    h[1].1 = "sha256=00".into();
    c.get("/v1/api/bot", &h).expect(401);
    let mut h = creds.signed();
    h[0].1 = format!("{}|12ab", creds.api_key);
    assert_eq!(
        c.get("/v1/api/bot", &h).json()["message"],
        "malformed X-Api-Key"
    );
    // One signature is reusable within the window (no nonce).
    let h = creds.signed();
    for _ in 0..3 {
        c.get("/v1/api/bot/flows", &h).expect(200);
    }
}

#[test]
fn throttling_rejects_without_side_effects() {
    let s = Server::start_with(&["--rate-limit", "50"]);
    let creds = s.creds();
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let throttled = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (c, h, ok, throttled) = (s.client(), creds.signed(), ok.clone(), throttled.clone());
            std::thread::spawn(move || {
                for i in 0..40 {
                    let body = json!({"name": format!("f{t}x{i}"), "content": "start:\n  say \"x\"\n  goto end\n"});
                    let r = c.post("/v1/api/bot/flows", &h, &body);
                    match r.status {
                        200 => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        429 => {
                            r.expect(429);
                            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
                            throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (ok, throttled) = (
        ok.load(std::sync::atomic::Ordering::Relaxed),
        throttled.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(throttled > 0, "160 calls at full speed must exceed 50/s");
    std::thread::sleep(Duration::from_millis(1100));
    let flows = s.client().get("/v1/api/bot/flows", &creds.signed()).json();
    // Only the accepted calls created flows (+ the demo bot's Default).
    assert_eq!(flows.as_array().unwrap().len() as u32, ok + 1);
}

#[test]
fn bot_get_and_update() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let bot = c.get("/v1/api/bot", &creds.signed()).json();
    assert_eq!(bot["id"], creds.bot_id.as_str());
    assert_eq!(bot["name"], "Demo bot");
    let flows = bot["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(bot["default_flow"], flows[0]["id"]);
    assert!(
        flows[0]["commands"]
            .as_array()
            .unwrap()
            .contains(&json!("/default"))
    );
    assert!(bot["env"].is_object());

    let v = c
        .put("/v1/api/bot", &creds.signed(), &json!({"name": "Renamed", "description": "d", "env": {"API_URL": "https://x", "N": 3}, "unknown": 1}))
        .json();
    assert_eq!(v["name"], "Renamed");
    assert_eq!(v["description"], "d");
    assert_eq!(v["env"], json!({"API_URL": "https://x", "N": "3"}));
    // Env is replaced, not merged.
    let v = c
        .put("/v1/api/bot", &creds.signed(), &json!({"env": {"B": "2"}}))
        .json();
    assert_eq!(v["env"], json!({"B": "2"}));
    assert_eq!(v["name"], "Renamed");
    // default_flow by name (case-insensitive) or id.
    let f = c
        .post(
            "/v1/api/bot/flows",
            &creds.signed(),
            &json!({"name": "Other", "content": "start:\n  say \"o\"\n  goto end\n"}),
        )
        .json();
    let v = c
        .put(
            "/v1/api/bot",
            &creds.signed(),
            &json!({"default_flow": "other"}),
        )
        .json();
    assert_eq!(v["default_flow"], f["id"]);
    c.put(
        "/v1/api/bot",
        &creds.signed(),
        &json!({"default_flow": "missing"}),
    )
    .expect(400);
    c.put("/v1/api/bot", &creds.signed(), &json!({"env": [1]}))
        .expect(400);
    c.put("/v1/api/bot", &creds.signed(), &json!({"name": ""}))
        .expect(400);
    // airules (compat): commands of the named flows.
    let v = c
        .put(
            "/v1/api/bot",
            &creds.signed(),
            &json!({"airules": [{"commands": ["hey", "yo"], "target": {"flow_name": "Other"}}]}),
        )
        .json();
    let other = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Other")
        .unwrap()
        .clone();
    assert_eq!(other["commands"], json!(["hey", "yo", "/other"]));
    let default = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Default")
        .unwrap()
        .clone();
    assert_eq!(default["commands"], json!(["/default"]));
    c.put(
        "/v1/api/bot",
        &creds.signed(),
        &json!({"airules": [{"commands": ["x"], "target": {"flow_name": "Nope"}}]}),
    )
    .expect(404);
}

#[test]
fn flows_crud() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let h = creds.signed();
    let content = "start:\n  say \"hi from flow\"\n  goto end\n";
    let f = c.post(
        "/v1/api/bot/flows",
        &h,
        &json!({"id": "Checkout", "name": "Checkout", "content": content, "commands": ["buy"]}),
    );
    f.expect(200);
    let f = f.json();
    let id = f["id"].as_str().unwrap().to_string();
    assert_ne!(id, "Checkout", "client ids are ignored");
    assert_eq!(f["name"], "Checkout");
    assert_eq!(f["bot_id"], creds.bot_id.as_str());
    assert_eq!(f["commands"], json!(["buy", "/checkout"]));
    for k in [
        "organization_id",
        "created_at",
        "updated_at",
        "content",
        "description",
    ] {
        assert!(f.get(k).is_some(), "{k} in {f}");
    }
    // Duplicate names, case-insensitively.
    c.post(
        "/v1/api/bot/flows",
        &h,
        &json!({"name": "checkout", "content": content}),
    )
    .expect(409);
    c.post("/v1/api/bot/flows", &h, &json!({"content": content}))
        .expect(400);
    c.post("/v1/api/bot/flows", &h, &json!({"name": "X"}))
        .expect(400);
    c.post(
        "/v1/api/bot/flows",
        &h,
        &json!({"name": "bad name!", "content": content}),
    )
    .expect(400);

    let list = c.get("/v1/api/bot/flows", &h).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        c.get(&format!("/v1/api/bot/flows/{id}"), &h).json()["name"],
        "Checkout"
    );
    c.get("/v1/api/bot/flows/no-such-flow", &h).expect(404);

    // Update: tools send the whole object back; id/bot_id/timestamps are ignored.
    let mut whole = f.clone();
    whole["content"] = json!("start:\n  say \"updated\"\n  goto end\n");
    whole["bot_id"] = json!("other-bot");
    let u = c.put(&format!("/v1/api/bot/flows/{id}"), &h, &whole);
    assert!(u.status == 200 || u.status == 204, "{}", u.text());
    let got = c.get(&format!("/v1/api/bot/flows/{id}"), &h).json();
    assert!(got["content"].as_str().unwrap().contains("updated"));
    assert_eq!(got["bot_id"], creds.bot_id.as_str());
    c.put(
        "/v1/api/bot/flows/no-such-flow",
        &h,
        &json!({"content": content}),
    )
    .expect(404);
    c.put(
        &format!("/v1/api/bot/flows/{id}"),
        &h,
        &json!({"commands": "nope"}),
    )
    .expect(400);
    // The command routes chat to the flow.
    let v = c
        .post("/v1/api/chat", &creds.public(), &text_event("buyer", "BUY"))
        .json();
    assert_eq!(texts(&v), ["updated"]);

    // Delete (compat): 204, then 404; the default flow is protected.
    let r = c.request(
        "DELETE",
        &format!("/v1/api/bot/flows/{id}"),
        &h,
        Some(b"{\"ignored\":true}"),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    c.delete(&format!("/v1/api/bot/flows/{id}"), &h).expect(404);
    let default = c.get("/v1/api/bot", &h).json()["default_flow"]
        .as_str()
        .unwrap()
        .to_string();
    c.delete(&format!("/v1/api/bot/flows/{default}"), &h)
        .expect(409);
}

#[test]
fn usage_counts_messages_and_clients() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let zero = c.get("/v1/api/bot/usage", &creds.signed()).json();
    for w in ["currentmonth", "last30d", "lastmonth"] {
        assert_eq!(zero[w], json!({"messages": 0, "clients": 0}), "{zero}");
    }
    c.post("/v1/api/chat", &creds.public(), &text_event("a", "hi"))
        .expect(200);
    c.post("/v1/api/chat", &creds.public(), &text_event("b", "hi"))
        .expect(200);
    let u = c.get("/v1/api/bot/usage", &creds.signed()).json();
    assert_eq!(u["currentmonth"]["clients"], 2);
    // Two received events and two bot messages each.
    assert_eq!(u["currentmonth"]["messages"], 6, "{u}");
    assert_eq!(u["last30d"], u["currentmonth"]);
    assert_eq!(u["lastmonth"], json!({"messages": 0, "clients": 0}));
}

#[test]
fn validate_and_build() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let h = creds.signed();
    let good = json!({"id": "bot", "default_flow": "Main", "airules": [], "flows": [
        {"id": "Main", "name": "Main", "content": "start:\n  say \"hi\"\n  goto end\n", "commands": []}
    ]});
    assert_eq!(
        c.post("/v1/api/bot/validate", &h, &good).json(),
        json!({"valid": true})
    );
    let bad = json!({"default_flow": "Main", "flows": [
        {"name": "Main", "content": "start:\n  say \"ok\"\n  do x = (1 +\n"}
    ]});
    let v = c.post("/v1/api/bot/validate", &h, &bad).json();
    assert_eq!(v["valid"], false);
    let e = &v["errors"][0];
    for k in ["flow", "step", "line", "column", "col", "message"] {
        assert!(e.get(k).is_some(), "{k} in {e}");
    }
    assert_eq!(e["flow"], "Main");
    assert_eq!(e["column"], e["col"]);
    let dangling = json!({"default_flow": "Nope", "flows": [{"name": "Main", "content": "start:\n  goto end\n"}]});
    assert_eq!(
        c.post("/v1/api/bot/validate", &h, &dangling).json()["valid"],
        false
    );
    c.post("/v1/api/bot/validate", &h, &json!({"default_flow": "x"}))
        .expect(400);
    c.post("/v1/api/bot/validate", &h, &json!({"flows": {}}))
        .expect(400);
    c.post(
        "/v1/api/bot/validate",
        &h,
        &json!({"flows": [{"content": "x"}]}),
    )
    .expect(400);
    // Nothing was saved.
    assert_eq!(
        c.get("/v1/api/bot/flows", &h)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // No build yet.
    c.get("/v1/api/bot/build", &h).expect(404);
    let b = c.post("/v1/api/bot/build", &h, &json!({}));
    b.expect(200);
    let b = b.json();
    assert_eq!(b["id"], creds.bot_id.as_str());
    let version = b["version_id"].as_str().unwrap().to_string();
    assert!(b["engine_version"].is_string());
    let f = &b["flows"][0];
    let mut keys: Vec<&String> = f.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["commands", "content", "id", "name"]);
    // Build without a body works too.
    let b2 = c.request("POST", "/v1/api/bot/build", &h, None);
    b2.expect(200);
    let v2 = b2.json()["version_id"].as_str().unwrap().to_string();
    assert_ne!(v2, version);
    assert_eq!(
        c.get("/v1/api/bot/build", &h).json()["version_id"],
        v2.as_str()
    );
    assert_eq!(
        c.get("/v1/api/bot/build?version_id=latest", &h).json()["version_id"],
        v2.as_str()
    );
    assert_eq!(
        c.get(&format!("/v1/api/bot/build?version_id={version}"), &h)
            .json()["version_id"],
        version.as_str()
    );
    c.get("/v1/api/bot/build?version_id=nope", &h).expect(404);

    // Traffic runs on the latest build: a draft edit does not change answers until built.
    let default = c.get("/v1/api/bot", &h).json()["default_flow"]
        .as_str()
        .unwrap()
        .to_string();
    c.put(
        &format!("/v1/api/bot/flows/{default}"),
        &h,
        &json!({"content": "start:\n  say \"draft\"\n  goto end\n"}),
    )
    .expect(200);
    let v = c
        .post("/v1/api/chat", &creds.public(), &text_event("d1", "hi"))
        .json();
    assert_eq!(texts(&v)[0], "Hello! I am the botyard demo bot.");
    c.post("/v1/api/bot/build", &h, &json!({})).expect(200);
    let v = c
        .post("/v1/api/chat", &creds.public(), &text_event("d2", "hi"))
        .json();
    assert_eq!(texts(&v), ["draft"]);
    // An invalid bot does not build.
    c.put(
        &format!("/v1/api/bot/flows/{default}"),
        &h,
        &json!({"content": "start:\n  do x = (1 +\n"}),
    )
    .expect(200);
    let r = c.post("/v1/api/bot/build", &h, &json!({}));
    r.expect(400);
    assert!(
        r.json()["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{}",
        r.text()
    );
}

#[test]
fn conversations_open() {
    let s = Server::start();
    let creds = s.creds();
    let c = s.client();
    let h = creds.signed();
    let none = c
        .post("/v1/api/conversations/open", &h, &json!({"user_id": "zoe"}))
        .json();
    assert_eq!(none, json!({"has_open": false, "conversation": null}));
    let mut body = text_event("zoe", "hi");
    body["metadata"] = json!({"plan": "pro"});
    let chat = c.post("/v1/api/chat", &creds.public(), &body).json();
    let v = c
        .post("/v1/api/conversations/open", &h, &json!({"user_id": "zoe"}))
        .json();
    assert_eq!(v["has_open"], true);
    let conv = &v["conversation"];
    assert_eq!(conv["id"], chat["messages"][0]["conversation_id"]);
    assert_eq!(conv["status"], "OPEN");
    assert_eq!(conv["step_id"], "start");
    assert_eq!(conv["client"]["channel_id"], creds.channel_id.as_str());
    let default = c.get("/v1/api/bot", &h).json()["default_flow"].clone();
    assert_eq!(conv["flow_id"], default);
    assert_eq!(conv["metadata"]["plan"], "pro");
    c.post("/v1/api/conversations/open", &h, &json!({}))
        .expect(400);
    c.post(
        "/v1/api/conversations/open",
        &creds.public(),
        &json!({"user_id": "zoe"}),
    )
    .expect(401);
}

#[test]
fn webhook_gets_every_message_in_order_without_delaying_chat() {
    let s = Server::start();
    let rx = Receiver::start(Duration::from_millis(150));
    let hooked = s.webhook_channel(&rx.url);
    let c = s.client();
    let started = Instant::now();
    let t1 = c
        .post("/v1/api/chat", &hooked.public(), &text_event("w", "hi"))
        .json();
    let t2 = c
        .post("/v1/api/chat", &hooked.public(), &text_event("w", "Wanda"))
        .json();
    let t3 = c
        .post("/v1/api/chat", &hooked.public(), &json!({"client": {"user_id": "w"}, "payload": {"content_type": "payload", "content": {"payload": "BYE"}}}))
        .json();
    // 5 messages + the end marker at 150 ms each would take 900 ms if chat waited for them.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "chat waited for the webhook: {:?}",
        started.elapsed()
    );
    let mut expected: Vec<Json> = Vec::new();
    for t in [&t1, &t2, &t3] {
        for m in t["messages"].as_array().unwrap() {
            expected.push(m["payload"].clone());
        }
    }
    let got = rx.wait_for(expected.len() + 1, Duration::from_secs(10));
    assert_eq!(got.len(), expected.len() + 1, "{got:?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["messages"].as_array().unwrap().len(), 1);
        assert_eq!(&g["messages"][0]["payload"], e);
        assert_eq!(g["client"]["channel_id"], hooked.channel_id.as_str());
        assert_eq!(g["conversation_end"], false);
        assert!(g["request_id"].is_string() && g["received_at"].is_string());
    }
    let end = got.last().unwrap();
    assert_eq!(end["messages"], json!([]));
    assert_eq!(end["conversation_end"], true);
    // The default channel (no webhook) sends nothing.
    c.post("/v1/api/chat", &s.creds().public(), &text_event("w", "hi"))
        .expect(200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.bodies().len(), got.len());
}

#[test]
fn broadcasts_are_queued_and_delivered() {
    let s = Server::start();
    let rx = Receiver::start(Duration::ZERO);
    let hooked = s.webhook_channel(&rx.url);
    let c = s.client();
    let body = json!({"client": {"user_id": "bob"}, "payload": {"content_type": "flow_trigger", "content": {"flow_id": "Default"}}, "metadata": {"order": "A-1"}});
    let r = c.post("/v1/api/broadcasts", &hooked.public(), &body);
    r.expect(200);
    let v = r.json();
    assert_eq!(v["payload"]["content"]["close_flows"], true);
    assert_eq!(
        v["client"],
        json!({"user_id": "bob", "bot_id": hooked.bot_id, "channel_id": hooked.channel_id})
    );
    assert_eq!(v["metadata"], json!({"order": "A-1"}));
    assert!(v["request_id"].is_string());
    // Signed form too (the CLI signs every call).
    c.post("/v1/api/broadcasts", &hooked.signed(), &body)
        .expect(200);
    let got = rx.wait_for(4, Duration::from_secs(10));
    let first: Vec<&str> = got
        .iter()
        .filter_map(|g| g["messages"][0]["payload"]["content"]["text"].as_str())
        .collect();
    assert!(
        first
            .iter()
            .filter(|t| **t == "Hello! I am the botyard demo bot.")
            .count()
            >= 2,
        "{got:?}"
    );
    assert!(got.iter().all(|g| g["client"]["user_id"] == "bob"));
    // The broadcast opened a conversation for bob on that channel.
    let open = c
        .post(
            "/v1/api/conversations/open",
            &hooked.signed(),
            &json!({"user_id": "bob"}),
        )
        .json();
    assert_eq!(open["has_open"], true);
    // Bad input.
    c.post(
        "/v1/api/broadcasts",
        &hooked.public(),
        &json!({"payload": {"content_type": "text", "content": {"text": "x"}}}),
    )
    .expect(400);
    c.post(
        "/v1/api/broadcasts",
        &hooked.public(),
        &json!({"client": {"user_id": "x"}}),
    )
    .expect(400);
    c.post("/v1/api/broadcasts", &[], &body).expect(401);
}

#[test]
fn webhook_after_a_runtime_error_has_no_extra_end_marker() {
    let s = Server::start();
    let rx = Receiver::start(Duration::ZERO);
    let hooked = s.webhook_channel(&rx.url);
    let c = s.client();
    let h = hooked.signed();
    let default = c.get("/v1/api/bot", &h).json()["default_flow"]
        .as_str()
        .unwrap()
        .to_string();
    // Never built: the working flow serves; the goto fails at run time.
    let flow = "start:\n  say \"before\"\n  goto step nowhere\n";
    c.put(
        &format!("/v1/api/bot/flows/{default}"),
        &h,
        &json!({"content": flow}),
    )
    .expect(200);
    let v = c
        .post("/v1/api/chat", &hooked.public(), &text_event("e", "hi"))
        .json();
    assert_eq!(v["conversation_end"], true, "{v}");
    let last = v["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["payload"]["content_type"], "error", "{v}");
    let n = v["messages"].as_array().unwrap().len();
    let got = rx.wait_for(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let got_all = rx.bodies();
    assert_eq!(
        got_all.len(),
        n,
        "one call per message, the error one closing: {got:?}"
    );
    assert_eq!(got_all.last().unwrap()["conversation_end"], true);
    assert_eq!(
        got_all.last().unwrap()["messages"][0]["payload"]["content_type"],
        "error"
    );
    assert_eq!(got_all[0]["conversation_end"], false);
}
