//! Conversation state of a client, the transcript, memories and participants: what one turn
//! reads ([`Store::read_turn`]) and the write set it commits ([`Store::commit_turn`], applied by
//! the writer in a group transaction).

use super::ids::{day_of, now_millis};
use super::{
    ClientKey, Conversation, ConversationFilter, ConversationStatus, Direction, Error, Participant,
    Result, Store, StoredMessage,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value as Json};

/// The JSON text of `v`, as `Display` writes it but without going through `fmt` (a third of
/// the cost on the turn path).
fn json_text(v: &Json) -> String {
    serde_json::to_string(v).expect("a JSON value always serializes")
}

const CONV_COLS: &str = "id, organization_id, bot_id, channel_id, user_id, participant_id, flow, \
                         step, status, hold, previous, metadata, version_id, tags, state, \
                         last_interaction_at, created_at, updated_at, ended_at, expires_at";

fn opt_json(r: &Row, i: usize) -> rusqlite::Result<Option<Json>> {
    let s: Option<String> = r.get(i)?;
    Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
}

fn conv_from_row(r: &Row) -> rusqlite::Result<Conversation> {
    let status: String = r.get(8)?;
    Ok(Conversation {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        channel_id: r.get(3)?,
        user_id: r.get(4)?,
        participant_id: r.get(5)?,
        flow: r.get(6)?,
        step: r.get(7)?,
        status: if status == "open" {
            ConversationStatus::Open
        } else {
            ConversationStatus::Closed
        },
        hold: opt_json(r, 9)?,
        previous: opt_json(r, 10)?,
        metadata: opt_json(r, 11)?.unwrap_or(Json::Null),
        version_id: r.get(12)?,
        tags: opt_json(r, 13)?.unwrap_or(Json::Array(vec![])),
        state: opt_json(r, 14)?.unwrap_or(Json::Object(Map::new())),
        last_interaction_at: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        ended_at: r.get(18)?,
        expires_at: r.get(19)?,
    })
}

fn message_from_row(r: &Row) -> rusqlite::Result<StoredMessage> {
    let dir: String = r.get(3)?;
    let payload: String = r.get(7)?;
    Ok(StoredMessage {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        turn_id: r.get(2)?,
        direction: if dir == "SEND" {
            Direction::Send
        } else {
            Direction::Receive
        },
        flow: r.get(4)?,
        step: r.get(5)?,
        content_type: r.get(6)?,
        payload: serde_json::from_str(&payload).unwrap_or(Json::Null),
        message_order: r.get(8)?,
        interaction_order: r.get(9)?,
        created_at: r.get(10)?,
    })
}

const MSG_COLS: &str = "id, conversation_id, turn_id, direction, flow, step, content_type, payload, \
                        message_order, interaction_order, created_at";

/// What a turn starts from.
#[derive(Debug, Clone, Default)]
pub struct TurnState {
    /// The client's open conversation, if any. `expired` tells that its TTL has passed: the
    /// engine treats it as closed (and closes it in its write set).
    pub conversation: Option<Conversation>,
    pub expired: bool,
    /// Unexpired memories of the client, key → value (memory format).
    pub memories: Map<String, Json>,
    /// The client's participant (`None` for a user never seen on this platform).
    pub participant_id: Option<String>,
}

/// How the conversation row changes at the end of a turn.
#[derive(Debug, Clone)]
pub enum ConversationWrite {
    /// Create a conversation (the client's other open ones, if any, are closed first).
    Create {
        id: String,
        flow: String,
        step: String,
        /// The conversation's `_metadata`, as JSON text.
        metadata: String,
        version_id: Option<String>,
        /// Channel kind: the participant's platform.
        platform: String,
    },
    /// Update an existing conversation.
    Update {
        id: String,
        flow: String,
        step: String,
    },
}

/// One message of the transcript to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub direction: Direction,
    pub flow: String,
    pub step: String,
    pub content_type: String,
    /// `{content_type, content}`.
    pub payload: Json,
    pub interaction_order: i64,
}

