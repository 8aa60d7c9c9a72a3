//! `App("name", ...)` from CSML: the engine's [`AppRouter`] seam, answered by the WASM app of
//! that name (the organization's installation, else a first-party app). The turn runs on a
//! blocking thread, so the async plugin call is driven with the runtime handle.
//!
//! Errors follow csml-language §5.8: the flow continues, the interpreter reports an in-band
//! error and `App()` is `null`. Messages start with `Apps service: error` like the reference's
//! transport failures, followed by the reason (timeout, crash, the plugin's own error).

use super::PluginRuntime;
use crate::engine::{AppContext, AppRouter};
use botyard_plugins::{AppContext as PluginCtx, PluginKind};
use serde_json::Value as Json;

impl AppRouter for PluginRuntime {
    fn call(&self, ctx: &AppContext, call: &csml::AppCall) -> Result<Json, String> {
        self.rt.block_on(self.call_app(ctx, call))
    }
}

impl PluginRuntime {
    pub async fn call_app(&self, ctx: &AppContext, call: &csml::AppCall) -> Result<Json, String> {
        let resolved = match self.resolve(&ctx.organization_id, &call.name).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(format!("App `{}` is not installed", call.name)),
            Err(e) => {
                self.note_error(&ctx.organization_id, &call.name, "app", None, e.clone());
                return Err(format!("Apps service: error: {e}"));
            }
        };
        if resolved.plugin.manifest().kind != PluginKind::App {
            return Err(format!(
                "`{}` is a channel connector, not an app",
                call.name
            ));
        }
        let pctx = PluginCtx {
            bot: ctx.bot_id.clone(),
            participant: ctx.user_id.clone(),
            channel: ctx.channel_id.clone(),
            flow: call.flow.clone(),
            step: call.step.clone(),
        };
        let args = if call.args.is_null() {
            Json::Object(Default::default())
        } else {
            call.args.clone()
        };
        self.host
            .call_app(&resolved.plugin, &resolved.install, &pctx, &args)
            .await
            .map_err(|e| {
                let reason = e.to_string();
                self.note_error(
                    &ctx.organization_id,
                    &call.name,
                    "app",
                    None,
                    reason.clone(),
                );
                format!("Apps service: error: {} ({reason})", call.name)
            })
    }
}
