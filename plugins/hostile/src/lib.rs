//! Test fixture, never shipped: an app that misbehaves on request so the host's sandbox can be
//! tested. `args.do` picks the behaviour: `loop` (spins forever), `bomb` (allocates until it
//! dies), `panic`, `fetch` (GETs `args.url`), `kv-set`/`kv-get`/`kv-list`, `secret`, `ok`.

wit_bindgen::generate!({
    world: "custom-app",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::{host, kv};
use serde_json::{Value, json};

struct Hostile;

impl Guest for Hostile {
    fn call(_ctx: CallContext, args: String) -> Result<String, PluginError> {
        let args: Value = serde_json::from_str(&args).unwrap_or(Value::Null);
        let arg = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let out = match arg("do").as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("asked to panic"),
            "fetch" => match botyard_plugin_sdk::http::Request::get(arg("url")).send() {
                Ok(r) => json!({"status": r.status, "body": String::from_utf8_lossy(&r.body)}),
                Err(e) => return Err(PluginError::Upstream(e)),
            },
            "kv-set" => {
                kv::set(&arg("key"), arg("value").as_bytes())
                    .map_err(|e| PluginError::Internal(format!("{e:?}")))?;
                json!(true)
            }
            "kv-get" => {
                let v =
                    kv::get(&arg("key")).map_err(|e| PluginError::Internal(format!("{e:?}")))?;
                json!(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            }
            "kv-list" => json!(
                kv::list_keys(&arg("prefix"))
                    .map_err(|e| PluginError::Internal(format!("{e:?}")))?
            ),
            "secret" => json!(host::secret("token")),
            "bad-json" => return Ok("{not json".into()),
            _ => json!("ok"),
        };
        Ok(out.to_string())
    }
}

export!(Hostile);
