//! SQL of the Open Chat Studio API (issue 4): OCS API key roles, widget channels (embed keys),
//! sessions, their OCS-shaped messages and tags, async chat tasks, uploaded files' metadata,
//! participants' OCS fields, participant data and schedules.
//!
//! # Every query is scoped by organization
//! Every function takes the organization first and filters on it (a row of another
//! organization is "not found"); a statement keyed by a row id that the same job has just
//! read under the organization is scoped through that row. The deliberate exceptions, each
//! because the organization is not known yet or the work is the server's own:
//!
//! * [`Store::ocs_key_lookup`]: an API key decides its organization.
//! * [`Store::ocs_widget_by_key`]: an embed key decides its organization.
//! * [`Store::ocs_bot_any_org`]: a keyless `chat/start` names only a chatbot, which decides
//!   the organization (one primary-key lookup); the caller's access is then checked against
//!   the bot's organization and settings.
//! * [`Store::ocs_bot_exists_anywhere`]: `POST /api/sessions/` tells "another team's
//!   chatbot" (404) from "no such chatbot" (400), as OCS does.
//! * [`Store::ocs_chat_access_rows`] / [`Store::ocs_chat_access_rows_now`]: a chat request
//!   names only a session, which decides the organization; the credentials it presents are
//!   checked against the session's rows by the caller.
//! * Background work of the server over every organization: [`Store::ocs_pending_tasks`]
//!   (re-queue after a restart), [`Store::ocs_claim_due_schedules`],
//!   [`Store::ocs_sweep_files`] (expired uploads).
//!
//! Paging is keyset paging on `(created_at, id)` so pages stay stable when times tie.
//!
//! # Both backends, several nodes
//! The SQL runs on SQLite and PostgreSQL alike ([`Db`]); the JSON list filters are the one
//! place the text differs (`json_each` / `jsonb_array_elements`). On SQLite one writer runs
//! every job, so a job's reads and writes are never interleaved with another's. On PostgreSQL
//! write jobs run at once (READ COMMITTED, any number of nodes), so every job that writes what
//! it decided from a read is guarded, each guard documented where it is: per-participant
//! decisions under the participant's row lock ([`upsert_participant_on`],
//! [`lock_participant_on`]); read-merge-writes of session state and participant data under
//! the row's lock ([`set_state_on`], [`merge_participant_data_on`]); message times under the
//! session's row lock ([`append_messages_on`]); task claims and results as conditional
//! updates ([`Store::ocs_start_task`], [`finish_task_on`]); server work claimed with `FOR
//! UPDATE SKIP LOCKED` ([`Store::ocs_claim_due_schedules`], [`Store::ocs_sweep_files`]). Rows
//! are locked in one order (participant, its data, session) so jobs do not deadlock. All of
//! a task's state is in `ocs_tasks`: a task accepted on one node is polled on any.

use super::db::{Db, Dialect, OptionalExtension, Row, Value, params};
use super::ids::{new_id, now_millis};
use super::{Error, Result, Store};
use crate::secrets::hash_api_key;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// An authenticated OCS API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsKey {
    pub id: String,
    pub organization_id: String,
    pub prefix: String,
    pub read_only: bool,
    pub role: String,
    pub owner_email: Option<String>,
}

/// An embedded-widget channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WidgetChannel {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub name: String,
    pub embed_key: String,
    pub allowed_domains: Vec<String>,
    pub auth_level: i64,
    pub enabled: bool,
    pub disabled_message: Option<String>,
    pub deleted: bool,
    pub session_token_lifetime: Option<i64>,
    pub widget_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcsParticipant {
    pub id: String,
    pub organization_id: String,
    pub platform: String,
    pub identifier: String,
    pub name: String,
    pub remote_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcsSession {
    pub id: String,
    pub organization_id: String,
    pub bot_id: String,
    pub participant: OcsParticipant,
    pub platform: String,
    /// `api` | `widget` | `platform`.
    pub channel_kind: String,
    pub widget_channel_id: Option<String>,
    pub owner_key_id: Option<String>,
    pub status: String,
    pub state: Json,
    pub version_number: Option<i64>,
    pub session_token_required: bool,
    pub embed_source: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
}

/// A tag as stored on messages and sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub category: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcsMessage {
    pub id: i64,
    pub session_id: String,
    pub role: String,
    pub content: String,
    pub metadata: Json,
    pub tags: Vec<Tag>,
    pub file_ids: Vec<i64>,
    /// Microseconds.
    pub created_at: i64,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewOcsMessage {
    pub role: String,
    pub content: String,
    pub metadata: Json,
    pub tags: Vec<Tag>,
    pub file_ids: Vec<i64>,
}

/// A synchronous `incoming_message` turn's session (see [`Store::ocs_incoming_session`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingSession {
    pub bot_id: String,
    /// The API caller's participant identifier.
    pub identifier: String,
    /// The API key that creates a new session (its owner).
    pub key_id: String,
    /// The session the request names; `None`: the caller's latest open one.
    pub wanted: Option<String>,
    /// `/reset`: end the current session and start a new one, with no turn.
    pub reset: bool,
    /// `/v{N}/`: a new session runs version N.
    pub version_number: Option<i64>,
}

/// What [`Store::ocs_incoming_session`] found or made.
#[derive(Debug, Clone)]
pub enum IncomingSessionOutcome {
    /// The chatbot is not the organization's.
    NoBot,
    /// The named session is not one of this caller's API sessions with the chatbot.
    NoSession,
    /// The current session was ended and a new one started.
    Reset,
    /// The session to run the turn in (as it was read) and the turn's inputs.
    Ready(Box<(OcsSession, TurnInputs)>),
}

/// What `trigger_bot` writes before its delivery (see [`Store::ocs_trigger_session`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSession {
    pub bot_id: String,
    pub platform: String,
    pub identifier: String,
    /// End the participant's open session (to `pending-review`) and start a new one.
    pub start_new: bool,
    /// Merged into the session's state.
    pub session_data: Option<Json>,
    /// Merged into the participant's data for the bot (`{}`: nothing).
    pub participant_data: Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcsTask {
    pub id: String,
    pub organization_id: String,
    pub session_id: String,
    pub status: String,
    pub request: Json,
    pub message_id: Option<i64>,
    pub error: Option<String>,
    pub error_status: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcsFile {
    pub id: i64,
    pub organization_id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub purpose: String,
    pub metadata: Json,
    pub session_id: Option<String>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOcsFile {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub purpose: String,
    pub metadata: Json,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub id: i64,
    pub organization_id: String,
    pub participant_id: String,
    pub bot_id: String,
    pub external_id: String,
    pub name: String,
    pub prompt_text: String,
    pub next_trigger_date: i64,
    pub cancelled_at: Option<i64>,
    pub triggered_at: Option<i64>,
}

/// One schedule change of a participants POST.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleOp {
    Delete {
        external_id: String,
    },
    Upsert {
        external_id: Option<String>,
        name: String,
        prompt: String,
        date: i64,
    },
}

/// A participants POST (`POST /api/participants`), validated.
#[derive(Debug, Clone)]
pub struct ParticipantPost {
    pub platform: String,
    pub identifier: String,
    pub name: Option<String>,
    pub ops: Vec<ParticipantDataOp>,
}

/// What a [`ParticipantPost`] did.
#[derive(Debug, Clone)]
pub enum ParticipantPosted {
    /// The participant with its data and schedules as posted.
    Applied(OcsParticipant),
    /// These chatbots are not the organization's: only the participant was written.
    MissingBots(Vec<String>),
}

/// One `data` entry of a participants POST.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantDataOp {
    pub bot_id: String,
    /// `Some` non-empty object: replaces the stored data.
    pub data: Option<Map<String, Json>>,
    pub schedules: Vec<ScheduleOp>,
}

/// What a chat turn's `_metadata` needs from the store, read in the job that starts the task
/// (the task's own writer job: consistent with it, and no separate read hop). The history is
/// read with the turn's state, and only for a flow that can see it
/// ([`super::conversations::TurnRead::ocs_history_of`]).
#[derive(Debug, Clone)]
pub struct TurnInputs {
    /// The session's state (with the turn's `remote_context` already merged).
    pub state: Json,
    /// The participant's data for this chatbot.
    pub participant_data: Json,
    /// The bot's live build id.
    pub live: Option<String>,
}

/// Messages read for a turn's history (20 shown, plus the message being answered).
pub const HISTORY_READ: u32 = 21;

/// `(role, content)` of the last `n` messages of a session, in time order (a flow's
/// `_metadata.history`: no metadata, tags or files to decode).
///
/// Limits are written into the SQL here and below, never bound: the bundled SQLite (3.53)
/// re-prepares a statement with a bound `LIMIT ?` at every execution (it plans with the
/// bound value and expires the statement when it is re-bound), which defeats the statement
/// cache. Each distinct limit is one cached statement.
fn recent_history_on(c: &Db, session: &str, n: u32) -> Result<Vec<(String, String)>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT role, content FROM ocs_messages WHERE session_id = ?1
         ORDER BY created_at DESC, id DESC LIMIT {n}"
    ))?;
    let mut rows: Vec<(String, String)> =
        st.query_map([session], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.reverse();
    Ok(rows)
}

/// A turn's inputs. `lock_state`: the session's state is read with its row locked, for a job
/// that writes the state back merged (see [`start_turn_on`]).
fn turn_inputs_on(
    c: &Db,
    org: &str,
    session: &str,
    participant: &str,
    bot: &str,
    lock_state: bool,
) -> Result<TurnInputs> {
    let state = if lock_state {
        locked_state_on(c, org, session)?
    } else {
        c.prepare_cached("SELECT state FROM ocs_sessions WHERE id = ?1 AND organization_id = ?2")?
            .query_row([session, org], |r| json_col(r, 0))
            .optional()?
    }
    .unwrap_or_else(|| Json::Object(Map::new()));
    let participant_data = data_entries_on(c, org, participant, Some(bot))?
        .into_iter()
        .next()
        .map(|d| d.data)
        .unwrap_or_else(|| Json::Object(Map::new()));
    Ok(TurnInputs {
        state,
        participant_data,
        live: super::bots::bot_code_key_on(c, org, bot)?.0,
    })
}