/// Everything one turn writes, committed atomically by the writer.
#[derive(Debug, Clone)]
pub struct TurnWrite {
    pub client: ClientKey,
    /// The client's participant when the turn's reads found one ([`TurnState`]); `None`: it
    /// is looked up, or created with a new conversation.
    pub participant_id: Option<String>,
    pub now: i64,
    pub turn_id: String,
    /// Close every open conversation of the client before anything else (`close_flows`).
    pub close_all_first: bool,
    pub conversation: ConversationWrite,
    /// Status at the end of the turn (`Closed` on `goto end` or a fatal error).
    pub status: ConversationStatus,
    /// The hold to keep (`None` deletes any stored hold).
    pub hold: Option<Json>,
    pub previous: Option<Json>,
    /// `forget`s, applied before the memory writes (`None` key list = forget all).
    pub forgets: Vec<Option<Vec<String>>>,
    /// Memory upserts, last value per key wins.
    pub memories: Vec<(String, Json)>,
    /// Transcript rows; skipped when `low_data` (usage still counts them).
    pub messages: Vec<NewMessage>,
    pub low_data: bool,
    /// Expiry of the rows this turn writes (data TTL).
    pub expires_at: Option<i64>,
    /// A queued broadcast this turn executes: marked done in the same transaction.
    pub broadcast_done: Option<String>,
    /// A connector's stored inbound event this turn runs: marked done, and the replies queued
    /// for delivery, in the same transaction (`store::plugins::inbound_turn_done`).
    pub inbound_done: Option<String>,
}

