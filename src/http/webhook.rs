//! Channel webhook delivery (Studio spec §3): one POST per bot message, 5 s deadline, never
//! delaying the chat reply, strictly in order per conversation.
//!
//! Each conversation with pending calls has its own unbounded queue drained by one task; the
//! task delivers sequentially and ends when its queue is empty, so idle conversations cost
//! nothing. [`WebhookDispatcher::enqueue`] is synchronous and cheap: the engine calls it while
//! it still holds the conversation's turn lock, which makes the queue order the turn order.
//!
//! Chat webhooks are never retried (spec). Broadcast deliveries carry a retry budget: the
//! webhook is their only way to the user (there is no synchronous reply to fall back on), so a
//! failed call is retried with backoff before the next message of that conversation goes out.

use crate::outbound::{OutRequest, Outbound};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Deadline of one webhook call (spec §3).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// One POST to make.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub url: String,
    /// The serialized envelope.
    pub body: Vec<u8>,
    /// Extra attempts after a failure (0 for chat webhooks).
    pub retries: u8,
}

#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug)]
pub struct WebhookDispatcher {
    outbound: Arc<Outbound>,
    runtime: tokio::runtime::Handle,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<WebhookJob>>>,
    pub stats: WebhookStats,
    /// Delay before retry n (1-based) of a job with a retry budget.
    retry_base: Duration,
}

impl WebhookDispatcher {
    pub fn new(outbound: Arc<Outbound>, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(WebhookDispatcher {
            outbound,
            runtime,
            queues: Mutex::new(HashMap::new()),
            stats: WebhookStats::default(),
            retry_base: Duration::from_secs(1),
        })
    }