/// A participant data row with its chatbot's name.
#[derive(Debug, Clone, PartialEq)]
pub struct DataEntry {
    pub bot_id: String,
    pub bot_name: String,
    pub data: Json,
    pub system_metadata: Json,
}

/// A keyset position: `(created_at, id)`.
pub type Cursor = (i64, String);

/// One page of a keyset query (`rows` in the requested order).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// More rows exist beyond the last one (in the direction of travel).
    pub more: bool,
}

/// Filter of [`Store::ocs_list_sessions`].
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub bot_id: Option<String>,
    pub tags: Vec<String>,
    pub versions: Vec<String>,
}

/// Filter of [`Store::ocs_list_participants`].
#[derive(Debug, Clone, Default)]
pub struct ParticipantFilter {
    pub identifier: Option<String>,
    pub platform: Option<String>,
    pub bot_id: Option<String>,
}

/// Keyset request: `after` a position in the travel direction; `ascending` = oldest first.
#[derive(Debug, Clone, Default)]
pub struct KeysetReq {
    pub after: Option<Cursor>,
    pub ascending: bool,
    pub limit: u32,
}

fn json_col(r: &Row, i: usize) -> Result<Json> {
    let s: String = r.get(i)?;
    Ok(serde_json::from_str(&s).unwrap_or(Json::Null))
}

const WIDGET_COLS: &str = "id, organization_id, bot_id, name, embed_key, allowed_domains, auth_level, \
     enabled, disabled_message, deleted, session_token_lifetime, widget_version";

fn widget_from_row(r: &Row) -> Result<WidgetChannel> {
    let domains: String = r.get(5)?;
    Ok(WidgetChannel {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        name: r.get(3)?,
        embed_key: r.get(4)?,
        allowed_domains: serde_json::from_str(&domains).unwrap_or_default(),
        auth_level: r.get(6)?,
        enabled: r.get(7)?,
        disabled_message: r.get(8)?,
        deleted: r.get(9)?,
        session_token_lifetime: r.get(10)?,
        widget_version: r.get(11)?,
    })
}

const PART_COLS: &str = "p.id, p.organization_id, p.platform, p.identifier, COALESCE(p.name, ''), \
                         p.remote_id, p.created_at";

fn participant_from_row(r: &Row, o: usize) -> Result<OcsParticipant> {
    Ok(OcsParticipant {
        id: r.get(o)?,
        organization_id: r.get(o + 1)?,
        platform: r.get(o + 2)?,
        identifier: r.get(o + 3)?,
        name: r.get(o + 4)?,
        remote_id: r.get(o + 5)?,
        created_at: r.get(o + 6)?,
    })
}

const SESSION_COLS: &str = "s.id, s.organization_id, s.bot_id, s.platform, s.channel_kind, \
     s.widget_channel_id, s.owner_key_id, s.status, s.state, s.version_number, \
     s.session_token_required, s.embed_source, s.created_at, s.updated_at, s.ended_at";

fn session_from_row(r: &Row) -> Result<OcsSession> {
    Ok(OcsSession {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        platform: r.get(3)?,
        channel_kind: r.get(4)?,
        widget_channel_id: r.get(5)?,
        owner_key_id: r.get(6)?,
        status: r.get(7)?,
        state: json_col(r, 8)?,
        version_number: r.get(9)?,
        session_token_required: r.get(10)?,
        embed_source: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        ended_at: r.get(14)?,
        participant: participant_from_row(r, 15)?,
    })
}

/// [`session_select`] of one session by id, built once: every chat request reads it.
static SESSION_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{} WHERE s.id = ?1", session_select()));

fn session_select() -> String {
    format!(
        "SELECT {SESSION_COLS}, {PART_COLS} FROM ocs_sessions s JOIN participants p \
         ON p.id = s.participant_id"
    )
}

const MSG_COLS: &str = "id, session_id, role, content, metadata, tags, file_ids, created_at";

fn message_from_row(r: &Row) -> Result<OcsMessage> {
    let tags: String = r.get(5)?;
    let files: String = r.get(6)?;
    Ok(OcsMessage {
        id: r.get(0)?,
        session_id: r.get(1)?,
        role: r.get(2)?,
        content: r.get(3)?,
        metadata: json_col(r, 4)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        file_ids: serde_json::from_str(&files).unwrap_or_default(),
        created_at: r.get(7)?,
    })
}

const TASK_COLS: &str =
    "id, organization_id, session_id, status, request, message_id, error, error_status";

fn task_from_row(r: &Row) -> Result<OcsTask> {
    Ok(OcsTask {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        session_id: r.get(2)?,
        status: r.get(3)?,
        request: json_col(r, 4)?,
        message_id: r.get(5)?,
        error: r.get(6)?,
        error_status: r.get(7)?,
    })
}

const FILE_COLS: &str =
    "id, organization_id, name, content_type, size, purpose, metadata, session_id, expires_at";

fn file_from_row(r: &Row) -> Result<OcsFile> {
    Ok(OcsFile {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        content_type: r.get(3)?,
        size: r.get(4)?,
        purpose: r.get(5)?,
        metadata: json_col(r, 6)?,
        session_id: r.get(7)?,
        expires_at: r.get(8)?,
    })
}

const SCHED_COLS: &str = "id, organization_id, participant_id, bot_id, external_id, name, \
                          prompt_text, next_trigger_date, cancelled_at, triggered_at";

fn schedule_from_row(r: &Row) -> Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        participant_id: r.get(2)?,
        bot_id: r.get(3)?,
        external_id: r.get(4)?,
        name: r.get(5)?,
        prompt_text: r.get(6)?,
        next_trigger_date: r.get(7)?,
        cancelled_at: r.get(8)?,
        triggered_at: r.get(9)?,
    })
}

/// Get or create a participant; `name`/`remote_id` are written when given.
///
/// Guard: the participant's row stays locked until the job commits (on PostgreSQL `FOR NO KEY
/// UPDATE`, which foreign-key checks of new sessions and data rows do not wait on; SQLite's
/// single writer needs none). Every job that decides from a participant's sessions or data
/// whether to create or change one (a new session or the latest open one, `trigger_bot`, a
/// participants POST) goes through here (or [`lock_participant_on`]) before it reads what it
/// decides from, so those decisions are serialized per
/// participant across nodes: two concurrent first messages of one API caller make one
/// session, not two. Lock order, everywhere in this module: participant, then its data
/// rows, then sessions (no two jobs wait on each other's rows).
fn upsert_participant_on(
    c: &Db,
    org: &str,
    platform: &str,
    identifier: &str,
    name: Option<&str>,
    remote_id: Option<&str>,
    now: i64,
) -> Result<OcsParticipant> {
    c.prepare_cached(
        "INSERT INTO participants(id, organization_id, platform, identifier, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT(organization_id, platform, identifier) DO NOTHING",
    )?
    .execute(params![new_id(), org, platform, identifier, now])?;
    if name.is_some() || remote_id.is_some() {
        c.prepare_cached(
            "UPDATE participants SET name = COALESCE(?4, name), remote_id = COALESCE(?5, remote_id),
                updated_at = ?6
             WHERE organization_id = ?1 AND platform = ?2 AND identifier = ?3",
        )?
        .execute(params![org, platform, identifier, name, remote_id, now])?;
    }
    c.prepare_cached(&format!(
        "SELECT {PART_COLS} FROM participants p
         WHERE p.organization_id = ?1 AND p.platform = ?2 AND p.identifier = ?3{}",
        c.pick("", " FOR NO KEY UPDATE")
    ))?
    .query_row(params![org, platform, identifier], |r| {
        participant_from_row(r, 0)
    })
}

/// Guard for a job that chooses a participant's session, or creates one, from what it reads
/// (PostgreSQL only: SQLite's single writer runs such jobs one at a time). Locks the
/// participant's row until the job commits — creating the participant first when `create`
/// (a job that will create it anyway), else only when it exists (a job that may end with
/// nothing written) — so that the jobs of one participant decide one after the other. See
/// [`upsert_participant_on`] for the lock order.
fn lock_participant_on(
    c: &Db,
    org: &str,
    platform: &str,
    identifier: &str,
    create: bool,
) -> Result<()> {
    if !c.is_pg() {
        return Ok(());
    }
    if create {
        upsert_participant_on(c, org, platform, identifier, None, None, now_millis())?;
    } else {
        c.prepare_cached(
            "SELECT 1 FROM participants WHERE organization_id = ?1 AND platform = ?2
             AND identifier = ?3 FOR NO KEY UPDATE",
        )?
        .exists([org, platform, identifier])?;
    }
    Ok(())
}

/// Microseconds since the Unix epoch.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn load_session_on(c: &Db, org: &str, id: &str) -> Result<Option<OcsSession>> {
    c.prepare_cached(&format!(
        "{} WHERE s.id = ?1 AND s.organization_id = ?2",
        session_select()
    ))?
    .query_row([id, org], session_from_row)
    .optional()
}

