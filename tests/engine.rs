//! The conversation engine on a real store and the real interpreter: flow selection, hold,
//! memories, commands, flow_trigger/close_flows, builds vs working copy, step changes under a
//! hold, serialization of one user's concurrent turns, broadcasts and the turn sink.

use botyard::engine::{
    BroadcastRequest, ChatRequest, ChatResponse, Engine, EngineConfig, TurnSink,
};
use botyard::store::ids::now_millis;
use botyard::store::{
    BotPatch, Channel, ClientKey, Durability, FlowPatch, NewBot, NewChannel, NewFlow, Store, setup,
};
use serde_json::{Value as Json, json};
use std::sync::{Arc, Mutex};

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    channel: Channel,
    sink: Arc<Recorder>,
}

#[derive(Default)]
struct Recorder {
    turns: Mutex<Vec<(String, usize)>>,
}

impl TurnSink for Recorder {
    fn turn_committed(&self, _channel: &Channel, r: &ChatResponse) {
        self.turns
            .lock()
            .unwrap()
            .push((r.client.user_id.clone(), r.messages.len()));
    }
}

fn fixture(flows: Vec<NewFlow>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = store.create_org("T", true).unwrap();
    let (bot, _) = store
        .create_bot(
            &org.id,
            NewBot {
                name: "b".into(),
                flows,
                ..Default::default()
            },
        )
        .unwrap();
    let (channel, _) = store
        .create_channel(&org.id, &bot.id, NewChannel::default())
        .unwrap();
    let sink = Arc::new(Recorder::default());
    let engine = Engine::new(
        store,
        EngineConfig {
            sink: Some(sink.clone()),
            ..Default::default()
        },
    );
    Fixture {
        _dir: dir,
        engine,
        channel,
        sink,
    }
}

fn flow(name: &str, content: &str) -> NewFlow {
    NewFlow {
        name: name.into(),
        content: content.into(),
        ..Default::default()
    }
}

impl Fixture {
    async fn send(&self, user: &str, payload: Json) -> ChatResponse {
        self.engine
            .chat(ChatRequest {
                channel: self.channel.clone(),
                user_id: user.into(),
                payload,
                metadata: json!({"plan": "pro"}),
                turn_metadata: Default::default(),
                request_id: None,
                received_at: now_millis(),
            })
            .await
            .unwrap()
    }
    async fn text(&self, user: &str, t: &str) -> ChatResponse {
        self.send(
            user,
            json!({"content_type": "text", "content": {"text": t}}),
        )
        .await
    }
    fn client(&self, user: &str) -> ClientKey {
        ClientKey {
            organization_id: self.channel.organization_id.clone(),
            bot_id: self.channel.bot_id.clone(),
            channel_id: self.channel.id.clone(),
            user_id: user.into(),
        }
    }
}

