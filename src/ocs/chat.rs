//! The chat API's decisions (ocs-api §3.6, §3.7, §5.6, §6) behind `http::ocs::chat`: who may
//! start a chat with which chatbot ([`Ocs::start_chat`]), who may use a session
//! ([`Ocs::chat_access`]: session token, embed key and origin, team membership, a public
//! chatbot), a message accepted as a task ([`Ocs::accept_message`]), and a task's or a
//! session's messages read back ([`Ocs::poll_task`], [`Ocs::poll_messages`]). Each takes what
//! the request presents as plain data ([`ChatAsk`], [`StartChat`]) and returns a domain result
//! or an [`OcsError`]; the HTTP layer parses and renders.
//!
//! The `chat_api` rate limit is applied by the HTTP layer before a session-bound request
//! reaches these (a limited caller learns nothing more, and the verdict goes into every
//! answer's headers), except on chat start, where the contract checks it once the chatbot is
//! found: [`Ocs::start_chat`] reports its verdict through its `rate` argument.

use super::ratelimit::{Scope, Verdict};
use super::{Ocs, OcsError, TOKEN_LIFETIME_SECS, TaskResult, new_task};
use crate::store::ocs::{
    ChatAccessRows, NewSession, OcsFile, OcsKey, OcsMessage, OcsSession, OcsTask, WidgetChannel,
};
use crate::store::{Bot, Store};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// Longest time a task poll holds a `processing` answer of a task this process is running
/// (see [`Ocs::poll_task`]).
pub const POLL_HOLD: std::time::Duration = std::time::Duration::from_millis(25);

fn now_ms() -> i64 {
    crate::store::ids::now_millis()
}

/// What a session-bound chat request presents for its access decision.
#[derive(Debug, Clone, Default)]
pub struct ChatAsk {
    /// `X-Embed-Key`.
    pub embed: Option<String>,
    /// Host of the request's `Origin`, else of its `Referer`.
    pub origin: Option<String>,
    /// `X-Session-Token`.
    pub token: Option<String>,
    /// Organization of the caller's API key, if it presented a valid one.
    pub member_org: Option<String>,
}

/// A `chat/start` request, parsed and validated as to its shape.
#[derive(Debug, Clone)]
pub struct StartChat {
    /// The chatbot id, lowercase.
    pub bot_id: String,
    pub participant_remote_id: Option<String>,
    pub participant_name: Option<String>,
    pub session_data: Json,
    pub version: Option<i64>,
    /// `X-Embed-Key`.
    pub embed_key: Option<String>,
    /// The caller's valid API key, of any organization.
    pub member: Option<OcsKey>,
    /// An `Authorization` header was sent (a bearer a member's key does not back is refused).
    pub authorization: bool,
    /// Host of the request's origin (see [`ChatAsk::origin`]).
    pub origin: Option<String>,
    /// The client's address (the rate-limit key of a chat started without an embed key).
    pub client_ip: String,
    /// `X-OCS-Widget-Version`.
    pub widget_version: Option<String>,
    /// `Referer`, kept as the session's embed source when it is an http(s) URL.
    pub referer: Option<String>,
}

/// A started chat: its session, chatbot, pinned version and session token (when one is
/// needed).
#[derive(Debug, Clone)]
pub struct StartedChat {
    pub session: OcsSession,
    pub bot: Bot,
    pub pinned: Option<i64>,
    pub token: Option<String>,
}

/// A task poll's answer.
#[derive(Debug, Clone)]
pub enum TaskPoll {
    /// Queued, running, or unknown (OCS reads unknown ids as processing too).
    Processing,
    /// Completed without a message.
    NoMessage,
    /// Completed: its first message with the message's files.
    Complete(OcsMessage, Vec<OcsFile>),
    /// Failed with this error and HTTP status (400 or 500).
    Failed(String, i64),
}

/// A page of a session's messages.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub session: OcsSession,
    pub messages: Vec<(OcsMessage, Vec<OcsFile>)>,
    pub more: bool,
}

/// Does `host` (of the request's origin) match the channel's `allowed_domains`?
fn origin_allowed(host: Option<&str>, w: &WidgetChannel) -> bool {
    let Some(host) = host else {
        return false;
    };
    w.allowed_domains.iter().any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "*"
            || d == host
            || d.strip_prefix("*.")
                .is_some_and(|base| host.ends_with(&format!(".{base}")) || host == base)
    })
}