/// Appends messages to a session with strictly increasing microsecond times (never earlier than
/// the session's latest message, so `since` cursors never miss one). Returns the new rows.
///
/// Guard (PostgreSQL, where appends to one session may run at once on several nodes): the
/// session row's `updated_at` is written first, which locks that row until commit, so the
/// appends of one session are serialized and each reads the latest time after the previous
/// one committed: times stay strictly increasing in commit order, and a poller that has seen
/// time `t` never later sees a message committed at or before `t`. (On SQLite the single
/// writer already serializes them.)
fn append_messages_on(
    c: &Db,
    org: &str,
    session: &str,
    msgs: &[NewOcsMessage],
) -> Result<Vec<OcsMessage>> {
    c.prepare_cached("UPDATE ocs_sessions SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![session, now_millis()])?;
    let last: Option<i64> = c
        .prepare_cached("SELECT MAX(created_at) FROM ocs_messages WHERE session_id = ?1")?
        .query_row([session], |r| r.get(0))?;
    let mut t = now_micros();
    if let Some(l) = last
        && t <= l
    {
        t = l + 1;
    }
    let mut out = Vec::with_capacity(msgs.len());
    let mut st = c.prepare_cached(
        "INSERT INTO ocs_messages(organization_id, session_id, role, content, metadata, tags,
                                  file_ids, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    )?;
    for m in msgs {
        let metadata = if m.metadata.is_null() {
            Json::Object(Map::new())
        } else {
            m.metadata.clone()
        };
        let id: i64 = st.query_row(
            params![
                org,
                session,
                m.role,
                m.content,
                metadata.to_string(),
                serde_json::to_string(&m.tags)?,
                serde_json::to_string(&m.file_ids)?,
                t
            ],
            |r| r.get(0),
        )?;
        out.push(OcsMessage {
            id,
            session_id: session.to_string(),
            role: m.role.clone(),
            content: m.content.clone(),
            metadata,
            tags: m.tags.clone(),
            file_ids: m.file_ids.clone(),
            created_at: t,
        });
        t += 1;
    }
    Ok(out)
}

/// What a new session needs.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub bot_id: String,
    pub participant_platform: String,
    pub participant_identifier: String,
    pub participant_name: Option<String>,
    pub participant_remote_id: Option<String>,
    /// Session platform (the channel's).
    pub platform: String,
    pub channel_kind: String,
    pub widget_channel_id: Option<String>,
    pub owner_key_id: Option<String>,
    pub status: String,
    pub state: Json,
    pub version_number: Option<i64>,
    pub session_token_required: bool,
    pub embed_source: Option<String>,
    /// History stored with the session (sessions create, OpenAI endpoint).
    pub messages: Vec<NewOcsMessage>,
    /// Written into the participant's data for this chatbot as `name` (chat start).
    pub data_name: Option<String>,
}

fn insert_session_on(c: &Db, org: &str, n: &NewSession) -> Result<OcsSession> {
    let now = now_millis();
    let exists: bool = c
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM bots WHERE id = ?1 AND organization_id = ?2)")?
        .query_row([&n.bot_id, org], |r| r.get(0))?;
    if !exists {
        return Err(Error::NotFound(format!("bot `{}` not found", n.bot_id)));
    }
    let p = upsert_participant_on(
        c,
        org,
        &n.participant_platform,
        &n.participant_identifier,
        n.participant_name.as_deref(),
        n.participant_remote_id.as_deref(),
        now,
    )?;
    if let Some(name) = &n.data_name {
        merge_participant_data_on(
            c,
            org,
            &p.id,
            &n.bot_id,
            &serde_json::json!({"name": name}),
            now,
        )?;
    }
    let id = new_id();
    let state = if n.state.is_null() {
        Json::Object(Map::new())
    } else {
        n.state.clone()
    };
    c.prepare_cached(
        "INSERT INTO ocs_sessions(id, organization_id, bot_id, participant_id, platform,
            channel_kind, widget_channel_id, owner_key_id, status, state, version_number,
            session_token_required, embed_source, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
    )?
    .execute(params![
        id,
        org,
        n.bot_id,
        p.id,
        n.platform,
        n.channel_kind,
        n.widget_channel_id,
        n.owner_key_id,
        n.status,
        state.to_string(),
        n.version_number,
        n.session_token_required,
        n.embed_source,
        now
    ])?;
    if !n.messages.is_empty() {
        append_messages_on(c, org, &id, &n.messages)?;
    }
    load_session_on(c, org, &id)?.ok_or_else(|| Error::Other("session vanished".into()))
}

/// Shallow-merge `patch` into the participant's data for `bot` (read, merge, write).
///
/// Guard (a read-modify-write; PostgreSQL, SQLite's single writer needs none): the row is made
/// to exist first (`ON CONFLICT DO NOTHING`), then read locked (`FOR NO KEY UPDATE`), so two
/// concurrent merges into one participant's data (a flow's write-back on one node, a
/// `trigger_bot` on another) apply one after the other instead of the later one dropping the
/// earlier one's keys.
fn merge_participant_data_on(
    c: &Db,
    org: &str,
    participant: &str,
    bot: &str,
    patch: &Json,
    now: i64,
) -> Result<()> {
    if c.is_pg() {
        ensure_participant_data_on(c, org, participant, bot, now)?;
    }
    let cur: Option<String> = c
        .prepare_cached(&format!(
            "SELECT data FROM participant_data WHERE participant_id = ?1 AND bot_id = ?2
             AND organization_id = ?3{}",
            c.pick("", " FOR NO KEY UPDATE")
        ))?
        .query_row([participant, bot, org], |r| r.get(0))
        .optional()?;
    let mut data: Map<String, Json> = cur
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if let Json::Object(p) = patch {
        for (k, v) in p {
            data.insert(k.clone(), v.clone());
        }
    }
    set_participant_data_on(c, org, participant, bot, &Json::Object(data), now)
}

/// The participant's data row for `bot`, created empty when missing (one statement: no
/// check before it that a concurrent job could invalidate).
fn ensure_participant_data_on(
    c: &Db,
    org: &str,
    participant: &str,
    bot: &str,
    now: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO participant_data(organization_id, participant_id, bot_id, data, updated_at)
         VALUES (?1, ?2, ?3, '{}', ?4) ON CONFLICT(participant_id, bot_id) DO NOTHING",
    )?
    .execute(params![org, participant, bot, now])?;
    Ok(())
}

fn set_participant_data_on(
    c: &Db,
    org: &str,
    participant: &str,
    bot: &str,
    data: &Json,
    now: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO participant_data(organization_id, participant_id, bot_id, data, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(participant_id, bot_id) DO UPDATE SET data = excluded.data,
            updated_at = excluded.updated_at",
    )?
    .execute(params![org, participant, bot, data.to_string(), now])?;
    Ok(())
}

fn keyset_clause(k: &KeysetReq, col_t: &str, col_id: &str, args: &mut Vec<Value>) -> String {
    let mut sql = String::new();
    if let Some((t, id)) = &k.after {
        let op = if k.ascending { ">" } else { "<" };
        sql.push_str(&format!(" AND ({col_t}, {col_id}) {op} (?, ?)"));
        args.push(Value::Int(*t));
        args.push(Value::Text(id.clone()));
    }
    let dir = if k.ascending { "ASC" } else { "DESC" };
    sql.push_str(&format!(" ORDER BY {col_t} {dir}, {col_id} {dir} LIMIT ?"));
    args.push(Value::Int(k.limit as i64 + 1));
    sql
}

fn page<T>(mut rows: Vec<T>, limit: u32) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Page { rows, more }
}

impl Store {
    // ---- API keys --------------------------------------------------------------------------

