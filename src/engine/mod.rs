//! The conversation engine (csml-language §7, studio-api §2): runs one end-user event through
//! a bot — flow selection, memories, hold, expiry, transcript, usage — and the bot-level
//! operations of the Studio API (bot/flows get & update, validate, build, usage, broadcasts,
//! conversations/open).
//!
//! # How to call it
//!
//! * Build one [`Engine`] per process: `Engine::new(store, EngineConfig { .. })`. It is cheap to
//!   clone (an `Arc`).
//! * Every `pub async fn` is safe to `.await` from request handlers: none blocks the async
//!   runtime. A turn reads its state through the store (a job of its writer, SQL only), runs
//!   the interpreter on a blocking thread under its deadline and quotas, holding a slot of
//!   its organization's fair share of the workers (`fair`), then commits its write set
//!   (plain data) through the store's writer. The writer never runs a bot. An `Ok` from [`Engine::chat`] means the turn is
//!   committed (durable).
//! * Turns of one client `(bot, channel, user_id)` run one at a time, in arrival order; turns of
//!   different clients run in parallel.
//! * After each committed turn the engine calls [`TurnSink::turn_committed`] (still inside the
//!   client's turn lock, so calls for one conversation come in order): the HTTP layer's webhook
//!   delivery hooks in there. It must not block (enqueue and return).
//! * [`Engine::start_background`] (inside a tokio runtime) starts the broadcast worker and the
//!   expiry sweep; `serve` calls it once.
//! * The plain `Store` functions stay available through [`Engine::store`] for anything not
//!   wrapped here; call them inside [`Engine::blocking`].
//!
//! Module map: `event` (request payload → interpreter event), `cache` (compiled bots per
//! version), `locks` (per-client turn locks), `fair` (each organization's share of the
//! interpreter's workers, turn limits), `slow` (the low-priority threads of slow turns),
//! `turn` (one turn: selection, run, write set),
//! `host` (the `csml::Host` of a turn and the [`AppRouter`] seam), `bot_ops` (bot, flows,
//! validate, build, usage, conversations/open), `background` (broadcasts, sweep).

mod background;
mod bot_ops;
mod cache;
pub mod event;
mod fair;
mod host;
mod locks;
mod slow;
mod turn;

pub use background::BackgroundHandle;
pub use bot_ops::{OpenConversation, ValidateFlow, ValidateRequest};
pub use fair::TurnLimits;
pub use host::{AppContext, AppRouter, NoApps};

use crate::store::{self, Channel, Store};
use serde::Serialize;
use serde_json::Value as Json;
use std::sync::Arc;

/// Channel kind of the admin UI's try-it chat: its turns run the bot's working flows even
/// when a build is live (everything else about the turn is the same).
pub const TRY_IT_KIND: &str = crate::store::ADMIN_CHANNEL_KIND;

/// Version string reported as `engine_version` of builds.
pub const ENGINE_VERSION: &str = concat!("botyard-", env!("CARGO_PKG_VERSION"), " (CSML 1.11)");

/// Engine errors; [`EngineError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The request is malformed (400).
    BadRequest(String),
    /// A referenced object does not exist in the caller's organization (404).
    NotFound(String),
    /// The request conflicts with the current state, e.g. a duplicate name or a bot with no
    /// usable default flow (409).
    Conflict(String),
    /// The bot does not validate (build): 400 with the diagnostics.
    Invalid {
        message: String,
        errors: Vec<csml::Diagnostic>,
    },
    /// The organization's share of the interpreter's workers stayed full for the whole
    /// queue wait (see `fair`): 503 with `Retry-After`.
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// Anything else (500); the message is for logs, not for clients.
    Internal(String),
}