fn access_denied() -> OcsError {
    OcsError::error_code(
        401,
        "Authentication required to chat with this chatbot",
        "chat_access_denied",
    )
}

fn session_gone() -> OcsError {
    OcsError::detail(403, "Session does not exist")
}

fn bad_embed_key() -> OcsError {
    OcsError::detail(403, "Invalid widget embed key")
}

/// A session that has ended takes no more messages or uploads.
pub fn ensure_open(session: &OcsSession) -> Result<(), OcsError> {
    if session.status == "complete" {
        return Err(OcsError::error(400, "Session has ended"));
    }
    Ok(())
}

/// `(working version number, published version numbers)` of a chatbot.
pub(super) fn version_numbers(s: &Store, bot: &Bot) -> crate::store::Result<(i64, Vec<i64>)> {
    let mut v = s.list_versions(&bot.organization_id, &bot.id, 100_000)?;
    v.reverse();
    let next = v.last().map(|x| x.seq).unwrap_or(0) + 1;
    Ok((next, v.iter().map(|x| x.seq).collect()))
}

/// A message with its files (read under the session's organization `org`).
fn with_files(
    s: &Store,
    org: &str,
    m: OcsMessage,
) -> crate::store::Result<(OcsMessage, Vec<OcsFile>)> {
    let files = if m.file_ids.is_empty() {
        vec![]
    } else {
        s.ocs_files_of(org, &m.file_ids)?
    };
    Ok((m, files))
}

/// The stored request of a chat message: its text, attachments, `context` and version.
fn message_request(text: &str, ids: &[i64], body: &Json) -> Json {
    json!({"message": text, "attachment_ids": ids,
           "context": body.get("context").cloned().unwrap_or(Json::Null),
           "version_number": body.get("version_number").cloned().unwrap_or(Json::Null)})
}

