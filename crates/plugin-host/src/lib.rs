//! The WASM plugin host of botyard: custom apps (`App()` in CSML) and channel connectors,
//! run as WebAssembly components on wasmtime against the versioned WIT package in
//! `wit/botyard-plugin@<version>/`.
//!
//! - [`manifest`]: what a plugin declares, and the API version check.
//! - [`host`]: [`PluginHost`] — load, then `call_app` / `connector_ingest` / `connector_deliver`.
//! - [`outbound`]: the outbound HTTP policy (allowlist, private addresses) and client.
//! - [`kv`]: the key-value store trait the platform implements.
//! - [`state`], [`bindings`], [`runtime`]: store state and host imports, generated bindings,
//!   engine/epoch/compile cache.
//! - [`builtin`]: the first-party plugins built from `plugins/` and embedded in the binary.

pub mod bindings;
pub mod builtin;
pub mod error;
pub mod host;
pub mod kv;
pub mod manifest;
pub mod outbound;
pub mod runtime;
pub mod state;

pub use error::{GuestError, PluginError};
pub use host::{
    AppContext, BotMessage, ChannelContext, DeliveryOutcome, HttpReply, InboundEvent,
    IngestOutcome, Installation, LoadedPlugin, PluginHost, PluginHostConfig, Webhook,
};
pub use kv::{InMemoryKvStore, KvScope, KvStore, KvStoreError};
pub use manifest::{Manifest, PluginKind, SUPPORTED_APIS};

/// Hex SHA-256, the identity of a `.wasm`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
