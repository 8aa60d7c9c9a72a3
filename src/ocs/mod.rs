//! Open Chat Studio domain logic that is not SQL and not HTTP (issue 4, ocs-api §7): every
//! decision behind the OCS API, each taking plain data and returning a domain result or an
//! [`OcsError`] (the HTTP layer parses and renders): the chat API and its access decision
//! (`chat`), chat uploads (`uploads`, multipart in `files`), `incoming_message` and the
//! OpenAI endpoint (`sync`), `trigger_bot` (`trigger`), API sessions and participants
//! (`records`); how an OCS session runs on the conversation engine, CSML → OCS message
//! mapping (`render`), the async chat task runner, session tokens (`token`), rate limits
//! (`ratelimit`), cursors (`cursor`) and timestamps ([`time`]).
//!
//! # How a session runs on the engine
//! An OCS session is a row of `ocs_sessions`; its turns run on the engine as the client
//! `(bot, the bot's "ocs" channel, user_id = session id)`, so each session has its own CSML
//! conversation, hold and memories, and turns of one session are serialized by the engine. The
//! bot's `ocs` channel is an ordinary botyard channel (kind `ocs`) created on first use.
//!
//! # What a flow sees (`_metadata`)
//! `session_id`, `session_state`, `remote_context` (the chat message `context`),
//! `participant_data` (this chatbot's), `participant {identifier, name, platform,
//! remote_id}`, `channel` (the session platform), `chatbot {id, version}`, and `history`
//! (earlier messages of the session as `{role, content}`, at most the last 20, without the
//! message being answered; read in the turn's own writer job, and only for a bot whose flows
//! name `_metadata` — no other flow can see it). A `trigger_bot`
//! `prompt_text` or a due schedule arrives as a `flow_trigger` event to the flow named
//! `ocs_trigger` with `event.ocs_trigger = {prompt, source: "api"|"schedule", schedule_id?}`;
//! a bot without such a flow sends nothing (logged). Write-back: see `render`.
//!
//! # Versions (our extension)
//! A version number pinned at chat start (or given by a `/v{N}/` route of `incoming_message`
//! and the OpenAI endpoint; `0` there is the default version) is recorded on the session and
//! drives its later turns: build N runs through [`Engine::chat_code`] whatever is published
//! since, and its replies are tagged `v{N}`; the working number runs the working flows
//! (`v{N}-unreleased`). Unpinned sessions run the live build. See [`pinned_code`].
//!
//! # Task polls (our extension of timing only)
//! A task poll of a task this process accepted and has not finished holds its `processing`
//! answer for at most 25 ms (`chat::POLL_HOLD`), woken by the task's completion
//! through an in-process notifier keyed by task id ([`Ocs::task_waiter`], armed before the
//! task is read, so no completion is missed; no busy loop); a woken poll answers from the
//! committed result without reading it back. The answers are exactly OCS's — only their
//! timing differs: a client that polls right after the 202 usually reads `complete` in that
//! one request, as soon as the turn is committed. Unknown, finished or restarted-away tasks
//! answer at once. A poll presenting exactly the credentials its task's message was accepted
//! with reads nothing from the store (see [`Ocs::poll_task`]). A finished task's
//! committed result stays in memory for that poll until it is read once, or for
//! [`FINISHED_KEEP`] at most (a fast turn is usually done before its first poll arrives).
//!
//! # A chat message's path (kept lean: measured by `bench_task_latency_and_incoming_throughput`)
//! `message` (a text to an idle session, unpinned, no attachments): a writer job reads the
//! access rows, access is decided here ([`Ocs::accept_message`]), and one more writer job
//! creates the task, stores the user message and reads the turn's inputs ([`TurnInputs`]);
//! 202. The turn is a spawned task: the engine turn, whose
//! writer job also stores the replies and the task's result; the task's slot is then
//! notified. No other store round trip or blocking-pool hop on this path. Other messages read
//! access from the pool first and may queue behind the session's running task.
//! Synchronous turns (`incoming_message`, the OpenAI endpoint, triggers) likewise store their
//! messages in the turn's own commit ([`Ocs::run_event`]).
//!
//! # Connector channels
//! `trigger_bot` to a platform with a connector channel (Telegram etc.) stores the message
//! (or the prompt's replies) and queues it in the plugins' durable outbox, addressed to the
//! participant's identifier. Due schedules' replies are stored and delivered the same way
//! (delivery id `ocs-schedule-{id}`, so a schedule is queued at most once).

pub(crate) mod chat;
pub(crate) mod cursor;
mod error;
pub(crate) mod files;
pub(crate) mod ratelimit;
pub(crate) mod records;
pub(crate) mod render;
pub(crate) mod sync;
pub mod time;
pub(crate) mod token;
mod trigger;
pub(crate) mod uploads;

pub use error::OcsError;
pub use trigger::{TriggerRequest, TriggerWhat};

