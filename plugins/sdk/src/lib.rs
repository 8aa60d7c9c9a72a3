//! Helpers shared by botyard plugins, independent of the WIT bindings so any plugin crate can
//! use them: outbound HTTP over the standard `wasi:http/outgoing-handler` ([`http`]), turning
//! CSML bot messages into what a platform can show ([`render`]), webhook signature checks
//! ([`crypto`]), form/query encoding ([`form`]) and the embedded manifest ([`manifest!`]).

pub mod crypto;
pub mod form;
pub mod http;
pub mod render;

/// Embed `plugin.json` (next to the crate's `Cargo.toml`) in the component as the custom
/// section `botyard-plugin`, where the host reads the manifest at install time.
#[macro_export]
macro_rules! manifest {
    () => {
        const _BOTYARD_MANIFEST_LEN: usize =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.json")).len();
        #[used]
        #[unsafe(link_section = "botyard-plugin")]
        static _BOTYARD_MANIFEST: [u8; _BOTYARD_MANIFEST_LEN] =
            *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.json"));
    };
}

/// Seconds since the Unix epoch from the WASI wall clock.
pub fn now_secs() -> u64 {
    wasip2::clocks::wall_clock::now().seconds
}

/// `value[key]` as a string whether it is a JSON string or number (platform ids are both).
pub fn str_of(value: &serde_json::Value, key: &str) -> Option<String> {
    match value.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
