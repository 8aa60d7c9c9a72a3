//! Background work of a server: the broadcast worker (runs queued broadcasts as turns, each
//! marking its queue row done in the turn's own commit, so a crash never runs one twice) and
//! the expiry sweep (data TTL, csml-language §7.6).

use super::event::parse_payload;
use super::{BroadcastRequest, ChatRequest, Engine, EngineError};
use crate::store::ids::{new_id, now_millis};
use serde_json::{Value as Json, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Attempts before a broadcast is marked failed.
const MAX_ATTEMPTS: i64 = 3;
/// How often the worker looks for broadcasts queued by another process.
const POLL: Duration = Duration::from_secs(1);
/// How long a worker's claim on a broadcast keeps other nodes' workers off it: longer than a
/// turn's queue wait and deadline; should the worker die, another node runs it after that.
const CLAIM_MS: i64 = 5 * 60 * 1000;
/// How often expired rows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Validate, normalise and queue a broadcast (studio-api §2.2).
pub(super) async fn enqueue(engine: &Engine, req: BroadcastRequest) -> Result<Json, EngineError> {
    if req.user_id.trim().is_empty() {
        return Err(EngineError::BadRequest(
            "missing field: client.user_id".into(),
        ));
    }
    let mut payload = req.payload.clone();
    let ev = parse_payload(&payload)?;
    if ev.content_type == "flow_trigger"
        && let Some(content) = payload.get_mut("content").and_then(Json::as_object_mut)
        && !content.contains_key("close_flows")
    {
        content.insert("close_flows".into(), Json::Bool(true));
    }
    let metadata = match &req.metadata {
        Json::Null => json!({}),
        m @ Json::Object(_) => m.clone(),
        _ => return Err(EngineError::BadRequest("metadata must be an object".into())),
    };
    let ch = &req.channel;
    let normalised = json!({
        "request_id": req.request_id.clone().unwrap_or_else(new_id),
        "client": {"user_id": req.user_id, "bot_id": ch.bot_id, "channel_id": ch.id},
        "payload": payload,
        "metadata": metadata,
    });
    engine
        .store()
        .enqueue_broadcast(&ch.organization_id, &ch.bot_id, &ch.id, normalised.clone())
        .await?;
    engine.inner.broadcast_wakeup.notify_one();
    Ok(normalised)
}

/// Stops the background tasks when dropped or on [`BackgroundHandle::stop`].
pub struct BackgroundHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BackgroundHandle {
    pub fn stop(self) {}
}

impl Drop for BackgroundHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Engine {
    /// Start the broadcast worker and the expiry sweep (call inside a tokio runtime).
    pub fn start_background(&self) -> BackgroundHandle {
        let worker = tokio::spawn(broadcast_worker(self.clone()));
        let sweeper = tokio::spawn(sweeper(self.clone()));
        BackgroundHandle {
            tasks: vec![worker, sweeper],
        }
    }

    /// Run every pending broadcast once (the worker's loop body; also for tests). Returns how
    /// many were run successfully.
    pub async fn run_pending_broadcasts(&self) -> Result<usize, EngineError> {
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        run_batch(self, &in_flight).await
    }
}

async fn run_batch(
    engine: &Engine,
    in_flight: &Arc<Mutex<HashSet<String>>>,
) -> Result<usize, EngineError> {
    // Claimed for this worker (other nodes skip them) for longer than any turn runs.
    let pending = engine
        .blocking(|s| s.claim_broadcasts(64, now_millis(), CLAIM_MS))
        .await?;
    let mut set = tokio::task::JoinSet::new();
    for b in pending {
        if !in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(b.id.clone())
        {
            continue;
        }
        let engine = engine.clone();
        let in_flight = in_flight.clone();
        set.spawn(async move {
            let ok = run_one(&engine, &b).await;
            if let Err(e) = &ok {
                tracing::warn!(broadcast = %b.id, error = %e, "broadcast failed");
                let _ = engine
                    .store()
                    .fail_broadcast(&b.organization_id, &b.id, e.message(), MAX_ATTEMPTS)
                    .await;
            }
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&b.id);
            ok.is_ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += usize::from(r.unwrap_or(false));
    }
    Ok(ok)
}

async fn run_one(engine: &Engine, b: &crate::store::QueuedBroadcast) -> Result<(), EngineError> {
    let (org, ch_id) = (b.organization_id.clone(), b.channel_id.clone());
    let channel = engine
        .blocking(move |s| s.get_channel(&org, &ch_id))
        .await?;
    let r = &b.request;
    let req = ChatRequest {
        channel,
        user_id: r["client"]["user_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        payload: r["payload"].clone(),
        metadata: r["metadata"].clone(),
        turn_metadata: Default::default(),
        request_id: r["request_id"].as_str().map(str::to_string),
        received_at: now_millis(),
    };
    super::turn::chat(engine, req, Some(b.id.clone()))
        .await
        .map(|_| ())
}

async fn broadcast_worker(engine: Engine) {
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    loop {
        if let Err(e) = run_batch(&engine, &in_flight).await {
            tracing::warn!(error = %e, "broadcast worker");
        }
        let _ = tokio::time::timeout(POLL, engine.inner.broadcast_wakeup.notified()).await;
    }
}

async fn sweeper(engine: Engine) {
    loop {
        loop {
            match engine
                .blocking(|s| s.sweep_expired(now_millis(), 500))
                .await
            {
                Ok(c) if c.conversations + c.messages + c.memories > 0 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep");
                    break;
                }
            }
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}