use crate::engine::{BotCode, ChatRequest, Engine, EngineError, TurnHooks, TurnMetadata};
use crate::plugins::PluginRuntime;
use crate::store::ocs::{
    NewOcsMessage, NewTask, OcsKey, OcsSession, OcsTask, OcsTurnEnd, Tag, TurnInputs,
};
use crate::store::{Channel, NewChannel, Store};
use render::Rendered;
use serde_json::{Map, Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Kind of the per-bot engine channel OCS sessions run on.
pub const ENGINE_CHANNEL_KIND: &str = crate::store::OCS_CHANNEL_KIND;
/// Flow that receives `trigger_bot` prompts and schedules.
pub const TRIGGER_FLOW: &str = "ocs_trigger";
/// Default session-token lifetime.
pub const TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// The OCS service: one per server.
pub struct Ocs {
    pub store: Store,
    pub engine: Engine,
    pub token: token::TokenKey,
    pub limiter: ratelimit::Limiter,
    channels: Mutex<HashMap<String, Channel>>,
    queues: Mutex<HashMap<String, VecDeque<Job>>>,
    version_tags: Mutex<HashMap<String, (std::time::Instant, String)>>,
    /// Resolved API keys by key hash; dropped whenever the store's auth epoch moves (a
    /// revoke or role change, possibly by the CLI), which is polled every second.
    keys: std::sync::RwLock<HashMap<String, OcsKey>>,
    key_epoch: std::sync::atomic::AtomicI64,
    /// Tasks accepted by this process, each with the notifier a held task poll waits on (see
    /// [`Ocs::task_waiter`]); finished ones until their result is taken or [`FINISHED_KEEP`]
    /// has passed.
    inflight: Mutex<HashMap<String, Arc<TaskSlot>>>,
    /// Connector delivery (due schedules, `trigger_bot` to Telegram etc.); `None`: a server
    /// without plugins, whose connector deliveries are logged and dropped.
    pub plugins: Option<Arc<PluginRuntime>>,
}

/// A chat task on its session's queue. `session`: already loaded by the request; `started`:
/// the request already stored the user message and marked the task running, and read the
/// turn's `inputs` in the same job.
pub struct Job {
    pub task: OcsTask,
    pub session: Option<OcsSession>,
    pub started: bool,
    pub inputs: Option<TurnInputs>,
}

/// A task this process accepted and has not finished: a held task poll waits on `done`; the
/// committed result is left in `result` just before it is notified, so a woken poll answers
/// without reading it back.
#[derive(Default)]
pub struct TaskSlot {
    pub done: Notify,
    pub result: OnceLock<TaskResult>,
    /// The credentials the task's message was accepted with (see
    /// `http::ocs::chat::access_fingerprint`; empty: unknown, e.g. a task re-queued after a
    /// restart). A poll presenting exactly these for the task's session was granted access
    /// moments ago and needs no store read.
    pub access: String,
    pub session_id: String,
    /// When the task finished (set with `result`).
    pub finished: OnceLock<std::time::Instant>,
}

/// On PostgreSQL, how long a task must have been left unchanged before a starting node takes
/// it as left behind by a dead process ([`Store::ocs_pending_tasks`]): far longer than a turn
/// runs (its deadline is capped, 30 s by default) or a task waits behind its session's earlier
/// ones, so the tasks other live nodes are running or have queued are left alone. On SQLite
/// the process is alone: every pending task at start was left behind.
pub const ORPHANED_AFTER: Duration = Duration::from_secs(600);

/// How long a finished task's result is kept for its first poll.
pub const FINISHED_KEEP: Duration = Duration::from_secs(30);

/// A finished task as committed: its first assistant message, or its error and HTTP status.
#[derive(Debug, Clone)]
pub enum TaskResult {
    Complete(crate::store::ocs::OcsMessage),
    Error(String, i64),
}

impl Ocs {
    /// The service of one server, owned by its HTTP state (never a process-wide static: when
    /// the server stops, dropping the state drops this service's store handle with the rest,
    /// so the store really closes). Start its background work with
    /// [`Ocs::start_background`].
    pub fn new(engine: Engine, plugins: Option<Arc<PluginRuntime>>) -> std::io::Result<Arc<Ocs>> {
        let store = engine.store().clone();
        let token = token::TokenKey::load_or_create(store.data_dir())?;
        Ok(Arc::new(Ocs {
            store,
            engine,
            token,
            limiter: ratelimit::Limiter::new(ratelimit::RateConfig::from_env()),
            channels: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            version_tags: Mutex::new(HashMap::new()),
            keys: std::sync::RwLock::new(HashMap::new()),
            key_epoch: std::sync::atomic::AtomicI64::new(i64::MIN),
            inflight: Mutex::new(HashMap::new()),
            plugins,
        }))
    }

    /// The slot of a task this process accepted: its `done` is notified (all waiters) right
    /// after the task's result is committed, and `result` then holds it. `None` for a task
    /// that is unknown, not ours, or finished a while ago — its stored status is final as read.
    pub fn task_waiter(&self, task: &str) -> Option<Arc<TaskSlot>> {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .cloned()
    }

    /// Forget a finished task's slot once its result was answered from it.
    pub fn task_result_taken(&self, task: &str) {
        let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(task).is_some_and(|s| s.finished.get().is_some()) {
            m.remove(task);
        }
    }

    /// Drop finished slots nobody polled within [`FINISHED_KEEP`].
    fn sweep_finished(&self) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.finished.get().is_none_or(|t| t.elapsed() < FINISHED_KEEP));
    }

    fn task_accepted(&self, task: &str, session: &str, access: String) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(task.to_string())
            .or_insert_with(|| {
                Arc::new(TaskSlot {
                    access,
                    session_id: session.to_string(),
                    ..Default::default()
                })
            });
    }

    fn task_finished(&self, task: &str, result: Option<TaskResult>) {
        let slot = {
            let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                // Kept for the task's first poll.
                Some(_) => m.get(task).cloned(),
                // Nothing new was committed: polls read the store.
                None => m.remove(task),
            }
        };
        if let Some(slot) = slot {
            if let Some(r) = result {
                let _ = slot.result.set(r);
                let _ = slot.finished.set(std::time::Instant::now());
            }
            slot.done.notify_waiters();
        }
    }

    /// Start the background work (inside a tokio runtime): re-queue tasks left by a previous
    /// process, sweep expired uploads, fire due schedules.
    pub fn start_background(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let s = this.store.clone();
            let stale_before = match s.dialect() {
                crate::store::db::Dialect::Sqlite => crate::store::ids::now_millis(),
                crate::store::db::Dialect::Postgres => {
                    crate::store::ids::now_millis() - ORPHANED_AFTER.as_millis() as i64
                }
            };
            match tokio::task::spawn_blocking(move || s.ocs_pending_tasks(stale_before)).await {
                Ok(Ok(tasks)) => {
                    if !tasks.is_empty() {
                        tracing::info!(n = tasks.len(), "re-queueing OCS chat tasks");
                    }
                    for t in tasks {
                        this.submit(Job {
                            task: t,
                            session: None,
                            started: false,
                            inputs: None,
                        });
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not load pending OCS tasks"),
                Err(e) => tracing::error!(error = %e, "could not load pending OCS tasks"),
            }
        });
        // Due schedules are checked every second; expired uploads are swept every
        // `BOTYARD_OCS_SWEEP_SECS` seconds (default 60).
        let sweep_every = std::env::var("BOTYARD_OCS_SWEEP_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(60);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.check_key_epoch().await;
                this.sweep_finished();
                if n.is_multiple_of(sweep_every) {
                    this.sweep_files().await;
                }
                n += 1;
                this.fire_schedules().await;
            }
        });
    }

    /// A resolved API key (cached; revocations apply within about a second).
    pub async fn resolve_key(&self, key: &str) -> Option<OcsKey> {
        let h = crate::secrets::hash_api_key(key);
        if let Some(k) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&h) {
            return Some(k.clone());
        }
        let (s, k) = (self.store.clone(), key.to_string());
        let found = tokio::task::spawn_blocking(move || s.ocs_key_lookup(&k))
            .await
            .ok()?
            .ok()??;
        let mut cache = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(h, found.clone());
        Some(found)
    }

    async fn check_key_epoch(&self) {
        let s = self.store.clone();
        let Ok(Ok(epoch)) = tokio::task::spawn_blocking(move || s.auth_epoch()).await else {
            return;
        };
        let old = self
            .key_epoch
            .swap(epoch, std::sync::atomic::Ordering::Relaxed);
        if old != epoch {
            self.keys.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    async fn sweep_files(&self) {
        let s = self.store.clone();
        // The bytes go with their rows (`ocs_file_content` cascades).
        let r = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::Error>(
                s.ocs_sweep_files(crate::store::ids::now_millis(), 500)?
                    .len(),
            )
        })
        .await;
        match r {
            Ok(Ok(n)) if n > 0 => tracing::info!(n, "removed expired OCS uploads"),
            Ok(Err(e)) => tracing::warn!(error = %e, "OCS upload sweep failed"),
            _ => {}
        }
    }

    async fn fire_schedules(&self) {
        let s = self.store.clone();
        let due = tokio::task::spawn_blocking(move || {
            s.ocs_claim_due_schedules(crate::store::ids::now_millis(), 50)
        })
        .await;
        let Ok(Ok(due)) = due else { return };
        for sch in due {
            let s = self.store.clone();
            let (org, p, b) = (
                sch.organization_id.clone(),
                sch.participant_id.clone(),
                sch.bot_id.clone(),
            );
            let latest =
                tokio::task::spawn_blocking(move || match s.ocs_participant(&org, &p)? {
                    Some(part) => {
                        s.ocs_latest_session(&org, &b, &part.platform, &part.identifier, &[])
                    }
                    None => Ok(None),
                })
                .await;
            match latest {
                Ok(Ok(Some(session))) => {
                    let trig = json!({"prompt": sch.prompt_text, "source": "schedule", "schedule_id": sch.external_id});
                    match self.run_trigger(&session, trig).await {
                        Ok(replies) if !replies.is_empty() => {
                            let id = format!("ocs-schedule-{}", sch.id);
                            self.deliver_on_connector(&session, &id, &replies).await;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, schedule = sch.id, "scheduled prompt failed")
                        }
                    }
                }
                _ => tracing::info!(
                    schedule = sch.id,
                    "schedule due but the participant has no session"
                ),
            }
        }
    }

    /// Queue `replies` (stored already) for delivery to the session's participant when the
    /// session's platform is a connector channel of the bot (Telegram etc.): the plugins'
    /// durable outbox, addressed to the participant's identifier, under delivery id `id`
    /// (queueing an id twice is a no-op). Other platforms: nothing to do. Failures are logged.
    pub async fn deliver_on_connector(&self, session: &OcsSession, id: &str, replies: &[Rendered]) {
        let (o, b, plat) = (
            session.organization_id.clone(),
            session.bot_id.clone(),
            session.platform.clone(),
        );
        let channel = self
            .engine
            .blocking(move |s| connector_channel(s, &o, &b, &plat))
            .await;
        let channel = match channel {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, session = %session.id, "could not look up the connector channel");
                return;
            }
        };
        let Some(rt) = self.plugins.as_ref() else {
            tracing::warn!(session = %session.id, channel = %channel.id, "no plugin runtime to deliver on the connector channel");
            return;
        };
        let messages = replies.iter().map(Rendered::payload).collect();
        let to = &session.participant.identifier;
        if let Err(e) = rt.enqueue_delivery(&channel, to, id, messages).await {
            tracing::warn!(error = %e, session = %session.id, "queueing the delivery failed");
        }
    }

    /// The bot's engine channel (created on first use).
    pub async fn engine_channel(&self, org: &str, bot: &str) -> Result<Channel, EngineError> {
        if let Some(c) = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(bot)
        {
            return Ok(c.clone());
        }
        let (o, b) = (org.to_string(), bot.to_string());
        let ch = self
            .engine
            .blocking(move |s| {
                let existing = s
                    .list_channels(&o, Some(&b))?
                    .into_iter()
                    .find(|c| c.kind == ENGINE_CHANNEL_KIND);
                match existing {
                    Some(c) => Ok(c),
                    None => Ok(s
                        .create_channel(
                            &o,
                            &b,
                            NewChannel {
                                kind: ENGINE_CHANNEL_KIND.into(),
                                name: "Open Chat Studio API".into(),
                                webhook_url: None,
                                config: json!({}),
                            },
                        )?
                        .0),
                }
            })
            .await?;
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bot.to_string(), ch.clone());
        Ok(ch)
    }

    /// The version tag of replies of the code serving `bot`, given the bot's live build id (as
    /// read with the turn's inputs): `v{N}` for a live build, `v{N}-unreleased` for working
    /// flows (N = the number the next build will get).
    /// Tags of builds are cached per build id; the working copy's is computed each time (its
    /// number moves with every build).
    async fn version_tag_for(
        &self,
        org: &str,
        bot: &str,
        live: Option<String>,
    ) -> Result<String, EngineError> {
        let key = format!("{bot}#{}", live.as_deref().unwrap_or(""));
        // A build's tag never changes; the working copy's moves with builds (and a rollback to
        // the working copy), so it is reused for a few seconds only.
        if let Some((at, t)) = self
            .version_tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && (live.is_some() || at.elapsed() < Duration::from_secs(3))
        {
            return Ok(t.clone());
        }
        let (o, b) = (org.to_string(), bot.to_string());
        let versions = self
            .engine
            .blocking(move |s| s.list_versions(&o, &b, 100_000))
            .await?;
        let published = live
            .as_ref()
            .and_then(|id| versions.iter().find(|v| &v.id == id))
            .map(|v| format!("v{}", v.seq));
        let tag = published.unwrap_or_else(|| {
            format!(
                "v{}-unreleased",
                versions.first().map(|v| v.seq).unwrap_or(0) + 1
            )
        });
        self.version_tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (std::time::Instant::now(), tag.clone()));
        Ok(tag)
    }

    /// Everything a session's turn needs before it runs: the engine request (with the OCS
    /// `_metadata`), the code of its pinned version (see [`pinned_code`]) and the version tag
    /// of its replies.
    async fn prepare_event(
        &self,
        session: &OcsSession,
        payload: Json,
        extra_meta: Map<String, Json>,
        current_is_stored: bool,
        inputs: Option<TurnInputs>,
    ) -> Result<PreparedTurn, EngineError> {
        let org = session.organization_id.clone();
        let channel = self.engine_channel(&org, &session.bot_id).await?;
        let (o, sid, pid, bid) = (
            org.clone(),
            session.id.clone(),
            session.participant.id.clone(),
            session.bot_id.clone(),
        );
        let pinned = session.version_number.filter(|n| *n > 0);
        // Inputs read with the task's start need no read here (unless a pinned version must
        // be looked up).
        let (inputs, live, code) = match inputs {
            Some(i) if pinned.is_none() => {
                let live = i.live.clone();
                (i, live, BotCode::Live)
            }
            given => {
                self.engine
                    .blocking(move |s| {
                        let i = match given {
                            Some(i) => i,
                            None => s.ocs_turn_inputs(&o, &sid, &pid, &bid)?,
                        };
                        let (live, code) = pinned_code(s, &o, &bid, i.live.clone(), pinned)?;
                        Ok((i, live, code))
                    })
                    .await?
            }
        };
        let tag = self.version_tag_for(&org, &session.bot_id, live).await?;
        let TurnInputs {
            state,
            participant_data: pdata,
            ..
        } = inputs;
        // The history is the session's transcript again: seen by the flow, never stored with
        // the conversation; read in the turn's job, and only when the flow can see it.
        let history: TurnMetadata = Box::new(move |mut history| {
            // The user message of a text turn is stored before the turn: it is the event,
            // not history.
            if current_is_stored && history.last().is_some_and(|(role, _)| role == "user") {
                history.pop();
            }
            let skip = history.len().saturating_sub(20);
            let history: Vec<Json> = history
                .into_iter()
                .skip(skip)
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect();
            let mut m = Map::new();
            m.insert("history".into(), Json::Array(history));
            m
        });
        let mut meta = Map::new();
        meta.insert("session_id".into(), json!(session.id));
        meta.insert(
            "remote_context".into(),
            state.get("remote_context").cloned().unwrap_or(Json::Null),
        );
        meta.insert("session_state".into(), state);
        meta.insert("participant_data".into(), pdata);
        meta.insert(
            "participant".into(),
            json!({"identifier": session.participant.identifier, "name": session.participant.name,
                   "platform": session.participant.platform, "remote_id": session.participant.remote_id}),
        );
        meta.insert("channel".into(), json!(session.platform));
        meta.insert(
            "chatbot".into(),
            json!({"id": session.bot_id, "version": session.version_number}),
        );
        meta.extend(extra_meta);
        Ok(PreparedTurn {
            req: ChatRequest {
                channel,
                user_id: session.id.clone(),
                payload,
                metadata: Json::Object(meta),
                turn_metadata: Map::new(),
                request_id: None,
                received_at: crate::store::ids::now_millis(),
            },
            code,
            tag,
            hooks: TurnHooks {
                after: None,
                history: Some((session.id.clone(), history)),
            },
        })
    }

    /// Run one event of a session on the engine. The flow's write-back, then `before` (a
    /// text turn's user message) and the replies are stored in the turn's own commit, so
    /// nobody observes the turn half way and it costs no commit of its own. Returns the
    /// rendered replies.
    async fn run_event(
        &self,
        session: &OcsSession,
        payload: Json,
        extra_meta: Map<String, Json>,
        before: Vec<NewOcsMessage>,
        inputs: Option<TurnInputs>,
    ) -> Result<Vec<Rendered>, EngineError> {
        let PreparedTurn {
            req,
            code,
            tag,
            mut hooks,
        } = self
            .prepare_event(session, payload, extra_meta, false, inputs)
            .await?;
        let out = Arc::new(Mutex::new(None));
        let o = Arc::clone(&out);
        let end = TurnEndOf::new(session, None);
        let after: crate::engine::AfterTurn = Box::new(move |resp| {
            let (rendered, wb) = render::render_all(resp.messages.iter().map(|m| &m.payload));
            let mut msgs = before.clone();
            msgs.extend(assistant_messages(&rendered, &tag));
            *o.lock().unwrap_or_else(|p| p.into_inner()) = Some(rendered);
            end.with(wb, msgs)
        });
        hooks.after = Some(after);
        self.engine.chat_code(req, code, hooks).await?;
        // Set by the hook of the turn that just committed.
        out.lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| EngineError::Internal("the turn stored no replies".into()))
    }

    /// An async chat task's text turn whose write-back, replies and result are stored in the
    /// turn's own commit. Returns the task's first stored reply.
    async fn run_task_turn(
        &self,
        session: &OcsSession,
        task: &str,
        text: &str,
        attachments: Json,
        inputs: Option<TurnInputs>,
    ) -> Result<crate::store::ocs::OcsMessage, EngineError> {
        let PreparedTurn {
            req,
            code,
            tag,
            mut hooks,
        } = self
            .prepare_event(
                session,
                text_payload(text, attachments),
                Map::new(),
                true,
                inputs,
            )
            .await?;
        let end = TurnEndOf::new(session, Some(task.to_string()));
        let after: crate::engine::AfterTurn = Box::new(move |resp| {
            let (rendered, wb) = render::render_all(resp.messages.iter().map(|m| &m.payload));
            let mut msgs = assistant_messages(&rendered, &tag);
            if msgs.is_empty() {
                // A silent turn completes with an empty assistant message, as OCS does for
                // silent pipelines, so the widget's poll loop ends.
                msgs.push(assistant_message(String::new(), json!({}), &tag));
            }
            end.with(wb, msgs)
        });
        hooks.after = Some(after);
        let done = self.engine.chat_code(req, code, hooks).await?;
        // The turn's commit stored at least one message (see above).
        done.ocs_stored
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("the turn stored no reply".into()))
    }

    /// A synchronous text turn (`incoming_message`, the OpenAI endpoint), stored as
    /// [`Ocs::run_event`] stores it; a turn that fails stores the user's message alone.
    /// Returns the rendered replies.
    pub async fn run_sync_text(
        &self,
        session: &OcsSession,
        text: &str,
        inputs: Option<TurnInputs>,
    ) -> Result<Vec<Rendered>, EngineError> {
        let user = user_message(text.to_string(), vec![]);
        let payload = text_payload(text, Json::Null);
        let result = self
            .run_event(session, payload, Map::new(), vec![user.clone()], inputs)
            .await;
        if result.is_err()
            && let Err(e) = self
                .store
                .ocs_append_messages_async(&session.organization_id, &session.id, vec![user])
                .await
        {
            tracing::error!(error = %e, session = %session.id, "could not store the user message");
        }
        result
    }

    /// A `trigger_bot` prompt or a due schedule: routed to the `ocs_trigger` flow; its replies
    /// are stored (the prompt never is). Returns the stored replies.
    pub async fn run_trigger(
        &self,
        session: &OcsSession,
        trigger: Json,
    ) -> Result<Vec<render::Rendered>, EngineError> {
        let (o, b) = (session.organization_id.clone(), session.bot_id.clone());
        let flows = self.engine.blocking(move |s| s.list_flows(&o, &b)).await?;
        if !flows
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(TRIGGER_FLOW))
        {
            tracing::info!(session = %session.id, "prompt not sent: the bot has no `{TRIGGER_FLOW}` flow");
            return Ok(Vec::new());
        }
        let mut extra = Map::new();
        extra.insert("ocs_trigger".into(), trigger.clone());
        self.run_event(
            session,
            json!({"content_type": "flow_trigger", "content": {"flow_id": TRIGGER_FLOW, "ocs_trigger": trigger}}),
            extra,
            vec![],
            None,
        )
        .await
    }

    /// Accept a chat message for `session`: durably create its task and queue it. When the
    /// session has nothing queued the task starts at once and its user message is stored in
    /// the same commit as the task (one commit less per turn); otherwise it waits as
    /// `queued` behind the session's earlier tasks. Returns the task id.
    /// `access`: the credentials the message was accepted with (a poll presenting the same
    /// ones skips its access read, see [`TaskSlot::access`]).
    pub async fn enqueue_message(
        self: &Arc<Self>,
        session: &OcsSession,
        request: Json,
        access: String,
    ) -> Result<String, crate::store::Error> {
        let sid = session.id.clone();
        let org = session.organization_id.clone();
        if !self.reserve(&sid) {
            let id = self
                .store
                .ocs_create_task(&org, &sid, request.clone())
                .await?;
            let task = OcsTask {
                id: id.clone(),
                organization_id: org,
                session_id: sid,
                status: "queued".into(),
                request,
                message_id: None,
                error: None,
                error_status: None,
            };
            self.task_accepted(&id, &task.session_id, access);
            self.submit(Job {
                task,
                session: None,
                started: false,
                inputs: None,
            });
            return Ok(id);
        }
        match self
            .store
            .ocs_create_started_task(session, new_task(request.clone()))
            .await
        {
            Ok((id, inputs)) => {
                self.start_reserved(session, &id, request, inputs, access);
                Ok(id)
            }
            Err(e) => {
                self.release(sid);
                Err(e)
            }
        }
    }

    /// Reserve an idle session for a task that starts at once: later messages queue behind
    /// it. `false` when the session has a task queued or running.
    pub fn reserve(&self, session: &str) -> bool {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if q.contains_key(session) {
            return false;
        }
        // An empty entry reserves the session.
        q.insert(session.to_string(), VecDeque::new());
        true
    }

    /// Give back a [`Ocs::reserve`]d session that got no task (running what queued meanwhile).
    pub fn release(self: &Arc<Self>, session: String) {
        self.drain(session, None);
    }

    /// Run the turn of task `id`, created started (its user message stored, `inputs` read)
    /// on a [`Ocs::reserve`]d session, then the session's queue.
    pub fn start_reserved(
        self: &Arc<Self>,
        session: &OcsSession,
        id: &str,
        request: Json,
        inputs: TurnInputs,
        access: String,
    ) {
        self.task_accepted(id, &session.id, access);
        let task = OcsTask {
            id: id.to_string(),
            organization_id: session.organization_id.clone(),
            session_id: session.id.clone(),
            status: "running".into(),
            request,
            message_id: None,
            error: None,
            error_status: None,
        };
        self.drain(
            session.id.clone(),
            Some(Job {
                task,
                session: Some(session.clone()),
                started: true,
                inputs: Some(inputs),
            }),
        );
    }

    /// Queue a task on its session's queue (tasks of one session run in order).
    pub fn submit(self: &Arc<Self>, job: Job) {
        self.task_accepted(&job.task.id, &job.task.session_id, String::new());
        let sid = job.task.session_id.clone();
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = q.get_mut(&sid) {
            v.push_back(job);
            return;
        }
        q.insert(sid.clone(), VecDeque::new());
        drop(q);
        self.drain(sid, Some(job));
    }

    /// Run `first`, then the session's queue until it is empty (then drop the entry).
    fn drain(self: &Arc<Self>, sid: String, first: Option<Job>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(job) = first {
                let id = job.task.id.clone();
                let r = this.process(job).await;
                this.task_finished(&id, r);
            }
            loop {
                let next = {
                    let mut q = this.queues.lock().unwrap_or_else(|p| p.into_inner());
                    match q.get_mut(&sid).and_then(VecDeque::pop_front) {
                        Some(j) => j,
                        None => {
                            q.remove(&sid);
                            return;
                        }
                    }
                };
                let id = next.task.id.clone();
                let r = this.process(next).await;
                this.task_finished(&id, r);
            }
        });
    }

    /// Run one chat task: store the user message, run the turn, store the replies and the
    /// result (replies and result in one commit, so a `complete` task always has its message).
    /// Returns the committed result (`None` when nothing new was committed).
    async fn process(self: &Arc<Self>, job: Job) -> Option<TaskResult> {
        let Job {
            task,
            session,
            started,
            mut inputs,
        } = job;
        let org = task.organization_id.clone();
        let session = match session {
            Some(s) => Some(s),
            None => {
                let (o, sid) = (org.clone(), task.session_id.clone());
                self.engine
                    .blocking(move |s| s.ocs_session(&o, &sid))
                    .await
                    .ok()
                    .flatten()
            }
        };
        let Some(session) = session else {
            let _ = self
                .store
                .ocs_finish_task(
                    &org,
                    &task.id,
                    &task.session_id,
                    vec![],
                    Some(("Session not found".into(), 400)),
                )
                .await;
            return None;
        };
        let (text, ids, _) = parse_request(&task.request);
        if !started {
            if task.status == "running" {
                // A previous process died mid-turn: whether its turn committed is unknown, so
                // the task fails rather than running the turn twice.
                let _ = self
                    .store
                    .ocs_finish_task(
                        &org,
                        &task.id,
                        &session.id,
                        vec![],
                        Some(("The server restarted during this turn".into(), 500)),
                    )
                    .await;
                return None;
            }
            match self
                .store
                .ocs_start_task(&task.id, &session, new_task(task.request.clone()))
                .await
            {
                Ok(Some(i)) => inputs = Some(i),
                // Started or finished elsewhere (another node recovered it), or its session
                // is gone: nothing of ours to run.
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, task = %task.id, "could not start OCS task");
                    return None;
                }
            }
        }
        let files = if ids.is_empty() {
            vec![]
        } else {
            let (s, o) = (self.store.clone(), org.clone());
            tokio::task::spawn_blocking(move || s.ocs_files_of(&o, &ids))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        let attachments: Vec<Json> = files
            .iter()
            .map(|f| json!({"id": f.id, "name": f.name, "content_type": f.content_type, "size": f.size}))
            .collect();
        let result = self
            .run_task_turn(&session, &task.id, &text, Json::Array(attachments), inputs)
            .await;
        let error = match result {
            Ok(first) => return Some(TaskResult::Complete(first)),
            Err(EngineError::BadRequest(m)) => (m, 400),
            // The organization's share of the turn workers stayed full: said as such.
            Err(e @ EngineError::Busy { .. }) => (e.message().to_string(), 503),
            Err(e) => {
                tracing::error!(error = %e, task = %task.id, "OCS chat turn failed");
                (
                    "Sorry something went wrong. Please try again later.".to_string(),
                    500,
                )
            }
        };
        match self
            .store
            .ocs_finish_task(&org, &task.id, &session.id, vec![], Some(error.clone()))
            .await
        {
            Ok(_) => Some(TaskResult::Error(error.0, error.1)),
            Err(e) => {
                tracing::error!(error = %e, task = %task.id, "could not store OCS task result");
                None
            }
        }
    }
}