    /// Resolve an OCS API key with its role (unscoped: the key decides the organization).
    pub fn ocs_key_lookup(&self, key: &str) -> Result<Option<OcsKey>> {
        let hash = hash_api_key(key);
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, organization_id, prefix, read_only, ocs_role, owner_email FROM api_keys
                 WHERE key_hash = ?1 AND revoked_at IS NULL",
            )?
            .query_row([hash], |r| {
                Ok(OcsKey {
                    id: r.get(0)?,
                    organization_id: r.get(1)?,
                    prefix: r.get(2)?,
                    read_only: r.get(3)?,
                    role: r.get(4)?,
                    owner_email: r.get(5)?,
                })
            })
            .optional()
        })
    }

    /// The OCS role of each API key of `org` (revoked keys included), by key id.
    pub fn ocs_key_roles(&self, org: &str) -> Result<HashMap<String, String>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT id, ocs_role FROM api_keys WHERE organization_id = ?1")?;
            let rows = st.query_map([org], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.into_iter().collect())
        })
    }

    /// Set the OCS role (and optionally owner e-mail) of a key.
    pub fn ocs_set_key_role(
        &self,
        org: &str,
        key_id: &str,
        role: &str,
        email: Option<&str>,
    ) -> Result<()> {
        let (org, key_id, role, email) = (
            org.to_string(),
            key_id.to_string(),
            role.to_string(),
            email.map(str::to_string),
        );
        self.write(move |c| {
            let n = c.execute(
                "UPDATE api_keys SET ocs_role = ?3, owner_email = COALESCE(?4, owner_email)
                 WHERE id = ?1 AND organization_id = ?2",
                params![key_id, org, role, email],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("API key `{key_id}` not found")));
            }
            c.execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)
                 WHERE key = 'auth_epoch'",
                (),
            )?;
            Ok(())
        })
    }

    // ---- widget channels -------------------------------------------------------------------

    pub fn ocs_create_widget_channel(
        &self,
        org: &str,
        bot: &str,
        name: &str,
        allowed_domains: Vec<String>,
        auth_level: i64,
    ) -> Result<WidgetChannel> {
        let (org, bot, name) = (org.to_string(), bot.to_string(), name.to_string());
        self.write(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM bots WHERE id = ?1 AND organization_id = ?2)",
                [&bot, &org],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(Error::NotFound(format!("bot `{bot}` not found")));
            }
            let id = new_id();
            let key = super::ids::random_token(32);
            c.execute(
                "INSERT INTO ocs_widget_channels(id, organization_id, bot_id, name, embed_key,
                    allowed_domains, auth_level, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, org, bot, name, key, serde_json::to_string(&allowed_domains)?, auth_level, now_millis()],
            )?;
            c.query_row(
                &format!("SELECT {WIDGET_COLS} FROM ocs_widget_channels WHERE id = ?1"),
                [&id],
                widget_from_row,
            )
        })
    }

    /// A widget channel by embed key (unscoped: the key decides the organization).
    pub fn ocs_widget_by_key(&self, key: &str) -> Result<Option<WidgetChannel>> {
        self.read(|c| widget_by_key_on(c, key))
    }

    pub fn ocs_widget(&self, org: &str, id: &str) -> Result<Option<WidgetChannel>> {
        self.read(|c| widget_on(c, org, id))
    }

    pub fn ocs_widgets_of_bot(&self, org: &str, bot: &str) -> Result<Vec<WidgetChannel>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {WIDGET_COLS} FROM ocs_widget_channels WHERE organization_id = ?1
                 AND bot_id = ?2 AND deleted = 0 ORDER BY created_at"
            ))?;
            let rows = st.query_map([org, bot], widget_from_row)?;
            Ok(rows)
        })
    }

    /// The id of a bot's build numbered `seq` (OCS `version_number`), if there is one.
    pub fn ocs_version_id(&self, org: &str, bot: &str, seq: i64) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id FROM bot_versions
                     WHERE bot_id = ?1 AND seq = ?2 AND organization_id = ?3",
            )?
            .query_row(params![bot, seq, org], |r| r.get(0))
            .optional()
        })
    }

    /// Record the widget version a channel's client reported.
    pub fn ocs_record_widget_version(&self, org: &str, id: &str, version: &str) -> Result<()> {
        let (org, id, version) = (org.to_string(), id.to_string(), version.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE ocs_widget_channels SET widget_version = ?3, widget_version_at = ?4
                 WHERE id = ?1 AND organization_id = ?2",
                params![id, org, version, now_millis()],
            )?;
            Ok(())
        })
    }

    // ---- experiments -----------------------------------------------------------------------

    /// Bots of an organization as keyset pages of `(created_at, id)`, plus the total when
    /// `count` is asked.
    pub fn ocs_list_bot_ids(&self, org: &str, k: &KeysetReq) -> Result<Page<String>> {
        self.read(|c| {
            let mut args = vec![Value::Text(org.to_string())];
            let sql = format!(
                "SELECT id FROM bots WHERE organization_id = ?{}",
                keyset_clause(k, "created_at", "id", &mut args)
            );
            let rows = c.prepare_cached(&sql)?.query_map(args, |r| r.get(0))?;
            Ok(page(rows, k.limit))
        })
    }

    /// A chatbot by id in whichever organization has it (a keyless `chat/start`: the bot
    /// decides the organization). One primary-key lookup, then the bot as its organization
    /// reads it.
    pub fn ocs_bot_any_org(&self, id: &str) -> Result<Option<super::Bot>> {
        self.read(|c| {
            let org: Option<String> = c
                .prepare_cached("SELECT organization_id FROM bots WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            match org {
                Some(org) => Ok(Some(super::bots::load_bot(c, &org, id)?)),
                None => Ok(None),
            }
        })
    }

    /// Does a bot with this id exist in any organization (to tell "another team's" from
    /// "no such" as OCS does)?
    pub fn ocs_bot_exists_anywhere(&self, id: &str) -> Result<bool> {
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS(SELECT 1 FROM bots WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
        })
    }

    pub fn ocs_count_bots(&self, org: &str) -> Result<i64> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM bots WHERE organization_id = ?1",
                [org],
                |r| r.get(0),
            )
        })
    }

    // ---- sessions --------------------------------------------------------------------------

    pub fn ocs_create_session(&self, org: &str, n: NewSession) -> Result<OcsSession> {
        let org = org.to_string();
        self.write(move |c| insert_session_on(c, &org, &n))
    }

    pub fn ocs_session(&self, org: &str, id: &str) -> Result<Option<OcsSession>> {
        self.read(|c| load_session_on(c, org, id))
    }

    /// The rows a chat request's access decision reads (read pool).
    pub fn ocs_chat_access_rows(
        &self,
        session: &str,
        embed: Option<&str>,
    ) -> Result<ChatAccessRows> {
        self.read(|c| chat_access_rows_on(c, session, embed))
    }

    /// [`Store::ocs_chat_access_rows`] read as a job of the writer (SQL only): on its warm
    /// connection and consistent with every write acknowledged before (the chat message's
    /// hot path; the decision itself is made by the caller, `ocs`).
    pub async fn ocs_chat_access_rows_now(
        &self,
        session: String,
        embed: Option<String>,
    ) -> Result<ChatAccessRows> {
        self.write_async_bare(move |c| chat_access_rows_on(c, &session, embed.as_deref()))
            .await
    }

    /// The participant's latest session with this bot whose status is not in `exclude`.
    pub fn ocs_latest_session(
        &self,
        org: &str,
        bot: &str,
        platform: &str,
        identifier: &str,
        exclude: &[&str],
    ) -> Result<Option<OcsSession>> {
        self.read(|c| latest_session_on(c, org, bot, platform, identifier, exclude))
    }

    /// `incoming_message`'s session, in one transaction: the session the request names (it
    /// must be this caller's API session with the chatbot) or the caller's latest open one,
    /// moved from `setup` to `active`, or a new one; on `/reset` the current one is
    /// completed and a new one started. The turn's inputs are read in the same job.
    pub fn ocs_incoming_session(
        &self,
        org: &str,
        t: IncomingSession,
    ) -> Result<IncomingSessionOutcome> {
        let org = org.to_string();
        self.write(move |c| {
            match super::bots::load_bot(c, &org, &t.bot_id) {
                Ok(_) => {}
                Err(Error::NotFound(_)) => return Ok(IncomingSessionOutcome::NoBot),
                Err(e) => return Err(e),
            }
            let new = |c: &Db| {
                insert_session_on(
                    c,
                    &org,
                    &NewSession {
                        bot_id: t.bot_id.clone(),
                        participant_platform: "api".into(),
                        participant_identifier: t.identifier.clone(),
                        platform: "api".into(),
                        channel_kind: "api".into(),
                        owner_key_id: Some(t.key_id.clone()),
                        status: "active".into(),
                        session_token_required: true,
                        version_number: t.version_number,
                        ..Default::default()
                    },
                )
            };
            // Guard: the caller's participant is locked before any session is chosen (see
            // `lock_participant_on`), so concurrent messages of one caller with no open
            // session make one session.
            let current = match &t.wanted {
                Some(id) => {
                    lock_participant_on(c, &org, "api", &t.identifier, false)?;
                    match load_session_on(c, &org, id)? {
                        Some(sess)
                            if sess.bot_id == t.bot_id
                                && sess.platform == "api"
                                && sess.participant.platform == "api"
                                && sess.participant.identifier == t.identifier =>
                        {
                            Some(sess)
                        }
                        _ => return Ok(IncomingSessionOutcome::NoSession),
                    }
                }
                None => {
                    lock_participant_on(c, &org, "api", &t.identifier, true)?;
                    latest_session_on(
                        c,
                        &org,
                        &t.bot_id,
                        "api",
                        &t.identifier,
                        &["pending-review", "complete", "unknown"],
                    )?
                }
            };
            if t.reset {
                if let Some(cur) = &current {
                    set_status_on(c, &org, &cur.id, "complete")?;
                }
                new(c)?;
                return Ok(IncomingSessionOutcome::Reset);
            }
            let sess = match current {
                Some(cur) => {
                    if cur.status == "setup" {
                        set_status_on(c, &org, &cur.id, "active")?;
                    }
                    cur
                }
                None => new(c)?,
            };
            let inputs =
                turn_inputs_on(c, &org, &sess.id, &sess.participant.id, &sess.bot_id, false)?;
            Ok(IncomingSessionOutcome::Ready(Box::new((sess, inputs))))
        })
    }

    /// A new session with its history (one transaction) and its first turn's inputs read in
    /// the same job (the OpenAI endpoint).
    pub fn ocs_start_session(&self, org: &str, n: NewSession) -> Result<(OcsSession, TurnInputs)> {
        let org = org.to_string();
        self.write(move |c| {
            let sess = insert_session_on(c, &org, &n)?;
            let inputs =
                turn_inputs_on(c, &org, &sess.id, &sess.participant.id, &sess.bot_id, false)?;
            Ok((sess, inputs))
        })
    }

    /// `trigger_bot`'s writes, in one transaction: the participant (created when new), its
    /// data for the bot merged, the session to continue (the participant's latest open one)
    /// or a new one (`start_new` moves the old one to `pending-review`), and the request's
    /// session data merged into its state. Returns the session as it is after the writes.
    pub fn ocs_trigger_session(&self, org: &str, t: TriggerSession) -> Result<OcsSession> {
        let org = org.to_string();
        self.write(move |c| {
            let now = now_millis();
            let p = upsert_participant_on(c, &org, &t.platform, &t.identifier, None, None, now)?;
            merge_participant_data_on(c, &org, &p.id, &t.bot_id, &t.participant_data, now)?;
            let open = latest_session_on(
                c,
                &org,
                &t.bot_id,
                &t.platform,
                &t.identifier,
                &["pending-review", "complete", "unknown"],
            )?;
            let session = match open {
                Some(sess) if !t.start_new => sess,
                other => {
                    if let Some(old) = other {
                        set_status_on(c, &org, &old.id, "pending-review")?;
                    }
                    insert_session_on(
                        c,
                        &org,
                        &NewSession {
                            bot_id: t.bot_id.clone(),
                            participant_platform: t.platform.clone(),
                            participant_identifier: t.identifier.clone(),
                            platform: t.platform.clone(),
                            channel_kind: "platform".into(),
                            status: "setup".into(),
                            session_token_required: true,
                            ..Default::default()
                        },
                    )?
                }
            };
            Ok(match t.session_data {
                Some(d) => {
                    let state = set_state_on(c, &org, &session.id, d, true)?;
                    OcsSession {
                        state: state.unwrap_or(session.state.clone()),
                        ..session
                    }
                }
                None => session,
            })
        })
    }

    pub fn ocs_list_sessions(
        &self,
        org: &str,
        f: &SessionFilter,
        k: &KeysetReq,
    ) -> Result<Page<OcsSession>> {
        self.read(|c| {
            let mut args = vec![Value::Text(org.to_string())];
            let (filter, fargs) = session_filter_sql(c, f);
            args.extend(fargs);
            let sql = format!(
                "{} WHERE s.organization_id = ?{filter}{}",
                session_select(),
                keyset_clause(k, "s.created_at", "s.id", &mut args)
            );
            let rows = c.prepare_cached(&sql)?.query_map(args, session_from_row)?;
            Ok(page(rows, k.limit))
        })
    }

    pub fn ocs_count_sessions(&self, org: &str, f: &SessionFilter) -> Result<i64> {
        self.read(|c| {
            let mut args = vec![Value::Text(org.to_string())];
            let (filter, fargs) = session_filter_sql(c, f);
            args.extend(fargs);
            let sql =
                format!("SELECT COUNT(*) FROM ocs_sessions s WHERE s.organization_id = ?{filter}");
            c.prepare_cached(&sql)?.query_row(args, |r| r.get(0))
        })
    }

    /// Set the status (and `ended_at` for ended statuses).
    pub fn ocs_set_session_status(&self, org: &str, id: &str, status: &str) -> Result<bool> {
        let (org, id, status) = (org.to_string(), id.to_string(), status.to_string());
        self.write(move |c| set_status_on(c, &org, &id, &status))
    }

    /// Replace the state (`merge` = shallow-merge an object into it instead).
    pub fn ocs_set_session_state(
        &self,
        org: &str,
        id: &str,
        state: Json,
        merge: bool,
    ) -> Result<Option<Json>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |c| set_state_on(c, &org, &id, state, merge))
    }

    /// Session tags, ordered by name (system tags included); none for another
    /// organization's session.
    pub fn ocs_session_tags(&self, org: &str, id: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT t.name FROM ocs_session_tags t JOIN ocs_sessions s
                 ON s.id = t.session_id WHERE t.session_id = ?1 AND s.organization_id = ?2
                 ORDER BY t.name",
            )?;
            let rows = st.query_map([id, org], |r| r.get(0))?;
            Ok(rows)
        })
    }

    /// Attach user tags (`add`) or detach user tags (`!add`); returns all tag names after.
    pub fn ocs_change_tags(
        &self,
        org: &str,
        id: &str,
        tags: Vec<String>,
        add: bool,
        by: Option<String>,
    ) -> Result<Option<Vec<String>>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |c| {
            if load_session_on(c, &org, &id)?.is_none() {
                return Ok(None);
            }
            for t in &tags {
                if add {
                    c.execute(
                        "INSERT INTO ocs_session_tags(session_id, name, category, created_by, created_at)
                         VALUES (?1, ?2, '', ?3, ?4) ON CONFLICT DO NOTHING",
                        params![id, t, by, now_millis()],
                    )?;
                } else {
                    c.execute(
                        "DELETE FROM ocs_session_tags WHERE session_id = ?1 AND name = ?2 AND category = ''",
                        params![id, t],
                    )?;
                }
            }
            Ok(Some(session_tags_on(c, &id)?))
        })
    }

    /// Attach a system tag (a non-empty category) to session `id` of `org` (the server's
    /// tags come with its turns; tests attach one directly).
    pub fn ocs_add_system_tag(
        &self,
        org: &str,
        id: &str,
        name: &str,
        category: &str,
    ) -> Result<()> {
        let (org, id, name, category) = (
            org.to_string(),
            id.to_string(),
            name.to_string(),
            category.to_string(),
        );
        self.write(move |c| {
            c.execute(
                "INSERT INTO ocs_session_tags(session_id, name, category, created_at)
                 SELECT id, ?2, ?3, ?4 FROM ocs_sessions WHERE id = ?1 AND organization_id = ?5
                 ON CONFLICT DO NOTHING",
                params![id, name, category, now_millis(), org],
            )?;
            Ok(())
        })
    }

    // ---- messages --------------------------------------------------------------------------

    pub fn ocs_append_messages(
        &self,
        org: &str,
        session: &str,
        msgs: Vec<NewOcsMessage>,
    ) -> Result<Vec<OcsMessage>> {
        let (org, session) = (org.to_string(), session.to_string());
        self.write(move |c| append_messages_on(c, &org, &session, &msgs))
    }

    /// [`Store::ocs_append_messages`] awaiting the commit without blocking a runtime thread.
    pub async fn ocs_append_messages_async(
        &self,
        org: &str,
        session: &str,
        msgs: Vec<NewOcsMessage>,
    ) -> Result<Vec<OcsMessage>> {
        let (org, session) = (org.to_string(), session.to_string());
        self.write_async(move |c| append_messages_on(c, &org, &session, &msgs))
            .await
    }

    /// Messages of a session in time order, strictly after `since_us`, at most `limit` (+1 to
    /// tell whether more exist: the caller truncates).
    pub fn ocs_messages(
        &self,
        org: &str,
        session: &str,
        since_us: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<OcsMessage>> {
        self.read(|c| {
            // A literal limit (see `recent_history_on`); none at all without one (PostgreSQL
            // has no `LIMIT -1`).
            let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM ocs_messages WHERE session_id = ?1 AND created_at > ?2
                 AND organization_id = ?3 ORDER BY created_at, id{limit}"
            ))?;
            let rows = st.query_map(
                params![session, since_us.unwrap_or(i64::MIN), org],
                message_from_row,
            )?;
            Ok(rows)
        })
    }

    /// [`TurnInputs`] of a session's next turn, on a read connection.
    pub fn ocs_turn_inputs(
        &self,
        org: &str,
        session: &str,
        participant: &str,
        bot: &str,
    ) -> Result<TurnInputs> {
        self.read(|c| turn_inputs_on(c, org, session, participant, bot, false))
    }

    pub fn ocs_message(&self, org: &str, session: &str, id: i64) -> Result<Option<OcsMessage>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM ocs_messages WHERE id = ?1 AND session_id = ?2
                 AND organization_id = ?3"
            ))?
            .query_row(params![id, session, org], message_from_row)
            .optional()
        })
    }

    // ---- tasks -----------------------------------------------------------------------------

    /// Queue a task durably.
    pub async fn ocs_create_task(&self, org: &str, session: &str, request: Json) -> Result<String> {
        let (org, session) = (org.to_string(), session.to_string());
        self.write_async(move |c| {
            let id = new_id();
            let now = now_millis();
            c.prepare_cached(
                "INSERT INTO ocs_tasks(id, organization_id, session_id, status, request, created_at,
                                       updated_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5)",
            )?
            .execute(params![id, org, session, request.to_string(), now])?;
            Ok(id)
        })
        .await
    }

    /// Create a task that starts at once: the task row (running), the user's message,
    /// `remote_context` and the attachments' expiry, in one transaction. Returns the task id
    /// and the turn's inputs (as they are after the writes).
    ///
    /// A bare job (no savepoint, whose statement journal copies every page the job changes):
    /// [`start_turn_on`] reads everything first, and the task row is the first write, so
    /// the expected failures (a session deleted meanwhile fails that insert's foreign key, a
    /// bot deleted meanwhile fails the reads) leave nothing written.
    pub async fn ocs_create_started_task(
        &self,
        session: &OcsSession,
        task: NewTask,
    ) -> Result<(String, TurnInputs)> {
        let session = session.clone();
        self.write_async_bare(move |c| start_task_on(c, &session, task))
            .await
    }

    /// Claim a queued task and start it: mark it running and store the user's message
    /// (+ `remote_context` into the state) in one transaction; returns the turn's inputs (as
    /// they are after the writes), or `None` when the task is no longer queued (another node
    /// started or finished it, or its session was deleted): nothing is written then.
    ///
    /// Guard: the claim is a conditional update (`WHERE status = 'queued'`, one row or none).
    /// On PostgreSQL a second node's claim waits on the first's row lock, then finds the task
    /// `running` and gets `None`, so a task re-queued by several nodes (after a restart) runs
    /// once.
    pub async fn ocs_start_task(
        &self,
        task: &str,
        session: &OcsSession,
        new: NewTask,
    ) -> Result<Option<TurnInputs>> {
        let (task, session) = (task.to_string(), session.clone());
        // With its savepoint: a session deleted after the claim fails the message insert.
        self.write_async(move |c| {
            let started = start_turn_on(c, &session, &new, |c, _, _| {
                let n = c
                    .prepare_cached(
                        "UPDATE ocs_tasks SET status = 'running', updated_at = ?2
                         WHERE id = ?1 AND organization_id = ?3 AND status = 'queued'",
                    )?
                    .execute(params![task, now_millis(), session.organization_id])?;
                Ok((n == 1).then_some(()))
            })?;
            Ok(started.map(|((), inputs)| inputs))
        })
        .await
    }

    /// Store the turn's assistant messages and complete the task, in one transaction.
    pub async fn ocs_finish_task(
        &self,
        org: &str,
        task: &str,
        session: &str,
        msgs: Vec<NewOcsMessage>,
        error: Option<(String, i64)>,
    ) -> Result<Vec<OcsMessage>> {
        let (org, task, session) = (org.to_string(), task.to_string(), session.to_string());
        self.write_async(move |c| finish_task_on(c, &org, &task, &session, &msgs, error))
            .await
    }

    pub fn ocs_task(&self, org: &str, id: &str) -> Result<Option<OcsTask>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM ocs_tasks WHERE id = ?1 AND organization_id = ?2"
            ))?
            .query_row([id, org], task_from_row)
            .optional()
        })
    }

    /// Tasks left queued or running whose last change is at or before `stale_before`
    /// (milliseconds), oldest first: what a previous process left behind.
    ///
    /// Not a claim, and needs none: every action on a returned task is guarded on its own —
    /// starting it is a conditional claim ([`Store::ocs_start_task`]), failing it as
    /// interrupted a conditional finish ([`finish_task_on`]) — so when several nodes recover
    /// the same task, one of them acts on it. On PostgreSQL the caller passes a cutoff older
    /// than any live turn, so that a node starting up leaves the current tasks of the other
    /// nodes alone.
    pub fn ocs_pending_tasks(&self, stale_before: i64) -> Result<Vec<OcsTask>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM ocs_tasks WHERE status IN ('queued', 'running')
                 AND updated_at <= ?1 ORDER BY created_at, id"
            ))?;
            st.query_map([stale_before], task_from_row)
        })
    }

    // ---- files -----------------------------------------------------------------------------

    pub fn ocs_delete_files(&self, org: &str, ids: Vec<i64>) -> Result<()> {
        let org = org.to_string();
        self.write(move |c| {
            for id in &ids {
                c.execute(
                    "DELETE FROM ocs_files WHERE id = ?1 AND organization_id = ?2",
                    params![id, org],
                )?;
            }
            Ok(())
        })
    }

    pub fn ocs_file(&self, org: &str, id: i64) -> Result<Option<OcsFile>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {FILE_COLS} FROM ocs_files WHERE id = ?1 AND organization_id = ?2"
            ))?
            .query_row(params![id, org], file_from_row)
            .optional()
        })
    }

    /// Files of `org` by id, in the order asked (unknown ids and other organizations'
    /// files are left out).
    pub fn ocs_files_of(&self, org: &str, ids: &[i64]) -> Result<Vec<OcsFile>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {FILE_COLS} FROM ocs_files WHERE id = ?1 AND organization_id = ?2"
            ))?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(f) = st.query_row(params![id, org], file_from_row).optional()? {
                    out.push(f);
                }
            }
            Ok(out)
        })
    }

    /// Delete expired file rows (at most `batch`); returns their ids so the bytes go too.
    ///
    /// Guard (nodes sweeping at once): on PostgreSQL the expired rows are picked `FOR UPDATE
    /// SKIP LOCKED`, so two sweeps take disjoint rows, and only ids whose delete removed a row
    /// are returned: each expired file is reported by exactly one sweep.
    pub fn ocs_sweep_files(&self, now: i64, batch: u32) -> Result<Vec<i64>> {
        self.write(move |c| {
            let ids: Vec<i64> = c
                .prepare_cached(&format!(
                    "SELECT id FROM ocs_files WHERE expires_at IS NOT NULL AND expires_at <= ?1
                     ORDER BY expires_at, id LIMIT {batch}{}",
                    c.pick("", " FOR UPDATE SKIP LOCKED")
                ))?
                .query_map([now], |r| r.get(0))?;
            let mut gone = Vec::with_capacity(ids.len());
            let mut del = c.prepare_cached("DELETE FROM ocs_files WHERE id = ?1")?;
            for id in ids {
                if del.execute([id])? == 1 {
                    gone.push(id);
                }
            }
            Ok(gone)
        })
    }

    // ---- participants ----------------------------------------------------------------------

    pub fn ocs_list_participants(
        &self,
        org: &str,
        f: &ParticipantFilter,
        k: &KeysetReq,
    ) -> Result<Page<OcsParticipant>> {
        self.read(|c| {
            let mut args = vec![Value::Text(org.to_string())];
            let filter = participant_filter_sql(f, &mut args);
            let sql = format!(
                "SELECT {PART_COLS} FROM participants p WHERE p.organization_id = ?{filter}{}",
                keyset_clause(k, "p.created_at", "p.id", &mut args)
            );
            let rows = c
                .prepare_cached(&sql)?
                .query_map(args, |r| participant_from_row(r, 0))?;
            Ok(page(rows, k.limit))
        })
    }

    pub fn ocs_count_participants(&self, org: &str, f: &ParticipantFilter) -> Result<i64> {
        self.read(|c| {
            let mut args = vec![Value::Text(org.to_string())];
            let filter = participant_filter_sql(f, &mut args);
            c.prepare_cached(&format!(
                "SELECT COUNT(*) FROM participants p WHERE p.organization_id = ?{filter}"
            ))?
            .query_row(args, |r| r.get(0))
        })
    }

    /// Data entries of a participant (of one bot when given), ordered by bot creation.
    pub fn ocs_participant_data(
        &self,
        org: &str,
        participant: &str,
        bot: Option<&str>,
    ) -> Result<Vec<DataEntry>> {
        self.read(|c| data_entries_on(c, org, participant, bot))
    }

    /// A participants POST in one transaction: get or create the participant (its `name`
    /// written when given), then, when every chatbot of `ops` is one of `org`'s, apply the
    /// data and schedule changes. OCS writes the participant before it checks the chatbots,
    /// so a POST naming another team's chatbot still creates it:
    /// [`ParticipantPosted::MissingBots`] lists those chatbots and nothing else is applied.
    pub fn ocs_post_participant(
        &self,
        org: &str,
        post: ParticipantPost,
    ) -> Result<ParticipantPosted> {
        let org = org.to_string();
        self.write(move |c| {
            let now = now_millis();
            let p = upsert_participant_on(
                c,
                &org,
                &post.platform,
                &post.identifier,
                post.name.as_deref(),
                None,
                now,
            )?;
            let mut missing = Vec::new();
            for op in &post.ops {
                let known: bool = c
                    .prepare_cached(
                        "SELECT EXISTS(SELECT 1 FROM bots WHERE id = ?1 AND organization_id = ?2)",
                    )?
                    .query_row([&op.bot_id, &org], |r| r.get(0))?;
                if !known {
                    missing.push(op.bot_id.clone());
                }
            }
            if !missing.is_empty() {
                return Ok(ParticipantPosted::MissingBots(missing));
            }
            apply_participant_data_on(c, &org, &p.id, &post.ops, now)?;
            Ok(ParticipantPosted::Applied(p))
        })
    }

    /// Shallow-merge `patch` into the participant's data for `bot`.
    pub fn ocs_merge_participant_data(
        &self,
        org: &str,
        participant: &str,
        bot: &str,
        patch: Json,
    ) -> Result<()> {
        let (org, participant, bot) = (org.to_string(), participant.to_string(), bot.to_string());
        self.write(move |c| {
            merge_participant_data_on(c, &org, &participant, &bot, &patch, now_millis())
        })
    }

    pub fn ocs_schedules(&self, org: &str, participant: &str, bot: &str) -> Result<Vec<Schedule>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SCHED_COLS} FROM ocs_schedules WHERE organization_id = ?1
                 AND participant_id = ?2 AND bot_id = ?3 ORDER BY id"
            ))?;
            let rows = st.query_map([org, participant, bot], schedule_from_row)?;
            Ok(rows)
        })
    }

    /// Claim due schedules (marks them triggered) so each fires once, on one node.
    ///
    /// Guard: on PostgreSQL the due rows are picked `FOR UPDATE SKIP LOCKED` (nodes claiming
    /// at once take disjoint rows, none waits), and each is marked by a conditional update
    /// (`WHERE triggered_at IS NULL AND cancelled_at IS NULL`): a schedule is returned only
    /// by the job whose update marked it, so a schedule cancelled or claimed meanwhile is
    /// never fired.
    pub fn ocs_claim_due_schedules(&self, now: i64, batch: u32) -> Result<Vec<Schedule>> {
        self.write(move |c| {
            let rows: Vec<Schedule> = c
                .prepare_cached(&format!(
                    "SELECT {SCHED_COLS} FROM ocs_schedules WHERE cancelled_at IS NULL
                     AND triggered_at IS NULL AND next_trigger_date <= ?1
                     ORDER BY next_trigger_date, id LIMIT {batch}{}",
                    c.pick("", " FOR UPDATE SKIP LOCKED")
                ))?
                .query_map([now], schedule_from_row)?;
            let mut mark = c.prepare_cached(
                "UPDATE ocs_schedules SET triggered_at = ?2
                 WHERE id = ?1 AND triggered_at IS NULL AND cancelled_at IS NULL",
            )?;
            let mut claimed = Vec::with_capacity(rows.len());
            for s in rows {
                if mark.execute(params![s.id, now])? == 1 {
                    claimed.push(s);
                }
            }
            Ok(claimed)
        })
    }

    pub fn ocs_participant(&self, org: &str, id: &str) -> Result<Option<OcsParticipant>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PART_COLS} FROM participants p WHERE p.id = ?1 AND p.organization_id = ?2"
            ))?
            .query_row([id, org], |r| participant_from_row(r, 0))
            .optional()
        })
    }

    /// Test/bench helper: move a session's creation time (token expiry runs from it).
    pub fn ocs_backdate_session(&self, org: &str, id: &str, created_at: i64) -> Result<()> {
        let (org, id) = (org.to_string(), id.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE ocs_sessions SET created_at = ?3 WHERE id = ?1 AND organization_id = ?2",
                params![id, org, created_at],
            )?;
            Ok(())
        })
    }
}