/// The request of the common message, `None` for any other: a non-blank text, no version
/// pin, no attachments.
fn plain_message(body: &Json) -> Option<Json> {
    let text = body
        .get("message")?
        .as_str()
        .filter(|t| !t.trim().is_empty())?;
    let unpinned = body
        .get("version_number")
        .is_none_or(|v| v.is_null() || *v == json!(0));
    let no_files = match body.get("attachment_ids") {
        None | Some(Json::Null) => true,
        Some(Json::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    (unpinned && no_files).then(|| message_request(text, &[], body))
}

/// A task and, when it completed in `sess`, its first message with its files.
type TaskRead = Option<(OcsTask, Option<(OcsMessage, Vec<OcsFile>)>)>;

fn read_task(s: &Store, tid: &str, sess: &OcsSession) -> crate::store::Result<TaskRead> {
    let Some(task) = s.ocs_task(&sess.organization_id, tid)? else {
        return Ok(None);
    };
    let message = match (
        task.session_id == sess.id,
        task.status.as_str(),
        task.message_id,
    ) {
        (true, "complete", Some(mid)) => {
            match s.ocs_message(&sess.organization_id, &sess.id, mid)? {
                Some(m) => Some(with_files(s, &sess.organization_id, m)?),
                None => None,
            }
        }
        _ => None,
    };
    Ok(Some((task, message)))
}

/// The answer of a task from its in-process slot; `None` while it runs, and for a reply with
/// files (their metadata is read from the store as usual).
fn from_slot(result: Option<&TaskResult>) -> Option<TaskPoll> {
    match result? {
        TaskResult::Complete(m) if m.file_ids.is_empty() => {
            Some(TaskPoll::Complete(m.clone(), vec![]))
        }
        TaskResult::Complete(_) => None,
        TaskResult::Error(e, status) => Some(TaskPoll::Failed(e.clone(), *status)),
    }
}

impl Ocs {
    /// Blocking store work with its failure as this family's error.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> crate::store::Result<R> + Send + 'static,
    ) -> Result<R, OcsError> {
        Ok(self.engine.blocking(f).await?)
    }

    /// The session and whether the caller is a team member, or the denial (every one a 403,
    /// in the contract's order).
    fn decide_access(
        &self,
        ask: &ChatAsk,
        rows: &ChatAccessRows,
    ) -> Result<(OcsSession, bool), OcsError> {
        let Some(session) = &rows.session else {
            return Err(session_gone());
        };
        if ask.embed.is_some() {
            let Some(w) = rows
                .key_widget
                .as_ref()
                .filter(|w| w.bot_id == session.bot_id && !w.deleted)
            else {
                return Err(bad_embed_key());
            };
            if !origin_allowed(ask.origin.as_deref(), w) {
                return Err(OcsError::detail(403, "Origin not allowed for this chatbot"));
            }
        }
        let member = ask.member_org.as_ref() == Some(&session.organization_id);
        if rows.by_token() {
            let Some(token) = &ask.token else {
                return Err(OcsError::error_code(
                    403,
                    "Session token required",
                    "session_token_required",
                ));
            };
            if !self.token.verify(&session.id, token) {
                return Err(OcsError::error_code(
                    403,
                    "Invalid session token",
                    "session_token_invalid",
                ));
            }
            let lifetime = rows
                .own_widget
                .as_ref()
                .and_then(|w| w.session_token_lifetime)
                .unwrap_or(TOKEN_LIFETIME_SECS);
            if now_ms() > session.created_at + lifetime * 1000 {
                return Err(OcsError::error_code(
                    403,
                    "Session has expired",
                    "session_expired",
                ));
            }
            return Ok((session.clone(), member));
        }
        if rows.by_key() {
            let ok = match (&rows.key_widget, &rows.own_widget) {
                (Some(k), Some(w)) => k.id == w.id && !w.deleted,
                _ => false,
            };
            if !ok {
                return Err(bad_embed_key());
            }
        } else {
            if let Some(k) = &rows.key_widget
                && Some(&k.id) != session.widget_channel_id.as_ref()
            {
                return Err(bad_embed_key());
            }
            if !rows.public && !member {
                return Err(OcsError::detail(
                    403,
                    "You do not have access to this chatbot",
                ));
            }
        }
        Ok((session.clone(), member))
    }

    /// Session-bound access (§3.7) to session `sid`, running the endpoint's own read
    /// (`extra`) in the same blocking call as the access reads (one thread hop per poll).
    /// `extra`'s result is dropped when access is denied.
    pub async fn chat_access<R: Send + 'static>(
        &self,
        sid: &str,
        ask: &ChatAsk,
        extra: impl FnOnce(&Store, &OcsSession) -> crate::store::Result<R> + Send + 'static,
    ) -> Result<(OcsSession, bool, R), OcsError> {
        let (sid, embed) = (sid.to_string(), ask.embed.clone());
        let (rows, extra) = self
            .read(move |s| {
                let rows = s.ocs_chat_access_rows(&sid, embed.as_deref())?;
                let extra = match &rows.session {
                    Some(sess) => Some(extra(s, sess)?),
                    None => None,
                };
                Ok((rows, extra))
            })
            .await?;
        let (session, member) = self.decide_access(ask, &rows)?;
        let extra = extra.ok_or_else(session_gone)?;
        Ok((session, member, extra))
    }

    /// Start a chat (§5.6.1): find the chatbot (its organization is the embed key's, else
    /// the API key's, else the chatbot's own), apply the `chat_api` limit (its verdict left
    /// in `rate`), check the credentials against the chatbot, the version pin, then create
    /// the session.
    pub async fn start_chat(
        &self,
        req: StartChat,
        rate: &mut Option<Verdict>,
    ) -> Result<StartedChat, OcsError> {
        let source_widget = req.session_data.get("source").and_then(Json::as_str) == Some("widget");
        let widget = match &req.embed_key {
            Some(k) => {
                let k = k.clone();
                self.read(move |s| s.ocs_widget_by_key(&k)).await?
            }
            None => None,
        };
        let org = match (&widget, &req.member) {
            (Some(w), _) => w.organization_id.clone(),
            (None, Some(k)) => k.organization_id.clone(),
            (None, None) => String::new(),
        };
        let (b2, widget_org) = (req.bot_id.clone(), widget.is_some());
        let bot = self
            .read(move |s| {
                if !org.is_empty()
                    && let Ok(b) = s.get_bot(&org, &b2)
                {
                    return Ok(Some(b));
                }
                if widget_org {
                    return Ok(None);
                }
                // Keyless (or a key of another organization): the bot decides the organization.
                s.ocs_bot_any_org(&b2)
            })
            .await?
            .ok_or_else(OcsError::bot_not_found)?;
        let rate_key = widget
            .as_ref()
            .map(|w| format!("channel:{}", w.id))
            .unwrap_or_else(|| format!("ip:{}", req.client_ip));
        let v = self
            .limiter
            .hit(Scope::Chat, &rate_key, None, now_ms() / 1000);
        *rate = Some(v);
        if v.blocked {
            return Err(OcsError::Throttled {
                available_in: v.reset,
            });
        }
        let is_member = req
            .member
            .as_ref()
            .is_some_and(|k| k.organization_id == bot.organization_id);
        if req.authorization && !is_member {
            return Err(access_denied());
        }
        if req.embed_key.is_some() {
            let Some(w) = widget.as_ref().filter(|w| !w.deleted && w.bot_id == bot.id) else {
                return Err(OcsError::detail(401, "Invalid widget embed key"));
            };
            if !origin_allowed(req.origin.as_deref(), w) {
                return Err(OcsError::error(403, "Origin not allowed for this chatbot"));
            }
            if !w.enabled {
                return Err(OcsError::error(
                    403,
                    w.disabled_message
                        .as_deref()
                        .unwrap_or("This chatbot is currently unavailable."),
                ));
            }
        } else if !is_member && !bot.settings.web_chat_public {
            return Err(access_denied());
        }
        // Version selection: team members only.
        let mut pinned = None;
        if let Some(n) = req.version.filter(|n| *n != 0) {
            if !is_member {
                return Err(OcsError::error(
                    403,
                    "Version number requires authentication",
                ));
            }
            let b = bot.clone();
            let (next, versions) = self.read(move |s| version_numbers(s, &b)).await?;
            if n != next && !versions.contains(&n) {
                return Err(OcsError::detail(
                    404,
                    format!("Experiment with version {n} not found"),
                ));
            }
            pinned = Some(n);
        }
        if let Some(w) = &widget {
            let recorded = req
                .widget_version
                .clone()
                .or_else(|| source_widget.then(|| "unknown".into()));
            if let Some(v) = recorded {
                let (o, id) = (w.organization_id.clone(), w.id.clone());
                // Best effort: the chat starts whether or not the version is recorded.
                let _ = self
                    .read(move |s| s.ocs_record_widget_version(&o, &id, &v))
                    .await;
            }
        }
        let (platform, kind, token_required) = match &widget {
            Some(w) => ("embedded_widget", "widget", w.auth_level >= 2),
            None => ("api", "api", true),
        };
        let identifier = match (&req.member, is_member) {
            (Some(k), true) => k
                .owner_email
                .clone()
                .unwrap_or_else(|| format!("apikey:{}", k.prefix)),
            _ => format!("anon:{}", crate::store::ids::new_id()),
        };
        let embed_source = req
            .referer
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"));
        let state = if is_member && req.session_data.is_object() {
            req.session_data.clone()
        } else {
            json!({})
        };
        let pname = req.participant_name;
        let new = NewSession {
            bot_id: bot.id.clone(),
            participant_platform: platform.into(),
            participant_identifier: identifier,
            participant_name: Some(pname.clone().unwrap_or_else(|| {
                if is_member {
                    String::new()
                } else {
                    "Anonymous".into()
                }
            }))
            .filter(|n| !n.is_empty()),
            participant_remote_id: req.participant_remote_id,
            platform: platform.into(),
            channel_kind: kind.into(),
            widget_channel_id: widget.as_ref().map(|w| w.id.clone()),
            owner_key_id: req
                .member
                .as_ref()
                .filter(|_| is_member)
                .map(|k| k.id.clone()),
            status: "active".into(),
            state,
            version_number: pinned,
            session_token_required: token_required,
            embed_source,
            messages: vec![],
            data_name: pname,
        };
        let org = bot.organization_id.clone();
        let session = self.read(move |s| s.ocs_create_session(&org, new)).await?;
        let token = token_required.then(|| self.token.issue(&session.id));
        Ok(StartedChat {
            session,
            bot,
            pinned,
            token,
        })
    }

    /// Accept a chat message for session `sid` (§5.6.3): access, then the body (`body`: as
    /// parsed; its error still comes after a denial), the session's state, a version pin
    /// (members only) and the attachments (this session's uploads); the task id. The common
    /// message (`plain_message`) to an idle session takes the short way
    /// (`message_at_once`). `access`: the credentials presented (see
    /// [`super::TaskSlot::access`]).
    pub async fn accept_message(
        self: &Arc<Self>,
        sid: &str,
        ask: &ChatAsk,
        body: Result<Json, OcsError>,
        access: String,
    ) -> Result<String, OcsError> {
        if let Some(request) = body.as_ref().ok().and_then(plain_message)
            && self.reserve(sid)
        {
            return self.message_at_once(sid, ask, request, access).await;
        }
        let (session, member, ()) = self.chat_access(sid, ask, |_, _| Ok(())).await?;
        let body = body?;
        let text = match body.get("message") {
            None | Some(Json::Null) => {
                return Err(OcsError::field("message", "This field is required."));
            }
            Some(Json::String(s)) if s.trim().is_empty() => {
                return Err(OcsError::field("message", "This field may not be blank."));
            }
            Some(Json::String(s)) => s.clone(),
            Some(_) => return Err(OcsError::field("message", "Not a valid string.")),
        };
        ensure_open(&session)?;
        if let Some(v) = body
            .get("version_number")
            .filter(|v| !v.is_null() && **v != json!(0))
        {
            if !member {
                return Err(OcsError::error(
                    403,
                    "Version number requires authentication",
                ));
            }
            let (o, b) = (session.organization_id.clone(), session.bot_id.clone());
            let bot = self.read(move |s| s.get_bot(&o, &b)).await?;
            let (next, versions) = self.read(move |s| version_numbers(s, &bot)).await?;
            if *v != json!(next) && !versions.iter().any(|n| json!(n) == *v) {
                return Err(OcsError::detail(
                    404,
                    format!("Experiment with version {v} not found"),
                ));
            }
        }
        let ids: Vec<i64> = match body.get("attachment_ids") {
            None | Some(Json::Null) => vec![],
            Some(Json::Array(a)) => a
                .iter()
                .map(Json::as_i64)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| OcsError::field("attachment_ids", "A valid integer is required."))?,
            Some(_) => {
                return Err(OcsError::field(
                    "attachment_ids",
                    "Expected a list of items.",
                ));
            }
        };
        if !ids.is_empty() {
            let mut uniq = ids.clone();
            uniq.sort_unstable();
            uniq.dedup();
            let (ids2, o) = (ids.clone(), session.organization_id.clone());
            let found = self.read(move |s| s.ocs_files_of(&o, &ids2)).await?;
            let valid = uniq.len() == ids.len()
                && found.len() == ids.len()
                && found.iter().all(|f| {
                    f.organization_id == session.organization_id
                        && f.purpose == "message_media"
                        && f.metadata.get("session_id").and_then(Json::as_str)
                            == Some(session.id.as_str())
                });
            if !valid {
                return Err(OcsError::error(400, "One or more file IDs are invalid"));
            }
        }
        let request = message_request(&text, &ids, &body);
        self.enqueue_message(&session, request, access)
            .await
            .map_err(|e| OcsError::Internal(e.to_string()))
    }

    /// The common message to a session with nothing queued (reserved by the caller, see
    /// [`Ocs::reserve`]): its access rows are read as a job of the store's writer (SQL only,
    /// warm pages), the decision is made here, and the task with its user message is created
    /// in one more writer job, with [`Ocs::accept_message`]'s answers in its order.
    async fn message_at_once(
        self: &Arc<Self>,
        sid: &str,
        ask: &ChatAsk,
        request: Json,
        access: String,
    ) -> Result<String, OcsError> {
        let started = async {
            let rows = self
                .store
                .ocs_chat_access_rows_now(sid.to_string(), ask.embed.clone())
                .await?;
            let (session, _) = self.decide_access(ask, &rows)?;
            ensure_open(&session)?;
            let (id, inputs) = self
                .store
                .ocs_create_started_task(&session, new_task(request.clone()))
                .await?;
            Ok((session, id, inputs))
        }
        .await;
        match started {
            Ok((session, id, inputs)) => {
                self.start_reserved(&session, &id, request, inputs, access);
                Ok(id)
            }
            Err(e) => {
                self.release(sid.to_string());
                Err(e)
            }
        }
    }

    /// Task poll (§5.6.4). Our extension of timing only (the answers are exactly OCS's):
    /// while a task this process accepted is still queued or running, the poll holds its
    /// `processing` answer for at most `POLL_HOLD`, woken by the task's completion (an
    /// in-process notifier per task id, armed before the task is read, so a completion
    /// between the read and the wait is not missed). A client polling right after the 202
    /// thus usually gets `complete` in one request; a slower turn still reads `processing`
    /// after the hold. A poll presenting exactly the credentials its task's message was
    /// accepted with (`access`: same session, same headers) was granted access moments ago:
    /// it is answered from the task's slot without reading the store.
    pub async fn poll_task(
        &self,
        sid: &str,
        tid: &str,
        ask: &ChatAsk,
        access: &str,
    ) -> Result<TaskPoll, OcsError> {
        let slot = self.task_waiter(tid);
        let mut done = std::pin::pin!(slot.as_ref().map(|s| s.done.notified()));
        if let Some(d) = done.as_mut().as_pin_mut() {
            d.enable();
        }
        if let Some(sl) = slot
            .as_ref()
            .filter(|sl| !sl.access.is_empty() && sl.session_id == sid && sl.access == access)
        {
            if sl.result.get().is_none()
                && let Some(d) = done.as_mut().as_pin_mut()
            {
                let _ = tokio::time::timeout(POLL_HOLD, d).await;
            }
            match from_slot(sl.result.get()) {
                Some(answer) => {
                    self.task_result_taken(tid);
                    return Ok(answer);
                }
                None if sl.result.get().is_none() => return Ok(TaskPoll::Processing),
                None => {}
            }
        }
        // One read: access, the task and, when it completed in this session, its first message.
        let t2 = tid.to_string();
        let (session, _, mut found) = self
            .chat_access(sid, ask, move |s, sess| read_task(s, &t2, sess))
            .await?;
        let pending = |f: &TaskRead| {
            f.as_ref().is_some_and(|(t, _)| {
                t.session_id == session.id && matches!(t.status.as_str(), "queued" | "running")
            })
        };
        if pending(&found)
            && let Some(d) = done.as_mut().as_pin_mut()
        {
            let _ = tokio::time::timeout(POLL_HOLD, d).await;
            // The result as committed, when the task finished (no read back); else as stored.
            if let Some(answer @ TaskPoll::Complete(..)) =
                from_slot(slot.as_ref().and_then(|s| s.result.get()))
            {
                return Ok(answer);
            }
            let (t2, sess) = (tid.to_string(), session.clone());
            found = self.read(move |s| read_task(s, &t2, &sess)).await?;
        }
        let Some((task, message)) = found else {
            // Unknown or never-issued ids read "processing", as OCS does.
            return Ok(TaskPoll::Processing);
        };
        if task.session_id != session.id {
            return Err(OcsError::detail(404, "Not found."));
        }
        Ok(match (task.status.as_str(), message) {
            ("queued" | "running", _) => TaskPoll::Processing,
            ("error", _) => TaskPoll::Failed(
                task.error.unwrap_or_default(),
                task.error_status.unwrap_or(500),
            ),
            (_, Some((m, files))) => TaskPoll::Complete(m, files),
            (_, None) if task.message_id.is_none() => TaskPoll::NoMessage,
            (_, None) => return Err(OcsError::error(500, "Unknown error")),
        })
    }

    /// Message poll (§5.6.5): access first (a denied caller gets 403, not 400), then the
    /// parameters (`params`: `since` and `limit` as parsed, or the message of the first bad
    /// one), then at most `limit` messages after `since`.
    pub async fn poll_messages(
        &self,
        sid: &str,
        ask: &ChatAsk,
        params: Result<(Option<i64>, u32), &'static str>,
    ) -> Result<MessagePage, OcsError> {
        let p2 = params;
        let (session, _, found) = self
            .chat_access(sid, ask, move |s, sess| {
                let Ok((since, limit)) = p2 else {
                    return Ok(None);
                };
                let org = &sess.organization_id;
                let mut msgs =
                    s.ocs_messages(org, &sess.id, since, Some(limit.saturating_add(1)))?;
                let more = msgs.len() > limit as usize;
                msgs.truncate(limit as usize);
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    out.push(with_files(s, org, m)?);
                }
                Ok(Some((out, more)))
            })
            .await?;
        params.map_err(|e| OcsError::error(400, e))?;
        let (messages, more) = found.unwrap_or_default();
        Ok(MessagePage {
            session,
            messages,
            more,
        })
    }
}
