//! `botyard serve`'s turn limits: each turn's deadline and quotas and each organization's
//! share of the interpreter's workers (see `engine::TurnLimits`).

use crate::engine::TurnLimits;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct TurnArgs {
    /// Wall-clock deadline of a turn, in milliseconds, for bots that set none
    /// (`settings.turn_timeout_ms`). A turn past it ends with an in-band error message.
    #[arg(long, env = "BOTYARD_TURN_TIMEOUT_MS", default_value_t = 5_000)]
    pub turn_timeout_ms: u64,
    /// Largest deadline a bot's `settings.turn_timeout_ms` may ask for, in milliseconds.
    #[arg(long, env = "BOTYARD_MAX_TURN_TIMEOUT_MS", default_value_t = 30_000)]
    pub max_turn_timeout_ms: u64,
    /// Interpreter runs at once, all organizations together (default: 2 per core, at least 4).
    #[arg(long, env = "BOTYARD_TURN_WORKERS")]
    pub turn_workers: Option<usize>,
    /// Interpreter runs at once of one organization (default: half of `--turn-workers`).
    /// Past it an organization's turns wait, then get 503 with Retry-After.
    #[arg(long, env = "BOTYARD_ORG_TURN_WORKERS")]
    pub org_turn_workers: Option<usize>,
    /// How long a turn waits for its organization's share before the 503, in milliseconds.
    #[arg(long, env = "BOTYARD_TURN_QUEUE_MS", default_value_t = 2_000)]
    pub turn_queue_ms: u64,
    /// Most messages one turn may say.
    #[arg(long, env = "BOTYARD_TURN_MAX_MESSAGES", default_value_t = 500)]
    pub turn_max_messages: u32,
    /// Most bytes of message content one turn may say (a real bot's turn says a few KB; every
    /// byte is sent, stored and committed through the shared writer).
    #[arg(long, env = "BOTYARD_TURN_MAX_OUTPUT_BYTES", default_value_t = 256 * 1024)]
    pub turn_max_output_bytes: u64,
    /// Most bytes of remembered values one turn may write.
    #[arg(long, env = "BOTYARD_TURN_MAX_MEMORY_BYTES", default_value_t = 1024 * 1024)]
    pub turn_max_memory_bytes: u64,
    /// Bytes of bot output per second one organization may say, all its bots together
    /// (bursts of a few turns' quota allowed); past it its turns wait, then get 503.
    #[arg(long, env = "BOTYARD_ORG_OUTPUT_BYTES_PER_SEC", default_value_t = 4 * 1024 * 1024)]
    pub org_output_bytes_per_sec: u64,
    /// Connector deliveries in flight per organization (a platform that hangs holds at most
    /// these of its organization's; a conversation's replies always go out in order).
    #[arg(long, env = "BOTYARD_ORG_DELIVERIES", default_value_t = 4)]
    pub org_deliveries: usize,
    /// Connector deliveries in flight in this process, all organizations together.
    #[arg(long, env = "BOTYARD_DELIVERIES", default_value_t = 32)]
    pub deliveries: usize,
}

impl TurnArgs {
    /// The connector channels' concurrency limits.
    pub fn channel_limits(&self) -> crate::plugins::channels::ChannelLimits {
        crate::plugins::channels::ChannelLimits {
            deliveries_per_org: self.org_deliveries.max(1),
            deliveries: self.deliveries.max(self.org_deliveries).max(1),
            ..Default::default()
        }
    }

    pub fn limits(&self) -> TurnLimits {
        let defaults = TurnLimits::default();
        let workers = self.turn_workers.unwrap_or(defaults.workers).max(1);
        TurnLimits {
            workers,
            per_org: self
                .org_turn_workers
                .unwrap_or(workers.div_ceil(2))
                .clamp(1, workers),
            queue_wait: Duration::from_millis(self.turn_queue_ms),
            deadline: Duration::from_millis(self.turn_timeout_ms.max(1)),
            max_deadline: Duration::from_millis(self.max_turn_timeout_ms.max(self.turn_timeout_ms)),
            max_messages: self.turn_max_messages.max(1),
            max_output_bytes: self.turn_max_output_bytes,
            max_memory_bytes: self.turn_max_memory_bytes,
            org_output_bytes_per_sec: self.org_output_bytes_per_sec,
        }
    }
}