/// What a flow asked to change through `_ocs_update` (see `ocs::render`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBack {
    pub session_state: Map<String, Json>,
    pub participant_data: Map<String, Json>,
    pub participant_name: Option<String>,
}

impl WriteBack {
    pub fn is_empty(&self) -> bool {
        self.session_state.is_empty()
            && self.participant_data.is_empty()
            && self.participant_name.is_none()
    }
}

/// A flow's write-back. The rows are written in the module's lock order (participant, its
/// data, the session: see [`upsert_participant_on`]), so on PostgreSQL a turn's commit and a
/// concurrent `trigger_bot` or participants POST never wait on each other's rows.
fn write_back_on(
    c: &Db,
    org: &str,
    session: &str,
    participant: &str,
    bot: &str,
    wb: WriteBack,
) -> Result<()> {
    let now = now_millis();
    if let Some(name) = wb.participant_name {
        set_participant_name_on(c, org, participant, &name, now)?;
    }
    if !wb.participant_data.is_empty() {
        let patch = Json::Object(wb.participant_data);
        merge_participant_data_on(c, org, participant, bot, &patch, now)?;
    }
    if !wb.session_state.is_empty() {
        set_state_on(c, org, session, Json::Object(wb.session_state), true)?;
    }
    Ok(())
}

