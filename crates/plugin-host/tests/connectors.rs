//! Every first-party connector end to end against a fake platform on 127.0.0.1: a platform
//! webhook in → normalized events; the bot's messages out → the fake platform's API calls.

mod common;

use botyard_plugins::{BotMessage, ChannelContext, GuestError, PluginError, Webhook};
use common::*;
use serde_json::{Value, json};

fn ctx() -> ChannelContext {
    ChannelContext {
        bot: "bot1".into(),
        channel: "ch1".into(),
        webhook_url: "https://bots.example.org/hooks/tok123".into(),
    }
}

fn post(body: &[u8], headers: &[(&str, &str)]) -> Webhook {
    Webhook {
        method: "POST".into(),
        path: "/hooks/tok123".into(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn get(query: &str) -> Webhook {
    Webhook {
        method: "GET".into(),
        path: "/hooks/tok123".into(),
        query: query.into(),
        headers: vec![],
        body: vec![],
    }
}

fn msg(content_type: &str, content: Value) -> BotMessage {
    BotMessage {
        content_type: content_type.into(),
        content,
    }
}

fn question() -> BotMessage {
    msg(
        "question",
        json!({"title": "Coffee?", "buttons": [
            {"content_type": "button", "content": {"title": "Yes", "payload": "YES", "accepts": ["Yes", "YES"]}},
            {"content_type": "button", "content": {"title": "No", "payload": "NO", "accepts": ["No", "NO"]}}
        ]}),
    )
}

fn unauthorized(r: Result<impl std::fmt::Debug, PluginError>) {
    assert!(
        matches!(r, Err(PluginError::Guest(GuestError::Unauthorized(_)))),
        "{r:?}"
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn telegram() {
    let fake = FakeServer::start(|_| {
        (
            200,
            json!({"ok": true, "result": {"message_id": 77}}).to_string(),
        )
    })
    .await;
    let host = host();
    let tg = load_first_party(&host, "telegram").await;
    let inst = install(
        "org-a",
        &[("api_base", &fake.url())],
        &[("bot_token", "123:ABC"), ("webhook_secret", "s3")],
    );

    let update = json!({"update_id": 1001, "message": {"message_id": 5, "from": {"id": 42, "first_name": "Ada", "username": "ada"}, "chat": {"id": 42, "type": "private"}, "date": 1, "text": "hello"}});
    let body = update.to_string();
    let out = host
        .connector_ingest(
            &tg,
            &inst,
            &ctx(),
            &post(
                body.as_bytes(),
                &[("X-Telegram-Bot-Api-Secret-Token", "s3")],
            ),
        )
        .await
        .unwrap();
    assert_eq!(out.response, None);
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.user_id.as_str(),
            e.conversation.as_str()
        ),
        ("1001", "42", "42")
    );
    assert_eq!(
        (e.content_type.as_str(), &e.content),
        ("text", &json!({"text": "hello"}))
    );
    assert_eq!(e.metadata["telegram"]["first_name"], "Ada");

    let cb = json!({"update_id": 1002, "callback_query": {"id": "q1", "from": {"id": 42}, "message": {"message_id": 6, "chat": {"id": 42}}, "data": "YES"}});
    let out = host
        .connector_ingest(
            &tg,
            &inst,
            &ctx(),
            &post(
                cb.to_string().as_bytes(),
                &[("X-Telegram-Bot-Api-Secret-Token", "s3")],
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.events[0].content_type.as_str(), &out.events[0].content),
        ("payload", &json!({"payload": "YES"}))
    );

    unauthorized(
        host.connector_ingest(
            &tg,
            &inst,
            &ctx(),
            &post(
                body.as_bytes(),
                &[("X-Telegram-Bot-Api-Secret-Token", "wrong")],
            ),
        )
        .await,
    );

    let sent = host
        .connector_deliver(
            &tg,
            &inst,
            &ctx(),
            "42",
            &[
                msg("text", json!({"text": "Hi Ada"})),
                question(),
                msg(
                    "image",
                    json!({"url": "https://img.example.org/a.png", "title": "A"}),
                ),
                msg("wait", json!({"duration": 100})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(sent.platform_ids, vec!["77", "77", "77"]);
    let reqs = fake.taken();
    let calls: Vec<(&str, Value)> = reqs.iter().map(|r| (r.path.as_str(), r.json())).collect();
    assert_eq!(
        calls[0],
        (
            "/bot123:ABC/sendMessage",
            json!({"chat_id": "42", "text": "Hi Ada"})
        )
    );
    assert_eq!(calls[1].0, "/bot123:ABC/sendMessage");
    assert_eq!(
        calls[1].1["reply_markup"],
        json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "YES"}], [{"text": "No", "callback_data": "NO"}]]})
    );
    assert_eq!(calls[1].1["text"], "Coffee?");
    assert_eq!(
        calls[2],
        (
            "/bot123:ABC/sendPhoto",
            json!({"chat_id": "42", "photo": "https://img.example.org/a.png", "caption": "A"})
        )
    );
    assert_eq!(calls.len(), 3);
}

#[tokio::test]
async fn telegram_platform_errors_are_classified() {
    let fake = FakeServer::start(|_| (429, r#"{"ok":false,"error_code":429}"#.into())).await;
    let host = host();
    let tg = load_first_party(&host, "telegram").await;
    let inst = install("org-a", &[("api_base", &fake.url())], &[("bot_token", "t")]);
    let err = host
        .connector_deliver(
            &tg,
            &inst,
            &ctx(),
            "1",
            &[msg("text", json!({"text": "x"}))],
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let no_token = install("org-a", &[("api_base", &fake.url())], &[]);
    let err = host
        .connector_deliver(
            &tg,
            &no_token,
            &ctx(),
            "1",
            &[msg("text", json!({"text": "x"}))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Guest(GuestError::Config(_))),
        "{err:?}"
    );
}

fn slack_signed(secret: &str, ts: u64, body: &str, ctype: &str) -> Webhook {
    let sig = format!(
        "v0={}",
        hmac_sha256_hex(secret.as_bytes(), format!("v0:{ts}:{body}").as_bytes())
    );
    post(
        body.as_bytes(),
        &[
            ("X-Slack-Request-Timestamp", &ts.to_string()),
            ("X-Slack-Signature", &sig),
            ("Content-Type", ctype),
        ],
    )
}

#[tokio::test]
async fn slack() {
    let fake = FakeServer::start(|_| {
        (
            200,
            json!({"ok": true, "channel": "C1", "ts": "1700000000.000100"}).to_string(),
        )
    })
    .await;
    let host = host();
    let sl = load_first_party(&host, "slack").await;
    let inst = install(
        "org-a",
        &[("api_base", &format!("{}/api", fake.url()))],
        &[("bot_token", "xoxb-1"), ("signing_secret", "shh")],
    );
    let json_ct = "application/json";

    let challenge =
        json!({"type": "url_verification", "challenge": "chal-42", "token": "x"}).to_string();
    let out = host
        .connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("shh", now(), &challenge, json_ct),
        )
        .await
        .unwrap();
    let resp = out.response.unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"chal-42"[..]));

    let event = json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev01", "event": {"type": "message", "user": "U7", "channel": "C1", "text": "hi bot", "ts": "1.0"}}).to_string();
    let out = host
        .connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("shh", now(), &event, json_ct),
        )
        .await
        .unwrap();
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.user_id.as_str(),
            e.conversation.as_str()
        ),
        ("Ev01", "U7", "C1")
    );
    assert_eq!(e.content, json!({"text": "hi bot"}));

    // Bot echoes are dropped; bad signatures and stale timestamps refused.
    let echo = json!({"type": "event_callback", "event_id": "Ev02", "event": {"type": "message", "bot_id": "B1", "channel": "C1", "text": "me"}}).to_string();
    assert!(
        host.connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("shh", now(), &echo, json_ct)
        )
        .await
        .unwrap()
        .events
        .is_empty()
    );
    unauthorized(
        host.connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("other", now(), &event, json_ct),
        )
        .await,
    );
    unauthorized(
        host.connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("shh", now() - 3600, &event, json_ct),
        )
        .await,
    );

    // A button click arrives form-encoded.
    let payload = json!({"type": "block_actions", "user": {"id": "U7"}, "channel": {"id": "C1"}, "trigger_id": "tr1", "actions": [{"action_id": "choice_0", "value": "YES", "action_ts": "1.5", "text": {"type": "plain_text", "text": "Yes"}}]}).to_string();
    let form = format!("payload={}", enc(&payload));
    let out = host
        .connector_ingest(
            &sl,
            &inst,
            &ctx(),
            &slack_signed("shh", now(), &form, "application/x-www-form-urlencoded"),
        )
        .await
        .unwrap();
    assert_eq!(out.events[0].content_type, "payload");
    assert_eq!(out.events[0].content["payload"], "YES");

    let sent = host
        .connector_deliver(
            &sl,
            &inst,
            &ctx(),
            "C1",
            &[
                msg("text", json!({"text": "Hello"})),
                question(),
                msg("typing", json!({"duration": 500})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(sent.platform_ids.len(), 2);
    let reqs = fake.taken();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/api/chat.postMessage");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer xoxb-1"));
    assert_eq!(reqs[0].json(), json!({"channel": "C1", "text": "Hello"}));
    let q = reqs[1].json();
    assert_eq!(q["text"], "Coffee?");
    let buttons = &q["blocks"][1]["elements"];
    assert_eq!(q["blocks"][1]["type"], "actions");
    assert_eq!(
        (
            buttons[0]["value"].as_str(),
            buttons[1]["text"]["text"].as_str()
        ),
        (Some("YES"), Some("No"))
    );
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn whatsapp() {
    let fake = FakeServer::start(|_| {
        (
            200,
            json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]}).to_string(),
        )
    })
    .await;
    let host = host();
    let wa = load_first_party(&host, "whatsapp").await;
    let inst = install(
        "org-a",
        &[("api_base", &fake.url()), ("phone_number_id", "PN1")],
        &[
            ("access_token", "EAAT"),
            ("app_secret", "appsec"),
            ("verify_token", "vt"),
        ],
    );

    let ok = host
        .connector_ingest(
            &wa,
            &inst,
            &ctx(),
            &get("hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444"),
        )
        .await
        .unwrap();
    assert_eq!(ok.response.unwrap().body, b"1158201444");
    let bad = host
        .connector_ingest(
            &wa,
            &inst,
            &ctx(),
            &get("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"),
        )
        .await
        .unwrap();
    assert_eq!(bad.response.unwrap().status, 403);

    let hook = |text: &str, id: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": "PN1"},
        "contacts": [{"profile": {"name": "Grace"}, "wa_id": "33612345678"}],
        "messages": [{"from": "33612345678", "id": id, "timestamp": "1700000000", "type": "text", "text": {"body": text}}]}}]}]}).to_string()
    };
    let signed = |body: &str| {
        post(
            body.as_bytes(),
            &[(
                "X-Hub-Signature-256",
                &format!("sha256={}", hmac_sha256_hex(b"appsec", body.as_bytes())),
            )],
        )
    };
    let body = hook("bonjour", "wamid.IN1");
    let out = host
        .connector_ingest(&wa, &inst, &ctx(), &signed(&body))
        .await
        .unwrap();
    let e = &out.events[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.user_id.as_str(),
            e.content_type.as_str()
        ),
        ("wamid.IN1", "33612345678", "text")
    );
    assert_eq!(e.content, json!({"text": "bonjour"}));
    assert_eq!(e.metadata["whatsapp"]["name"], "Grace");
    unauthorized(
        host.connector_ingest(
            &wa,
            &inst,
            &ctx(),
            &post(body.as_bytes(), &[("X-Hub-Signature-256", "sha256=00")]),
        )
        .await,
    );

    // Two short buttons: native reply buttons.
    host.connector_deliver(
        &wa,
        &inst,
        &ctx(),
        "33612345678",
        &[msg("text", json!({"text": "Hi"})), question()],
    )
    .await
    .unwrap();
    let reqs = fake.taken();
    assert_eq!(reqs[0].path, "/PN1/messages");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer EAAT"));
    assert_eq!(reqs[0].json()["text"]["body"], "Hi");
    let b = reqs[1].json();
    assert_eq!(b["type"], "interactive");
    assert_eq!(
        b["interactive"]["action"]["buttons"][0]["reply"],
        json!({"id": "YES", "title": "Yes"})
    );

    // Five buttons do not fit: numbered text, and answering "4" gives the fourth payload.
    let many = msg(
        "question",
        json!({"title": "Pick", "buttons": (1..=5).map(|i| json!({"content_type": "button", "content": {"title": format!("Option {i}"), "payload": format!("P{i}")}})).collect::<Vec<_>>()}),
    );
    host.connector_deliver(&wa, &inst, &ctx(), "33612345678", &[many])
        .await
        .unwrap();
    let text = fake.taken()[0].json();
    assert_eq!(
        text["text"]["body"],
        "Pick\n1. Option 1\n2. Option 2\n3. Option 3\n4. Option 4\n5. Option 5"
    );
    let out = host
        .connector_ingest(&wa, &inst, &ctx(), &signed(&hook("4", "wamid.IN2")))
        .await
        .unwrap();
    assert_eq!(
        (
            out.events[0].content_type.as_str(),
            &out.events[0].content["payload"]
        ),
        ("payload", &json!("P4"))
    );
}