/// What [`Ocs::prepare_event`] readies.
struct PreparedTurn {
    req: ChatRequest,
    code: BotCode,
    tag: String,
    /// `history`: `_metadata.history`, read with the turn's state (see [`TurnMetadata`]); the
    /// caller may add its `after`.
    hooks: TurnHooks,
}

/// Who an OCS turn's rows belong to ([`OcsTurnEnd`] without its contents), taken from the
/// session before the turn so its after-turn hook owns them.
struct TurnEndOf {
    organization_id: String,
    session_id: String,
    participant_id: String,
    bot_id: String,
    task: Option<String>,
}

impl TurnEndOf {
    fn new(session: &OcsSession, task: Option<String>) -> TurnEndOf {
        TurnEndOf {
            organization_id: session.organization_id.clone(),
            session_id: session.id.clone(),
            participant_id: session.participant.id.clone(),
            bot_id: session.bot_id.clone(),
            task,
        }
    }

    /// Called once per run of the turn (see `engine::AfterTurn`).
    fn with(
        &self,
        write_back: crate::store::ocs::WriteBack,
        messages: Vec<NewOcsMessage>,
    ) -> OcsTurnEnd {
        OcsTurnEnd {
            organization_id: self.organization_id.clone(),
            session_id: self.session_id.clone(),
            participant_id: self.participant_id.clone(),
            bot_id: self.bot_id.clone(),
            write_back,
            messages,
            task: self.task.clone(),
        }
    }
}

