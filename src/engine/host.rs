//! The `csml::Host` of one turn: the platform host (real clock, randomness, outbound HTTP
//! under the installation's policy) plus `App()` routed through the [`AppRouter`] seam.

use crate::outbound::{BotHost, Outbound};
use serde_json::Value as Json;
use std::sync::Arc;

/// Who is calling an app: the plugin host scopes its sandbox and key-value store by this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppContext {
    pub organization_id: String,
    pub bot_id: String,
    pub channel_id: String,
    pub user_id: String,
}

/// Routes `App("name", ...)` calls (the plugins issue implements it with WASM apps). Called
/// from the turn's blocking thread; may block. An `Err` becomes the interpreter's in-band
/// error message and `App()` evaluates to null.
pub trait AppRouter: Send + Sync {
    fn call(&self, ctx: &AppContext, call: &csml::AppCall) -> Result<Json, String>;
}

/// No apps installed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApps;

impl AppRouter for NoApps {
    fn call(&self, _ctx: &AppContext, call: &csml::AppCall) -> Result<Json, String> {
        Err(format!("App `{}` is not installed", call.name))
    }
}

/// Bytes of `log` output one turn may write to the server's log; past it the turn's further
/// logs are dropped (one line says so). Without it `while (true) { log big }` could write
/// gigabytes to the operator's log within one turn's loop budget.
const LOG_BYTES_PER_TURN: usize = 64 * 1024;

pub(super) struct TurnHost<'a> {
    base: Option<BotHost>,
    rng: u64,
    apps: Option<&'a dyn AppRouter>,
    ctx: AppContext,
    deadline: Option<std::time::Instant>,
    /// Log bytes this turn may still write.
    log_left: usize,
}

impl<'a> TurnHost<'a> {
    pub(super) fn new(
        outbound: Option<&Arc<Outbound>>,
        apps: Option<&'a dyn AppRouter>,
        ctx: AppContext,
    ) -> Self {
        let seed: [u8; 8] = crate::store::ids::buffered_random_bytes();
        TurnHost {
            base: outbound.map(|o| BotHost::new(o.clone())),
            rng: u64::from_le_bytes(seed) | 1,
            apps,
            ctx,
            deadline: None,
            log_left: LOG_BYTES_PER_TURN,
        }
    }
}

impl csml::Host for TurnHost<'_> {
    fn random_u64(&mut self) -> u64 {
        if let Some(b) = &mut self.base {
            return b.random_u64();
        }
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn http(&mut self, req: &csml::HttpRequest) -> Result<csml::HttpResponse, String> {
        match &mut self.base {
            Some(b) => b.http(req),
            None => Err("HTTP is not available in this context".into()),
        }
    }

    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
        if let Some(b) = &mut self.base {
            b.set_deadline(deadline);
        }
    }

    fn app(&mut self, call: &csml::AppCall) -> Result<Json, String> {
        // Apps run under the plugin host's own time limit; none starts past the deadline.
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err("the turn's deadline has passed".into());
        }
        match self.apps {
            Some(a) => a.call(&self.ctx, call),
            None => NoApps.call(&self.ctx, call),
        }
    }

    fn log(&mut self, level: csml::ast::LogLevel, message: &str) {
        if self.log_left == 0 {
            return;
        }
        if message.len() > self.log_left {
            self.log_left = 0;
            tracing::warn!(target: "botyard::csml", bot = %self.ctx.bot_id,
                "this turn's log quota ({LOG_BYTES_PER_TURN} bytes) is spent: its further logs are dropped");
            return;
        }
        self.log_left -= message.len();
        match &mut self.base {
            Some(b) => b.log(level, message),
            None => tracing::info!(target: "botyard::csml", level = ?level, "{message}"),
        }
    }
}