fn texts(r: &ChatResponse) -> Vec<String> {
    r.messages
        .iter()
        .map(|m| {
            m.payload
                .content
                .get("text")
                .and_then(Json::as_str)
                .unwrap_or(&m.payload.content_type)
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_bot_hold_memory_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = setup::ensure(
        &botyard::store::Location::sqlite(dir.path()),
        Durability::Normal,
    )
    .unwrap();
    let org = out.organization.id.clone();
    let channel = store
        .get_channel(&org, &out.studio.as_ref().unwrap().channel_id)
        .unwrap();
    let f = Fixture {
        _dir: dir,
        engine: Engine::new(store, EngineConfig::default()),
        channel,
        sink: Arc::default(),
    };

    let r1 = f.text("ada", "hello there").await;
    assert!(!r1.conversation_end);
    assert_eq!(texts(&r1).last().unwrap(), "What is your name?");
    let r2 = f.text("ada", "Ada").await;
    assert_eq!(
        r2.messages[0].conversation_id,
        r1.messages[0].conversation_id
    );
    assert!(
        texts(&r2).contains(&"Nice to meet you, Ada!".to_string()),
        "{:?}",
        texts(&r2)
    );
    assert_eq!(r2.messages.last().unwrap().payload.content_type, "question");
    // All messages of one response share the final interaction_order (a goto happened).
    assert!(
        r2.messages
            .iter()
            .all(|m| m.interaction_order == r2.messages[0].interaction_order)
    );
    assert!(r2.messages[0].interaction_order >= 1);
    let mem = f
        .engine
        .store()
        .memories(&f.client("ada"), now_millis())
        .unwrap();
    assert_eq!(mem["name"], json!("Ada"));

    // A command beats the pending hold and keeps the conversation id.
    let r3 = f.text("ada", "HI").await;
    assert_eq!(
        r3.messages[0].conversation_id,
        r1.messages[0].conversation_id
    );
    assert!(
        texts(&r3).contains(&"Welcome back, Ada!".to_string()),
        "{:?}",
        texts(&r3)
    );
    // A button click (payload event) follows the menu.
    let r4 = f
        .send(
            "ada",
            json!({"content_type": "payload", "content": {"payload": "BYE"}}),
        )
        .await;
    assert!(r4.conversation_end);
    assert_eq!(texts(&r4), ["Goodbye, Ada!"]);
    assert!(
        f.engine
            .store()
            .open_conversation(&f.client("ada"), now_millis())
            .unwrap()
            .is_none()
    );
    // Transcript: RECEIVE then SEND rows, per turn.
    let conv = &r1.messages[0].conversation_id;
    let msgs = f
        .engine
        .store()
        .list_messages(&org, conv, None, 1000)
        .unwrap();
    assert_eq!(
        msgs.iter()
            .filter(|m| m.direction == botyard::store::Direction::Receive)
            .count(),
        4
    );
    assert_eq!(
        msgs.len(),
        4 + r1.messages.len() + r2.messages.len() + r3.messages.len() + r4.messages.len()
    );
    // The next event starts a new conversation, and memories persist across conversations.
    let r5 = f.text("ada", "yo").await;
    assert_ne!(r5.messages[0].conversation_id, *conv);
    assert!(texts(&r5).contains(&"Welcome back, Ada!".to_string()));
    // Another user of the same channel is a different client.
    let r6 = f.text("bob", "yo").await;
    assert_eq!(texts(&r6).last().unwrap(), "What is your name?");
    let usage = f.engine.usage(&org, &f.channel.bot_id).await.unwrap();
    assert_eq!(usage.currentmonth.clients, 2);
    assert!(usage.currentmonth.messages >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_trigger_close_flows_and_metadata() {
    let f = fixture(vec![
        flow(
            "Main",
            "start:\n  say \"main\"\n  hold\n  say \"after {{event}}\"\n  goto end\n",
        ),
        flow(
            "Other",
            "start:\n  say \"other {{_metadata.plan}} {{_metadata._channel.type}}\"\n  hold\n  goto end\nsecond:\n  say \"second\"\n  goto end\n",
        ),
    ]);
    let r1 = f.text("u", "x").await;
    assert_eq!(texts(&r1), ["main"]);
    let conv = r1.messages[0].conversation_id.clone();
    // flow_trigger by name, case-insensitive, without close_flows: same conversation.
    let r2 = f
        .send(
            "u",
            json!({"content_type": "flow_trigger", "content": {"flow_id": "other"}}),
        )
        .await;
    assert_eq!(texts(&r2), ["other pro api"]);
    assert_eq!(r2.messages[0].conversation_id, conv);
    // With a step.
    let r3 = f.send("u", json!({"content_type": "flow_trigger", "content": {"flow_id": "Other", "step_id": "second"}})).await;
    assert_eq!(texts(&r3), ["second"]);
    assert!(r3.conversation_end);
    // Unknown flow: default flow's start; close_flows: a new conversation.
    let r4 = f.text("u", "x").await;
    let r5 = f.send("u", json!({"content_type": "flow_trigger", "content": {"flow_id": "nope", "close_flows": true}})).await;
    assert_eq!(texts(&r5), ["main"]);
    assert_ne!(
        r5.messages[0].conversation_id,
        r4.messages[0].conversation_id
    );
    let open = f
        .engine
        .conversations_open(
            &f.channel.organization_id,
            &f.channel.bot_id,
            &f.channel.id,
            "u",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.conversation.id, r5.messages[0].conversation_id);
    assert_eq!(open.conversation.metadata["plan"], "pro");
    let flows = f
        .engine
        .list_flows(&f.channel.organization_id, &f.channel.bot_id)
        .await
        .unwrap();
    assert_eq!(open.flow_id, flows[0].id);
    // Bad payloads are 400 and change nothing.
    let e = f
        .engine
        .chat(ChatRequest {
            channel: f.channel.clone(),
            user_id: "u".into(),
            payload: json!({"content_type": "text", "content": {}}),
            metadata: Json::Null,
            turn_metadata: Default::default(),
            request_id: None,
            received_at: now_millis(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_serve_traffic_and_changed_steps_restart() {
    let f = fixture(vec![flow(
        "Main",
        "start:\n  say \"v1\"\n  hold\n  say \"got {{event}}\"\n  goto end\n",
    )]);
    let (org, bot) = (f.channel.organization_id.clone(), f.channel.bot_id.clone());
    // Never built: the working copy runs.
    assert_eq!(texts(&f.text("a", "x").await), ["v1"]);
    // Edit the held step: the hold is dropped and the step restarts from its top.
    f.engine
        .update_flow(
            &org,
            &bot,
            "Main",
            FlowPatch {
                content: Some(
                    "start:\n  say \"v2\"\n  hold\n  say \"new {{event}}\"\n  goto end\n".into(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&f.text("a", "y").await), ["v2"]);
    assert_eq!(texts(&f.text("a", "z").await), ["new z"]);
    // Build, then edit: traffic stays on the build until the next build.
    let v = f.engine.build(&org, &bot).await.unwrap();
    f.engine
        .update_flow(
            &org,
            &bot,
            "Main",
            FlowPatch {
                content: Some("start:\n  say \"v3\"\n  goto end\n".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&f.text("b", "x").await), ["v2"]);
    let v2 = f.engine.build(&org, &bot).await.unwrap();
    assert_ne!(v.id, v2.id);
    assert_eq!(texts(&f.text("c", "x").await), ["v3"]);
    assert_eq!(
        f.engine.get_build(&org, &bot, None).await.unwrap().id,
        v2.id
    );
    assert!(
        f.engine
            .get_build(&org, &bot, Some(&v.id))
            .await
            .unwrap()
            .snapshot
            .flows[0]
            .content
            .contains("v2")
    );
    // An invalid working copy does not build, and the live build keeps serving.
    f.engine
        .update_flow(
            &org,
            &bot,
            "Main",
            FlowPatch {
                content: Some("start:\n  say (\n".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = f.engine.build(&org, &bot).await.unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(texts(&f.text("d", "x").await), ["v3"]);
    // _env is read live from the bot.
    f.engine
        .update_flow(
            &org,
            &bot,
            "Main",
            FlowPatch {
                content: Some("start:\n  say _env.GREETING\n  goto end\n".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    f.engine.build(&org, &bot).await.unwrap();
    f.engine
        .update_bot(
            &org,
            &bot,
            BotPatch {
                env: Some(json!({"GREETING": "hey"}).as_object().unwrap().clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&f.text("e", "x").await), ["hey"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_concurrent_turns_are_serialized() {
    let counter = "start:\n  if (count) {\n    remember count = count + 1\n  } else {\n    remember count = 1\n  }\n  say \"{{count}}\"\n  goto end\n";
    let f = Arc::new(fixture(vec![flow("Main", counter)]));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let f = f.clone();
        let user = if i % 2 == 0 { "same" } else { "other" };
        tasks.push(tokio::spawn(async move {
            (user, texts(&f.text(user, "go").await))
        }));
    }
    let mut same: Vec<i64> = Vec::new();
    for t in tasks {
        let (user, out) = t.await.unwrap();
        if user == "same" {
            same.push(out[0].parse().unwrap());
        }
    }
    same.sort();
    assert_eq!(
        same,
        (1..=20).collect::<Vec<_>>(),
        "lost or interleaved updates"
    );
    let mem = f
        .engine
        .store()
        .memories(&f.client("other"), now_millis())
        .unwrap();
    assert_eq!(mem["count"], json!(20));
    assert_eq!(f.sink.turns.lock().unwrap().len(), 40);
}

/// Two engines on one store stand for two nodes: their per-client locks are their own, so one
/// user's turns sent to both run at once. The store's version check refuses the commit of a
/// turn whose conversation moved since its read, and the engine runs it again: every turn
/// counts exactly once, in some order, and each turn's transcript stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_one_conversation_on_two_engines_never_interleave() {
    let counter = "start:\n  if (count) {\n    remember count = count + 1\n  } else {\n    remember count = 1\n  }\n  say \"{{count}}\"\n  hold\n  goto start\n";
    let f = Arc::new(fixture(vec![flow("Main", counter)]));
    let other = Engine::new(f.engine.store().clone(), EngineConfig::default());
    let mut tasks = Vec::new();
    for i in 0..30 {
        let engine = if i % 2 == 0 {
            f.engine.clone()
        } else {
            other.clone()
        };
        let req = ChatRequest {
            channel: f.channel.clone(),
            user_id: "same".into(),
            payload: json!({"content_type": "text", "content": {"text": "go"}}),
            metadata: json!({}),
            turn_metadata: Default::default(),
            request_id: None,
            received_at: now_millis(),
        };
        tasks.push(tokio::spawn(async move { engine.chat(req).await }));
    }
    let mut counts: Vec<i64> = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => counts.push(texts(&r)[0].parse().unwrap()),
            // Contended past its reruns: a 503 the client retries, never a wrong count.
            Err(e) => assert_eq!(e.status(), 503, "{e}"),
        }
    }
    counts.sort();
    let n = counts.len() as i64;
    assert!(n >= 15, "only {n} of 30 turns committed");
    assert_eq!(
        counts,
        (1..=n).collect::<Vec<_>>(),
        "lost or interleaved turns"
    );
    let store = f.engine.store();
    let mem = store.memories(&f.client("same"), now_millis()).unwrap();
    assert_eq!(mem["count"], json!(n));
    // One conversation, its transcript one RECEIVE and one SEND per committed turn.
    let convs = store
        .list_conversations(&f.channel.organization_id, &Default::default())
        .unwrap();
    assert_eq!(convs.len(), 1);
    let msgs = store
        .list_messages(&f.channel.organization_id, &convs[0].id, None, 1000)
        .unwrap();
    assert_eq!(msgs.len() as i64, 2 * n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_are_queued_and_run_once() {
    let f = fixture(vec![
        flow("Main", "start:\n  say \"main\"\n  hold\n  goto end\n"),
        flow(
            "Reminder",
            "start:\n  say \"reminder {{_metadata.order}}\"\n  goto end\n",
        ),
    ]);
    f.text("u", "x").await;
    let echo = f
        .engine
        .broadcast(BroadcastRequest {
            channel: f.channel.clone(),
            user_id: "u".into(),
            payload: json!({"content_type": "flow_trigger", "content": {"flow_id": "reminder"}}),
            metadata: json!({"order": "A-1"}),
            request_id: Some("r1".into()),
        })
        .await
        .unwrap();
    assert_eq!(echo["payload"]["content"]["close_flows"], true);
    assert_eq!(echo["client"]["channel_id"], json!(f.channel.id));
    assert_eq!(f.engine.run_pending_broadcasts().await.unwrap(), 1);
    assert_eq!(f.engine.run_pending_broadcasts().await.unwrap(), 0);
    let turns = f.sink.turns.lock().unwrap().clone();
    assert_eq!(turns.len(), 2);
    // close_flows closed the held conversation: nothing is open now.
    assert!(
        f.engine
            .store()
            .open_conversation(&f.client("u"), now_millis())
            .unwrap()
            .is_none()
    );
    let convs = f
        .engine
        .store()
        .list_conversations(&f.channel.organization_id, &Default::default())
        .unwrap();
    assert_eq!(convs.len(), 2);
    let msgs = f
        .engine
        .store()
        .list_messages(&f.channel.organization_id, &convs[0].id, None, 10)
        .unwrap();
    assert_eq!(
        msgs.last().unwrap().payload["content"]["text"],
        "reminder A-1"
    );
}

/// `goto ... in BOT` (csml-language §7.5): a Studio request has no `multibot` list, so the
/// switch is refused with the reference's message and the conversation closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_switch_is_refused_without_a_multibot_list() {
    let f = fixture(vec![flow(
        "Default",
        "start:\n  say \"before\"\n  goto start in Other\n",
    )]);
    let r = f.text("u1", "hi").await;
    assert!(r.conversation_end);
    assert_eq!(r.messages.len(), 2, "{:?}", r.messages);
    assert_eq!(texts(&r)[0], "before");
    assert_eq!(r.messages[1].payload.content_type, "error");
    assert_eq!(
        r.messages[1].payload.content["error"],
        "Switching to Bot: (Other) is not allowed"
    );
    let open = f
        .engine
        .store()
        .open_conversation(&f.client("u1"), now_millis())
        .unwrap();
    assert!(open.is_none());
}

/// A caller's lazily read `_metadata` entries (`TurnHooks::history`, an OCS turn's history)
/// are read with the turn's state and seen by a flow that names `_metadata`; for a bot whose
/// flows never name it, neither the read nor the hook runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_turn_metadata_is_read_only_for_flows_that_can_see_it() {
    use botyard::engine::{BotCode, TurnHooks, TurnMetadata};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let reads = Arc::new(AtomicUsize::new(0));
    let hooks = |reads: &Arc<AtomicUsize>| {
        let reads = Arc::clone(reads);
        let f: TurnMetadata = Box::new(move |history| {
            reads.fetch_add(1, Ordering::SeqCst);
            // A session nobody wrote to: the read found no history.
            let mut m = serde_json::Map::new();
            m.insert("extra".into(), json!({"n": 7, "seen": history.len()}));
            m
        });
        TurnHooks {
            after: None,
            history: Some(("no-such-session".into(), f)),
        }
    };
    let turn = |f: &Fixture, user: &str| ChatRequest {
        channel: f.channel.clone(),
        user_id: user.into(),
        payload: json!({"content_type": "text", "content": {"text": "hi"}}),
        metadata: Json::Null,
        turn_metadata: Default::default(),
        request_id: None,
        received_at: now_millis(),
    };

    let sees = fixture(vec![flow(
        "Default",
        "start:\n  say \"extra={{_metadata.extra.n}}\"\n  goto end\n",
    )]);
    let r = sees
        .engine
        .chat_code(turn(&sees, "a"), BotCode::Live, hooks(&reads))
        .await
        .unwrap()
        .response;
    assert_eq!(texts(&r), vec!["extra=7"]);
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    let blind = fixture(vec![flow(
        "Default",
        "start:\n  say \"hello\"\n  goto end\n",
    )]);
    let r = blind
        .engine
        .chat_code(turn(&blind, "b"), BotCode::Live, hooks(&reads))
        .await
        .unwrap()
        .response;
    assert_eq!(texts(&r), vec!["hello"]);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "a blind bot skips the read"
    );
}