/// The engine payload of a text message (with its attachments, if any).
fn text_payload(text: &str, attachments: Json) -> Json {
    let mut content = Map::new();
    content.insert("text".into(), json!(text));
    if attachments.as_array().is_some_and(|a| !a.is_empty()) {
        content.insert("attachments".into(), attachments);
    }
    json!({"content_type": "text", "content": content})
}

fn assistant_message(content: String, metadata: Json, tag: &str) -> NewOcsMessage {
    NewOcsMessage {
        role: "assistant".into(),
        content,
        metadata,
        tags: vec![Tag {
            name: tag.to_string(),
            category: "experiment_version".into(),
        }],
        file_ids: vec![],
    }
}

/// The assistant messages of rendered replies, tagged with the version that wrote them.
fn assistant_messages(rendered: &[Rendered], tag: &str) -> Vec<NewOcsMessage> {
    rendered
        .iter()
        .map(|r| assistant_message(r.content.clone(), r.metadata.clone(), tag))
        .collect()
}

/// The bot's active connector channel (one with a plugin behind it) for an OCS platform
/// (`telegram` etc.), if any.
pub fn connector_channel(
    store: &Store,
    org: &str,
    bot: &str,
    platform: &str,
) -> crate::store::Result<Option<Channel>> {
    if matches!(platform, "api" | "web" | "evaluations" | "embedded_widget") {
        return Ok(None);
    }
    Ok(store
        .list_channels(org, Some(bot))?
        .into_iter()
        .find(|c| c.kind == platform && c.status == "active" && c.token.is_some()))
}