fn upsert_participant(
    c: &Connection,
    org: &str,
    platform: &str,
    identifier: &str,
    now: i64,
) -> Result<(String, bool)> {
    let id = super::ids::new_id();
    // Also says whether the row is new. A known participant (the insert did nothing) is read
    // by its identity. (No RETURNING: SQLite buffers RETURNING rows in a temporary table, a
    // cost on every new user's turn.)
    let inserted = c
        .prepare_cached(
            "INSERT INTO participants(id, organization_id, platform, identifier, created_at,
                updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(organization_id, platform, identifier) DO NOTHING",
        )?
        .execute(params![id, org, platform, identifier, now])?;
    if inserted == 1 {
        return Ok((id, true));
    }
    let id = c
        .prepare_cached(
            "SELECT id FROM participants WHERE organization_id = ?1 AND platform = ?2
             AND identifier = ?3",
        )?
        .query_row(params![org, platform, identifier], |r| r.get(0))?;
    Ok((id, false))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Closes the client's open conversation (found through its participant: `pid`, or looked
/// up when unknown).
fn close_client(c: &Connection, k: &ClientKey, pid: Option<&str>, now: i64) -> Result<()> {
    let pid = match pid {
        Some(p) => p.to_string(),
        None => match participant_of(c, k)? {
            Some(p) => p,
            None => return Ok(()),
        },
    };
    // Found through the open-conversation index, updated by primary key: an UPDATE whose
    // WHERE runs on an index of a column it changes (`status`, in the partial index's WHERE)
    // collects the rows in an ephemeral table first, built and freed at every call.
    c.prepare_cached(
        "UPDATE conversations SET status = 'closed', hold = NULL, ended_at = ?5, updated_at = ?5
         WHERE id = (SELECT id FROM conversations
             WHERE participant_id = ?1 AND bot_id = ?2 AND channel_id = ?3 AND user_id = ?6
             AND organization_id = ?4 AND status = 'open')",
    )?
    .execute(params![
        pid,
        k.bot_id,
        k.channel_id,
        k.organization_id,
        now,
        k.user_id
    ])?;
    Ok(())
}

/// The participant of a client: the organization's participant whose platform is the
/// channel's kind and whose identifier is the client's user id — except on a bot's OCS
/// channel (kind [`super::OCS_CHANNEL_KIND`], the literal `'ocs'` below), whose user ids are
/// OCS session ids: there it is the session's participant (one participant may hold several sessions, which
/// is why the open-conversation key also has the user id).
///
/// Per-client rows that a turn writes (the open-conversation index, daily usage) are keyed by
/// the participant's time-ordered id rather than by the user id: new users then append at
/// the tail of those B-trees, where the turns of one group commit share pages, instead of
/// dirtying one random page each. Only the participants' identity index stays keyed by the
/// user id.
fn participant_of(c: &Connection, k: &ClientKey) -> Result<Option<String>> {
    Ok(c.prepare_cached(
        "SELECT CASE ch.kind
            WHEN 'ocs' THEN (SELECT s.participant_id FROM ocs_sessions s
                WHERE s.id = ?2 AND s.organization_id = ch.organization_id)
            ELSE (SELECT p.id FROM participants p WHERE p.organization_id = ch.organization_id
                AND p.platform = ch.kind AND p.identifier = ?2)
         END
         FROM channels ch WHERE ch.id = ?1 AND ch.organization_id = ?3",
    )?
    .query_row(params![k.channel_id, k.user_id, k.organization_id], |r| {
        r.get::<_, Option<String>>(0)
    })
    .optional()?
    .flatten())
}

/// Apply one turn's write set (inside the writer's transaction).
pub(crate) fn apply_turn(c: &Connection, w: &TurnWrite) -> Result<()> {
    let k = &w.client;
    let org = k.organization_id.as_str();
    let now = w.now;
    if w.close_all_first {
        close_client(c, k, w.participant_id.as_deref(), now)?;
    }
    let status = match w.status {
        ConversationStatus::Open => "open",
        ConversationStatus::Closed => "closed",
    };
    let ended_at = (w.status == ConversationStatus::Closed).then_some(now);
    let hold = w.hold.as_ref().map(json_text);
    let previous = w.previous.as_ref().map(json_text);
    let mut participant = w.participant_id.clone();
    let conv_id = match &w.conversation {
        ConversationWrite::Create {
            id,
            flow,
            step,
            metadata,
            version_id,
            platform,
        } => {
            // The client's other open conversation (if any) closes first. An open conversation
            // is inserted optimistically: the partial unique index on open conversations
            // refuses it only when one is still open, and then it is closed and the insert
            // retried — one statement instead of two on the usual path.
            let open = w.status == ConversationStatus::Open;
            let (pid, new_participant) = match &w.participant_id {
                Some(p) => (p.clone(), false),
                None => upsert_participant(c, org, platform, &k.user_id, now)?,
            };
            // A participant created just now has no conversation to close.
            if !open && !new_participant {
                close_client(c, k, Some(&pid), now)?;
            }
            participant = Some(pid);
            let participant = participant.as_deref();
            let insert = || -> rusqlite::Result<usize> {
                c.prepare_cached(
                    "INSERT INTO conversations(id, organization_id, bot_id, channel_id, user_id,
                        participant_id, flow, step, status, hold, previous, metadata,
                        version_id, last_interaction_at, created_at, updated_at, ended_at,
                        expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14,
                        ?14, ?15, ?16)",
                )?
                .execute(params![
                    id,
                    org,
                    k.bot_id,
                    k.channel_id,
                    k.user_id,
                    participant,
                    flow,
                    step,
                    status,
                    hold,
                    previous,
                    metadata,
                    version_id,
                    now,
                    ended_at,
                    w.expires_at
                ])
            };
            match insert() {
                Err(e) if open && is_unique_violation(&e) => {
                    close_client(c, k, participant, now)?;
                    insert()?;
                }
                r => {
                    r?;
                }
            }
            id
        }
        ConversationWrite::Update { id, flow, step } => {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET flow = ?3, step = ?4, status = ?5, hold = ?6,
                        previous = ?7, last_interaction_at = ?8, updated_at = ?8,
                        ended_at = ?9, expires_at = COALESCE(?10, expires_at)
                     WHERE id = ?1 AND organization_id = ?2",
                )?
                .execute(params![
                    id,
                    org,
                    flow,
                    step,
                    status,
                    hold,
                    previous,
                    now,
                    ended_at,
                    w.expires_at
                ])?;
            if n == 0 {
                return Err(Error::NotFound(format!("conversation `{id}` not found")));
            }
            id
        }
    };
    for f in &w.forgets {
        match f {
            None => {
                c.prepare_cached(
                    "DELETE FROM memories WHERE bot_id = ?1 AND channel_id = ?2 AND user_id = ?3
                     AND organization_id = ?4",
                )?
                .execute(params![k.bot_id, k.channel_id, k.user_id, org])?;
            }
            Some(keys) => {
                let mut st = c.prepare_cached(
                    "DELETE FROM memories WHERE bot_id = ?1 AND channel_id = ?2 AND user_id = ?3
                     AND organization_id = ?4 AND key = ?5",
                )?;
                for key in keys {
                    st.execute(params![k.bot_id, k.channel_id, k.user_id, org, key])?;
                }
            }
        }
    }
    if !w.memories.is_empty() {
        let mut st = c.prepare_cached(
            "INSERT INTO memories(organization_id, bot_id, channel_id, user_id, key, value,
                                  created_at, updated_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
             ON CONFLICT(bot_id, channel_id, user_id, key) DO UPDATE SET
                value = excluded.value, updated_at = excluded.updated_at,
                expires_at = excluded.expires_at",
        )?;
        for (key, value) in &w.memories {
            st.execute(params![
                org,
                k.bot_id,
                k.channel_id,
                k.user_id,
                key,
                json_text(value),
                now,
                w.expires_at
            ])?;
        }
    }
    if !w.low_data && !w.messages.is_empty() {
        insert_messages(c, w, conv_id)?;
    }
    if !w.messages.is_empty() {
        let client = match participant {
            Some(p) => p,
            None => usage_client(c, k, conv_id)?,
        };
        c.prepare_cached(
            "INSERT INTO usage_daily(organization_id, bot_id, day, channel_id, client, messages)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(bot_id, day, channel_id, client) DO UPDATE SET
                messages = messages + excluded.messages",
        )?
        .execute(params![
            org,
            k.bot_id,
            day_of(now),
            k.channel_id,
            client,
            w.messages.len() as i64
        ])?;
    }
    if let Some(b) = &w.broadcast_done {
        c.prepare_cached(
            "UPDATE broadcasts SET status = 'done', attempts = attempts + 1, updated_at = ?3
             WHERE id = ?1 AND organization_id = ?2",
        )?
        .execute(params![b, org, now])?;
    }
    if let Some(ev) = &w.inbound_done {
        super::plugins::inbound_turn_done(c, w, ev)?;
    }
    Ok(())
}

