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

pub(super) struct TurnHost<'a> {
    base: Option<BotHost>,
    rng: u64,
    apps: Option<&'a dyn AppRouter>,
    ctx: AppContext,
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

    fn app(&mut self, call: &csml::AppCall) -> Result<Json, String> {
        match self.apps {
            Some(a) => a.call(&self.ctx, call),
            None => NoApps.call(&self.ctx, call),
        }
    }

    fn log(&mut self, level: csml::ast::LogLevel, message: &str) {
        match &mut self.base {
            Some(b) => b.log(level, message),
            None => tracing::info!(target: "botyard::csml", level = ?level, "{message}"),
        }
    }
}
