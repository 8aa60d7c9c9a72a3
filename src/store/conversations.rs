//! Conversation state of a client, the transcript, memories and participants: what one turn
//! reads ([`Store::read_turn`]) and the write set it commits ([`Store::commit_turn`], applied by
//! the writer in a group transaction).
//!
//! Turns of one conversation never interleave, whichever nodes run them: the read returns the
//! conversation's version (`conversations.rev`, [`TurnState::rev`]), every committed turn bumps
//! it, and a commit names the version its read saw ([`ConversationWrite`]). The check is folded
//! into the statement that writes the conversation (`... WHERE rev = ?` and the changed-row
//! count), so it costs no statement of its own; a commit whose conversation moved, or whose
//! client got an open conversation meanwhile, writes nothing and fails with
//! [`Error::Stale`] (the engine runs the turn again from a new read). On one SQLite node the
//! engine's per-client locks already serialize a client's turns, so this only fires there
//! when a conversation is closed through the API while a turn runs.
//!
//! What the check does not order: two turns of one client on two nodes that both find no open
//! conversation and both end theirs at once (one-shot flows). Each commits its own closed
//! conversation (no conversation interleaves), but their memory writes are last-writer-wins:
//! the client has no row of its own to carry a version.

use super::db::{Db, OptionalExtension, Row, params};
use super::ids::{day_of, now_millis};
use super::{
    ClientKey, Conversation, ConversationFilter, ConversationStatus, Direction, Error, Participant,
    Result, Store, StoredMessage,
};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// The JSON text of `v`, as `Display` writes it but without going through `fmt` (a third of
/// the cost on the turn path).
fn json_text(v: &Json) -> String {
    serde_json::to_string(v).expect("a JSON value always serializes")
}

const CONV_COLS: &str = "id, organization_id, bot_id, channel_id, user_id, participant_id, flow, \
                         step, status, hold, previous, metadata, version_id, tags, state, \
                         last_interaction_at, created_at, updated_at, ended_at, expires_at";

fn opt_json(r: &Row, i: usize) -> Result<Option<Json>> {
    let s: Option<String> = r.get(i)?;
    Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
}

fn conv_from_row(r: &Row) -> Result<Conversation> {
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

fn message_from_row(r: &Row) -> Result<StoredMessage> {
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
    /// The version (`conversations.rev`) of `conversation` at the read (0 without one): the
    /// commit that updates or replaces it names this version.
    pub rev: i64,
    /// Unexpired memories of the client, key → value (memory format).
    pub memories: Map<String, Json>,
    /// The client's participant (`None` for a user never seen on this platform).
    pub participant_id: Option<String>,
    /// The client's version (`client_revs.rev`, 0 for none) on a shared (PostgreSQL) store;
    /// 0 on SQLite, whose one server serializes a client's turns itself.
    pub client_rev: i64,
}

/// How the conversation row changes at the end of a turn. Either names what the turn's read
/// saw of the client's open conversation; the commit fails with [`Error::Stale`] and writes
/// nothing when that no longer holds.
#[derive(Debug, Clone)]
pub enum ConversationWrite {
    /// Create a conversation.
    Create {
        id: String,
        flow: String,
        step: String,
        /// The conversation's `_metadata`, as JSON text.
        metadata: String,
        version_id: Option<String>,
        /// Channel kind: the participant's platform.
        platform: String,
        /// The client's open conversation the turn's read found, `(id, rev)` (expired,
        /// closed by `close_flows`, or whose flow is gone): closed first, if still at that
        /// version. `None`: the read found none, and none may have been opened since.
        replaces: Option<(String, i64)>,
    },
    /// Update an existing conversation.
    Update {
        id: String,
        flow: String,
        step: String,
        /// The conversation's version at the turn's read ([`TurnState::rev`]).
        rev: i64,
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
    pub conversation: ConversationWrite,
    /// Status at the end of the turn (`Closed` on `goto end` or a fatal error).
    pub status: ConversationStatus,
    /// The hold to keep (`None` deletes any stored hold).
    pub hold: Option<Json>,
    pub previous: Option<Json>,
    /// `forget`s, applied before the memory writes (`None` key list = forget all).
    pub forgets: Vec<Option<Vec<String>>>,
    /// Memory upserts, last value per key wins (written in key order, one row per key).
    pub memories: Vec<(String, Json)>,
    /// Transcript rows; skipped when `low_data` (usage still counts them).
    pub messages: Vec<NewMessage>,
    pub low_data: bool,
    /// Expiry of the rows this turn writes (data TTL).
    pub expires_at: Option<i64>,
    /// A queued broadcast this turn executes: marked done in the same transaction; the commit
    /// is refused (`Conflict`) when it is no longer pending (run by another worker).
    pub broadcast_done: Option<String>,
    /// A connector's stored inbound event this turn runs: marked done, and the replies queued
    /// for delivery, in the same transaction (`store::plugins::inbound_turn_done`).
    pub inbound_done: Option<String>,
    /// The client's version the turn read ([`TurnState::client_rev`]): on PostgreSQL the
    /// commit bumps it and is `Stale` when another turn of the client committed since.
    pub client_rev: i64,
}

fn upsert_participant(
    c: &Db,
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
fn participant_of(c: &Db, k: &ClientKey) -> Result<Option<String>> {
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
        r.get::<Option<String>>(0)
    })
    .optional()?
    .flatten())
}