impl EngineError {
    pub fn status(&self) -> u16 {
        match self {
            EngineError::BadRequest(_) | EngineError::Invalid { .. } => 400,
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::Busy { .. } => 503,
            EngineError::Internal(_) => 500,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            EngineError::BadRequest(m)
            | EngineError::NotFound(m)
            | EngineError::Conflict(m)
            | EngineError::Internal(m) => m,
            EngineError::Invalid { message, .. } | EngineError::Busy { message, .. } => message,
        }
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EngineError {}

impl From<store::Error> for EngineError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound(m) => EngineError::NotFound(m),
            store::Error::Conflict(m) => EngineError::Conflict(m),
            store::Error::Invalid(m) => EngineError::BadRequest(m),
            e => EngineError::Internal(e.to_string()),
        }
    }
}

/// The caller's rows that commit with a turn, built from the response the turn is about to
/// return. Runs after the interpreter, on the turn's worker (never on the store's writer),
/// once per run of the turn (a turn whose commit found its conversation moved by another
/// node runs again, see `turn`); the rows are plain data applied in the turn's own
/// transaction, and only the last run's are committed.
pub type AfterTurn = Box<dyn FnMut(&ChatResponse) -> store::ocs::OcsTurnEnd + Send>;

/// Entries of a turn's `_metadata` built from an OCS session's recent transcript (its
/// `history`), which the turn's read fetches only when the bot's flows name `_metadata`
/// (see `LiveBot::reads_metadata`). Runs before the interpreter, on the turn's worker, once
/// per run of the turn (see [`AfterTurn`]). Added like [`ChatRequest::turn_metadata`]: seen by
/// the flow, never stored.
pub type TurnMetadata =
    Box<dyn FnMut(Vec<(String, String)>) -> serde_json::Map<String, Json> + Send>;

/// The caller's parts of a turn (see [`Engine::chat_code`]).
#[derive(Default)]
pub struct TurnHooks {
    pub after: Option<AfterTurn>,
    /// The OCS session whose history the flow may see, and how it becomes `_metadata`.
    pub history: Option<(String, TurnMetadata)>,
}

/// A committed turn and the caller's rows stored with it.
#[derive(Debug, Clone)]
pub struct TurnDone {
    pub response: ChatResponse,
    /// The OCS messages stored by [`TurnHooks::after`]'s rows.
    pub ocs_stored: Vec<store::ocs::OcsMessage>,
}

/// One end-user event for a channel (the body of `POST /chat`, with identity from the key).
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The key's channel: organization, bot and channel come from here, never from a body.
    pub channel: Channel,
    /// `client.user_id` (non-empty).
    pub user_id: String,
    /// `payload`: `{content_type, content, secure?}` as received; validated by the engine
    /// (400 on a bad content type or a missing required key).
    pub payload: Json,
    /// `metadata` (object or null; anything else is a 400).
    pub metadata: Json,
    /// Entries added to the interpreter's `_metadata` for this turn only, never stored with
    /// the conversation (an OCS turn's `history`: the session transcript again).
    pub turn_metadata: serde_json::Map<String, Json>,
    /// Echoed; a UUID is generated when absent.
    pub request_id: Option<String>,
    /// Arrival time (Unix ms), reported as `received_at`.
    pub received_at: i64,
}

/// Which code of a bot a turn runs. Every entry point but [`Engine::chat_code`] picks
/// `Live` (or `Working` for [`TRY_IT_KIND`] channels).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BotCode {
    /// The live build, or the working flows when the bot was never built.
    Live,
    /// The working flows even when a build is live.
    Working,
    /// One build (a `bot_versions` id of the bot; 404 when it is not one): what an OCS
    /// session pinned to a version runs. Compiled once per (bot, build, rev).
    Build(String),
}

/// `client` of a response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClientIds {
    pub bot_id: String,
    pub channel_id: String,
    pub user_id: String,
}

/// One bot message of a response (studio-api §2.1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutMessage {
    pub conversation_id: String,
    /// Always `"SEND"`.
    pub direction: &'static str,
    pub interaction_order: u32,
    pub payload: csml::Message,
}

