//! Connector channels, durable end to end:
//!
//! 1. [`PluginRuntime::ingest`] (behind `POST|GET /hooks/{token}`): the connector verifies and
//!    normalizes the webhook; every event is stored in `inbound_events`, deduplicated by
//!    (channel, platform event id), **before** the platform gets its answer. A platform retry
//!    of a stored event is acknowledged and dropped.
//! 2. The inbound worker runs each stored event as a turn (user id = the event's
//!    conversation, so replies go back where the message came from; the platform user id is
//!    in the metadata as `platform_user_id`), in arrival order, with the turn's request id
//!    derived from the event's row.
//! 3. Every committed turn of a connector channel (events, broadcasts) is queued in `outbox`
//!    under an id derived from the turn's request id, so queueing twice is a no-op.
//! 4. The outbox sender delivers through the connector; retryable failures (platform 5xx,
//!    rate limits, timeouts) back off exponentially (1 s doubling to 5 min, or the platform's
//!    retry-after), later replies of the same conversation wait behind them; other failures
//!    and the 10th attempt mark the row failed with the error.
//!
//! Exactly once: an event's turn is run with [`crate::engine::Engine::chat_inbound`], whose
//! commit also marks the event done and queues its replies in the outbox (one SQLite
//! transaction, `store::plugins::inbound_turn_done`). A crash before that commit leaves the
//! event pending (it runs at restart, nothing of it was written); after it, the event is done
//! and its replies are queued. An event another worker already committed refuses the turn.

use super::PluginRuntime;
use crate::engine::{ChatRequest, ChatResponse, EngineError, TurnSink};
use crate::store::ids::now_millis;
use crate::store::{Channel, is_builtin_kind};
use botyard_plugins::{BotMessage, ChannelContext, GuestError, HttpReply, PluginError, Webhook};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Duration;

/// Inbound attempts before an event is marked failed.
const INBOUND_ATTEMPTS: i64 = 5;
/// Delivery attempts before an outbox row is marked failed.
const OUTBOX_ATTEMPTS: i64 = 10;
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Request ids of the turns of stored inbound events: this prefix and the event's id.
const INBOUND_REQUEST_PREFIX: &str = "in-";
/// How often the workers look for work queued by another process.
const POLL: Duration = Duration::from_secs(1);

/// The answer to a platform's webhook call.
#[derive(Debug, Clone, PartialEq)]
pub enum HookAnswer {
    /// The connector's own answer (challenges, TwiML...), else `200 {"ok": true}`.
    Reply(Option<HttpReply>),
    NotFound,
    /// The connector refused the request (bad signature...).
    Unauthorized(String),
    BadRequest(String),
    /// Our failure: the platform should retry later.
    Unavailable(String),
}

