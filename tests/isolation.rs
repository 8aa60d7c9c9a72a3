//! Cross-organization isolation on every Studio endpoint: a key of organization A never reads
//! or changes organization B's data, whatever ids it puts in paths, queries or bodies.

mod common;

use common::*;
use serde_json::{Value as Json, json};

struct Fixture {
    s: Server,
    a: Creds,
    b: Creds,
    b_flow: Json,
    b_version: String,
}

fn fixture() -> Fixture {
    let s = Server::start();
    let a = s.creds();
    let (_, b) = s.other_org("Org B");
    let c = s.client();
    // B gets a second flow, a build and a conversation.
    let b_flow = c
        .post("/v1/api/bot/flows", &b.signed(), &json!({"name": "Secret", "content": "start:\n  say \"b-secret\"\n  goto end\n", "commands": ["secret"]}))
        .json();
    let b_version = c.post("/v1/api/bot/build", &b.signed(), &json!({})).json()["version_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(
        "/v1/api/chat",
        &b.public(),
        &text_event("shared-user", "secret"),
    )
    .expect(200);
    Fixture {
        s,
        a,
        b,
        b_flow,
        b_version,
    }
}

#[test]
fn bot_endpoints_only_see_the_keys_bot() {
    let f = fixture();
    let c = f.s.client();
    let bot = c.get("/v1/api/bot", &f.a.signed()).json();
    assert_eq!(bot["id"], f.a.bot_id.as_str());
    assert!(!bot.to_string().contains("b-secret"));
    let flows = c.get("/v1/api/bot/flows", &f.a.signed()).json();
    assert!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .all(|fl| fl["bot_id"] == f.a.bot_id.as_str())
    );
    let b_id = f.b_flow["id"].as_str().unwrap();
    // By id and by name.
    c.get(&format!("/v1/api/bot/flows/{b_id}"), &f.a.signed())
        .expect(404);
    c.get("/v1/api/bot/flows/Secret", &f.a.signed()).expect(404);
    c.put(
        &format!("/v1/api/bot/flows/{b_id}"),
        &f.a.signed(),
        &json!({"content": "start:\n  say \"pwned\"\n  goto end\n"}),
    )
    .expect(404);
    c.delete(&format!("/v1/api/bot/flows/{b_id}"), &f.a.signed())
        .expect(404);
    // B's flow is untouched.
    let still = c
        .get(&format!("/v1/api/bot/flows/{b_id}"), &f.b.signed())
        .json();
    assert_eq!(still["content"], f.b_flow["content"]);
    // A cannot make B's flow its default, nor point at B's bot.
    assert!(
        c.put("/v1/api/bot", &f.a.signed(), &json!({"default_flow": b_id}))
            .status
            >= 400
    );
    let v = c
        .put(
            "/v1/api/bot",
            &f.a.signed(),
            &json!({"id": f.b.bot_id, "name": "A renamed"}),
        )
        .json();
    assert_eq!(v["id"], f.a.bot_id.as_str());
    assert_eq!(
        c.get("/v1/api/bot", &f.b.signed()).json()["name"],
        "Org B bot"
    );
    // airules naming B's flow.
    c.put(
        "/v1/api/bot",
        &f.a.signed(),
        &json!({"airules": [{"commands": ["x"], "target": {"flow_name": "Secret"}}]}),
    )
    .expect(404);
    // Creating a flow in A never lands in B.
    c.post(
        "/v1/api/bot/flows",
        &f.a.signed(),
        &json!({"name": "Secret", "bot_id": f.b.bot_id, "content": "start:\n  goto end\n"}),
    )
    .expect(200);
    assert_eq!(
        c.get("/v1/api/bot/flows", &f.b.signed())
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn builds_and_usage_are_per_bot() {
    let f = fixture();
    let c = f.s.client();
    c.get(
        &format!("/v1/api/bot/build?version_id={}", f.b_version),
        &f.a.signed(),
    )
    .expect(404);
    c.get("/v1/api/bot/build", &f.a.signed()).expect(404);
    let a_build = c
        .post("/v1/api/bot/build", &f.a.signed(), &json!({}))
        .json();
    assert_eq!(a_build["id"], f.a.bot_id.as_str());
    assert_eq!(
        c.get("/v1/api/bot/build", &f.b.signed()).json()["version_id"],
        f.b_version.as_str()
    );
    let usage = c.get("/v1/api/bot/usage", &f.a.signed()).json();
    assert_eq!(
        usage["currentmonth"],
        json!({"messages": 0, "clients": 0}),
        "{usage}"
    );
    let usage_b = c.get("/v1/api/bot/usage", &f.b.signed()).json();
    assert_eq!(usage_b["currentmonth"]["clients"], 1);
    // Validate is stateless: nothing of B leaks through it.
    let v = c.post("/v1/api/bot/validate", &f.a.signed(), &json!({"default_flow": "Secret", "flows": [{"name": "Main", "content": "start:\n  goto end\n"}]})).json();
    assert_eq!(v["valid"], false);
}

#[test]
fn conversations_and_memories_are_per_channel() {
    let f = fixture();
    let c = f.s.client();
    // Same user id on A: no open conversation (B's is not visible), a fresh conversation.
    let open = c
        .post(
            "/v1/api/conversations/open",
            &f.a.signed(),
            &json!({"user_id": "shared-user"}),
        )
        .json();
    assert_eq!(open["has_open"], false);
    let mut body = text_event("shared-user", "secret");
    body["client"]["bot_id"] = json!(f.b.bot_id);
    body["client"]["channel_id"] = json!(f.b.channel_id);
    let v = c.post("/v1/api/chat", &f.a.public(), &body).json();
    // A has no `secret` command: the demo bot answers, on A's channel.
    assert_eq!(v["client"]["channel_id"], f.a.channel_id.as_str());
    assert!(!v.to_string().contains("b-secret"), "{v}");
    // Memories do not cross: A's user tells a name; B's same user id never sees it.
    c.post(
        "/v1/api/chat",
        &f.a.public(),
        &text_event("shared-user", "Mallory"),
    )
    .expect(200);
    let b_chat = c
        .post(
            "/v1/api/chat",
            &f.b.public(),
            &text_event("shared-user", "hi"),
        )
        .json();
    assert!(!b_chat.to_string().contains("Mallory"));
    let open_b = c
        .post(
            "/v1/api/conversations/open",
            &f.b.signed(),
            &json!({"user_id": "shared-user"}),
        )
        .json();
    if open_b["has_open"] == true {
        assert_eq!(
            open_b["conversation"]["client"]["channel_id"],
            f.b.channel_id.as_str()
        );
    }
}

#[test]
fn broadcasts_stay_on_the_keys_channel() {
    let f = fixture();
    let c = f.s.client();
    let body = json!({"client": {"user_id": "u", "bot_id": f.b.bot_id, "channel_id": f.b.channel_id}, "payload": {"content_type": "flow_trigger", "content": {"flow_id": "Secret"}}});
    let v = c.post("/v1/api/broadcasts", &f.a.public(), &body).json();
    assert_eq!(v["client"]["channel_id"], f.a.channel_id.as_str());
    assert_eq!(v["client"]["bot_id"], f.a.bot_id.as_str());
    // Let the worker run it; B's channel gets no conversation for `u`.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let open_b = c
        .post(
            "/v1/api/conversations/open",
            &f.b.signed(),
            &json!({"user_id": "u"}),
        )
        .json();
    assert_eq!(open_b["has_open"], false);
}

#[test]
fn a_signature_made_with_another_orgs_secret_fails() {
    let f = fixture();
    let c = f.s.client();
    let mixed = Creds {
        api_key: f.a.api_key.clone(),
        api_secret: f.b.api_secret.clone(),
        ..f.a.clone()
    };
    c.get("/v1/api/bot", &mixed.signed()).expect(401);
    let mixed = Creds {
        api_key: f.b.api_key.clone(),
        api_secret: f.a.api_secret.clone(),
        ..f.b.clone()
    };
    c.get("/v1/api/bot", &mixed.signed()).expect(401);
}