/// `(message, attachment_ids, context)` of a chat task's request.
/// The task of a chat message's stored request: its user message, attachments and
/// `context`.
pub fn new_task(request: Json) -> NewTask {
    let (text, ids, context) = parse_request(&request);
    NewTask {
        user: user_message(text, ids.clone()),
        attach: ids,
        context,
        request,
    }
}

/// A user's message as stored in the session's transcript.
fn user_message(text: String, file_ids: Vec<i64>) -> NewOcsMessage {
    NewOcsMessage {
        role: "user".into(),
        content: text,
        metadata: json!({}),
        tags: vec![],
        file_ids,
    }
}

fn parse_request(request: &Json) -> (String, Vec<i64>, Option<Json>) {
    let text = request
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let ids = request
        .get("attachment_ids")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_i64).collect())
        .unwrap_or_default();
    let context = request.get("context").cloned().filter(|c| !c.is_null());
    (text, ids, context)
}

/// The OCS roles an API key may carry (ocs-api §3.4; the routes' role sets are in
/// `http::ocs`): `admin` (the default) and the role groups the contract names; `member` is a
/// team member in no role group (the routes open to any member only).
pub const KEY_ROLES: &[&str] = &[
    "admin",
    "chatbot_admin",
    "chat_viewer",
    "event_admin",
    "assistant_admin",
    "annotation_reviewer",
    "member",
];

