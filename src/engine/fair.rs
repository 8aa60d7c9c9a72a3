//! Fair share of the interpreter's workers between organizations.
//!
//! Every turn's interpreter run (and with it the plugin calls a flow makes) holds one slot of
//! a server-wide pool of [`TurnLimits::workers`] while it runs, and one organization holds at
//! most [`TurnLimits::per_org`] of them. A turn that finds its organization's share (or the
//! pool) full waits for a slot up to [`TurnLimits::queue_wait`], then is refused with
//! [`EngineError::Busy`] (503 with `Retry-After`). So an organization whose turns are slow (or
//! hostile: every turn running to its deadline) only ever waits behind itself: with
//! `per_org < workers`, another organization always finds a free slot unless several
//! organizations are saturated at once, and then each still gets its share.
//!
//! A slot is held from just before the interpreter runs until the turn's commit is
//! acknowledged (what a turn writes goes through the store's shared writer, so the share
//! bounds that too), never while a turn waits for its client's lock or for its read, so
//! waiting for a slot cannot deadlock.

use super::EngineError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Server-wide limits of turns (set by `botyard serve` flags).
#[derive(Debug, Clone)]
pub struct TurnLimits {
    /// Interpreter runs at once, all organizations together.
    pub workers: usize,
    /// Interpreter runs at once of one organization.
    pub per_org: usize,
    /// How long a turn waits for a slot before it is refused (503).
    pub queue_wait: Duration,
    /// Wall-clock deadline of a turn when its bot sets none (`turn_timeout_ms`).
    pub deadline: Duration,
    /// Largest deadline a bot may set.
    pub max_deadline: Duration,
    /// Most messages one turn may say.
    pub max_messages: u32,
    /// Most bytes of message content one turn may say.
    pub max_output_bytes: u64,
    /// Most bytes of remembered values one turn may write.
    pub max_memory_bytes: u64,
}

impl Default for TurnLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (cores * 2).max(4);
        TurnLimits {
            workers,
            per_org: workers.div_ceil(2),
            queue_wait: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            max_deadline: Duration::from_secs(30),
            max_messages: 500,
            max_output_bytes: 256 * 1024,
            max_memory_bytes: 1024 * 1024,
        }
    }
}

impl TurnLimits {
    /// The deadline of a bot's turn: its own setting, capped by the server's maximum.
    pub fn deadline_of(&self, bot_ms: Option<u32>) -> Duration {
        match bot_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(self.max_deadline),
            _ => self.deadline,
        }
    }
}

/// The slots of [`TurnLimits`].
pub(super) struct FairShare {
    pool: Arc<Semaphore>,
    per_org: usize,
    wait: Duration,
    held: Mutex<HashMap<String, usize>>,
    freed: Notify,
}

/// One held slot; freed on drop.
pub(super) struct Slot<'a> {
    share: &'a FairShare,
    org: String,
    _pool: OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self.share.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.org);
            }
        }
        drop(held);
        self.share.freed.notify_waiters();
    }
}

impl FairShare {
    pub(super) fn new(limits: &TurnLimits) -> FairShare {
        let workers = limits.workers.max(1);
        FairShare {
            pool: Arc::new(Semaphore::new(workers)),
            per_org: limits.per_org.clamp(1, workers),
            wait: limits.queue_wait,
            held: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        }
    }

    /// A slot for one of `org`'s turns, waiting at most the queue wait.
    pub(super) async fn acquire(&self, org: &str) -> Result<Slot<'_>, EngineError> {
        let give_up = tokio::time::Instant::now() + self.wait;
        // The organization's share first, so a saturated organization queues here and never
        // takes pool slots that another organization could use.
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                let n = held.entry(org.to_string()).or_insert(0);
                if *n < self.per_org {
                    *n += 1;
                    break;
                }
            }
            if tokio::time::timeout_at(give_up, freed).await.is_err() {
                return Err(busy(self.wait));
            }
        }
        let pool = Arc::clone(&self.pool);
        match tokio::time::timeout_at(give_up, pool.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot {
                share: self,
                org: org.to_string(),
                _pool: permit,
            }),
            _ => {
                // Give the organization's share back.
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = held.get_mut(org) {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(org);
                    }
                }
                drop(held);
                self.freed.notify_waiters();
                Err(busy(self.wait))
            }
        }
    }
}

fn busy(wait: Duration) -> EngineError {
    EngineError::Busy {
        message: "Too many turns of this organization are running; try again shortly".into(),
        retry_after_secs: wait.as_secs().max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(workers: usize, per_org: usize) -> TurnLimits {
        TurnLimits {
            workers,
            per_org,
            queue_wait: Duration::from_millis(50),
            ..TurnLimits::default()
        }
    }

    /// An organization past its share waits, then is refused; another organization is not
    /// held up; a freed slot goes to a waiter.
    #[tokio::test]
    async fn one_org_cannot_take_more_than_its_share() {
        let share = FairShare::new(&limits(4, 2));
        let a1 = share.acquire("a").await.unwrap();
        let _a2 = share.acquire("a").await.unwrap();
        assert!(matches!(
            share.acquire("a").await,
            Err(EngineError::Busy { .. })
        ));
        let _b1 = share.acquire("b").await.unwrap();
        let _b2 = share.acquire("b").await.unwrap();
        // The pool is full now: a third organization waits, then is refused.
        assert!(share.acquire("c").await.is_err());
        let waiter = async { share.acquire("a").await.map(|_| ()) };
        let (got, ()) = tokio::join!(waiter, async { drop(a1) });
        assert!(got.is_ok());
        assert_eq!(share.held.lock().unwrap().get("a"), Some(&1));
    }
}