fn set_participant_name_on(c: &Db, org: &str, id: &str, name: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE participants SET name = ?3, updated_at = ?4 WHERE id = ?1 AND organization_id = ?2",
    )?
    .execute(params![id, org, name, now])?;
    Ok(())
}

/// Store a task's assistant messages and its result (`error`: message and HTTP status).
///
/// Guard: a task's result is written once. The update is conditional (`WHERE status IN
/// ('queued', 'running')`); when it finds the task already finished (on PostgreSQL: another
/// node gave up on it as orphaned, see [`Store::ocs_pending_tasks`]) the job fails with
/// `Conflict`, so the transaction, its messages included, is rolled back and the first
/// result stands. On SQLite a task is only ever finished once (one process runs them all),
/// so this never fails a bare turn commit there. A task that is gone (its session deleted)
/// is nothing to mark, as before.
fn finish_task_on(
    c: &Db,
    org: &str,
    task: &str,
    session: &str,
    msgs: &[NewOcsMessage],
    error: Option<(String, i64)>,
) -> Result<Vec<OcsMessage>> {
    let stored = append_messages_on(c, org, session, msgs)?;
    let (status, err, err_status) = match &error {
        Some((e, s)) => ("error", Some(e.as_str()), Some(*s)),
        None => ("complete", None, None),
    };
    let n = c
        .prepare_cached(
            "UPDATE ocs_tasks SET status = ?2, message_id = ?3, error = ?4, error_status = ?5,
                updated_at = ?6
             WHERE id = ?1 AND organization_id = ?7 AND status IN ('queued', 'running')",
        )?
        .execute(params![
            task,
            status,
            stored.first().map(|m| m.id),
            err,
            err_status,
            now_millis(),
            org
        ])?;
    if n == 0
        && c.prepare_cached("SELECT 1 FROM ocs_tasks WHERE id = ?1 AND organization_id = ?2")?
            .exists([task, org])?
    {
        return Err(Error::Conflict(format!(
            "task `{task}` is already finished"
        )));
    }
    Ok(stored)
}

