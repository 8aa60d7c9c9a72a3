//! Connector channels, durable end to end:
//!
//! 1. [`PluginRuntime::ingest`] (behind `POST|GET /hooks/{token}`): the connector verifies and
//!    normalizes the webhook; every event is stored in `inbound_events`, deduplicated by
//!    (channel, platform event id), **before** the platform gets its answer. A platform retry
//!    of a stored event is acknowledged and dropped.
//! 2. The inbound worker runs each stored event as a turn (user id = the event's
//!    conversation, so replies go back where the message came from; the platform user id is
//!    in the metadata as `platform_user_id`), with the turn's request id derived from the
//!    event's row. A conversation's events run one at a time in arrival order; different
//!    conversations and organizations run concurrently, at most
//!    [`ChannelLimits::inbound_per_org`] per organization and [`ChannelLimits::inbound`] in
//!    all, so one organization's slow turns never hold up another's events.
//! 3. Every committed turn of a connector channel (events, broadcasts) is queued in `outbox`
//!    under an id derived from the turn's request id, so queueing twice is a no-op.
//! 4. The outbox sender claims due rows from the store (`Store::claim_outbox`: the heads of
//!    conversations, at most [`ChannelLimits::deliveries_per_org`] in flight per organization
//!    whichever process holds them) and delivers them concurrently, at most
//!    [`ChannelLimits::deliveries`] at once. A conversation's replies go out in order: a later
//!    one waits behind an earlier one, including its retries and backoff. Retryable failures
//!    (platform 5xx, rate limits, timeouts) back off exponentially (1 s doubling to 5 min, or
//!    the platform's retry-after); other failures and the 10th attempt mark the row failed
//!    with the error and let the conversation's next reply go. Every delivery is bounded (the
//!    host's `deliver_timeout` plus [`DELIVERY_SLACK`]), so a hanging platform holds at most
//!    its organization's slots, for that long, and never another organization's replies.
//!
//! Exactly once: an event's turn is run with [`crate::engine::Engine::chat_inbound`], whose
//! commit also marks the event done and queues its replies in the outbox (one SQLite
//! transaction, `store::plugins::inbound_turn_done`). A crash before that commit leaves the
//! event pending (it runs at restart, nothing of it was written); after it, the event is done
//! and its replies are queued. An event another worker already committed refuses the turn.
//!
//! At least once: a delivery is claimed under a short lease ([`LEASE`]) that the sender
//! renews every [`RENEW_EVERY`] while the delivery runs. A process that dies mid-delivery
//! leaves the row claimed until the lease ends (seconds, so a restarted server resumes
//! promptly); then a sender delivers it again. The platform may see such a reply twice, never
//! none.