#[tokio::test]
async fn twilio_sms() {
    let fake = FakeServer::start(|_| {
        (
            201,
            json!({"sid": "SMout1", "status": "queued"}).to_string(),
        )
    })
    .await;
    let host = host();
    let tw = load_first_party(&host, "twilio-sms").await;
    let inst = install(
        "org-a",
        &[
            ("api_base", &fake.url()),
            ("account_sid", "AC1"),
            ("from_number", "+15550001111"),
        ],
        &[("auth_token", "tok")],
    );

    let params = [
        ("AccountSid", "AC1"),
        ("Body", "Hello there"),
        ("From", "+33600000001"),
        ("MessageSid", "SM123"),
        ("NumMedia", "0"),
        ("To", "+15550001111"),
    ];
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut sorted = params.to_vec();
    sorted.sort();
    let signed: String = std::iter::once(ctx().webhook_url)
        .chain(sorted.iter().map(|(k, v)| format!("{k}{v}")))
        .collect();
    let sig = hmac_sha1_base64(b"tok", signed.as_bytes());
    let out = host
        .connector_ingest(
            &tw,
            &inst,
            &ctx(),
            &post(
                body.as_bytes(),
                &[
                    ("X-Twilio-Signature", &sig),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
            ),
        )
        .await
        .unwrap();
    assert_eq!(out.response.as_ref().unwrap().status, 200);
    assert!(String::from_utf8_lossy(&out.response.unwrap().body).contains("<Response>"));
    let e = &out.events[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.user_id.as_str(),
            e.content_type.as_str()
        ),
        ("SM123", "+33600000001", "text")
    );
    assert_eq!(e.content, json!({"text": "Hello there"}));
    unauthorized(
        host.connector_ingest(
            &tw,
            &inst,
            &ctx(),
            &post(body.as_bytes(), &[("X-Twilio-Signature", "AAAA")]),
        )
        .await,
    );

    let sent = host
        .connector_deliver(
            &tw,
            &inst,
            &ctx(),
            "+33600000001",
            &[
                question(),
                msg("image", json!({"url": "https://i.example.org/x.png"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(sent.platform_ids, vec!["SMout1", "SMout1"]);
    let reqs = fake.taken();
    assert_eq!(reqs[0].path, "/2010-04-01/Accounts/AC1/Messages.json");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Basic {}", base64(b"AC1:tok")).as_str())
    );
    let form = String::from_utf8(reqs[0].body.clone()).unwrap();
    assert!(
        form.contains("To=%2B33600000001") && form.contains("From=%2B15550001111"),
        "{form}"
    );
    assert!(
        form.contains("Body=Coffee%3F%0A1.%20Yes%0A2.%20No"),
        "{form}"
    );
    assert!(
        String::from_utf8(reqs[1].body.clone())
            .unwrap()
            .contains("MediaUrl=https%3A%2F%2Fi.example.org%2Fx.png")
    );
}

#[tokio::test]
async fn messenger() {
    let fake = FakeServer::start(|_| {
        (
            200,
            json!({"recipient_id": "PSID1", "message_id": "m_out"}).to_string(),
        )
    })
    .await;
    let host = host();
    let fb = load_first_party(&host, "messenger").await;
    let inst = install(
        "org-a",
        &[("api_base", &fake.url())],
        &[
            ("page_access_token", "PAT"),
            ("app_secret", "fbsec"),
            ("verify_token", "vt"),
        ],
    );

    let ok = host
        .connector_ingest(
            &fb,
            &inst,
            &ctx(),
            &get("hub.mode=subscribe&hub.challenge=CH&hub.verify_token=vt"),
        )
        .await
        .unwrap();
    assert_eq!(ok.response.unwrap().body, b"CH");

    let body = json!({"object": "page", "entry": [{"id": "PAGE", "time": 1, "messaging": [
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 10, "message": {"mid": "m1", "text": "hey"}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 11, "message": {"mid": "m2", "text": "Yes", "quick_reply": {"payload": "YES"}}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE"}, "timestamp": 12, "postback": {"mid": "m3", "title": "Get Started", "payload": "GET_STARTED"}},
        {"sender": {"id": "PAGE"}, "recipient": {"id": "PSID1"}, "timestamp": 13, "message": {"mid": "m4", "text": "echo", "is_echo": true}}
    ]}]}).to_string();
    let sig = format!("sha256={}", hmac_sha256_hex(b"fbsec", body.as_bytes()));
    let out = host
        .connector_ingest(
            &fb,
            &inst,
            &ctx(),
            &post(body.as_bytes(), &[("X-Hub-Signature-256", &sig)]),
        )
        .await
        .unwrap();
    let got: Vec<(&str, &str, Value)> = out
        .events
        .iter()
        .map(|e| {
            (
                e.event_id.as_str(),
                e.content_type.as_str(),
                e.content.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("m1", "text", json!({"text": "hey"})),
            ("m2", "payload", json!({"payload": "YES", "text": "Yes"})),
            (
                "m3",
                "payload",
                json!({"payload": "GET_STARTED", "text": "Get Started"})
            ),
        ]
    );
    unauthorized(
        host.connector_ingest(
            &fb,
            &inst,
            &ctx(),
            &post(body.as_bytes(), &[("X-Hub-Signature-256", "sha256=bad")]),
        )
        .await,
    );

    let card = msg(
        "card",
        json!({"title": "Plan", "subtitle": "5 seats", "image_url": "https://i.example.org/p.png", "buttons": [{"content_type": "button", "content": {"title": "Choose", "payload": "PLAN"}}]}),
    );
    host.connector_deliver(
        &fb,
        &inst,
        &ctx(),
        "PSID1",
        &[msg("text", json!({"text": "Hi"})), question(), card],
    )
    .await
    .unwrap();
    let reqs = fake.taken();
    assert_eq!(reqs[0].path, "/me/messages");
    assert_eq!(reqs[0].query, "access_token=PAT");
    assert_eq!(
        reqs[0].json(),
        json!({"recipient": {"id": "PSID1"}, "messaging_type": "RESPONSE", "message": {"text": "Hi"}})
    );
    assert_eq!(
        reqs[1].json()["message"]["quick_replies"][1],
        json!({"content_type": "text", "title": "No", "payload": "NO"})
    );
    let el = &reqs[2].json()["message"]["attachment"]["payload"]["elements"][0];
    assert_eq!(el["image_url"], "https://i.example.org/p.png");
    assert_eq!(
        el["buttons"][0],
        json!({"type": "postback", "title": "Choose", "payload": "PLAN"})
    );
}

#[tokio::test]
async fn a_connector_is_not_an_app() {
    let host = host();
    let tg = load_first_party(&host, "telegram").await;
    let err = host
        .call_app(
            &tg,
            &install("o", &[], &[]),
            &Default::default(),
            &json!({}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongKind(_)), "{err:?}");
    let echo = load_first_party(&host, "echo").await;
    let err = host
        .connector_deliver(&echo, &install("o", &[], &[]), &ctx(), "x", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongKind(_)), "{err:?}");
}
