//! An acknowledged turn is durable: concurrent chats, SIGKILL mid-load, restart, and every
//! acknowledged turn's messages, conversation state and memories are there.

mod common;

use botyard::store::{ClientKey, ConversationFilter, Direction, Durability};
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Acked {
    user: String,
    /// 1 = greeting (holds for the name), 2 = the name (remembered, menu).
    turn: u8,
    conversation: String,
    texts: Vec<String>,
}

#[test]
fn acknowledged_turns_survive_sigkill() {
    let mut s = Server::start();
    let creds = s.creds();
    let org = s.setup["organization"]["id"].as_str().unwrap().to_string();
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (c, h, acked, stop) = (s.client(), creds.public(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let user = format!("dur-{t}-{k}");
                    k += 1;
                    for (turn, text) in [(1u8, "hi".to_string()), (2, format!("N{t}x{k}"))] {
                        let Ok(r) = c.try_request(
                            "POST",
                            "/v1/api/chat",
                            &h,
                            Some(text_event(&user, &text).to_string().as_bytes()),
                        ) else {
                            return;
                        };
                        if r.status != 200 {
                            return;
                        }
                        let v = r.json();
                        let texts = v["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|m| {
                                m["payload"]["content"]["text"].as_str().map(str::to_string)
                            })
                            .collect();
                        let conversation = v["messages"][0]["conversation_id"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        acked.lock().unwrap().push(Acked {
                            user: user.clone(),
                            turn,
                            conversation,
                            texts,
                        });
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 400 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "only {} turns acknowledged before the kill",
        acked.len()
    );

    let dir = s.take_dir().unwrap();
    {
        let store = common::open_store(dir.path(), Durability::Normal);
        for a in &acked {
            let client = ClientKey {
                organization_id: org.clone(),
                bot_id: creds.bot_id.clone(),
                channel_id: creds.channel_id.clone(),
                user_id: a.user.clone(),
            };
            let msgs = store
                .list_messages(&org, &a.conversation, None, 1000)
                .unwrap();
            let sent: Vec<String> = msgs
                .iter()
                .filter(|m| m.direction == Direction::Send)
                .filter_map(|m| m.payload["content"]["text"].as_str().map(str::to_string))
                .collect();
            for t in &a.texts {
                assert!(
                    sent.contains(t),
                    "{a:?}: message {t:?} lost; stored {sent:?}"
                );
            }
            let received = msgs
                .iter()
                .filter(|m| m.direction == Direction::Receive)
                .count();
            assert!(received >= a.turn as usize, "{a:?}: incoming event lost");
            let convs = store
                .list_conversations(
                    &org,
                    &ConversationFilter {
                        user_id: Some(a.user.clone()),
                        limit: 10,
                        ..Default::default()
                    },
                )
                .unwrap();
            let conv = convs
                .iter()
                .find(|c| c.id == a.conversation)
                .expect("conversation row");
            if a.turn == 2 {
                assert_eq!(conv.step, "menu", "{a:?}");
                let mem = store
                    .memories(&client, botyard::store::ids::now_millis())
                    .unwrap();
                assert!(mem.get("name").is_some(), "{a:?}: memory lost ({mem:?})");
            }
        }
    }

    // The restarted server serves the same state: a user whose name turn was acknowledged
    // is greeted by name.
    let s2 = Server::spawn(dir.path(), &[]);
    let done = acked
        .iter()
        .find(|a| a.turn == 2)
        .expect("some user finished two turns");
    let bye = json!({"client": {"user_id": done.user}, "payload": {"content_type": "payload", "content": {"payload": "BYE"}}});
    let v = s2
        .client()
        .post("/v1/api/chat", &creds.public(), &bye)
        .json();
    let text = v["messages"][0]["payload"]["content"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with("Goodbye, N"), "{v}");
    drop(s2);
    drop(dir);
}
