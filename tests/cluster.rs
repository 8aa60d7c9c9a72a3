//! Several botyard nodes on one PostgreSQL database (issue 15, item 5): three `serve`
//! processes started by the harness on one database ([`Server::start_node_of`]), requests
//! spread round-robin over them as a load balancer would, and what must hold across nodes:
//! turns of one conversation never interleave and no acknowledged turn is lost when a node
//! is SIGKILLed mid-load, broadcasts and connector (outbox) deliveries are sent once, a build
//! published on one node is served by the others, an OCS task accepted on one node completes
//! when polled on another, and rate limits hold for the cluster as a whole.
//!
//! Only on the PostgreSQL backend (`BOTYARD_TEST_BACKEND=postgres`): on SQLite each test
//! returns at once (one data directory has one server). Bounds are generous; nothing here
//! asserts a latency.

mod common;

use botyard::store::{ConversationFilter, Direction};
use common::*;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Whether this run has a shared database; says why not on stderr.
fn on_postgres(test: &str) -> bool {
    if backend_is_pg() {
        return true;
    }
    eprintln!(
        "{test}: skipped: several nodes need a shared PostgreSQL database (BOTYARD_TEST_BACKEND=postgres)"
    );
    false
}

/// Node 1 (set up, then `customize`d before any other node starts, so the others begin with
/// the same data) and two more nodes of its deployment, all with `extra` serve arguments.
fn cluster_with(extra: &[&str], customize: impl FnOnce(&Server)) -> Vec<Server> {
    let first = Server::start_with(extra);
    customize(&first);
    let second = Server::start_node_of(&first, extra);
    let third = Server::start_node_of(&first, extra);
    vec![first, second, third]
}

/// Every node's log, for failure messages.
fn all_logs(nodes: &[&Server]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, n.logs()))
        .collect()
}

