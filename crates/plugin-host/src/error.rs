//! Errors of loading and calling plugins, and the plugin host's log lines.

use std::fmt;
use std::time::Duration;

/// The plugin's own failure (the WIT `plugin-error` variant), returned cleanly by the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    InvalidInput(String),
    Unauthorized(String),
    Config(String),
    Upstream(String),
    RateLimited(u32),
    Internal(String),
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            GuestError::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            GuestError::Config(m) => write!(f, "configuration: {m}"),
            GuestError::Upstream(m) => write!(f, "upstream: {m}"),
            GuestError::RateLimited(s) => write!(f, "rate limited: retry in {s} s"),
            GuestError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The plugin cannot be loaded (bad component, unsupported API, wrong world...).
    Load(String),
    /// The call ran past its deadline and was stopped.
    Timeout(Duration),
    /// The plugin tried to grow its memory past the limit and died.
    MemoryLimit(usize),
    /// The plugin trapped (panic, unreachable, out-of-bounds...).
    Trap(String),
    /// The organization already runs its maximum of concurrent plugin calls.
    Busy(String),
    /// The plugin returned an error.
    Guest(GuestError),
    /// The plugin returned something unusable (invalid JSON, too large...).
    BadOutput(String),
    /// The plugin is of the other kind (an app called as a connector...).
    WrongKind(String),
}

impl PluginError {
    /// Whether retrying the same call later may succeed (outbox delivery).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout(_)
                | PluginError::Busy(_)
                | PluginError::Guest(GuestError::Upstream(_) | GuestError::RateLimited(_))
        )
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Load(m) => write!(f, "cannot load plugin: {m}"),
            PluginError::Timeout(d) => {
                write!(f, "plugin call exceeded its {} ms deadline", d.as_millis())
            }
            PluginError::MemoryLimit(b) => write!(
                f,
                "plugin exceeded its memory limit of {} MiB",
                b / (1024 * 1024)
            ),
            PluginError::Trap(m) => write!(f, "plugin crashed: {m}"),
            PluginError::Busy(m) => write!(f, "{m}"),
            PluginError::Guest(e) => write!(f, "plugin error: {e}"),
            PluginError::BadOutput(m) => write!(f, "plugin returned bad output: {m}"),
            PluginError::WrongKind(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// One log line through `tracing` (target `botyard::plugins`, field `plugin` = `org/name`).
/// The platform's subscriber writes it to stderr.
pub fn log(level: &str, label: &str, message: &str) {
    match level {
        "error" => tracing::error!(target: "botyard::plugins", plugin = label, "{message}"),
        "warn" => tracing::warn!(target: "botyard::plugins", plugin = label, "{message}"),
        "info" => tracing::info!(target: "botyard::plugins", plugin = label, "{message}"),
        "debug" => tracing::debug!(target: "botyard::plugins", plugin = label, "{message}"),
        _ => tracing::trace!(target: "botyard::plugins", plugin = label, "{message}"),
    }
}