/// The code a session pinned to OCS version `pinned` runs, and the build id its replies are
/// tagged with. Our extension of the contract: a version pinned at chat start (or by a
/// `/v{N}/` route) drives the session's later turns, whatever is published since. N is a
/// build's number, or the working number (no build has it yet): the working flows, as OCS
/// runs its unreleased working version. A number that names neither (a version removed
/// since) falls back to the live code. Unpinned sessions run the live code.
pub fn pinned_code(
    store: &crate::store::Store,
    org: &str,
    bot: &str,
    live: Option<String>,
    pinned: Option<i64>,
) -> crate::store::Result<(Option<String>, BotCode)> {
    let Some(n) = pinned.filter(|n| *n > 0) else {
        return Ok((live, BotCode::Live));
    };
    match store.ocs_version_id(org, bot, n)? {
        Some(id) if live.as_deref() == Some(id.as_str()) => Ok((live, BotCode::Live)),
        Some(id) => Ok((Some(id.clone()), BotCode::Build(id))),
        None => {
            let newest = store.list_versions(org, bot, 1)?.first().map(|v| v.seq);
            if n == newest.unwrap_or(0) + 1 {
                Ok((None, BotCode::Working))
            } else {
                Ok((live, BotCode::Live))
            }
        }
    }
}