/// An OCS turn's rows, committed with the turn ([`Store::commit_turn`]): the flow's
/// write-back, then the messages (a synchronous turn: the user's message and the replies;
/// an async task: the replies), and, for a task, its result (`complete`).
#[derive(Debug, Clone)]
pub struct OcsTurnEnd {
    pub organization_id: String,
    pub session_id: String,
    pub participant_id: String,
    pub bot_id: String,
    pub write_back: WriteBack,
    pub messages: Vec<NewOcsMessage>,
    /// The async chat task this turn completes.
    pub task: Option<String>,
}

/// Apply an [`OcsTurnEnd`] inside a turn's commit; returns the stored messages.
pub(super) fn finish_ocs_turn_on(c: &Db, end: OcsTurnEnd) -> Result<Vec<OcsMessage>> {
    let (org, sid) = (end.organization_id.as_str(), end.session_id.as_str());
    write_back_on(
        c,
        org,
        sid,
        &end.participant_id,
        &end.bot_id,
        end.write_back,
    )?;
    match &end.task {
        Some(task) => finish_task_on(c, org, task, sid, &end.messages, None),
        None => append_messages_on(c, org, sid, &end.messages),
    }
}

/// `(role, content)` of a session's last [`HISTORY_READ`] messages, in time order.
pub(super) fn recent_history_of(c: &Db, session: &str) -> Result<Vec<(String, String)>> {
    recent_history_on(c, session, HISTORY_READ)
}

/// Create a task that starts at once (status `running`) with its user message; the task id
/// and the turn's inputs. Bare-job safe (see [`start_turn_on`]): a session deleted
/// meanwhile fails the task row's foreign key, the first write.
fn start_task_on(c: &Db, session: &OcsSession, task: NewTask) -> Result<(String, TurnInputs)> {
    start_turn_on(c, session, &task, |c, org, sid| {
        let id = new_id();
        let now = now_millis();
        c.prepare_cached(
            "INSERT INTO ocs_tasks(id, organization_id, session_id, status, request, created_at,
                                   updated_at) VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?5)",
        )?
        .execute(params![id, org, sid, task.request.to_string(), now])?;
        Ok(Some(id))
    })?
    .ok_or_else(|| Error::Other("a new task could not be started".into()))
}

/// A chat message's task, as [`Store::ocs_create_started_task`] creates it.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The task's stored request (what a queued task's turn is run from).
    pub request: Json,
    pub user: NewOcsMessage,
    pub attach: Vec<i64>,
    pub context: Option<Json>,
}

/// What a chat request's access decision reads (ocs-api §3.7).
#[derive(Debug, Clone, Default)]
pub struct ChatAccessRows {
    pub session: Option<OcsSession>,
    /// The widget channel of the request's embed key (when it sent one).
    pub key_widget: Option<WidgetChannel>,
    /// The widget channel the session was started on.
    pub own_widget: Option<WidgetChannel>,
    /// The chatbot's web chat is public; read only when neither a session token nor an embed
    /// key governs the session (else `false`).
    pub public: bool,
}

impl ChatAccessRows {
    /// The session needs a session token (its own flag, or its widget's auth level).
    pub fn by_token(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.session_token_required)
            || self.own_widget.as_ref().is_some_and(|w| w.auth_level >= 2)
    }

    /// The session's widget needs its embed key (auth level 1, or deleted).
    pub fn by_key(&self) -> bool {
        self.own_widget
            .as_ref()
            .is_some_and(|w| w.auth_level == 1 || w.deleted)
    }
}

fn chat_access_rows_on(c: &Db, session: &str, embed: Option<&str>) -> Result<ChatAccessRows> {
    let mut rows = ChatAccessRows {
        key_widget: match embed {
            Some(k) => widget_by_key_on(c, k)?,
            None => None,
        },
        ..Default::default()
    };
    let Some(sess) = session_any_org_on(c, session)? else {
        return Ok(rows);
    };
    if let Some(id) = &sess.widget_channel_id {
        rows.own_widget = widget_on(c, &sess.organization_id, id)?;
    }
    rows.session = Some(sess);
    if !rows.by_token()
        && !rows.by_key()
        && let Some(s) = &rows.session
    {
        rows.public = super::bots::load_bot(c, &s.organization_id, &s.bot_id)?
            .settings
            .web_chat_public;
    }
    Ok(rows)
}

fn session_any_org_on(c: &Db, id: &str) -> Result<Option<OcsSession>> {
    c.prepare_cached(&SESSION_BY_ID)?
        .query_row([id], session_from_row)
        .optional()
}

fn widget_by_key_on(c: &Db, key: &str) -> Result<Option<WidgetChannel>> {
    c.prepare_cached(&format!(
        "SELECT {WIDGET_COLS} FROM ocs_widget_channels WHERE embed_key = ?1"
    ))?
    .query_row([key], widget_from_row)
    .optional()
}

fn widget_on(c: &Db, org: &str, id: &str) -> Result<Option<WidgetChannel>> {
    c.prepare_cached(&format!(
        "SELECT {WIDGET_COLS} FROM ocs_widget_channels WHERE id = ?1 AND organization_id = ?2"
    ))?
    .query_row([id, org], widget_from_row)
    .optional()
}

/// Start a task's turn: read the turn's inputs, run `mark_task` (the task row's write, the
/// first write), then write the rest of `task`: `remote_context` into the session's state,
/// the attachments kept (no expiry), the user's message. The inputs returned are as they are
/// after the writes: the state with `remote_context` merged ([`merged_state`]).
/// `mark_task` returning `None` (the task is not this job's to start) ends the job with
/// nothing written.
///
/// Guards (PostgreSQL): with a `remote_context` to merge, the state is read with the session
/// row locked (see [`locked_state_on`]), so a write-back committing meanwhile is not undone;
/// attachments are updated in id order, so two jobs never lock the same files in opposite
/// orders. The user's message is appended under the session lock (see
/// [`append_messages_on`]).
fn start_turn_on<R>(
    c: &Db,
    session: &OcsSession,
    task: &NewTask,
    mark_task: impl FnOnce(&Db, &str, &str) -> Result<Option<R>>,
) -> Result<Option<(R, TurnInputs)>> {
    let (org, sid) = (session.organization_id.as_str(), session.id.as_str());
    let mut inputs = turn_inputs_on(
        c,
        org,
        sid,
        &session.participant.id,
        &session.bot_id,
        task.context.is_some(),
    )?;
    let Some(r) = mark_task(c, org, sid)? else {
        return Ok(None);
    };
    if let Some(ctx) = &task.context {
        let mut patch = Map::new();
        patch.insert("remote_context".into(), ctx.clone());
        inputs.state = merged_state(std::mem::take(&mut inputs.state), patch);
        c.prepare_cached(
            "UPDATE ocs_sessions SET state = ?3, updated_at = ?4
             WHERE id = ?1 AND organization_id = ?2",
        )?
        .execute(params![sid, org, inputs.state.to_string(), now_millis()])?;
    }
    let mut attach = task.attach.clone();
    attach.sort_unstable();
    attach.dedup();
    for f in &attach {
        c.prepare_cached(
            "UPDATE ocs_files SET expires_at = NULL WHERE id = ?1 AND organization_id = ?2",
        )?
        .execute(params![f, org])?;
    }
    append_messages_on(c, org, sid, std::slice::from_ref(&task.user))?;
    Ok(Some((r, inputs)))
}