/// The `usage_daily.client` of a turn that did not know its participant: the conversation's
/// participant, or `user:<user id>` for a conversation that has none (see migration 0055).
fn usage_client(c: &Connection, k: &ClientKey, conv_id: &str) -> Result<String> {
    let pid: Option<String> = c
        .prepare_cached("SELECT participant_id FROM conversations WHERE id = ?1")?
        .query_row([conv_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(pid.unwrap_or_else(|| format!("user:{}", k.user_id)))
}

/// One transcript row per statement, on purpose: a multi-row INSERT into a table with a
/// foreign key may abort half-way, so SQLite gives it a statement journal inside the group
/// transaction, which copies every page it touches (measured: ~5% of the writer's time).
fn insert_messages(c: &Connection, w: &TurnWrite, conv_id: &str) -> Result<()> {
    let k = &w.client;
    let mut st = c.prepare_cached(
        "INSERT INTO messages(organization_id, conversation_id, bot_id, turn_id, direction,
            flow, step, content_type, payload, message_order, interaction_order, created_at,
            expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for (order, m) in w.messages.iter().enumerate() {
        st.execute(params![
            k.organization_id,
            conv_id,
            k.bot_id,
            w.turn_id,
            m.direction.as_str(),
            m.flow,
            m.step,
            m.content_type,
            json_text(&m.payload),
            order as i64,
            m.interaction_order,
            w.now,
            w.expires_at
        ])?;
    }
    Ok(())
}

fn open_conversation_on(c: &Connection, k: &ClientKey) -> Result<Option<Conversation>> {
    match participant_of(c, k)? {
        Some(pid) => open_conversation_of(c, k, &pid),
        None => Ok(None),
    }
}

/// The open conversation of participant `pid` with the client's bot on its channel.
fn open_conversation_of(c: &Connection, k: &ClientKey, pid: &str) -> Result<Option<Conversation>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {CONV_COLS} FROM conversations WHERE participant_id = ?1 AND bot_id = ?2
         AND channel_id = ?3 AND user_id = ?5 AND organization_id = ?4 AND status = 'open'"
    ))?
    .query_row(
        params![pid, k.bot_id, k.channel_id, k.organization_id, k.user_id],
        conv_from_row,
    )
    .optional()?)
}

/// What a turn reads before it runs ([`Store::read_turn`]): plain data.
#[derive(Debug, Clone)]
pub struct TurnRead {
    pub client: ClientKey,
    pub now: i64,
    /// An OCS session whose recent transcript the turn's `_metadata.history` shows (read
    /// only when the bot's flows can see `_metadata`).
    pub ocs_history_of: Option<String>,
}

/// What a turn reads, with the key of the bot's code at the time of the read (so the engine
/// can tell a stale compiled bot) and, when asked, an OCS session's recent history.
#[derive(Debug, Clone, Default)]
pub struct TurnRows {
    pub state: TurnState,
    /// `(live_version_id, rev)` of the bot.
    pub code_key: (Option<String>, i64),
    /// `(role, content)` of the session's last messages, in time order.
    pub ocs_history: Vec<(String, String)>,
}

