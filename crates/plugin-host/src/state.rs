//! The per-call store state: WASI contexts (no filesystem, no environment, no sockets), the
//! outbound HTTP hooks, the memory limiter, and the host side of `botyard:plugin/{kv,host}`
//! bound to one (organization, plugin) scope.

use crate::bindings::v0_1::{host, kv, types};
use crate::error::log;
use crate::kv::{KvScope, KvStore, KvStoreError, MAX_KEY_BYTES, MAX_LIST_KEYS, MAX_VALUE_BYTES};
use crate::outbound::OutboundHooks;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub const MAX_LOG_LINE: usize = 8 * 1024;
pub const MAX_LOG_LINES_PER_CALL: u32 = 200;

/// Names and values an installation may read: only names the manifest declares.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    pub limiter: Limiter,
    kv: Arc<dyn KvStore>,
    scope: KvScope,
    settings: Arc<Settings>,
    label: String,
    log_lines: u32,
    /// Set by the epoch callback when it stops the call.
    pub timed_out: bool,
}

impl State {
    pub fn new(
        hooks: OutboundHooks,
        memory_limit: usize,
        kv: Arc<dyn KvStore>,
        scope: KvScope,
        settings: Arc<Settings>,
    ) -> State {
        // No preopens, no environment, no arguments, no network: stdio goes nowhere.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let label = format!("{}/{}", scope.org, scope.plugin);
        State {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks,
            limiter: Limiter {
                memory_limit,
                hit: false,
            },
            kv,
            scope,
            settings,
            label,
            log_lines: 0,
            timed_out: false,
        }
    }
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses linear memory growth past the limit and remembers that it did, so the trap that
/// follows (a Rust guest aborts on allocation failure) is reported as a memory limit.
pub struct Limiter {
    pub memory_limit: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn kv_err(e: KvStoreError) -> kv::KvError {
    match e {
        KvStoreError::QuotaExceeded => kv::KvError::QuotaExceeded,
        KvStoreError::Other(m) => kv::KvError::Other(m),
    }
}

impl types::Host for State {}

impl kv::Host for State {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.kv.get(&self.scope, &key).map_err(kv_err)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv::KvError> {
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.kv.set(&self.scope, &key, &value).map_err(kv_err)
    }

    fn delete(&mut self, key: String) -> Result<(), kv::KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.kv.delete(&self.scope, &key).map_err(kv_err)
    }

    fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, kv::KvError> {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.kv
            .list_keys(&self.scope, &prefix, MAX_LIST_KEYS)
            .map_err(kv_err)
    }
}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let level = match level {
            host::Level::Trace => "trace",
            host::Level::Debug => "debug",
            host::Level::Info => "info",
            host::Level::Warn => "warn",
            host::Level::Error => "error",
        };
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        log(level, &self.label, &message[..end]);
    }

    fn config(&mut self, name: String) -> Option<String> {
        self.settings.config.get(&name).cloned()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.settings.secrets.get(&name).cloned()
    }
}