impl PluginRuntime {
    /// Handle one webhook call for the channel with this token. `base_url` is how the
    /// platform reached us (`BOTYARD_PUBLIC_URL` wins when set).
    pub async fn ingest(&self, token: &str, base_url: &str, webhook: Webhook) -> HookAnswer {
        let store = self.store.clone();
        let t = token.to_string();
        let channel = match tokio::task::spawn_blocking(move || store.channel_by_token(&t)).await {
            Ok(Ok(Some(c))) if !is_builtin_kind(&c.kind) => c,
            Ok(Ok(_)) => return HookAnswer::NotFound,
            Ok(Err(e)) => return HookAnswer::Unavailable(e.to_string()),
            Err(e) => return HookAnswer::Unavailable(e.to_string()),
        };
        let note = |e: String| {
            self.note_error(
                &channel.organization_id,
                &channel.kind,
                "webhook",
                Some(&channel.id),
                e,
            )
        };
        let resolved = match self.resolve_channel(&channel).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "botyard::plugins", channel = %channel.id, "webhook: {e}");
                note(e.clone());
                return HookAnswer::Unavailable(e);
            }
        };
        let ctx = self.channel_ctx(&channel, Some(base_url));
        let outcome = match self
            .host
            .connector_ingest(&resolved.plugin, &resolved.install, &ctx, &webhook)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                note(e.to_string());
                return match e {
                    PluginError::Guest(GuestError::Unauthorized(m)) => HookAnswer::Unauthorized(m),
                    PluginError::Guest(GuestError::InvalidInput(m)) => HookAnswer::BadRequest(m),
                    e => HookAnswer::Unavailable(e.to_string()),
                };
            }
        };
        if !outcome.events.is_empty() {
            let store = self.store.clone();
            let (org, ch) = (channel.organization_id.clone(), channel.id.clone());
            let events = outcome.events.clone();
            let stored = tokio::task::spawn_blocking(move || -> crate::store::Result<usize> {
                let mut new = 0;
                for e in &events {
                    let value = serde_json::to_value(e).unwrap_or(Json::Null);
                    new += store.enqueue_inbound(&org, &ch, &e.event_id, &value)? as usize;
                }
                Ok(new)
            })
            .await;
            match stored {
                Ok(Ok(n)) if n > 0 => self.inbound_wake.notify_one(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return HookAnswer::Unavailable(e.to_string()),
                Err(e) => return HookAnswer::Unavailable(e.to_string()),
            }
        }
        HookAnswer::Reply(outcome.response)
    }

    fn channel_ctx(&self, channel: &Channel, base_url: Option<&str>) -> ChannelContext {
        let base = self.public_url.as_deref().or(base_url).unwrap_or("");
        ChannelContext {
            bot: channel.bot_id.clone(),
            channel: channel.id.clone(),
            webhook_url: format!("{base}/hooks/{}", channel.token.clone().unwrap_or_default()),
        }
    }

    /// Start the inbound worker and the outbox sender; they stop when the handle drops.
    pub fn start_workers(self: &Arc<Self>) -> WorkersHandle {
        let a = self.clone();
        let b = self.clone();
        WorkersHandle {
            tasks: vec![
                tokio::spawn(async move {
                    a.seal_plain_secrets().await;
                    loop {
                        let n = a.run_inbound_batch().await;
                        if n == 0 {
                            let _ = tokio::time::timeout(POLL, a.inbound_wake.notified()).await;
                        }
                    }
                }),
                tokio::spawn(async move {
                    loop {
                        let n = b.run_outbox_batch().await;
                        if n == 0 {
                            let _ = tokio::time::timeout(POLL, b.outbox_wake.notified()).await;
                        }
                    }
                }),
            ],
        }
    }

    /// Seal secrets still stored in the clear (rows from before sealing, or written by a
    /// command that did not seal): run once when the workers start.
    pub async fn seal_plain_secrets(&self) -> usize {
        let store = self.store.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            store.seal_plain_secrets(&|org, kind| {
                super::manage::connector_manifest(&store, org, kind)
                    .ok()
                    .map(|(m, _)| m.secrets.iter().map(|s| s.name.clone()).collect())
            })
        })
        .await;
        match sealed {
            Ok(Ok(n)) => {
                if n > 0 {
                    tracing::info!(target: "botyard::plugins", "sealed the plain secrets of {n} plugin installations and channels");
                }
                n
            }
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", "sealing plain secrets: {e}");
                0
            }
            Err(_) => 0,
        }
    }

    /// Run pending inbound events (the worker's loop body; tests call it). Returns how many
    /// were handled.
    pub async fn run_inbound_batch(&self) -> usize {
        let Some(engine) = self.engine().cloned() else {
            return 0;
        };
        let store = self.store.clone();
        let pending = match tokio::task::spawn_blocking(move || store.pending_inbound(32)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", "reading inbound events: {e}");
                return 0;
            }
            Err(_) => return 0,
        };
        let n = pending.len();
        for row in pending {
            let Err(e) = self.run_inbound(&engine, &row).await else {
                // Marked done by the turn's own commit.
                self.outbox_wake.notify_one();
                continue;
            };
            let give_up = match &e {
                EngineError::BadRequest(_) | EngineError::NotFound(_) => true,
                _ => row.attempts + 1 >= INBOUND_ATTEMPTS,
            };
            tracing::warn!(target: "botyard::plugins", event = %row.id, channel = %row.channel_id, "inbound event failed: {e}");
            let store = self.store.clone();
            let id = row.id.clone();
            let outcome = Err(e.to_string());
            // Leaves an event another worker committed meanwhile as it is.
            let _ =
                tokio::task::spawn_blocking(move || store.finish_inbound(&id, outcome, give_up))
                    .await;
        }
        n
    }

    async fn run_inbound(
        &self,
        engine: &crate::engine::Engine,
        row: &crate::store::plugins::InboundRow,
    ) -> Result<(), EngineError> {
        let (org, ch) = (row.organization_id.clone(), row.channel_id.clone());
        let channel = engine.blocking(move |s| s.get_channel(&org, &ch)).await?;
        let ev = &row.event;
        let text = |k: &str| {
            ev.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut metadata = match ev.get("metadata") {
            Some(Json::Object(m)) => m.clone(),
            _ => Default::default(),
        };
        metadata.insert("platform_user_id".into(), Json::String(text("user_id")));
        let req = ChatRequest {
            channel: channel.clone(),
            user_id: text("conversation"),
            payload: json!({"content_type": text("content_type"), "content": ev.get("content").cloned().unwrap_or(json!({}))}),
            metadata: Json::Object(metadata),
            turn_metadata: Default::default(),
            request_id: Some(format!("{INBOUND_REQUEST_PREFIX}{}", row.id)),
            received_at: now_millis(),
        };
        engine.chat_inbound(req, row.id.clone()).await?;
        Ok(())
    }

    async fn queue_replies(
        &self,
        channel: &Channel,
        response: &ChatResponse,
    ) -> Result<(), String> {
        if response.messages.is_empty() {
            return Ok(());
        }
        let messages: Vec<Json> = response
            .messages
            .iter()
            .map(|m| json!({"content_type": m.payload.content_type, "content": m.payload.content}))
            .collect();
        let id = format!("turn-{}", response.request_id);
        self.enqueue_delivery(channel, &response.client.user_id, &id, messages)
            .await
    }

    /// Queue `messages` (`{content_type, content}` each) for delivery on a connector channel
    /// to `conversation` (the platform's chat id) under `id` (an id queued twice is a no-op),
    /// and wake the sender. Also for messages produced outside the channel's own turns (OCS
    /// `trigger_bot`).
    pub async fn enqueue_delivery(
        &self,
        channel: &Channel,
        conversation: &str,
        id: &str,
        messages: Vec<Json>,
    ) -> Result<(), String> {
        let store = self.store.clone();
        let (id, org, ch, conv) = (
            id.to_string(),
            channel.organization_id.clone(),
            channel.id.clone(),
            conversation.to_string(),
        );
        let new = tokio::task::spawn_blocking(move || {
            store.enqueue_outbox(&id, &org, &ch, &conv, &Json::Array(messages))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if new {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// Deliver due outbox rows (the sender's loop body; tests call it). Returns how many
    /// were attempted.
    pub async fn run_outbox_batch(&self) -> usize {
        let store = self.store.clone();
        let due =
            match tokio::task::spawn_blocking(move || store.due_outbox(now_millis(), 32)).await {
                Ok(Ok(d)) => d,
                _ => return 0,
            };
        let n = due.len();
        let mut blocked: Vec<(String, String)> = Vec::new();
        for row in due {
            let key = (row.channel_id.clone(), row.conversation.clone());
            if blocked.contains(&key) {
                continue;
            }
            let outcome = self.deliver(&row).await;
            let attempts = row.attempts + 1;
            let result = match outcome {
                Ok(ids) => Ok(ids),
                Err((e, retry_after)) if retry_after.is_some() && attempts < OUTBOX_ATTEMPTS => {
                    blocked.push(key);
                    let backoff = (1000i64 << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
                    let wait = retry_after
                        .map(|s| (s as i64 * 1000).max(backoff))
                        .unwrap_or(backoff);
                    tracing::warn!(target: "botyard::plugins", outbox = %row.id, attempts, "delivery failed, retrying in {wait} ms: {e}");
                    Err((e, Some(now_millis() + wait)))
                }
                Err((e, _)) => {
                    tracing::error!(target: "botyard::plugins", outbox = %row.id, attempts, "delivery failed for good: {e}");
                    Err((e, None))
                }
            };
            let store = self.store.clone();
            let id = row.id.clone();
            let _ = tokio::task::spawn_blocking(move || store.finish_outbox(&id, result)).await;
        }
        n
    }

    /// `Err((message, Some(retry_after_secs)))` for retryable failures.
    async fn deliver(
        &self,
        row: &crate::store::plugins::OutboxRow,
    ) -> Result<Vec<String>, (String, Option<u32>)> {
        let store = self.store.clone();
        let (org, ch) = (row.organization_id.clone(), row.channel_id.clone());
        let channel = match tokio::task::spawn_blocking(move || store.get_channel(&org, &ch)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err((e.to_string(), None)),
            Err(e) => return Err((e.to_string(), Some(1))),
        };
        let result = self.deliver_on(&channel, row).await;
        if let Err((e, _)) = &result {
            self.note_error(
                &channel.organization_id,
                &channel.kind,
                "deliver",
                Some(&channel.id),
                e.clone(),
            );
        }
        result
    }

    async fn deliver_on(
        &self,
        channel: &Channel,
        row: &crate::store::plugins::OutboxRow,
    ) -> Result<Vec<String>, (String, Option<u32>)> {
        let resolved = self.resolve_channel(channel).await.map_err(|e| (e, None))?;
        let messages: Vec<BotMessage> =
            serde_json::from_value(row.messages.clone()).map_err(|e| (e.to_string(), None))?;
        let ctx = self.channel_ctx(channel, None);
        match self
            .host
            .connector_deliver(
                &resolved.plugin,
                &resolved.install,
                &ctx,
                &row.conversation,
                &messages,
            )
            .await
        {
            Ok(d) => Ok(d.platform_ids),
            Err(PluginError::Guest(GuestError::RateLimited(s))) => {
                Err((format!("rate limited ({s} s)"), Some(s)))
            }
            Err(e) if e.is_retryable() => Err((e.to_string(), Some(0))),
            Err(e) => Err((e.to_string(), None)),
        }
    }
}

/// Stops the workers when dropped.
pub struct WorkersHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for WorkersHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The engine's turn sink: forwards to the previous sink (Studio API webhooks) and queues
/// the replies of connector channels in the outbox.
pub struct PluginSink {
    pub runtime: Arc<PluginRuntime>,
    pub next: Option<Arc<dyn TurnSink>>,
}

impl TurnSink for PluginSink {
    fn turn_committed(&self, channel: &Channel, response: &ChatResponse) {
        if let Some(next) = &self.next {
            next.turn_committed(channel, response);
        }
        // Only connector channels have a webhook token; the others answer in the response.
        if channel.token.is_none() || response.messages.is_empty() {
            return;
        }
        // The turn of a stored inbound event queued its replies in its own commit.
        if response.request_id.starts_with(INBOUND_REQUEST_PREFIX) {
            return;
        }
        let rt = self.runtime.clone();
        let (channel, response) = (channel.clone(), response.clone());
        tokio::spawn(async move {
            if let Err(e) = rt.queue_replies(&channel, &response).await {
                tracing::error!(target: "botyard::plugins", channel = %channel.id, "queueing replies: {e}");
            }
        });
    }
}