/// The error of a commit whose read is out of date.
fn stale(what: &str) -> Error {
    Error::Stale(format!(
        "{what} since the turn read it (another turn of this client committed first)"
    ))
}

/// Apply one turn's write set (inside the writer's transaction). The checks that can refuse
/// the commit (a broadcast no longer pending, `Stale`, `NotFound`) are folded into the first
/// writes or come before them, so a refused commit has usually written nothing. Where one
/// fails after an earlier write (a broadcast turn whose conversation moved; an open
/// conversation appearing while the one the read saw was still open; an inbound event handled
/// twice, see `plugins::inbound_turn_done`) the job fails and the transaction's writes go
/// with it (see `Store::write_async_bare`): the write set is all or nothing. On a single
/// SQLite node these are rare (the engine's per-client locks order a client's turns).
pub(crate) fn apply_turn(c: &Db, w: &TurnWrite) -> Result<()> {
    let k = &w.client;
    let org = k.organization_id.as_str();
    let now = w.now;
    if c.is_pg() {
        // Checked first, so a stale turn writes nothing: the client's version moves from the
        // one this turn read, or the turn lost the race to another node's turn of the client
        // (the row is locked until this transaction ends, so two commits cannot both pass).
        let moved = c
            .query_row(
                "INSERT INTO client_revs(organization_id, bot_id, channel_id, user_id, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5 + 1)
                 ON CONFLICT (organization_id, bot_id, channel_id, user_id)
                 DO UPDATE SET rev = client_revs.rev + 1 WHERE client_revs.rev = ?5
                 RETURNING rev",
                params![
                    k.organization_id,
                    k.bot_id,
                    k.channel_id,
                    k.user_id,
                    w.client_rev
                ],
                |_| Ok(()),
            )
            .optional()?
            .is_none();
        if moved {
            return Err(Error::Stale(
                "another turn of this client committed since this turn's read".into(),
            ));
        }
    }
    if let Some(b) = &w.broadcast_done {
        // Exactly once across workers and nodes: only the turn that finds it pending commits.
        let n = c
            .prepare_cached(
                "UPDATE broadcasts SET status = 'done', attempts = attempts + 1,
                    updated_at = ?3, lease_until = NULL
                 WHERE id = ?1 AND organization_id = ?2 AND status = 'pending'",
            )?
            .execute(params![b, org, now])?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "broadcast `{b}` is not pending (already run)"
            )));
        }
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
            replaces,
        } => {
            let open = w.status == ConversationStatus::Open;
            if let Some((old, rev)) = replaces {
                let n = c
                    .prepare_cached(
                        "UPDATE conversations SET status = 'closed', hold = NULL, ended_at = ?3,
                            updated_at = ?3, rev = rev + 1
                         WHERE id = ?1 AND organization_id = ?2 AND rev = ?4 AND status = 'open'",
                    )?
                    .execute(params![old, org, now, rev])?;
                if n == 0 {
                    return Err(stale("the conversation changed"));
                }
            }
            let (pid, new_participant) = match &w.participant_id {
                Some(p) => (p.clone(), false),
                None => upsert_participant(c, org, platform, &k.user_id, now)?,
            };
            // An open conversation opened since the read is refused below by the unique index
            // on open conversations; a closed one does not meet that index, so it looks
            // first (instead of the index). A participant created just now has none.
            if !open
                && replaces.is_none()
                && !new_participant
                && open_conversation_exists(c, k, &pid)?
            {
                return Err(stale("a conversation was opened"));
            }
            participant = Some(pid);
            let inserted = c
                .prepare_cached(
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
                ]);
            match inserted {
                Err(Error::Conflict(_)) if open => {
                    return Err(stale("a conversation was opened"));
                }
                r => {
                    r?;
                }
            }
            id
        }
        ConversationWrite::Update {
            id,
            flow,
            step,
            rev,
        } => {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET flow = ?3, step = ?4, status = ?5, hold = ?6,
                        previous = ?7, last_interaction_at = ?8, updated_at = ?8,
                        ended_at = ?9, expires_at = COALESCE(?10, expires_at), rev = rev + 1
                     WHERE id = ?1 AND organization_id = ?2 AND rev = ?11",
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
                    w.expires_at,
                    rev
                ])?;
            if n == 0 {
                // Only on the failure path: gone (or another organization's), or moved on.
                let exists = c
                    .prepare_cached(
                        "SELECT 1 FROM conversations WHERE id = ?1 AND organization_id = ?2",
                    )?
                    .exists([id, org])?;
                return Err(if exists {
                    stale("the conversation changed")
                } else {
                    Error::NotFound(format!("conversation `{id}` not found"))
                });
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
        // The last value of each key, in key order: concurrent commits on PostgreSQL then
        // take the rows' locks in one order.
        let latest: BTreeMap<&str, &Json> =
            w.memories.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut st = c.prepare_cached(
            "INSERT INTO memories(organization_id, bot_id, channel_id, user_id, key, value,
                                  created_at, updated_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
             ON CONFLICT(bot_id, channel_id, user_id, key) DO UPDATE SET
                value = excluded.value, updated_at = excluded.updated_at,
                expires_at = excluded.expires_at",
        )?;
        for (key, value) in latest {
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
                messages = usage_daily.messages + excluded.messages",
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
    if let Some(ev) = &w.inbound_done {
        super::plugins::inbound_turn_done(c, w, ev)?;
    }
    Ok(())
}

/// The `usage_daily.client` of a turn that did not know its participant: the conversation's
/// participant, or `user:<user id>` for a conversation that has none (see migration 0055).
fn usage_client(c: &Db, k: &ClientKey, conv_id: &str) -> Result<String> {
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
fn insert_messages(c: &Db, w: &TurnWrite, conv_id: &str) -> Result<()> {
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

fn open_conversation_on(c: &Db, k: &ClientKey) -> Result<Option<Conversation>> {
    match participant_of(c, k)? {
        Some(pid) => Ok(open_conversation_of(c, k, &pid)?.map(|(conv, _)| conv)),
        None => Ok(None),
    }
}

/// The open conversation of participant `pid` with the client's bot on its channel, and its
/// version.
fn open_conversation_of(c: &Db, k: &ClientKey, pid: &str) -> Result<Option<(Conversation, i64)>> {
    c.prepare_cached(&format!(
        "SELECT {CONV_COLS}, rev FROM conversations WHERE participant_id = ?1 AND bot_id = ?2
         AND channel_id = ?3 AND user_id = ?5 AND organization_id = ?4 AND status = 'open'"
    ))?
    .query_row(
        params![pid, k.bot_id, k.channel_id, k.organization_id, k.user_id],
        |r| Ok((conv_from_row(r)?, r.get(20)?)),
    )
    .optional()
}

/// Whether participant `pid` has an open conversation with the client's bot on its channel.
fn open_conversation_exists(c: &Db, k: &ClientKey, pid: &str) -> Result<bool> {
    c.prepare_cached(
        "SELECT 1 FROM conversations WHERE participant_id = ?1 AND bot_id = ?2
         AND channel_id = ?3 AND user_id = ?5 AND organization_id = ?4 AND status = 'open'",
    )?
    .exists(params![
        pid,
        k.bot_id,
        k.channel_id,
        k.organization_id,
        k.user_id
    ])
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

/// The columns [`participant_from_row`] reads, in order.
pub(super) const PARTICIPANT_COLS: &str =
    "id, organization_id, platform, identifier, name, data, created_at, updated_at";

pub(super) fn participant_from_row(r: &Row) -> Result<Participant> {
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
}

impl Store {
    /// A turn's reads (a read job: on SQLite the writer's warm connection — a read
    /// connection's page cache is dropped on every commit —, consistent with the writes
    /// committed before it; on PostgreSQL a pooled connection without BEGIN/COMMIT, whose
    /// reads the commit's `rev` check covers). The engine runs the interpreter elsewhere,
    /// then commits with [`Store::commit_turn`].
    pub async fn read_turn(&self, read: TurnRead) -> Result<TurnRows> {
        self.read_async(move |c| {
            let k = &read.client;
            let code_key = super::bots::bot_code_key_on(c, &k.organization_id, &k.bot_id)?;
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
    /// `Stale` when the client's conversation moved since the turn's read (see the module
    /// doc): nothing is written, and the turn may run again from a new read.
    pub async fn commit_turn(&self, commit: TurnCommit) -> Result<Vec<super::ocs::OcsMessage>> {
        self.write_async_bare(move |c| {
            apply_turn(c, &commit.write)?;
            match commit.ocs {
                Some(end) => super::ocs::finish_ocs_turn_on(c, end),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    /// The client's open conversation and its memories, on a read connection (tests and
    /// tools; a turn reads through [`Store::read_turn`], whose version check covers any commit
    /// between its statements).
    pub fn load_turn_state(&self, client: &ClientKey, now: i64) -> Result<TurnState> {
        self.read(|c| turn_state_on(c, client, now))
    }

    /// Commit one turn's writes, blocking (tests, CLI; the engine commits through
    /// [`Store::commit_turn`]).
    pub fn commit_turn_blocking(&self, w: TurnWrite) -> Result<()> {
        self.write(move |c| apply_turn(c, &w))
    }

    /// The client's open, unexpired conversation (studio-api §2.13).
    pub fn open_conversation(&self, client: &ClientKey, now: i64) -> Result<Option<Conversation>> {
        self.read(|c| {
            Ok(open_conversation_on(c, client)?
                .filter(|conv| conv.expires_at.is_none_or(|e| e > now)))
        })
    }

    pub fn get_conversation(&self, org: &str, id: &str) -> Result<Conversation> {
        self.read(|c| {
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
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONV_COLS} FROM conversations WHERE organization_id = ?1
                 AND (CAST(?2 AS TEXT) IS NULL OR bot_id = ?2)
                 AND (CAST(?3 AS TEXT) IS NULL OR channel_id = ?3)
                 AND (CAST(?4 AS TEXT) IS NULL OR user_id = ?4)
                 AND (CAST(?5 AS TEXT) IS NULL OR status = ?5)
                 AND (CAST(?6 AS BIGINT) IS NULL OR created_at >= ?6)
                 AND (CAST(?7 AS BIGINT) IS NULL OR created_at < ?7)
                 AND (CAST(?8 AS TEXT) IS NULL OR id < ?8)
                 ORDER BY id DESC LIMIT ?9"
            ))?;
            st.query_map(
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
            )
        })
    }

    /// Close a conversation (and drop its hold). Closing a closed one is fine. A turn of the
    /// conversation running meanwhile then finds it moved (its commit is `Stale`) and runs
    /// again from the closed state, instead of writing it open again.
    pub fn close_conversation(&self, org: &str, id: &str) -> Result<Conversation> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |c| {
            let now = now_millis();
            let n = c.execute(
                "UPDATE conversations SET status = 'closed', hold = NULL,
                    ended_at = COALESCE(ended_at, ?3), updated_at = ?3, rev = rev + 1
                 WHERE id = ?1 AND organization_id = ?2",
                params![id, org, now],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("conversation `{id}` not found")));
            }
            c.query_row(
                &format!("SELECT {CONV_COLS} FROM conversations WHERE id = ?1"),
                [&id],
                conv_from_row,
            )
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
        self.write(move |c| {
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
            c.query_row(
                &format!("SELECT {CONV_COLS} FROM conversations WHERE id = ?1"),
                [&id],
                conv_from_row,
            )
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
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE conversation_id = ?1 AND organization_id = ?2
                 AND id > ?3 ORDER BY id LIMIT ?4"
            ))?;
            st.query_map(
                params![conversation, org, after_id.unwrap_or(0), limit],
                message_from_row,
            )
        })
    }

    /// Unexpired memories of a client.
    pub fn memories(&self, client: &ClientKey, now: i64) -> Result<Map<String, Json>> {
        self.read(|c| load_memories_on(c, client, now))
    }

    pub fn list_participants(&self, org: &str, limit: u32) -> Result<Vec<Participant>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {PARTICIPANT_COLS} FROM participants WHERE organization_id = ?1
                 ORDER BY created_at DESC LIMIT ?2"
            ))?;
            st.query_map(
                params![org, if limit == 0 { 100 } else { limit }],
                participant_from_row,
            )
        })
    }
}

