//! `echo`: the smallest useful custom app and the template for new ones. `App("echo", a=1)`
//! returns `{"args": {"a": 1}, "context": {...}, "calls": N, "greeting": ...}` where `calls`
//! counts this organization's calls in the plugin's key-value store.

wit_bindgen::generate!({
    world: "custom-app",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::{host, kv};
use serde_json::{Value, json};

struct Echo;

impl Guest for Echo {
    fn call(ctx: CallContext, args: String) -> Result<String, PluginError> {
        let args: Value = serde_json::from_str(&args)
            .map_err(|e| PluginError::InvalidInput(format!("args are not JSON: {e}")))?;
        let calls = match kv::get("calls").map_err(|e| PluginError::Internal(format!("{e:?}")))? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        kv::set("calls", calls.to_string().as_bytes())
            .map_err(|e| PluginError::Internal(format!("{e:?}")))?;
        host::log(
            host::Level::Debug,
            &format!("echo call {calls} from bot {}", ctx.bot),
        );
        Ok(json!({
            "args": args,
            "context": {
                "org": ctx.org, "bot": ctx.bot, "participant": ctx.participant,
                "channel": ctx.channel, "flow": ctx.flow, "step": ctx.step,
            },
            "calls": calls,
            "greeting": host::config("greeting"),
        })
        .to_string())
    }
}

export!(Echo);
