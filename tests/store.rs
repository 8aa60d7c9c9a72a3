//! Store tests on real SQLite files: tenant scoping, migrations, group commit, secrets at rest.

use botyard::store::conversations::{ConversationWrite, NewMessage, TurnWrite};
use botyard::store::ids::{new_id, now_millis};
use botyard::store::{
    self, BotPatch, ChannelPatch, ClientKey, ConversationFilter, ConversationStatus, Direction,
    Durability, Error, FlowPatch, NewBot, NewChannel, NewFlow, Snapshot, Store,
};
use serde_json::json;

fn new_bot(name: &str) -> NewBot {
    NewBot {
        name: name.into(),
        flows: vec![
            NewFlow {
                name: "Default".into(),
                content: "start:\n  say \"hi\"\n".into(),
                ..Default::default()
            },
            NewFlow {
                name: "Other".into(),
                content: "start:\n  say \"o\"\n".into(),
                commands: vec!["other".into()],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn turn(client: &ClientKey, conv: &str, create: bool, text: &str) -> TurnWrite {
    TurnWrite {
        client: client.clone(),
        participant_id: None,
        now: now_millis(),
        turn_id: new_id(),
        conversation: if create {
            ConversationWrite::Create {
                id: conv.into(),
                flow: "Default".into(),
                step: "start".into(),
                metadata: json!({"k": 1}).to_string(),
                version_id: None,
                platform: "api".into(),
                replaces: None,
            }
        } else {
            ConversationWrite::Update {
                id: conv.into(),
                flow: "Default".into(),
                step: "ask".into(),
                rev: 0,
            }
        },
        status: ConversationStatus::Open,
        hold: Some(json!({"command_index": 1})),
        previous: None,
        forgets: vec![],
        memories: vec![("name".into(), json!(text))],
        messages: vec![
            NewMessage {
                direction: Direction::Receive,
                flow: "Default".into(),
                step: "start".into(),
                content_type: "text".into(),
                payload: json!({"content_type": "text", "content": {"text": text}}),
                interaction_order: 0,
            },
            NewMessage {
                direction: Direction::Send,
                flow: "Default".into(),
                step: "start".into(),
                content_type: "text".into(),
                payload: json!({"content_type": "text", "content": {"text": "hi"}}),
                interaction_order: 0,
            },
        ],
        low_data: false,
        expires_at: None,
        broadcast_done: None,
        inbound_done: None,
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::NotFound(_)))
}

#[test]
fn organizations_cannot_see_or_change_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let a = s.create_org("A", true).unwrap();
    let b = s.create_org("B", false).unwrap();
    let (bot_a, flows_a) = s.create_bot(&a.id, new_bot("bot")).unwrap();
    // The same bot name is fine in another organization.
    let (bot_b, _) = s.create_bot(&b.id, new_bot("bot")).unwrap();
    let (ch_a, _) = s
        .create_channel(&a.id, &bot_a.id, NewChannel::default())
        .unwrap();
    let (key_a, _) = s.create_api_key(&a.id, "k", false).unwrap();
    let client = ClientKey {
        organization_id: a.id.clone(),
        bot_id: bot_a.id.clone(),
        channel_id: ch_a.id.clone(),
        user_id: "u1".into(),
    };
    let conv = new_id();
    s.commit_turn_blocking(turn(&client, &conv, true, "Ada"))
        .unwrap();
    let v = s
        .create_version(
            &a.id,
            &bot_a.id,
            Snapshot {
                name: "bot".into(),
                default_flow: flows_a[0].id.clone(),
                flows: vec![],
                custom_components: Default::default(),
            },
            "t",
        )
        .unwrap();

    let o = b.id.as_str();
    // Reads through B see nothing of A.
    assert!(is_not_found(s.get_bot(o, &bot_a.id)));
    assert_eq!(s.find_bot(o, "bot").unwrap().id, bot_b.id);
    assert!(is_not_found(s.find_bot(o, &bot_a.id)));
    assert!(is_not_found(s.bot_with_flows(o, &bot_a.id)));
    assert!(is_not_found(s.list_flows(o, &bot_a.id)));
    assert!(is_not_found(s.get_flow(o, &bot_a.id, &flows_a[0].id)));
    assert!(is_not_found(s.get_version(o, &bot_a.id, Some(&v.id))));
    assert!(is_not_found(s.get_version(o, &bot_a.id, None)));
    assert!(s.list_versions(o, &bot_a.id, 10).unwrap().is_empty());
    assert!(is_not_found(s.live_code(o, &bot_a.id)));
    assert!(is_not_found(s.get_channel(o, &ch_a.id)));
    assert!(s.list_channels(o, Some(&bot_a.id)).unwrap().is_empty());
    assert!(s.list_channels(o, None).unwrap().is_empty());
    assert!(s.list_api_keys(o).unwrap().is_empty());
    assert!(is_not_found(s.get_conversation(o, &conv)));
    assert!(
        s.list_conversations(o, &ConversationFilter::default())
            .unwrap()
            .is_empty()
    );
    assert!(s.list_messages(o, &conv, None, 100).unwrap().is_empty());
    assert!(s.list_participants(o, 100).unwrap().is_empty());
    let b_client = ClientKey {
        organization_id: b.id.clone(),
        ..client.clone()
    };
    assert!(
        s.open_conversation(&b_client, now_millis())
            .unwrap()
            .is_none()
    );
    assert!(s.memories(&b_client, now_millis()).unwrap().is_empty());
    assert_eq!(
        s.usage(o, &bot_a.id, now_millis()).unwrap(),
        Default::default()
    );
    // Writes through B change nothing of A.
    assert!(is_not_found(s.update_bot(
        o,
        &bot_a.id,
        BotPatch {
            name: Some("x".into()),
            ..Default::default()
        }
    )));
    assert!(is_not_found(s.create_flow(
        o,
        &bot_a.id,
        NewFlow {
            name: "X".into(),
            ..Default::default()
        }
    )));
    assert!(is_not_found(s.update_flow(
        o,
        &bot_a.id,
        &flows_a[1].id,
        FlowPatch {
            content: Some("x".into()),
            ..Default::default()
        }
    )));
    assert!(is_not_found(s.delete_flow(o, &bot_a.id, &flows_a[1].id)));
    assert!(is_not_found(s.replace_flows(
        o,
        &bot_a.id,
        vec![NewFlow {
            name: "X".into(),
            ..Default::default()
        }],
        None,
        None
    )));
    assert!(is_not_found(s.create_version(
        o,
        &bot_a.id,
        v.snapshot.clone(),
        "t"
    )));
    assert!(is_not_found(s.set_live_version(o, &bot_a.id, None)));
    assert!(is_not_found(s.create_channel(
        o,
        &bot_a.id,
        NewChannel::default()
    )));
    assert!(is_not_found(s.update_channel(
        o,
        &ch_a.id,
        ChannelPatch {
            webhook_url: Some(Some("http://x".into())),
            ..Default::default()
        }
    )));
    assert!(is_not_found(s.rotate_channel(o, &ch_a.id)));
    assert!(is_not_found(s.delete_channel(o, &ch_a.id)));
    assert!(is_not_found(s.revoke_api_key(o, &key_a.id)));
    assert!(is_not_found(s.revoke_api_key(o, &key_a.prefix)));
    assert!(is_not_found(s.close_conversation(o, &conv)));
    assert!(is_not_found(s.update_conversation_meta(
        o,
        &conv,
        Some(json!(["t"])),
        None
    )));
    assert!(is_not_found(s.delete_bot(o, &bot_a.id)));
    // A turn write naming B's organization cannot touch A's conversation.
    let mut forged = turn(&b_client, &conv, false, "Eve");
    forged.client.organization_id = b.id.clone();
    assert!(is_not_found(s.commit_turn_blocking(forged)));

    // A's data is intact.
    assert_eq!(s.get_bot(&a.id, &bot_a.id).unwrap().name, "bot");
    assert_eq!(s.list_flows(&a.id, &bot_a.id).unwrap().len(), 2);
    assert!(s.channel_auth_by_key(&ch_a.api_key).unwrap().is_some());
    assert!(s.list_api_keys(&a.id).unwrap()[0].revoked_at.is_none());
    let c = s.get_conversation(&a.id, &conv).unwrap();
    assert_eq!(
        (c.status, c.step.as_str()),
        (ConversationStatus::Open, "start")
    );
    assert_eq!(
        s.memories(&client, now_millis()).unwrap()["name"],
        json!("Ada")
    );
    assert_eq!(s.list_messages(&a.id, &conv, None, 10).unwrap().len(), 2);
    assert_eq!(
        s.usage(&a.id, &bot_a.id, now_millis())
            .unwrap()
            .currentmonth
            .messages,
        2
    );
}

#[test]
fn migrations_are_idempotent_and_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = {
        let s = Store::open(dir.path(), Durability::Full).unwrap();
        s.create_org("A", true).unwrap();
        s.schema_version().unwrap()
    };
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    assert_eq!(s.schema_version().unwrap(), v1);
    assert_eq!(s.list_orgs().unwrap().len(), 1);
    assert_eq!(v1, store::MIGRATIONS.last().unwrap().0);
    // Every migration file is listed, in order, with unique versions.
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
    files.sort();
    let listed: Vec<String> = store::MIGRATIONS
        .iter()
        .map(|m| format!("{}.sql", m.1))
        .collect();
    assert_eq!(files, listed);
    assert!(store::MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn group_commit_batches_and_acknowledged_writes_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let (bot, _) = s.create_bot(&org.id, new_bot("bot")).unwrap();
    let (ch, _) = s
        .create_channel(&org.id, &bot.id, NewChannel::default())
        .unwrap();
    let (c0, j0) = s.writer_stats();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            let (org, bot, ch) = (org.id.clone(), bot.id.clone(), ch.id.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let client = ClientKey {
                        organization_id: org.clone(),
                        bot_id: bot.clone(),
                        channel_id: ch.clone(),
                        user_id: format!("u{t}-{i}"),
                    };
                    s.commit_turn_blocking(turn(&client, &new_id(), true, "x"))
                        .unwrap();
                    // Acknowledged = committed: another connection sees it at once.
                    let other = rusqlite::Connection::open(s.path()).unwrap();
                    let n: i64 = other
                        .query_row(
                            "SELECT COUNT(*) FROM conversations WHERE user_id = ?1",
                            [&client.user_id],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(n, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (c1, j1) = s.writer_stats();
    assert_eq!(j1 - j0, 400);
    assert!(
        c1 - c0 < 400,
        "expected group commits, got {} commits for 400 jobs",
        c1 - c0
    );
    drop(s);
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let convs = s
        .list_conversations(
            &org.id,
            &ConversationFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(convs.len(), 400);
}

#[test]
fn a_failing_job_does_not_spoil_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            let org = org.id.clone();
            std::thread::spawn(move || {
                // Even threads create bots, odd ones collide on a duplicate name.
                let name = if i % 2 == 0 {
                    format!("b{i}")
                } else {
                    "dup".to_string()
                };
                let r = s.create_bot(&org, new_bot(&name));
                (i, r.is_ok())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.1).count();
    assert_eq!(ok, 5, "{results:?}");
    assert_eq!(s.list_bots(&org.id).unwrap().len(), 5);
    // The failed creations left no orphan flows.
    let total_flows: usize = s
        .list_bots(&org.id)
        .unwrap()
        .iter()
        .map(|b| s.list_flows(&org.id, &b.id).unwrap().len())
        .sum();
    assert_eq!(total_flows, 10);
}

#[test]
fn secrets_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let (bot, _) = s.create_bot(&org.id, new_bot("bot")).unwrap();
    let (_, creds) = s
        .create_channel(&org.id, &bot.id, NewChannel::default())
        .unwrap();
    let (_, key) = s.create_api_key(&org.id, "k", true).unwrap();
    drop(s);
    let raw = std::fs::read(dir.path().join(store::DB_FILE)).unwrap();
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&creds.api_secret), "HMAC secret stored in clear");
    assert!(!contains(&key), "OCS key stored in clear");
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let auth = s.channel_auth_by_key(&creds.api_key).unwrap().unwrap();
    assert_eq!(auth.secret, creds.api_secret);
    let k = s.api_key_lookup(&key).unwrap().unwrap();
    assert!(k.read_only);
    // Rotation invalidates the old pair and moves the auth epoch.
    let e0 = s.auth_epoch().unwrap();
    let new = s.rotate_channel(&org.id, &creds.channel_id).unwrap();
    assert!(s.channel_auth_by_key(&creds.api_key).unwrap().is_none());
    assert_eq!(
        s.channel_auth_by_key(&new.api_key).unwrap().unwrap().secret,
        new.api_secret
    );
    s.revoke_api_key(&org.id, &k.prefix).unwrap();
    assert!(s.api_key_lookup(&key).unwrap().is_none());
    assert!(s.auth_epoch().unwrap() >= e0 + 2);
}

#[test]
fn flows_names_commands_and_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let (bot, flows) = s.create_bot(&org.id, new_bot("bot")).unwrap();
    assert_eq!(bot.default_flow_id.as_deref(), Some(flows[0].id.as_str()));
    assert_eq!(
        flows[1].commands,
        vec!["other".to_string(), "/other".into()]
    );
    // Case-insensitive uniqueness.
    assert!(matches!(
        s.create_flow(
            &org.id,
            &bot.id,
            NewFlow {
                name: "OTHER".into(),
                ..Default::default()
            }
        ),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.create_flow(
            &org.id,
            &bot.id,
            NewFlow {
                name: "9x".into(),
                ..Default::default()
            }
        ),
        Err(Error::Invalid(_))
    ));
    // Rename keeps the automatic command in step; lookup by name is case-insensitive.
    let f = s
        .update_flow(
            &org.id,
            &bot.id,
            "other",
            FlowPatch {
                name: Some("Second".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(f.commands, vec!["other".to_string(), "/second".into()]);
    assert!(matches!(
        s.delete_flow(&org.id, &bot.id, "default"),
        Err(Error::Conflict(_))
    ));
    s.delete_flow(&org.id, &bot.id, "second").unwrap();
    let rev = s.get_bot(&org.id, &bot.id).unwrap().rev;
    assert!(rev >= 2);
    let b = s
        .update_bot(
            &org.id,
            &bot.id,
            BotPatch {
                env: Some(json!({"A": "1"}).as_object().unwrap().clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(b.env["A"], json!("1"));
    assert!(b.rev > rev);
}

#[test]
fn expiry_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let (bot, _) = s.create_bot(&org.id, new_bot("bot")).unwrap();
    let (ch, _) = s
        .create_channel(&org.id, &bot.id, NewChannel::default())
        .unwrap();
    let client = ClientKey {
        organization_id: org.id.clone(),
        bot_id: bot.id.clone(),
        channel_id: ch.id.clone(),
        user_id: "u".into(),
    };
    let mut t = turn(&client, &new_id(), true, "x");
    t.expires_at = Some(now_millis() - 1);
    s.commit_turn_blocking(t).unwrap();
    let st = s.load_turn_state(&client, now_millis()).unwrap();
    assert!(st.expired && st.memories.is_empty());
    assert!(
        s.open_conversation(&client, now_millis())
            .unwrap()
            .is_none()
    );
    let backup = dir.path().join("copy.db");
    s.backup(&backup).unwrap();
    let n = s.sweep_expired(now_millis(), 100).unwrap();
    assert_eq!((n.conversations, n.messages, n.memories), (1, 2, 1));
    // The backup is a consistent, openable copy taken before the sweep.
    let c = rusqlite::Connection::open(&backup).unwrap();
    let convs: i64 = c
        .query_row("SELECT COUNT(*) FROM conversations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(convs, 1);
    assert!(matches!(s.backup(&backup), Err(Error::Conflict(_))));
}

/// The write set of a turn that read `read` (as the engine builds it): it continues the open
/// conversation the read found, or creates one (replacing any the read saw) as `status`.
fn turn_from(
    client: &ClientKey,
    read: &store::conversations::TurnState,
    continue_open: bool,
    status: ConversationStatus,
    text: &str,
) -> TurnWrite {
    let mut t = turn(client, &new_id(), true, text);
    t.participant_id = read.participant_id.clone();
    t.status = status;
    match (&read.conversation, continue_open) {
        (Some(conv), true) => {
            t.conversation = ConversationWrite::Update {
                id: conv.id.clone(),
                flow: "Default".into(),
                step: "ask".into(),
                rev: read.rev,
            };
        }
        (seen, _) => {
            if let ConversationWrite::Create { replaces, .. } = &mut t.conversation {
                *replaces = seen.as_ref().map(|c| (c.id.clone(), read.rev));
            }
        }
    }
    t
}

async fn read(s: &Store, client: &ClientKey) -> store::conversations::TurnState {
    s.read_turn(store::conversations::TurnRead {
        client: client.clone(),
        now: now_millis(),
        ocs_history_of: None,
    })
    .await
    .unwrap()
    .state
}

fn is_stale<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Stale(_)))
}

/// Two turns of one client that read the same state (as two nodes would): the first commit
/// wins, the second is refused with `Stale` and writes nothing, whichever way each would
/// change the conversation; a turn that reads again commits.
#[tokio::test]
async fn two_commits_from_one_read_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Durability::Normal).unwrap();
    let org = s.create_org("A", true).unwrap();
    let (bot, _) = s.create_bot(&org.id, new_bot("bot")).unwrap();
    let (ch, _) = s
        .create_channel(&org.id, &bot.id, NewChannel::default())
        .unwrap();
    let client = ClientKey {
        organization_id: org.id.clone(),
        bot_id: bot.id.clone(),
        channel_id: ch.id.clone(),
        user_id: "u".into(),
    };
    let commit = |w: TurnWrite| {
        s.commit_turn(store::conversations::TurnCommit {
            write: w,
            ocs: None,
        })
    };
    let open = ConversationStatus::Open;
    let messages = |s: &Store| {
        let convs = s
            .list_conversations(&org.id, &ConversationFilter::default())
            .unwrap();
        convs
            .iter()
            .map(|c| s.list_messages(&org.id, &c.id, None, 100).unwrap().len())
            .sum::<usize>()
    };

    // No conversation yet: two turns both open one; the second finds one opened meanwhile.
    let r0 = read(&s, &client).await;
    assert!(r0.conversation.is_none());
    commit(turn_from(&client, &r0, true, open, "a"))
        .await
        .unwrap();
    assert!(is_stale(
        commit(turn_from(&client, &r0, true, open, "b")).await
    ));
    // A one-shot turn (its conversation closes at once) from that read is refused too.
    assert!(is_stale(
        commit(turn_from(
            &client,
            &r0,
            true,
            ConversationStatus::Closed,
            "c"
        ))
        .await
    ));

    // Both continue the open conversation from one read.
    let r1 = read(&s, &client).await;
    let conv = r1.conversation.clone().unwrap();
    commit(turn_from(&client, &r1, true, open, "d"))
        .await
        .unwrap();
    let before = messages(&s);
    assert!(is_stale(
        commit(turn_from(&client, &r1, true, open, "e")).await
    ));
    // Nor may a turn from that read replace it (close_flows, an expired conversation).
    assert!(is_stale(
        commit(turn_from(&client, &r1, false, open, "f")).await
    ));
    assert_eq!(messages(&s), before, "a refused commit wrote nothing");
    assert_eq!(
        s.memories(&client, now_millis()).unwrap()["name"],
        json!("d")
    );

    // Both replace it from one read: one new conversation, not two.
    let r2 = read(&s, &client).await;
    assert!(r2.rev > r1.rev);
    commit(turn_from(&client, &r2, false, open, "g"))
        .await
        .unwrap();
    assert!(is_stale(
        commit(turn_from(&client, &r2, false, open, "h")).await
    ));
    let now_open = s.open_conversation(&client, now_millis()).unwrap().unwrap();
    assert_ne!(now_open.id, conv.id);
    assert_eq!(
        s.get_conversation(&org.id, &conv.id).unwrap().status,
        ConversationStatus::Closed
    );

    // A conversation closed through the API while a turn ran is not written open again.
    let r3 = read(&s, &client).await;
    s.close_conversation(&org.id, &now_open.id).unwrap();
    assert!(is_stale(
        commit(turn_from(&client, &r3, true, open, "i")).await
    ));
    // Read again: the turn starts a new conversation and commits.
    let r4 = read(&s, &client).await;
    assert!(r4.conversation.is_none());
    commit(turn_from(&client, &r4, true, open, "j"))
        .await
        .unwrap();
    assert_eq!(
        s.memories(&client, now_millis()).unwrap()["name"],
        json!("j")
    );
    let all = s
        .list_conversations(&org.id, &ConversationFilter::default())
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter()
            .filter(|c| c.status == ConversationStatus::Open)
            .count(),
        1
    );
}