fn load_memories_on(c: &Db, k: &ClientKey, now: i64) -> Result<Map<String, Json>> {
    let rows = c
        .prepare_cached(
            "SELECT key, value FROM memories WHERE bot_id = ?1 AND channel_id = ?2 AND user_id = ?3
             AND organization_id = ?4 AND (expires_at IS NULL OR expires_at > ?5)",
        )?
        .query_map(
            params![k.bot_id, k.channel_id, k.user_id, k.organization_id, now],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )?;
    let mut out = Map::new();
    for (key, v) in rows {
        out.insert(key, serde_json::from_str(&v)?);
    }
    Ok(out)
}

/// The reads of a turn, without a transaction of their own (the caller's job provides one).
fn turn_state_on(c: &Db, k: &ClientKey, now: i64) -> Result<TurnState> {
    // One extra read on a shared store only (see `client_revs`), and the first: the rows
    // read after it are at least as new as the version the commit will check (a turn read
    // without a transaction of its own could otherwise pair an old memory with a new version).
    let client_rev = if c.is_pg() {
        c.query_row(
            "SELECT rev FROM client_revs WHERE organization_id = ?1 AND bot_id = ?2
             AND channel_id = ?3 AND user_id = ?4",
            [&k.organization_id, &k.bot_id, &k.channel_id, &k.user_id],
            |r| r.get::<i64>(0),
        )
        .optional()?
        .unwrap_or(0)
    } else {
        0
    };
    let participant_id = participant_of(c, k)?;
    let (conversation, rev) = match &participant_id {
        Some(pid) => match open_conversation_of(c, k, pid)? {
            Some((conv, rev)) => (Some(conv), rev),
            None => (None, 0),
        },
        None => (None, 0),
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
        rev,
        memories,
        participant_id,
        client_rev,
    })
}
