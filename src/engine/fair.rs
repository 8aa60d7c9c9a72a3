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
//! A slot is held around the CPU part of a turn (the interpreter and the building of its
//! write set and response), never while a turn waits for its client's lock or for the store
//! (group commit wants many turns in flight), so waiting for a slot cannot deadlock.

use super::EngineError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// Bytes of bot output (messages said) per second one organization may produce, all its
    /// bots together; a burst of a few turns' quota is allowed. Every byte said is serialized,
    /// committed through the shared writer and sent: past this an organization's turns wait
    /// (then 503) instead of taking everyone else's writer and cores.
    pub org_output_bytes_per_sec: u64,
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
            org_output_bytes_per_sec: 4 * 1024 * 1024,
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
    /// Each organization's share: a FIFO semaphore of `per_org` permits (one waiter is woken
    /// per freed permit).
    shares: Mutex<HashMap<String, Arc<Semaphore>>>,
    output: Mutex<HashMap<String, Bucket>>,
    output_rate: f64,
    output_burst: f64,
}

/// An organization's output allowance: bytes it may still say, refilled at the rate.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: std::time::Instant,
}

/// Organizations' output buckets kept at most; beyond it full buckets are forgotten (a
/// forgotten bucket starts full again, which is what it was).
const MAX_BUCKETS: usize = 100_000;

/// One held slot (the organization's and the pool's permits); freed on drop.
pub(super) struct Slot {
    _org: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

impl FairShare {
    pub(super) fn new(limits: &TurnLimits) -> FairShare {
        let workers = limits.workers.max(1);
        FairShare {
            pool: Arc::new(Semaphore::new(workers)),
            per_org: limits.per_org.clamp(1, workers),
            wait: limits.queue_wait,
            shares: Mutex::new(HashMap::new()),
            output: Mutex::new(HashMap::new()),
            output_rate: limits.org_output_bytes_per_sec.max(1) as f64,
            output_burst: (limits.org_output_bytes_per_sec.max(1) as f64)
                .max(4.0 * limits.max_output_bytes as f64),
        }
    }

    /// How long `org` must wait until its output bucket is positive again (zero: not at all).
    fn output_wait(&self, org: &str) -> Duration {
        let mut map = self.output.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get_mut(org) else {
            return Duration::ZERO;
        };
        self.refill(b);
        if b.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.level / self.output_rate)
        }
    }

    /// Charge `bytes` of output said by one of `org`'s turns.
    pub(super) fn charge_output(&self, org: &str, bytes: u64) {
        let mut map = self.output.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if !map.contains_key(org) {
            if map.len() >= MAX_BUCKETS {
                let (rate, burst) = (self.output_rate, self.output_burst);
                map.retain(|_, b| b.level + now.duration_since(b.at).as_secs_f64() * rate < burst);
            }
            map.insert(
                org.to_string(),
                Bucket {
                    level: self.output_burst,
                    at: now,
                },
            );
        }
        if let Some(b) = map.get_mut(org) {
            self.refill(b);
            b.level -= bytes as f64;
        }
    }

    /// Add what the rate gave `b` since it was last looked at, up to the burst.
    fn refill(&self, b: &mut Bucket) {
        let now = std::time::Instant::now();
        b.level = (b.level + now.duration_since(b.at).as_secs_f64() * self.output_rate)
            .min(self.output_burst);
        b.at = now;
    }

    /// The semaphore of `org`'s share.
    fn share_of(&self, org: &str) -> Arc<Semaphore> {
        let mut map = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(org) {
            return Arc::clone(s);
        }
        if map.len() >= MAX_BUCKETS {
            // Forget the shares nobody holds or waits for (only the map refers to them).
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Semaphore::new(self.per_org));
        map.insert(org.to_string(), Arc::clone(&s));
        s
    }

    /// A slot for one of `org`'s turns, waiting at most the queue wait (for the
    /// organization's output allowance, then for its share of the workers, then for the pool).
    pub(super) async fn acquire(&self, org: &str) -> Result<Slot, EngineError> {
        let give_up = tokio::time::Instant::now() + self.wait;
        let wait = self.output_wait(org);
        if !wait.is_zero() {
            if wait > self.wait {
                return Err(busy(wait));
            }
            tokio::time::sleep(wait).await;
        }
        // The organization's share first, so a saturated organization queues here and never
        // takes pool slots that another organization could use.
        let share = self.share_of(org);
        let org_permit = match tokio::time::timeout_at(give_up, share.acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(busy(self.wait)),
        };
        let pool = Arc::clone(&self.pool);
        match tokio::time::timeout_at(give_up, pool.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot {
                _org: org_permit,
                _pool: permit,
            }),
            _ => Err(busy(self.wait)),
        }
    }
}

fn busy(wait: Duration) -> EngineError {
    EngineError::Busy {
        message: "This organization's bots are over their share of the server; try again shortly"
            .into(),
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
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
    /// An organization that said more than its output allowance waits for it to refill (or
    /// is refused when that takes longer than the queue wait); others are not affected.
    #[tokio::test]
    async fn output_past_the_allowance_waits_or_is_refused() {
        let share = FairShare::new(&TurnLimits {
            org_output_bytes_per_sec: 1000,
            max_output_bytes: 100,
            queue_wait: Duration::from_millis(300),
            ..TurnLimits::default()
        });
        share.charge_output("a", 1000);
        // 1000 burst - 1000 said: empty, not negative: no wait.
        assert!(share.acquire("a").await.is_ok());
        share.charge_output("a", 100);
        let t = std::time::Instant::now();
        assert!(share.acquire("a").await.is_ok());
        assert!(t.elapsed() >= Duration::from_millis(50));
        share.charge_output("a", 5000);
        assert!(matches!(
            share.acquire("a").await,
            Err(EngineError::Busy { .. })
        ));
        assert!(share.acquire("b").await.is_ok());
    }

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
        assert_eq!(share.share_of("a").available_permits(), 1);
    }
}