/// A session's state, its row locked until the job commits (PostgreSQL; SQLite's writer is
/// alone anyway); `None`: no such session of `org`.
fn locked_state_on(c: &Db, org: &str, id: &str) -> Result<Option<Json>> {
    c.prepare_cached(&format!(
        "SELECT state FROM ocs_sessions WHERE id = ?1 AND organization_id = ?2{}",
        c.pick("", " FOR NO KEY UPDATE")
    ))?
    .query_row([id, org], |r| json_col(r, 0))
    .optional()
}

/// A session state with `patch`'s keys set (a state that is not an object counts as empty).
fn merged_state(state: Json, patch: Map<String, Json>) -> Json {
    let mut cur = match state {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    cur.extend(patch);
    Json::Object(cur)
}

/// Replace (or shallow-merge into) a session's state; `None`: no such session of `org`.
///
/// Guard (a read-modify-write): the state is read with the row locked (`FOR NO KEY UPDATE` on
/// PostgreSQL), so concurrent merges (a turn's write-back, `trigger_bot` session data, the
/// sessions API) apply one after the other and none drops another's keys.
fn set_state_on(c: &Db, org: &str, id: &str, state: Json, merge: bool) -> Result<Option<Json>> {
    let Some(cur) = locked_state_on(c, org, id)? else {
        return Ok(None);
    };
    let new = match (merge, state) {
        (true, Json::Object(patch)) => merged_state(cur, patch),
        (true, _) => merged_state(cur, Map::new()),
        (false, state) => state,
    };
    c.prepare_cached("UPDATE ocs_sessions SET state = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, new.to_string(), now_millis()])?;
    Ok(Some(new))
}

fn latest_session_on(
    c: &Db,
    org: &str,
    bot: &str,
    platform: &str,
    identifier: &str,
    exclude: &[&str],
) -> Result<Option<OcsSession>> {
    let excl = serde_json::to_string(exclude)?;
    c.prepare_cached(&format!(
        "{} WHERE s.organization_id = ?1 AND s.bot_id = ?2 AND p.platform = ?3
         AND p.identifier = ?4 AND s.status NOT IN ({})
         ORDER BY s.created_at DESC, s.id DESC LIMIT 1",
        session_select(),
        json_strings(c, "?5")
    ))?
    .query_row(
        params![org, bot, platform, identifier, excl],
        session_from_row,
    )
    .optional()
}

fn set_status_on(c: &Db, org: &str, id: &str, status: &str) -> Result<bool> {
    let now = now_millis();
    let ended = matches!(status, "pending-review" | "complete").then_some(now);
    Ok(c.execute(
        "UPDATE ocs_sessions SET status = ?3, ended_at = COALESCE(?4, ended_at), updated_at = ?5
         WHERE id = ?1 AND organization_id = ?2",
        params![id, org, status, ended, now],
    )? > 0)
}

fn session_tags_on(c: &Db, id: &str) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT name FROM ocs_session_tags WHERE session_id = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([id], |r| r.get(0))?;
    Ok(rows)
}

/// The strings of a JSON array bound at `param`, as a subquery (`x IN (...)`): `json_each`
/// on SQLite, `jsonb_array_elements_text` on PostgreSQL. One bound value whatever the list's
/// length, so the statement is prepared once.
fn json_strings(c: &Db, param: &str) -> String {
    match c.dialect() {
        Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
        Dialect::Postgres => format!("SELECT jsonb_array_elements_text(CAST({param} AS jsonb))"),
    }
}

fn session_filter_sql(c: &Db, f: &SessionFilter) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(b) = &f.bot_id {
        sql.push_str(" AND s.bot_id = ?");
        args.push(Value::Text(b.clone()));
    }
    if !f.tags.is_empty() {
        sql.push_str(&format!(
            " AND EXISTS(SELECT 1 FROM ocs_session_tags t WHERE t.session_id = s.id \
             AND t.name IN ({}))",
            json_strings(c, "?")
        ));
        args.push(Value::Text(
            serde_json::to_string(&f.tags).unwrap_or_default(),
        ));
    }
    if !f.versions.is_empty() {
        // A message's tags: a JSON array of `{name, category}` in a text column.
        let tags = match c.dialect() {
            Dialect::Sqlite => {
                "json_each(m.tags) j WHERE m.session_id = s.id \
                 AND json_extract(j.value, '$.category') = 'experiment_version' \
                 AND json_extract(j.value, '$.name')"
            }
            Dialect::Postgres => {
                "jsonb_array_elements(CASE WHEN jsonb_typeof(CAST(m.tags AS jsonb)) = 'array' \
                 THEN CAST(m.tags AS jsonb) ELSE '[]'::jsonb END) j WHERE m.session_id = s.id \
                 AND j.value ->> 'category' = 'experiment_version' AND j.value ->> 'name'"
            }
        };
        sql.push_str(&format!(
            " AND EXISTS(SELECT 1 FROM ocs_messages m, {tags} IN ({}))",
            json_strings(c, "?")
        ));
        args.push(Value::Text(
            serde_json::to_string(&f.versions).unwrap_or_default(),
        ));
    }
    (sql, args)
}

/// Participants of the `ocs` engine channel (one per session, an implementation detail) are
/// never listed.
fn participant_filter_sql(f: &ParticipantFilter, args: &mut Vec<Value>) -> String {
    let mut sql = String::from(" AND p.platform != 'ocs'");
    if let Some(i) = &f.identifier {
        sql.push_str(" AND p.identifier = ?");
        args.push(Value::Text(i.clone()));
    }
    if let Some(p) = &f.platform {
        sql.push_str(" AND p.platform = ?");
        args.push(Value::Text(p.clone()));
    }
    if let Some(b) = &f.bot_id {
        sql.push_str(" AND EXISTS(SELECT 1 FROM participant_data d WHERE d.participant_id = p.id AND d.bot_id = ?)");
        args.push(Value::Text(b.clone()));
    }
    sql
}

fn data_entries_on(
    c: &Db,
    org: &str,
    participant: &str,
    bot: Option<&str>,
) -> Result<Vec<DataEntry>> {
    let mut st = c.prepare_cached(
        "SELECT d.bot_id, b.name, d.data, d.system_metadata FROM participant_data d
         JOIN bots b ON b.id = d.bot_id
         WHERE d.organization_id = ?1 AND d.participant_id = ?2 AND (CAST(?3 AS TEXT) IS NULL OR d.bot_id = ?3)
         ORDER BY b.created_at, b.id",
    )?;
    let rows = st.query_map(params![org, participant, bot], |r| {
        Ok(DataEntry {
            bot_id: r.get(0)?,
            bot_name: r.get(1)?,
            data: json_col(r, 2)?,
            system_metadata: json_col(r, 3)?,
        })
    })?;
    Ok(rows)
}

/// A participants POST's data and schedule changes for participant `participant` of `org`.
///
/// An entry without data makes sure the participant has a (possibly empty) data row for the
/// chatbot: an insert that does nothing when the row exists, one statement with no check
/// before it, so a concurrent write of that row on another node is never overwritten.
fn apply_participant_data_on(
    c: &Db,
    org: &str,
    participant: &str,
    ops: &[ParticipantDataOp],
    now: i64,
) -> Result<()> {
    for op in ops {
        match &op.data {
            Some(d) if !d.is_empty() => set_participant_data_on(
                c,
                org,
                participant,
                &op.bot_id,
                &Json::Object(d.clone()),
                now,
            )?,
            _ => ensure_participant_data_on(c, org, participant, &op.bot_id, now)?,
        }
        for s in &op.schedules {
            match s {
                ScheduleOp::Delete { external_id } => {
                    c.execute(
                        "UPDATE ocs_schedules SET cancelled_at = COALESCE(cancelled_at, ?4), updated_at = ?4
                         WHERE participant_id = ?1 AND bot_id = ?2 AND external_id = ?3
                         AND organization_id = ?5",
                        params![participant, op.bot_id, external_id, now, org],
                    )?;
                }
                ScheduleOp::Upsert {
                    external_id,
                    name,
                    prompt,
                    date,
                } => {
                    let ext = external_id
                        .clone()
                        .unwrap_or_else(|| super::ids::random_token(12));
                    c.execute(
                        "INSERT INTO ocs_schedules(organization_id, participant_id, bot_id, external_id,
                            name, prompt_text, next_trigger_date, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                         ON CONFLICT(participant_id, bot_id, external_id) DO UPDATE SET
                            name = excluded.name, prompt_text = excluded.prompt_text,
                            next_trigger_date = excluded.next_trigger_date,
                            updated_at = excluded.updated_at",
                        params![org, participant, op.bot_id, ext, name, prompt, date, now],
                    )?;
                }
            }
        }
    }
    Ok(())
}
