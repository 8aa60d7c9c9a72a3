//! The first-party plugins, built from `plugins/` by this crate's build script and embedded.

/// `(name, wasm)` of every first-party plugin, in a fixed order.
pub const FIRST_PARTY: &[(&str, &[u8])] = &[
    (
        "telegram",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/telegram.wasm")),
    ),
    (
        "slack",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/slack.wasm")),
    ),
    (
        "whatsapp",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/whatsapp.wasm")),
    ),
    (
        "twilio-sms",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/twilio_sms.wasm")),
    ),
    (
        "messenger",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/messenger.wasm")),
    ),
    (
        "llm",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/llm.wasm")),
    ),
    (
        "echo",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/echo.wasm")),
    ),
];

/// The embedded `.wasm` of a first-party plugin.
pub fn wasm(name: &str) -> Option<&'static [u8]> {
    FIRST_PARTY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, w)| *w)
}

pub fn is_first_party(name: &str) -> bool {
    wasm(name).is_some()
}