/// The result of a turn, shaped as the `POST /chat` response (serialize it as is).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatResponse {
    pub request_id: String,
    pub messages: Vec<OutMessage>,
    pub conversation_end: bool,
    pub client: ClientIds,
    /// ISO-8601 UTC with milliseconds.
    pub received_at: String,
    /// The conversation the turn ran in (not part of the wire shape).
    #[serde(skip)]
    pub conversation_id: String,
    /// Organization of the turn (not part of the wire shape).
    #[serde(skip)]
    pub organization_id: String,
}

/// Where committed turns are reported (webhook delivery, connector outboxes, live views).
pub trait TurnSink: Send + Sync {
    /// Called once per committed turn, in order per conversation, from an async task inside
    /// the client's turn lock. Must return quickly (queue the work).
    fn turn_committed(&self, channel: &Channel, response: &ChatResponse);
}

/// What a `POST /broadcasts` queues (studio-api §2.2).
#[derive(Debug, Clone)]
pub struct BroadcastRequest {
    pub channel: Channel,
    pub user_id: String,
    pub payload: Json,
    pub metadata: Json,
    pub request_id: Option<String>,
}

/// Engine wiring. Defaults: no apps (`App()` fails in-band), no outbound HTTP (`HTTP()` fails
/// in-band), no sink.
#[derive(Clone, Default)]
pub struct EngineConfig {
    /// Routes `App()` calls (the plugins issue plugs WASM apps in here).
    pub apps: Option<Arc<dyn AppRouter>>,
    /// Outbound HTTP for `HTTP()` in flows.
    pub outbound: Option<Arc<crate::outbound::Outbound>>,
    /// Receives every committed turn.
    pub sink: Option<Arc<dyn TurnSink>>,
    /// Deadlines, quotas and the fair share of the interpreter's workers.
    pub limits: TurnLimits,
}

/// The conversation engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: EngineConfig,
    bots: cache::BotCache,
    locks: locks::ClientLocks,
    fair: fair::FairShare,
    slow: slow::SlowPool,
    broadcast_wakeup: tokio::sync::Notify,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Engine {
        let fair = fair::FairShare::new(&config.limits);
        Engine {
            inner: Arc::new(Inner {
                store,
                fair,
                slow: slow::SlowPool::new(),
                config,
                bots: cache::BotCache::default(),
                locks: locks::ClientLocks::default(),
                broadcast_wakeup: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Run blocking store work on a blocking thread and map its error.
    pub async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<R> + Send + 'static,
    ) -> Result<R, EngineError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| EngineError::Internal(format!("blocking task failed: {e}")))?
            .map_err(EngineError::from)
    }

    /// Run one end-user event (`POST /chat`). `Ok` = the turn is committed.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, EngineError> {
        turn::chat(self, req, None).await
    }

    /// [`Engine::chat`] running `code` whatever serves the channel (OCS version pinning);
    /// `hooks.after`'s rows join the turn's commit (see [`AfterTurn`]); `hooks.history` is
    /// read with the turn's state when the flow may see it (see [`TurnMetadata`]).
    pub async fn chat_code(
        &self,
        req: ChatRequest,
        code: BotCode,
        hooks: TurnHooks,
    ) -> Result<TurnDone, EngineError> {
        turn::chat_code(self, req, None, code, hooks).await
    }

    /// Run a connector channel's stored inbound event `event` (its turn as [`Engine::chat`]):
    /// the event is marked done, and the replies queued for delivery, in the turn's own
    /// commit, so a crash never runs it twice. `Conflict` when it is no longer pending.
    pub async fn chat_inbound(
        &self,
        req: ChatRequest,
        event: String,
    ) -> Result<ChatResponse, EngineError> {
        turn::chat_inbound(self, req, event).await
    }

    /// Validate and durably queue a broadcast; returns the normalised request echoed by
    /// `POST /broadcasts` (`close_flows` defaults to true for `flow_trigger`).
    pub async fn broadcast(&self, req: BroadcastRequest) -> Result<Json, EngineError> {
        background::enqueue(self, req).await
    }

    /// Number of compiled bots in the cache (tests, metrics).
    pub fn cached_bots(&self) -> usize {
        self.inner.bots.len()
    }
}