use super::PluginRuntime;
use crate::engine::{ChatRequest, ChatResponse, EngineError, TurnSink};
use crate::store::ids::now_millis;
use crate::store::plugins::{InboundRow, OutboxClaim, OutboxOutcome, OutboxRow};
use crate::store::{Channel, is_builtin_kind};
use botyard_plugins::{BotMessage, ChannelContext, GuestError, HttpReply, PluginError, Webhook};
use serde_json::{Value as Json, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{Id as TaskId, JoinSet};

/// Inbound attempts before an event is marked failed.
const INBOUND_ATTEMPTS: i64 = 5;
/// Delivery attempts before an outbox row is marked failed.
const OUTBOX_ATTEMPTS: i64 = 10;
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Request ids of the turns of stored inbound events: this prefix and the event's id.
const INBOUND_REQUEST_PREFIX: &str = "in-";
/// How often the workers look for work queued by another process (and for retries that
/// came due).
const POLL: Duration = Duration::from_secs(1);
/// Added to the host's `deliver_timeout` to bound a whole delivery: the connector's
/// resolution (a first load compiles the component) and its wait for a call slot.
const DELIVERY_SLACK: Duration = Duration::from_secs(3);
/// How long a claimed outbox row stays the sender's without a renewal.
const LEASE: Duration = Duration::from_secs(5);
/// How often the sender renews the leases of its deliveries in flight.
const RENEW_EVERY: Duration = Duration::from_millis(1500);
/// How long a claimed inbound event stays this process's (`Store::claim_inbound`; several
/// processes share a PostgreSQL database): longer than a turn may take (its deadline, at
/// most 30 s, and its wait for a slot). A process that dies mid-turn leaves the event to
/// another after that long.
const INBOUND_LEASE: Duration = Duration::from_secs(45);

/// How much connector work runs at once. The defaults leave an organization's other plugin
/// calls room within the host's per-organization slots (`org_concurrency`, 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Deliveries in flight per organization, counted over every sender that shares the
    /// database (default 4). An organization whose platform hangs holds at most these.
    pub deliveries_per_org: usize,
    /// Deliveries in flight in this process (default 32).
    pub deliveries: usize,
    /// Inbound events (turns) running at once per organization in this process (default 4).
    pub inbound_per_org: usize,
    /// Inbound events running at once in this process (default 16).
    pub inbound: usize,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            deliveries_per_org: 4,
            deliveries: 32,
            inbound_per_org: 4,
            inbound: 16,
        }
    }
}

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

    /// Start the inbound worker and the outbox sender; they stop when the handle drops
    /// (with the deliveries and turns they run).
    pub fn start_workers(self: &Arc<Self>) -> WorkersHandle {
        let a = self.clone();
        let b = self.clone();
        WorkersHandle {
            tasks: vec![
                tokio::spawn(async move {
                    a.seal_plain_secrets().await;
                    a.run_inbound_worker().await;
                }),
                tokio::spawn(async move { b.run_outbox_sender().await }),
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

    /// The inbound worker: runs pending events as they come (see the module doc), each in
    /// its own task, until dropped.
    async fn run_inbound_worker(self: Arc<Self>) {
        let limits = self.limits;
        let mut running: JoinSet<()> = JoinSet::new();
        let mut tasks: HashMap<TaskId, InboundRow> = HashMap::new();
        loop {
            while let Some(done) = running.try_join_next_with_id() {
                tasks.remove(&done.map_or_else(|e| e.id(), |(id, _)| id));
            }
            if let Some(engine) = self.engine()
                && running.len() < limits.inbound
            {
                let in_flight: Vec<&InboundRow> = tasks.values().collect();
                for row in self.next_inbound(&in_flight, limits).await {
                    let (rt, engine) = (self.clone(), engine.clone());
                    let handle = running.spawn({
                        let row = row.clone();
                        async move { rt.handle_inbound(&engine, &row).await }
                    });
                    tasks.insert(handle.id(), row);
                }
            }
            tokio::select! {
                Some(done) = running.join_next_with_id() => {
                    tasks.remove(&done.map_or_else(|e| e.id(), |(id, _)| id));
                }
                _ = self.inbound_wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Run the pending events that may start now, concurrently, and wait for them (tests;
    /// the worker runs the same selection continuously). Returns how many ran.
    pub async fn run_inbound_batch(self: &Arc<Self>) -> usize {
        let Some(engine) = self.engine() else {
            return 0;
        };
        let rows = self.next_inbound(&[], self.limits).await;
        let n = rows.len();
        let mut running = JoinSet::new();
        for row in rows {
            let (rt, engine) = (self.clone(), engine.clone());
            running.spawn(async move { rt.handle_inbound(&engine, &row).await });
        }
        running.join_all().await;
        n
    }

    /// The pending events that may start next, given the ones running: per conversation
    /// only its oldest pending event and only when none of it runs; per organization up to
    /// `inbound_per_org` running; `inbound` in all; oldest first.
    async fn next_inbound(
        &self,
        running: &[&InboundRow],
        limits: ChannelLimits,
    ) -> Vec<InboundRow> {
        let store = self.store.clone();
        // One organization's window also holds events of its conversations that wait.
        let window = limits.inbound_per_org * 4 + 16;
        let mut pending =
            match tokio::task::spawn_blocking(move || store.pending_inbound(window)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::error!(target: "botyard::plugins", "reading inbound events: {e}");
                    return Vec::new();
                }
                Err(_) => return Vec::new(),
            };
        // Per organization the rows are oldest first; across organizations, oldest first too,
        // stably, so each organization's order is kept.
        pending.sort_by_key(|r| r.created_at);
        let mut busy: HashSet<(String, String)> = running.iter().map(|r| inbound_key(r)).collect();
        let running_ids: HashSet<&str> = running.iter().map(|r| r.id.as_str()).collect();
        let mut per_org: HashMap<String, usize> = HashMap::new();
        for r in running {
            *per_org.entry(r.organization_id.clone()).or_default() += 1;
        }
        let mut free = limits.inbound.saturating_sub(running.len());
        let mut out = Vec::new();
        let now = now_millis();
        for row in pending {
            if free == 0 {
                break;
            }
            // The conversation's first pending event blocks its later ones, whether it
            // starts now or not.
            if running_ids.contains(row.id.as_str()) || !busy.insert(inbound_key(&row)) {
                continue;
            }
            // Claimed by another process, which runs it: its conversation waits.
            if row.claimed_until.is_some_and(|t| t > now) {
                continue;
            }
            let n = per_org.entry(row.organization_id.clone()).or_default();
            if *n >= limits.inbound_per_org {
                continue;
            }
            *n += 1;
            free -= 1;
            out.push(row);
        }
        // Only the events this process claims run here (another may have taken some since).
        let store = self.store.clone();
        let ids: Vec<String> = out.iter().map(|r| r.id.clone()).collect();
        let lease = INBOUND_LEASE.as_millis() as i64;
        match tokio::task::spawn_blocking(move || store.claim_inbound(ids, now, lease)).await {
            Ok(Ok(claimed)) => {
                let claimed: HashSet<String> = claimed.into_iter().collect();
                out.retain(|r| claimed.contains(&r.id));
                out
            }
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", "claiming inbound events: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Run one event's turn; a failure is recorded (the turn's own commit records success).
    async fn handle_inbound(&self, engine: &crate::engine::Engine, row: &InboundRow) {
        let Err(e) = self.run_inbound(engine, row).await else {
            // Marked done by the turn's own commit, which queued its replies.
            self.outbox_wake.notify_one();
            return;
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
            tokio::task::spawn_blocking(move || store.finish_inbound(&id, outcome, give_up)).await;
    }

    async fn run_inbound(
        &self,
        engine: &crate::engine::Engine,
        row: &InboundRow,
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

    /// The longest a delivery may take, resolution of the connector included.
    fn delivery_bound(&self) -> Duration {
        self.host.config().deliver_timeout + self.host.config().slot_wait + DELIVERY_SLACK
    }

    /// The outbox sender: claims due rows whenever it has free slots and delivers each in
    /// its own task, until dropped (see the module doc).
    async fn run_outbox_sender(self: Arc<Self>) {
        let limits = self.limits;
        let mut running: JoinSet<()> = JoinSet::new();
        let mut tasks: HashMap<TaskId, String> = HashMap::new();
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(done) = running.try_join_next_with_id() {
                tasks.remove(&done.map_or_else(|e| e.id(), |(id, _)| id));
            }
            let free = limits.deliveries.saturating_sub(running.len());
            if free > 0 {
                for row in self.claim_outbox(free).await {
                    // Ours already (its outcome not recorded before its lease ended): the
                    // claim only renewed the lease.
                    if tasks.values().any(|id| *id == row.id) {
                        continue;
                    }
                    let rt = self.clone();
                    let id = row.id.clone();
                    let handle = running.spawn(async move { rt.deliver_claimed(row).await });
                    tasks.insert(handle.id(), id);
                }
            }
            tokio::select! {
                Some(done) = running.join_next_with_id() => {
                    tasks.remove(&done.map_or_else(|e| e.id(), |(id, _)| id));
                }
                _ = self.outbox_wake.notified() => {}
                _ = renew.tick() => {
                    if !tasks.is_empty() {
                        self.renew_leases(tasks.values().cloned().collect()).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn renew_leases(&self, ids: Vec<String>) {
        let store = self.store.clone();
        let until = now_millis() + LEASE.as_millis() as i64;
        match tokio::task::spawn_blocking(move || store.renew_outbox(ids, until)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", "renewing outbox claims: {e}")
            }
            Err(_) => {}
        }
    }

    async fn claim_outbox(&self, limit: usize) -> Vec<OutboxRow> {
        let store = self.store.clone();
        let claim = OutboxClaim {
            now: now_millis(),
            lease_ms: LEASE.as_millis() as i64,
            per_org: self.limits.deliveries_per_org,
            limit,
        };
        match tokio::task::spawn_blocking(move || store.claim_outbox(claim)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", "claiming outbox rows: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Deliver one claimed row and record the outcome.
    async fn deliver_claimed(&self, row: OutboxRow) {
        let attempts = row.attempts + 1;
        let outcome = match self.deliver(&row).await {
            Ok(ids) => OutboxOutcome::Sent(ids),
            Err((e, Some(retry_after))) if attempts < OUTBOX_ATTEMPTS => {
                let backoff = (1000i64 << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
                let wait = (retry_after as i64 * 1000).max(backoff);
                tracing::warn!(target: "botyard::plugins", outbox = %row.id, attempts, "delivery failed, retrying in {wait} ms: {e}");
                OutboxOutcome::Retry {
                    error: e,
                    at: now_millis() + wait,
                }
            }
            Err((e, _)) => {
                tracing::error!(target: "botyard::plugins", outbox = %row.id, attempts, "delivery failed for good: {e}");
                OutboxOutcome::Failed(e)
            }
        };
        let store = self.store.clone();
        let id = row.id.clone();
        match tokio::task::spawn_blocking(move || store.finish_outbox(&id, outcome)).await {
            Ok(Ok(())) => {}
            // The row stays claimed; another attempt follows once its lease ends.
            Ok(Err(e)) => {
                tracing::error!(target: "botyard::plugins", outbox = %row.id, "recording a delivery: {e}")
            }
            Err(_) => {}
        }
    }

    /// `Err((message, Some(retry_after_secs)))` for retryable failures.
    async fn deliver(&self, row: &OutboxRow) -> Result<Vec<String>, (String, Option<u32>)> {
        let store = self.store.clone();
        let (org, ch) = (row.organization_id.clone(), row.channel_id.clone());
        let channel = match tokio::task::spawn_blocking(move || store.get_channel(&org, &ch)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err((e.to_string(), None)),
            Err(e) => return Err((e.to_string(), Some(1))),
        };
        let bound = self.delivery_bound();
        let result = match tokio::time::timeout(bound, self.deliver_on(&channel, row)).await {
            Ok(r) => r,
            Err(_) => Err((
                format!("delivery took longer than {} ms", bound.as_millis()),
                Some(0),
            )),
        };
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
        row: &OutboxRow,
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

/// The key that orders inbound events: the channel and the platform's conversation.
fn inbound_key(row: &InboundRow) -> (String, String) {
    let conversation = row
        .event
        .get("conversation")
        .and_then(Json::as_str)
        .unwrap_or_default();
    (row.channel_id.clone(), conversation.to_string())
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