/// Everything one turn commits, in one transaction: the conversation's write set and, for an
/// OCS turn, its transcript, write-back and task result ([`super::ocs::OcsTurnEnd`]).
#[derive(Debug, Clone)]
pub struct TurnCommit {
    pub write: TurnWrite,
    pub ocs: Option<super::ocs::OcsTurnEnd>,
}

impl Store {
    /// A turn's reads, as a job of the writer: SQL only, on the writer's warm connection
    /// (a read connection's page cache is dropped on every commit), consistent with the
    /// writes committed before it. The engine runs the interpreter elsewhere, then commits
    /// with [`Store::commit_turn`].
    pub async fn read_turn(&self, read: TurnRead) -> Result<TurnRows> {
        self.write_async_bare_lite(move |c| {
            let k = &read.client;
            let code_key = super::bots::bot_code_key_on(
                &super::db::Db::Lite(c),
                &k.organization_id,
                &k.bot_id,
            )?;
            let state = turn_state_on(c, k, read.now)?;
            let ocs_history = match &read.ocs_history_of {
                Some(session) => super::ocs::recent_history_of(c, session)?,
                None => Vec::new(),
            };
            Ok(TurnRows {
                state,
                code_key,
                ocs_history,
            })
        })
        .await
    }

    /// Commit one turn (a bare writer job: every check comes before the first write, see
    /// [`Store::write_async_bare`]). Returns the OCS messages it stored (empty otherwise).
    pub async fn commit_turn(&self, commit: TurnCommit) -> Result<Vec<super::ocs::OcsMessage>> {
        self.write_async_bare_lite(move |c| {
            apply_turn(c, &commit.write)?;
            match commit.ocs {
                Some(end) => super::ocs::finish_ocs_turn_on(c, end),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    /// The client's open conversation and its memories, in one read snapshot of the read pool
    /// (tests and tools; a turn reads through [`Store::read_turn`]).
    pub fn load_turn_state(&self, client: &ClientKey, now: i64) -> Result<TurnState> {
        self.read_lite(|c| load_turn_state_on(c, client, now))
    }

    /// Commit one turn's writes, blocking (tests, CLI; the engine commits through
    /// [`Store::commit_turn`]).
    pub fn commit_turn_blocking(&self, w: TurnWrite) -> Result<()> {
        self.write_lite(move |c| apply_turn(c, &w))
    }

    /// The client's open, unexpired conversation (studio-api §2.13).
    pub fn open_conversation(&self, client: &ClientKey, now: i64) -> Result<Option<Conversation>> {
        self.read_lite(|c| {
            Ok(open_conversation_on(c, client)?
                .filter(|conv| conv.expires_at.is_none_or(|e| e > now)))
        })
    }

    pub fn get_conversation(&self, org: &str, id: &str) -> Result<Conversation> {
        self.read_lite(|c| {
            c.prepare_cached(&format!(
                "SELECT {CONV_COLS} FROM conversations WHERE id = ?1 AND organization_id = ?2"
            ))?
            .query_row([id, org], conv_from_row)
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("conversation `{id}` not found")))
        })
    }

    /// Conversations of an organization, newest first.
    pub fn list_conversations(
        &self,
        org: &str,
        f: &ConversationFilter,
    ) -> Result<Vec<Conversation>> {
        let status = f.status.map(|s| match s {
            ConversationStatus::Open => "open",
            ConversationStatus::Closed => "closed",
        });
        let limit = if f.limit == 0 { 50 } else { f.limit.min(1000) };
        self.read_lite(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONV_COLS} FROM conversations WHERE organization_id = ?1
                 AND (?2 IS NULL OR bot_id = ?2) AND (?3 IS NULL OR channel_id = ?3)
                 AND (?4 IS NULL OR user_id = ?4) AND (?5 IS NULL OR status = ?5)
                 AND (?6 IS NULL OR created_at >= ?6) AND (?7 IS NULL OR created_at < ?7)
                 AND (?8 IS NULL OR id < ?8)
                 ORDER BY id DESC LIMIT ?9"
            ))?;
            let rows = st
                .query_map(
                    params![
                        org,
                        f.bot_id,
                        f.channel_id,
                        f.user_id,
                        status,
                        f.since,
                        f.until,
                        f.before_id,
                        limit
                    ],
                    conv_from_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Close a conversation (and drop its hold). Closing a closed one is fine.
    pub fn close_conversation(&self, org: &str, id: &str) -> Result<Conversation> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write_lite(move |c| {
            let now = now_millis();
            let n = c.execute(
                "UPDATE conversations SET status = 'closed', hold = NULL,
                    ended_at = COALESCE(ended_at, ?3), updated_at = ?3
                 WHERE id = ?1 AND organization_id = ?2",
                params![id, org, now],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("conversation `{id}` not found")));
            }
            Ok(c.query_row(
                &format!("SELECT {CONV_COLS} FROM conversations WHERE id = ?1"),
                [&id],
                conv_from_row,
            )?)
        })
    }

    /// Set OCS session tags and/or state of a conversation.
    pub fn update_conversation_meta(
        &self,
        org: &str,
        id: &str,
        tags: Option<Json>,
        state: Option<Json>,
    ) -> Result<Conversation> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write_lite(move |c| {
            let n = c.execute(
                "UPDATE conversations SET tags = COALESCE(?3, tags), state = COALESCE(?4, state),
                    updated_at = ?5 WHERE id = ?1 AND organization_id = ?2",
                params![
                    id,
                    org,
                    tags.map(|t| t.to_string()),
                    state.map(|s| s.to_string()),
                    now_millis()
                ],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("conversation `{id}` not found")));
            }
            Ok(c.query_row(
                &format!("SELECT {CONV_COLS} FROM conversations WHERE id = ?1"),
                [&id],
                conv_from_row,
            )?)
        })
    }

    /// Transcript of a conversation in order; `after_id` for paging/polling.
    pub fn list_messages(
        &self,
        org: &str,
        conversation: &str,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>> {
        let limit = if limit == 0 { 100 } else { limit.min(10_000) };
        self.read_lite(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE conversation_id = ?1 AND organization_id = ?2
                 AND id > ?3 ORDER BY id LIMIT ?4"
            ))?;
            let rows = st
                .query_map(
                    params![conversation, org, after_id.unwrap_or(0), limit],
                    message_from_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Unexpired memories of a client.
    pub fn memories(&self, client: &ClientKey, now: i64) -> Result<Map<String, Json>> {
        self.read_lite(|c| load_memories_on(c, client, now))
    }

    pub fn list_participants(&self, org: &str, limit: u32) -> Result<Vec<Participant>> {
        self.read_lite(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, organization_id, platform, identifier, name, data, created_at, updated_at
                 FROM participants WHERE organization_id = ?1 ORDER BY created_at DESC LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![org, if limit == 0 { 100 } else { limit }], |r| {
                    let data: String = r.get(5)?;
                    Ok(Participant {
                        id: r.get(0)?,
                        organization_id: r.get(1)?,
                        platform: r.get(2)?,
                        identifier: r.get(3)?,
                        name: r.get(4)?,
                        data: serde_json::from_str(&data).unwrap_or_default(),
                        created_at: r.get(6)?,
                        updated_at: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }
}

fn load_memories_on(c: &Connection, k: &ClientKey, now: i64) -> Result<Map<String, Json>> {
    let mut st = c.prepare_cached(
        "SELECT key, value FROM memories WHERE bot_id = ?1 AND channel_id = ?2 AND user_id = ?3
         AND organization_id = ?4 AND (expires_at IS NULL OR expires_at > ?5)",
    )?;
    let mut rows = st.query(params![
        k.bot_id,
        k.channel_id,
        k.user_id,
        k.organization_id,
        now
    ])?;
    let mut out = Map::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(0)?;
        let v: String = r.get(1)?;
        out.insert(key, serde_json::from_str(&v)?);
    }
    Ok(out)
}

pub(crate) fn load_turn_state_on(c: &Connection, k: &ClientKey, now: i64) -> Result<TurnState> {
    let tx = c.unchecked_transaction()?;
    let state = turn_state_on(&tx, k, now)?;
    tx.finish()?;
    Ok(state)
}

/// The reads of a turn, without a transaction of their own (the caller provides one).
fn turn_state_on(c: &Connection, k: &ClientKey, now: i64) -> Result<TurnState> {
    let participant_id = participant_of(c, k)?;
    let conversation = match &participant_id {
        Some(pid) => open_conversation_of(c, k, pid)?,
        None => None,
    };
    let expired = conversation
        .as_ref()
        .and_then(|c| c.expires_at)
        .is_some_and(|e| e <= now);
    // Memories are only written by turns, and a turn's write creates the client's participant
    // first: no participant, no memories (a new user's turn skips the read).
    let memories = if participant_id.is_some() {
        load_memories_on(c, k, now)?
    } else {
        Map::new()
    };
    Ok(TurnState {
        conversation,
        expired,
        memories,
        participant_id,
    })
}