/// The text of the first message of a `/chat` answer.
fn first_text(v: &Json) -> String {
    v["messages"][0]["payload"]["content"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn org_of(s: &Server) -> String {
    s.setup["organization"]["id"]
        .as_str()
        .expect("setup organization.id")
        .to_string()
}

/// Counts the turns of a client in its memory; each turn ends its conversation, so the next
/// starts at `start` with the remembered count (one-shot turns: the client has no open
/// conversation between them).
const COUNTER_FLOW: &str = "start:\n  if (count) {\n    remember count = count + 1\n  } else {\n    remember count = 1\n  }\n  say \"turn {{count}}\"\n  goto end\n";

/// The same count in one conversation that stays open: each turn resumes after the `hold`.
const HELD_COUNTER_FLOW: &str = "start:\n  if (count) {\n    remember count = count + 1\n  } else {\n    remember count = 1\n  }\n  say \"turn {{count}}\"\n  hold\n  goto start\n";

/// What one request of the turn load came to.
#[derive(Debug)]
enum Outcome {
    /// 200: the turn number it reported.
    Acked(i64),
    /// A JSON 503 or 409 under contention (not acknowledged).
    Refused(u16),
    /// The connection failed: only allowed on the killed node.
    Lost { started_before_kill: bool },
}

/// Per user, each request's node (0-based) and outcome, in order.
type OutcomesByUser = HashMap<String, Vec<(usize, Outcome)>>;

/// One-shot turns (each ends its conversation): two turns of one client on two nodes must
/// still see each other's memory writes, as on one node.
#[test]
fn turns_survive_a_killed_node_and_never_interleave() {
    if !on_postgres("turns_survive_a_killed_node_and_never_interleave") {
        return;
    }
    turn_load(COUNTER_FLOW);
}

/// Turns of one open conversation (resumed after a `hold`), the case the conversation's
/// version guards.
#[test]
fn turns_of_a_held_conversation_survive_a_killed_node_and_never_interleave() {
    if !on_postgres("turns_of_a_held_conversation_survive_a_killed_node_and_never_interleave") {
        return;
    }
    turn_load(HELD_COUNTER_FLOW);
}

/// 20 users, two threads each sending one turn of that user at the same moment to two
/// different nodes, round-robin; node 3 SIGKILLed a third of the way through. Per user: the
/// acknowledged turns' numbers are distinct (no two turns saw the same state), and a final
/// turn counts at least every acknowledged one (none lost).
fn turn_load(flow: &str) {
    const USERS: usize = 20;
    const ROUNDS: usize = 8;
    // No throttling: any 429 here would be a bug, not contention.
    let mut nodes = cluster_with(&["--rate-limit", "0"], |s| s.set_default_flow(flow));
    let creds = nodes[0].creds();
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<OutcomesByUser>> = Arc::default();
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();

    // Two threads per user; each round both send one turn of that user at the same moment
    // (a barrier), to two different live nodes.
    let mut threads = Vec::new();
    for u in 0..USERS {
        let barrier = Arc::new(Barrier::new(2));
        for side in 0..2 {
            let (clients, creds, killed, done) = (
                clients.clone(),
                creds.clone(),
                Arc::clone(&killed),
                Arc::clone(&done),
            );
            let (barrier, outcomes, unexpected) = (
                Arc::clone(&barrier),
                Arc::clone(&outcomes),
                Arc::clone(&unexpected),
            );
            threads.push(std::thread::spawn(move || {
                let user = format!("counter-{u}");
                for round in 0..ROUNDS {
                    barrier.wait();
                    // The balancer stops sending to node 3 once it is gone.
                    let before_kill = !killed.load(Ordering::SeqCst);
                    let live: &[usize] = if before_kill { &[0, 1, 2] } else { &[0, 1] };
                    let node = live[(u + round + side) % live.len()];
                    let r = clients[node].try_request(
                        "POST",
                        "/v1/api/chat",
                        &creds.public(),
                        Some(text_event(&user, "go").to_string().as_bytes()),
                    );
                    let outcome = match r {
                        Ok(r) if r.status == 200 => {
                            // No panic in here: the other thread of this user waits at the
                            // barrier.
                            let v: Json = serde_json::from_slice(&r.body).unwrap_or_default();
                            let text = first_text(&v);
                            match text.strip_prefix("turn ").and_then(|n| n.parse().ok()) {
                                Some(n) => Outcome::Acked(n),
                                None => {
                                    unexpected.lock().unwrap().push(format!(
                                        "node {}: 200 without a turn number: {}",
                                        node + 1,
                                        r.text()
                                    ));
                                    continue;
                                }
                            }
                        }
                        Ok(r) if r.status == 503 || r.status == 409 => {
                            let body: Result<Json, _> = serde_json::from_slice(&r.body);
                            match body {
                                Ok(v)
                                    if v["code"] == json!(r.status) && v["message"].is_string() => {
                                }
                                _ => unexpected.lock().unwrap().push(format!(
                                    "node {}: {} without the JSON envelope: {}",
                                    node + 1,
                                    r.status,
                                    r.text()
                                )),
                            }
                            Outcome::Refused(r.status)
                        }
                        Ok(r) => {
                            unexpected.lock().unwrap().push(format!(
                                "node {}: status {}: {}",
                                node + 1,
                                r.status,
                                r.text()
                            ));
                            continue;
                        }
                        Err(e) => {
                            if node != 2 {
                                unexpected.lock().unwrap().push(format!(
                                    "node {} (alive) failed the connection: {e}",
                                    node + 1
                                ));
                            }
                            Outcome::Lost {
                                started_before_kill: before_kill,
                            }
                        }
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    outcomes
                        .lock()
                        .unwrap()
                        .entry(user.clone())
                        .or_default()
                        .push((node, outcome));
                }
            }));
        }
    }

    // Kill node 3 a third of the way through, while the load runs (a third of the threads
    // are talking to it at any moment).
    let total = USERS * 2 * ROUNDS;
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::SeqCst) < total / 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done_at_kill = done.load(Ordering::SeqCst);
    killed.store(true, Ordering::SeqCst);
    nodes[2].kill();
    for t in threads {
        t.join().expect("load thread");
    }
    let unexpected = unexpected.lock().unwrap().clone();
    let survivors = [&nodes[0], &nodes[1]];
    assert!(
        unexpected.is_empty(),
        "unexpected answers:\n{}\n{}",
        unexpected.join("\n"),
        all_logs(&survivors)
    );

    let outcomes = outcomes.lock().unwrap();
    let (mut acked_total, mut refused, mut lost_in_flight, mut lost_after) = (0, 0, 0, 0);
    let mut refused_by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut acked_on_node = [0usize; 3];
    // Every user is checked before failing, so that a failure says how widespread it is.
    let (mut interleaved, mut lost) = (Vec::new(), Vec::new());
    let (mut same_state_turns, mut lost_turns) = (0, 0);
    for u in 0..USERS {
        let user = format!("counter-{u}");
        let seen = outcomes.get(&user).map(Vec::as_slice).unwrap_or_default();
        let mut acked: Vec<i64> = Vec::new();
        for (node, o) in seen {
            match o {
                Outcome::Acked(n) => {
                    acked.push(*n);
                    acked_on_node[*node] += 1;
                }
                Outcome::Refused(status) => {
                    refused += 1;
                    *refused_by_status.entry(*status).or_default() += 1;
                }
                Outcome::Lost {
                    started_before_kill: true,
                } => lost_in_flight += 1,
                Outcome::Lost { .. } => lost_after += 1,
            }
        }
        acked_total += acked.len();
        let mut sorted = acked.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != acked.len() {
            same_state_turns += acked.len() - sorted.len();
            interleaved.push(format!(
                "{user}: acknowledged turns saw the same state: (node index, outcome) {seen:?}"
            ));
        }
        // One more turn on a live node: the count includes every acknowledged turn.
        let r = nodes[0]
            .client()
            .post("/v1/api/chat", &creds.public(), &text_event(&user, "go"));
        r.expect(200);
        let last: i64 = first_text(&r.json())
            .strip_prefix("turn ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{user}: final turn: {}", r.text()));
        if last - 1 < acked.len() as i64 || sorted.last().is_some_and(|max| *max >= last) {
            lost_turns += (acked.len() as i64 - (last - 1)).max(0);
            lost.push(format!(
                "{user}: {} turns acknowledged ({acked:?}), the memory counted {} before the final turn",
                acked.len(),
                last - 1
            ));
        }
    }
    eprintln!(
        "cluster turns ({}): {total} requests, {acked_total} acknowledged (node 1: {}, node 2: {}, node 3: {}), \
         {refused} refused under contention {refused_by_status:?}, {lost_in_flight} lost on node 3 \
         (sent before the kill) + {lost_after} after; node 3 killed after {done_at_kill} answers; \
         {} of {USERS} users with turns that saw the same state ({same_state_turns} turns), \
         {} users with acknowledged turns missing from the memory ({lost_turns} turns)",
        if flow == COUNTER_FLOW {
            "one-shot"
        } else {
            "held"
        },
        acked_on_node[0],
        acked_on_node[1],
        acked_on_node[2],
        interleaved.len(),
        lost.len(),
    );
    assert!(
        interleaved.is_empty() && lost.is_empty(),
        "{} of {USERS} users had turns that saw the same state (interleaved; {same_state_turns} \
         turns), {} users lost acknowledged turns ({lost_turns} turns):\n{}\n{}",
        interleaved.len(),
        lost.len(),
        interleaved.join("\n"),
        lost.join("\n")
    );
    // The load really ran on all three nodes, and mostly succeeded.
    assert!(
        acked_on_node.iter().all(|n| *n > 0),
        "every node acknowledged turns: {acked_on_node:?}"
    );
    assert!(
        acked_total >= total / 2,
        "only {acked_total} of {total} turns acknowledged\n{}",
        all_logs(&survivors)
    );
}

#[test]
fn broadcasts_run_once_across_nodes() {
    if !on_postgres("broadcasts_run_once_across_nodes") {
        return;
    }
    const N: usize = 30;
    let rx = Receiver::start(Duration::ZERO);
    let hooked: Arc<Mutex<Option<Creds>>> = Arc::default();
    let nodes = cluster_with(&[], |s| {
        s.set_default_flow("start:\n  say \"broadcast for {{_metadata.target}}\"\n  goto end\n");
        *hooked.lock().unwrap() = Some(s.webhook_channel(&rx.url));
    });
    let hooked = hooked.lock().unwrap().clone().unwrap();
    let refs: Vec<&Server> = nodes.iter().collect();

    for i in 0..N {
        let body = json!({
            "client": {"user_id": format!("bc-{i}")},
            "payload": {"content_type": "flow_trigger", "content": {"flow_id": "Default"}},
            "metadata": {"target": format!("bc-{i}")},
            "request_id": format!("bc-request-{i}"),
        });
        let r = nodes[i % 3]
            .client()
            .post("/v1/api/broadcasts", &hooked.public(), &body);
        r.expect(200);
        assert_eq!(r.json()["request_id"], format!("bc-request-{i}"));
    }
    // Each broadcast is one bot message and the end-of-conversation marker (spec §3).
    let got = rx.wait_for(2 * N, Duration::from_secs(20));
    // Late duplicates, if any, have time to arrive.
    std::thread::sleep(Duration::from_millis(1500));
    let got = if got.len() >= 2 * N { rx.bodies() } else { got };
    let mut messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for b in &got {
        let user = b["client"]["user_id"].as_str().unwrap_or("?").to_string();
        match b["messages"].as_array().map(Vec::as_slice) {
            Some([m]) => messages.entry(user).or_default().push(
                m["payload"]["content"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
            ),
            Some([]) => *ends.entry(user).or_default() += 1,
            _ => panic!("unexpected webhook body {b}"),
        }
    }
    for i in 0..N {
        let user = format!("bc-{i}");
        assert_eq!(
            messages.get(&user).cloned().unwrap_or_default(),
            vec![format!("broadcast for {user}")],
            "{user}: the broadcast's message is delivered exactly once (webhook calls: {got:?})\n{}",
            all_logs(&refs)
        );
        assert_eq!(ends.get(&user), Some(&1), "{user}: one end marker");
    }
    assert_eq!(got.len(), 2 * N, "no other webhook call: {got:?}");

    // The store agrees: one conversation per target, one bot message in it.
    let store = nodes[0].store();
    let org = org_of(&nodes[0]);
    for i in 0..N {
        let user = format!("bc-{i}");
        let convs = store
            .list_conversations(
                &org,
                &ConversationFilter {
                    channel_id: Some(hooked.channel_id.clone()),
                    user_id: Some(user.clone()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(convs.len(), 1, "{user}: one conversation: {convs:?}");
        let sent: Vec<_> = store
            .list_messages(&org, &convs[0].id, None, 0)
            .unwrap()
            .into_iter()
            .filter(|m| m.direction == Direction::Send)
            .collect();
        assert_eq!(
            sent.len(),
            1,
            "{user}: exactly one bot message stored: {sent:?}"
        );
        assert_eq!(
            sent[0].payload["content"]["text"],
            format!("broadcast for {user}")
        );
    }
}

#[test]
fn a_build_published_on_one_node_is_served_by_the_others() {
    if !on_postgres("a_build_published_on_one_node_is_served_by_the_others") {
        return;
    }
    let nodes = cluster_with(&[], |s| {
        s.set_default_flow("start:\n  say \"version A\"\n  goto end\n")
    });
    let creds = nodes[0].creds();
    let refs: Vec<&Server> = nodes.iter().collect();
    // Every node has served (so compiled and cached) version A.
    for (i, n) in nodes.iter().enumerate() {
        let r = n
            .client()
            .post("/v1/api/chat", &creds.public(), &text_event("warm", "hi"));
        r.expect(200);
        assert_eq!(first_text(&r.json()), "version A", "node {}", i + 1);
    }
    nodes[0].set_flow_of(&creds, "start:\n  say \"version B\"\n  goto end\n");
    let published = Instant::now();
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let mut seen = String::new();
        let mut turns = 0;
        while published.elapsed() < Duration::from_secs(5) {
            let r = n.client().post(
                "/v1/api/chat",
                &creds.public(),
                &text_event(&format!("reader-{i}"), "hi"),
            );
            r.expect(200);
            seen = first_text(&r.json());
            turns += 1;
            if seen == "version B" {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = published.elapsed();
        assert_eq!(
            seen,
            "version B",
            "node {} still served the old build {took:?} after it was published on node 1 ({turns} turns)\n{}",
            i + 1,
            all_logs(&refs)
        );
        eprintln!(
            "node {} served the new build {took:?} after publication ({turns} turns)",
            i + 1
        );
    }
}

#[test]
fn ocs_message_accepted_on_one_node_completes_when_polled_on_another() {
    if !on_postgres("ocs_message_accepted_on_one_node_completes_when_polled_on_another") {
        return;
    }
    let nodes = cluster_with(&[], |s| {
        s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n")
    });
    let refs: Vec<&Server> = nodes.iter().collect();
    let bot = nodes[0].creds().bot_id;
    let r = nodes[0]
        .client()
        .post("/api/chat/start/", &[], &json!({"chatbot_id": bot}));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let sid = v["session_id"].as_str().unwrap().to_string();
    let h = vec![(
        "X-Session-Token".to_string(),
        v["session_token"].as_str().unwrap().to_string(),
    )];
    // Each message is accepted by one node and its task polled on the next.
    for (i, word) in ["one", "two", "three"].iter().enumerate() {
        let (accept, poll) = (&nodes[i % 3], &nodes[(i + 1) % 3]);
        let r = accept.client().post(
            &format!("/api/chat/{sid}/message/"),
            &h,
            &json!({"message": word}),
        );
        assert_eq!(r.status, 202, "node {}: {}", i % 3 + 1, r.text());
        let task = r.json()["task_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = loop {
            let r = poll
                .client()
                .get(&format!("/api/chat/{sid}/{task}/poll/"), &h);
            assert_eq!(
                r.status,
                200,
                "node {} polling a task of node {}: {}",
                (i + 1) % 3 + 1,
                i % 3 + 1,
                r.text()
            );
            let v = r.json();
            if v["status"] != "processing" || Instant::now() > deadline {
                break v;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            done["status"],
            "complete",
            "task {task} accepted on node {}, polled on node {}: {done}\n{}",
            i % 3 + 1,
            (i + 1) % 3 + 1,
            all_logs(&refs)
        );
        assert_eq!(done["message"]["content"], format!("echo {word}"), "{done}");
    }
    // The whole transcript reads the same on the third node.
    let all = nodes[2]
        .client()
        .get(&format!("/api/chat/{sid}/poll/"), &h)
        .json();
    let contents: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        contents,
        ["one", "echo one", "two", "echo two", "three", "echo three"],
        "{all}"
    );
}

#[test]
fn rate_limits_hold_across_nodes() {
    if !on_postgres("rate_limits_hold_across_nodes") {
        return;
    }
    const RATE: f64 = 30.0;
    const REQUESTS: usize = 300;
    const THREADS: usize = 12;
    let nodes = cluster_with(&["--rate-limit", "30"], |s| {
        s.set_default_flow("start:\n  say \"hi\"\n  goto end\n")
    });
    let refs: Vec<&Server> = nodes.iter().collect();
    // Each node counts the others through their heartbeats (every second).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !nodes.iter().all(|n| n.logs().contains("nodes=3")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        nodes.iter().all(|n| n.logs().contains("nodes=3")),
        "every node sees 3 live nodes\n{}",
        all_logs(&refs)
    );
    // Let every bucket refill after the setup calls.
    std::thread::sleep(Duration::from_secs(2));

    let creds = nodes[0].creds();
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (clients, creds) = (clients.clone(), creds.clone());
            let (next, accepted, throttled) = (
                Arc::clone(&next),
                Arc::clone(&accepted),
                Arc::clone(&throttled),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= REQUESTS {
                        return;
                    }
                    let r = clients[i % 3].post(
                        "/v1/api/chat",
                        &creds.public(),
                        &text_event(&format!("rl-{}", i % 50), "hi"),
                    );
                    match r.status {
                        200 => accepted.fetch_add(1, Ordering::SeqCst),
                        429 => {
                            r.expect(429);
                            throttled.fetch_add(1, Ordering::SeqCst)
                        }
                        other => panic!("node {}: status {other}: {}", i % 3 + 1, r.text()),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("load thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (accepted, throttled) = (
        accepted.load(Ordering::SeqCst),
        throttled.load(Ordering::SeqCst),
    );
    // The cluster's bucket: a burst of one second's worth plus the refill since.
    let bound = RATE + RATE * elapsed + 3.0;
    eprintln!(
        "cluster rate limit: {accepted} accepted, {throttled} throttled of {REQUESTS} in {elapsed:.2} s \
         (cluster bound {bound:.0}, three independent nodes would allow {:.0})",
        3.0 * (RATE + RATE * elapsed)
    );
    assert_eq!(accepted + throttled, REQUESTS);
    // The load must be fast enough that three independent nodes (each with the whole rate)
    // would have accepted clearly more than the cluster bound; otherwise this proves nothing.
    assert!(
        (REQUESTS as f64).min(3.0 * (RATE + RATE * elapsed)) > bound * 1.5,
        "the load took {elapsed:.2} s: too slow to tell a shared limit from per-node limits"
    );
    assert!(
        accepted as f64 <= bound,
        "{accepted} accepted in {elapsed:.2} s over 3 nodes; a shared rate of 30/s allows at most {bound:.0}"
    );
    // And the limit is not so strict that it refuses the configured rate.
    assert!(
        accepted as f64 >= RATE / 2.0,
        "only {accepted} accepted in {elapsed:.2} s at a configured 30/s"
    );
}

#[test]
fn connector_replies_are_delivered_once_across_nodes() {
    if !on_postgres("connector_replies_are_delivered_once_across_nodes") {
        return;
    }
    const CHATS: u64 = 10;
    const PER_CHAT: u64 = 3;
    let api = FakeApi::start(r#"{"ok":true,"result":{"message_id":1}}"#);
    let hook: Arc<Mutex<String>> = Arc::default();
    let nodes = cluster_with(&[], |s| {
        s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n");
        let bot = s.creds().bot_id;
        let config = json!({"bot_token": "1:x", "api_base": api.url, "allow_hosts": ["127.0.0.1"]})
            .to_string();
        let ch = cli_json(
            &s.data,
            &[
                "channel", "create", "--kind", "telegram", "--bot", &bot, "--name", "tg",
                "--config", &config,
            ],
        );
        *hook.lock().unwrap() = format!("/hooks/{}", ch["token"].as_str().unwrap());
    });
    let hook = hook.lock().unwrap().clone();
    let refs: Vec<&Server> = nodes.iter().collect();
    // Updates of several chats, round-robin over the nodes; every update is also retried
    // (as Telegram does) on another node: acknowledged there, not run again.
    let mut n = 0usize;
    for k in 0..PER_CHAT {
        for chat in 0..CHATS {
            let id = 1000 + chat * PER_CHAT + k;
            let update = json!({"update_id": id, "message": {"message_id": id, "from": {"id": 100 + chat}, "chat": {"id": 100 + chat}, "text": format!("u{id}")}});
            let (first, retry) = (&nodes[n % 3], &nodes[(n + 1) % 3]);
            first.client().post(&hook, &[], &update).expect(200);
            retry.client().post(&hook, &[], &update).expect(200);
            n += 1;
        }
    }
    let expected = (CHATS * PER_CHAT) as usize;
    api.wait_for(expected, Duration::from_secs(30));
    // Late duplicates, if any, have time to arrive.
    std::thread::sleep(Duration::from_millis(1500));
    let calls = api.calls();
    let mut per_text: BTreeMap<String, usize> = BTreeMap::new();
    for (path, body) in &calls {
        assert_eq!(path, "/bot1:x/sendMessage", "{body}");
        *per_text
            .entry(body["text"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    for chat in 0..CHATS {
        for k in 0..PER_CHAT {
            let id = 1000 + chat * PER_CHAT + k;
            let text = format!("echo u{id}");
            assert_eq!(
                per_text.get(&text),
                Some(&1),
                "`{text}` delivered exactly once: {per_text:?}\n{}",
                all_logs(&refs)
            );
        }
    }
    assert_eq!(calls.len(), expected, "no other delivery: {per_text:?}");
    // Each chat's replies went out in the order of its updates.
    for chat in 0..CHATS {
        let order: Vec<&str> = calls
            .iter()
            .filter(|(_, b)| b["chat_id"] == json!((100 + chat).to_string()))
            .map(|(_, b)| b["text"].as_str().unwrap_or(""))
            .collect();
        let want: Vec<String> = (0..PER_CHAT)
            .map(|k| format!("echo u{}", 1000 + chat * PER_CHAT + k))
            .collect();
        assert_eq!(order, want, "chat {}: replies in update order", 100 + chat);
    }
}

/// A node dies while the platform is down and its deliveries are being retried: once the
/// platform is back, every reply, including those node 3 had claimed, is delivered exactly
/// once by the surviving nodes (none had gone through before the kill, so a repeat would be
/// a double claim, not a send the dead node could not record).
#[test]
fn connector_deliveries_of_a_killed_node_are_taken_over_once() {
    if !on_postgres("connector_deliveries_of_a_killed_node_are_taken_over_once") {
        return;
    }
    const UPDATES: u64 = 12;
    let down = FakeApi::flaky(r#"{"ok":true,"result":{"message_id":1}}"#, usize::MAX);
    let channel: Arc<Mutex<(String, String)>> = Arc::default();
    let mut nodes = cluster_with(&[], |s| {
        s.set_default_flow("start:\n  say \"echo {{event}}\"\n  goto end\n");
        let bot = s.creds().bot_id;
        let config =
            json!({"bot_token": "1:x", "api_base": down.url, "allow_hosts": ["127.0.0.1"]})
                .to_string();
        let ch = cli_json(
            &s.data,
            &[
                "channel", "create", "--kind", "telegram", "--bot", &bot, "--name", "tg",
                "--config", &config,
            ],
        );
        *channel.lock().unwrap() = (
            ch["id"].as_str().unwrap().to_string(),
            format!("/hooks/{}", ch["token"].as_str().unwrap()),
        );
    });
    let (channel_id, hook) = channel.lock().unwrap().clone();
    for i in 0..UPDATES {
        let id = 5000 + i;
        let update = json!({"update_id": id, "message": {"message_id": id, "from": {"id": 200 + i}, "chat": {"id": 200 + i}, "text": format!("d{id}")}});
        nodes[i as usize % 3]
            .client()
            .post(&hook, &[], &update)
            .expect(200);
    }
    // Every reply has been tried (and refused) at least once: all are in the outbox, some
    // claimed by node 3.
    let want: Vec<String> = (0..UPDATES)
        .map(|i| format!("echo d{}", 5000 + i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let tried = |calls: &[(String, Json)]| {
        want.iter()
            .all(|w| calls.iter().any(|(_, b)| b["text"] == json!(w)))
    };
    while !tried(&down.calls()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let refs: Vec<&Server> = nodes.iter().collect();
    assert!(
        tried(&down.calls()),
        "every reply was tried: {:?}\n{}",
        down.calls(),
        all_logs(&refs)
    );
    nodes[2].kill();
    // The platform is back (at another address, as an operator would repoint the channel).
    let up = FakeApi::start(r#"{"ok":true,"result":{"message_id":1}}"#);
    {
        let store = nodes[0].store();
        let org = org_of(&nodes[0]);
        let ch = store.get_channel(&org, &channel_id).unwrap();
        let mut config = ch.config.clone();
        config["api_base"] = json!(up.url);
        store
            .update_channel(
                &org,
                &channel_id,
                botyard::store::ChannelPatch {
                    config: Some(config),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    // Retries back off (1 s, 2 s, 4 s, …) and node 3's claims run out (5 s): generous.
    up.wait_for(UPDATES as usize, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let calls = up.calls();
    let survivors = [&nodes[0], &nodes[1]];
    let mut per_text: BTreeMap<String, usize> = BTreeMap::new();
    for (_, body) in &calls {
        *per_text
            .entry(body["text"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    for w in &want {
        assert_eq!(
            per_text.get(w),
            Some(&1),
            "`{w}` delivered exactly once after the kill: {per_text:?}\n{}",
            all_logs(&survivors)
        );
    }
    assert_eq!(calls.len(), UPDATES as usize, "{per_text:?}");
}