    /// Queues `jobs` behind whatever is pending for `conversation_id`. Callable from any
    /// thread, async or not.
    pub fn enqueue(self: &Arc<Self>, conversation_id: &str, jobs: Vec<WebhookJob>) {
        if jobs.is_empty() {
            return;
        }
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = queues.get(conversation_id) {
            // The receiver lives as long as the map entry (the task removes the entry under
            // this lock before it drops the receiver), so sending cannot fail here.
            for job in jobs {
                let _ = tx.send(job);
            }
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for job in jobs {
            let _ = tx.send(job);
        }
        queues.insert(conversation_id.to_string(), tx);
        drop(queues);
        let this = Arc::clone(self);
        let conv = conversation_id.to_string();
        self.runtime
            .spawn(async move { this.drain_queue(conv, rx).await });
    }

    async fn drain_queue(
        self: Arc<Self>,
        conv: String,
        mut rx: mpsc::UnboundedReceiver<WebhookJob>,
    ) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            queues.remove(&conv);
                            return;
                        }
                    }
                }
            };
            self.deliver(&conv, job).await;
        }
    }

    async fn deliver(&self, conv: &str, job: WebhookJob) {
        let mut attempt: u32 = 0;
        loop {
            let mut req = OutRequest::post_json(&job.url, job.body.clone());
            req.timeout = Some(WEBHOOK_TIMEOUT);
            let outcome = match self.outbound.send(req).await {
                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                Ok(r) => Err(format!("status {}", r.status)),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt < job.retries as u32 => {
                    attempt += 1;
                    tracing::warn!(conversation = conv, url = %job.url, error = %e, attempt, "webhook call failed; retrying");
                    tokio::time::sleep(self.retry_base * attempt * attempt).await;
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conversation = conv, url = %job.url, error = %e, "webhook call failed");
                    return;
                }
            }
        }
    }

    /// Number of conversations with undelivered calls.
    pub fn pending_conversations(&self) -> usize {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until every queue is empty, at most `timeout` (shutdown).
    pub async fn drain(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending_conversations() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    pending = self.pending_conversations(),
                    "webhook drain timeout; undelivered calls dropped"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::OutboundPolicy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A receiver answering 200 after `delay_ms` given in the body, recording bodies in order.
    async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 2048];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got);
                        if n == 0 || text.ends_with('}') {
                            break;
                        }
                    }
                    let text = String::from_utf8_lossy(&got).to_string();
                    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let delay = v["delay"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    seen.lock().unwrap().push(v["n"].to_string());
                    let status = if v["fail"].as_bool() == Some(true) {
                        500
                    } else {
                        200
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        (format!("http://{addr}/hook"), seen)
    }

    fn job(url: &str, n: u32, delay: u64) -> WebhookJob {
        WebhookJob {
            url: url.into(),
            body: format!(r#"{{"n":{n},"delay":{delay}}}"#).into_bytes(),
            retries: 0,
        }
    }

    fn dispatcher() -> Arc<WebhookDispatcher> {
        let mut policy = OutboundPolicy::default();
        policy.allow.push("127.0.0.1".parse().unwrap());
        let out = Arc::new(Outbound::new(policy, None));
        WebhookDispatcher::new(out, tokio::runtime::Handle::current())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn order_is_kept_per_conversation() {
        let (url, seen) = receiver().await;
        let d = dispatcher();
        // A slow first call must not let the later ones overtake it.
        d.enqueue("c1", vec![job(&url, 1, 150), job(&url, 2, 0)]);
        d.enqueue("c1", vec![job(&url, 3, 0)]);
        d.drain(Duration::from_secs(5)).await;
        assert_eq!(*seen.lock().unwrap(), vec!["1", "2", "3"]);
        assert_eq!(d.stats.delivered.load(Ordering::Relaxed), 3);
        assert_eq!(d.pending_conversations(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conversations_do_not_wait_for_each_other() {
        let (url, seen) = receiver().await;
        let d = dispatcher();
        d.enqueue("slow", vec![job(&url, 1, 400)]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        d.enqueue("fast", vec![job(&url, 2, 0)]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*seen.lock().unwrap(), vec!["2"]);
        d.drain(Duration::from_secs(5)).await;
        assert_eq!(*seen.lock().unwrap(), vec!["2", "1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_counted_and_retried_only_with_a_budget() {
        let (url, seen) = receiver().await;
        let mut d = dispatcher();
        Arc::get_mut(&mut d).unwrap().retry_base = Duration::from_millis(10);
        let fail = |n: u32, retries: u8| WebhookJob {
            url: url.clone(),
            body: format!(r#"{{"n":{n},"fail":true}}"#).into_bytes(),
            retries,
        };
        d.enqueue("c", vec![fail(1, 0), fail(2, 2)]);
        d.drain(Duration::from_secs(5)).await;
        assert_eq!(*seen.lock().unwrap(), vec!["1", "2", "2", "2"]);
        assert_eq!(d.stats.failed.load(Ordering::Relaxed), 2);
    }
}

/// The engine's [`TurnSink`](crate::engine::TurnSink) for Studio API channels: every
/// committed turn of a channel with a webhook URL becomes one call per bot message, plus the
/// empty end-of-conversation marker (spec §3), queued in conversation order.
#[derive(Debug, Clone)]
pub struct StudioWebhookSink(pub Arc<WebhookDispatcher>);

impl crate::engine::TurnSink for StudioWebhookSink {
    fn turn_committed(
        &self,
        channel: &crate::store::Channel,
        response: &crate::engine::ChatResponse,
    ) {
        let Some(url) = channel.webhook_url.as_deref().filter(|u| !u.is_empty()) else {
            return;
        };
        let jobs = envelopes(response)
            .into_iter()
            .map(|body| WebhookJob {
                url: url.to_string(),
                body,
                retries: 0,
            })
            .collect();
        self.0.enqueue(&response.conversation_id, jobs);
    }
}

/// The `/chat` envelope with a one-message `messages` array per message, then
/// `messages: []` with `conversation_end: true` when the conversation ended — except after a
/// fatal error, whose own `error` message carries `conversation_end: true` (spec §3).
fn envelopes(r: &crate::engine::ChatResponse) -> Vec<Vec<u8>> {
    let one = |messages: &[crate::engine::OutMessage], end: bool| {
        serde_json::to_vec(&serde_json::json!({
            "request_id": r.request_id,
            "messages": messages,
            "conversation_end": end,
            "client": r.client,
            "received_at": r.received_at,
        }))
        .unwrap_or_default()
    };
    let ended_in_error = r.conversation_end
        && r.messages
            .last()
            .is_some_and(|m| m.payload.content_type == "error");
    let last = r.messages.len().saturating_sub(1);
    let mut out: Vec<Vec<u8>> = r
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| one(std::slice::from_ref(m), ended_in_error && i == last))
        .collect();
    if r.conversation_end && !ended_in_error {
        out.push(one(&[], true));
    }
    out
}
