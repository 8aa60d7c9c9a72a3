//! Issue 14, connector delivery: one organization whose platform hangs (or whose turns are
//! slow) delays no other organization's connector replies, and a conversation's replies still
//! go out in order.
//!
//! - The outbox claim itself, on the store: conversation heads only, a per-organization cap on
//!   rows in flight, leases that end.
//! - Through the real binary: organization A's Telegram platform never answers while B's
//!   replies are delivered; A's replies of one conversation arrive in order once its platform
//!   answers. And A's slow turns do not hold up B's inbound events.

mod common;

use botyard::store::plugins::{OutboxClaim, OutboxOutcome, OutboxRow};
use common::*;
use serde_json::{Value as Json, json};
use std::collections::HashSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TELEGRAM_OK: &str = r#"{"ok":true,"result":{"message_id":1}}"#;

// ---------------------------------------------------------------------------------------------
// The claim, on the store.

/// Two organizations with a Telegram channel each, on a fresh store.
fn two_org_store(dir: &std::path::Path) -> (botyard::store::Store, [(String, String); 2]) {
    use botyard::store::{Durability, NewBot, NewFlow};
    let (store, setup) =
        botyard::store::setup::ensure(&botyard::store::Location::sqlite(dir), Durability::Normal)
            .unwrap();
    let b = store.create_org("second", false).unwrap();
    let mut out = Vec::new();
    for org in [setup.organization.id.clone(), b.id] {
        let (bot, _) = store
            .create_bot(
                &org,
                NewBot {
                    name: "relay".into(),
                    flows: vec![NewFlow {
                        name: "Default".into(),
                        content: "start:\n  say \"hi\"\n  goto end\n".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .unwrap();
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
        out.push((org, channel.id));
    }
    let [a, b]: [(String, String); 2] = out.try_into().unwrap();
    (store, [a, b])
}

fn ids(rows: &[OutboxRow]) -> HashSet<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn outbox_claims_take_conversation_heads_within_each_organizations_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (store, [(a, a_ch), (b, b_ch)]) = two_org_store(dir.path());
    let msg = |t: &str| json!([{"content_type": "text", "content": {"text": t}}]);
    // A: one conversation with three replies, five conversations with one each.
    for id in ["x1", "x2", "x3"] {
        assert!(store.enqueue_outbox(id, &a, &a_ch, "x", &msg(id)).unwrap());
    }
    for i in 1..=5 {
        let id = format!("c{i}");
        store
            .enqueue_outbox(&id, &a, &a_ch, &id, &msg(&id))
            .unwrap();
    }
    // B: one conversation with two replies.
    for id in ["y1", "y2"] {
        store.enqueue_outbox(id, &b, &b_ch, "y", &msg(id)).unwrap();
    }
    assert!(
        !store
            .enqueue_outbox("x1", &a, &a_ch, "x", &msg("x1"))
            .unwrap(),
        "queueing an id twice is a no-op"
    );
    let now = botyard::store::ids::now_millis() + 1000;
    let claim = |now: i64, limit: usize| {
        store
            .claim_outbox(OutboxClaim {
                now,
                lease_ms: 60_000,
                per_org: 4,
                limit,
            })
            .unwrap()
    };

    // Heads only, oldest first, at most 4 of A's: x1 c1 c2 c3; B's y1 beside them.
    let first = claim(now, 100);
    assert_eq!(ids(&first), set(&["x1", "c1", "c2", "c3", "y1"]));
    let x1 = first.iter().find(|r| r.id == "x1").unwrap();
    assert_eq!((x1.conversation.as_str(), x1.attempts), ("x", 0), "{x1:?}");
    assert_eq!(x1.messages[0]["content"]["text"], "x1");
    // Everything due is in flight or waits behind a head in flight; A is at its cap.
    assert!(claim(now, 100).is_empty());
    for id in ["x1", "y1"] {
        assert_eq!(store.outbox_status(id).unwrap().unwrap().0, "sending");
    }
    assert_eq!(store.outbox_status("x2").unwrap().unwrap().0, "queued");

    // y1 delivered: B's next reply goes. x1 to be retried later: A gets one slot back, for
    // another conversation, while x2 keeps waiting behind x1.
    store
        .finish_outbox("y1", OutboxOutcome::Sent(vec!["p1".into()]))
        .unwrap();
    store
        .finish_outbox(
            "x1",
            OutboxOutcome::Retry {
                error: "platform down".into(),
                at: now + 5_000,
            },
        )
        .unwrap();
    assert_eq!(ids(&claim(now, 100)), set(&["y2", "c4"]));
    assert_eq!(
        store.outbox_status("x1").unwrap().unwrap(),
        ("pending".to_string(), 1, None)
    );
    // A finish for a row that is not claimed changes nothing.
    store
        .finish_outbox("x1", OutboxOutcome::Sent(vec![]))
        .unwrap();
    assert_eq!(store.outbox_status("x1").unwrap().unwrap().0, "pending");

    // The limit bounds a claim whatever the caps.
    store
        .finish_outbox("c1", OutboxOutcome::Failed("bad chat".into()))
        .unwrap();
    store
        .finish_outbox("c2", OutboxOutcome::Sent(vec![]))
        .unwrap();
    let later = now + 5_000;
    assert_eq!(
        ids(&claim(later, 1)),
        set(&["c5"]),
        "the oldest due head first"
    );
    let next = claim(later, 100);
    assert_eq!(ids(&next), set(&["x1"]));
    assert_eq!(next[0].attempts, 1);
    assert!(claim(later, 100).is_empty(), "A is at its cap again");

    // x1 delivered: x2 is next, then x3, never both at once.
    store
        .finish_outbox("x1", OutboxOutcome::Sent(vec!["p2".into()]))
        .unwrap();
    assert_eq!(ids(&claim(later, 100)), set(&["x2"]));

    // A sender renews the leases of its deliveries still running...
    store
        .renew_outbox(vec!["c3".into(), "x2".into(), "y1".into()], later + 120_000)
        .unwrap();
    assert_eq!(
        store.outbox_status("y1").unwrap().unwrap().0,
        "sent",
        "a finished row stays finished"
    );
    // ... and one that died leaves its claims: when their leases end they are taken again.
    let expired = later + 60_001;
    assert_eq!(ids(&claim(expired, 100)), set(&["c4", "c5", "y2"]));
    let expired = later + 120_001;
    assert_eq!(
        ids(&claim(expired, 100)),
        set(&["x2", "c3", "c4", "c5", "y2"])
    );
    store
        .finish_outbox("x2", OutboxOutcome::Sent(vec![]))
        .unwrap();
    assert_eq!(ids(&claim(expired, 100)), set(&["x3"]));
}

// ---------------------------------------------------------------------------------------------
// Through the real binary.

/// A fake Telegram Bot API that records every call (chat id, text) and leaves each one
/// unanswered until it is released; then it answers the held calls and every later one.
struct HangingApi {
    url: String,
    calls: Arc<Mutex<Vec<(String, String)>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    released: Arc<AtomicBool>,
}

fn answer(mut s: &TcpStream) {
    let _ = s.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{TELEGRAM_OK}",
            TELEGRAM_OK.len()
        )
        .as_bytes(),
    );
}

impl HangingApi {
    fn start() -> HangingApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let api = HangingApi {
            url,
            calls: Arc::default(),
            held: Arc::default(),
            released: Arc::default(),
        };
        let (calls, held, released) = (api.calls.clone(), api.held.clone(), api.released.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { continue };
                let (calls, held, released) = (calls.clone(), held.clone(), released.clone());
                std::thread::spawn(move || {
                    let (_, body) = read_request(&s);
                    let body: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
                    let chat = body["chat_id"].as_str().unwrap_or_default().to_string();
                    let text = body["text"].as_str().unwrap_or_default().to_string();
                    calls.lock().unwrap().push((chat, text));
                    // Decided under the lock `release` takes, so no call is left held.
                    let mut h = held.lock().unwrap();
                    if released.load(Ordering::SeqCst) {
                        drop(h);
                        answer(&s);
                    } else {
                        h.push(s);
                    }
                });
            }
        });
        api
    }

    fn release(&self) {
        let mut h = self.held.lock().unwrap();
        self.released.store(true, Ordering::SeqCst);
        for s in h.drain(..) {
            answer(&s);
        }
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn wait_for(&self, pred: impl Fn(&[(String, String)]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.calls()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pred(&self.calls())
    }
}

/// A Telegram channel of `bot` (in `org`, the default when `None`) whose Bot API is `api`;
/// its webhook path.
fn telegram_channel(s: &Server, org: Option<&str>, bot: &str, api: &str) -> String {
    let config =
        json!({"bot_token": "1:x", "api_base": api, "allow_hosts": ["127.0.0.1"]}).to_string();
    let mut args = vec![
        "channel", "create", "--kind", "telegram", "--bot", bot, "--name", "tg", "--config",
        &config,
    ];
    if let Some(org) = org {
        args.extend(["--org", org]);
    }
    let ch = cli_json(&s.data, &args);
    format!("/hooks/{}", ch["token"].as_str().unwrap())
}

fn update(id: u64, chat: u64, text: &str) -> Json {
    json!({"update_id": id, "message": {"message_id": id, "from": {"id": chat},
           "chat": {"id": chat}, "text": text}})
}

/// Organization B: a second organization whose bot echoes, with a Telegram channel on a
/// platform that answers at once. Its webhook path.
fn second_org(s: &Server, b_api: &FakeApi) -> String {
    let (org, creds) = s.other_org("second");
    let c = s.client();
    c.put(
        "/v1/api/bot/flows/Default",
        &creds.signed(),
        &json!({"content": "start:\n  say \"b {{event}}\"\n  goto end\n"}),
    )
    .expect(200);
    c.post("/v1/api/bot/build", &creds.signed(), &json!({}))
        .expect(200);
    telegram_channel(s, Some(&org), &creds.bot_id, &b_api.url)
}

/// B's ten messages, one after another: each reply reaches B's platform within 5 s.
fn b_is_served_promptly(s: &Server, b_hook: &str, b_api: &FakeApi, before: usize) {
    let c = s.client();
    for i in 0..10u64 {
        c.post(b_hook, &[], &update(5000 + i, 77, &format!("n{i}")))
            .expect(200);
        let calls = b_api.wait_for(before + i as usize + 1, Duration::from_secs(5));
        assert_eq!(
            calls.len(),
            before + i as usize + 1,
            "B's reply {i} was not delivered within 5 s\n{}",
            s.logs()
        );
        assert_eq!(calls.last().unwrap().1["text"], format!("b n{i}"));
    }
}

#[test]
fn a_hanging_platform_delays_no_other_organizations_replies() {
    let s = Server::start();
    s.set_default_flow("start:\n  say \"a {{event}}\"\n  goto end\n");
    let a_api = HangingApi::start();
    let a_hook = telegram_channel(&s, None, &s.creds().bot_id, &a_api.url);
    let b_api = FakeApi::start(TELEGRAM_OK);
    let b_hook = second_org(&s, &b_api);
    let c = s.client();

    // A: six conversations with one message, one conversation with three.
    for chat in 1..=6u64 {
        c.post(&a_hook, &[], &update(chat, 100 + chat, "solo"))
            .expect(200);
    }
    for (i, text) in ["m1", "m2", "m3"].iter().enumerate() {
        c.post(&a_hook, &[], &update(10 + i as u64, 200, text))
            .expect(200);
    }
    assert!(
        a_api.wait_for(|c| c.len() >= 4, Duration::from_secs(20)),
        "A's deliveries never reached its platform: {:?}\n{}",
        a_api.calls(),
        s.logs()
    );

    // A's deliveries hang; B's replies go out regardless.
    b_is_served_promptly(&s, &b_hook, &b_api, 0);
    let a_calls = a_api.calls();
    assert!(a_api.held.lock().unwrap().len() >= 4, "{a_calls:?}");

    // A's platform answers: every reply arrives, those of chat 200 in order.
    a_api.release();
    let all_delivered = |c: &[(String, String)]| {
        let chats: HashSet<&str> = c.iter().map(|(chat, _)| chat.as_str()).collect();
        (101..=106).all(|n| chats.contains(n.to_string().as_str()))
            && c.iter().any(|(chat, t)| chat == "200" && t == "a m3")
    };
    assert!(
        a_api.wait_for(all_delivered, Duration::from_secs(90)),
        "{:?}\n{}",
        a_api.calls(),
        s.logs()
    );
    // Every call of chat 200, held or answered, in order: a later reply is never sent
    // before an earlier one was delivered.
    let order: Vec<usize> = a_api
        .calls()
        .iter()
        .filter(|(chat, _)| chat == "200")
        .map(|(_, t)| {
            ["a m1", "a m2", "a m3"]
                .iter()
                .position(|m| m == t)
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    assert_eq!(order.first(), Some(&0), "{order:?}");
    assert_eq!(
        order.iter().filter(|&&i| i == 2).count(),
        1,
        "m3 is sent once, after m1 and m2 were delivered: {order:?}"
    );
}

/// An HTTP API that never answers (a bot's `HTTP()` call to it lasts until its deadline).
fn silent_api() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in listener.incoming().flatten() {
            open.push(s);
        }
    });
    url
}

#[test]
fn slow_turns_of_one_organization_delay_no_other_organizations_events() {
    let s = Server::start();
    let slow = silent_api();
    s.set_default_flow(&format!(
        "start:\n  do r = HTTP(\"{slow}\").get().send()\n  say \"a late\"\n  goto end\n"
    ));
    let a_api = FakeApi::start(TELEGRAM_OK);
    let a_hook = telegram_channel(&s, None, &s.creds().bot_id, &a_api.url);
    let b_api = FakeApi::start(TELEGRAM_OK);
    let b_hook = second_org(&s, &b_api);
    let c = s.client();

    // A: six conversations whose turns each wait on a silent API.
    for chat in 1..=6u64 {
        c.post(&a_hook, &[], &update(chat, 100 + chat, "slow"))
            .expect(200);
    }
    // Give A's turns time to start and occupy what they can.
    std::thread::sleep(Duration::from_millis(500));
    b_is_served_promptly(&s, &b_hook, &b_api, 0);
}
