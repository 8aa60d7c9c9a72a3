//! The plugins' key-value store on SQLite (`plugin_kv`), behind the plugin host's
//! [`KvStore`] trait. The host fixes the (organization, plugin) scope of every call; this
//! adapter only maps it onto the table's key.

use crate::store::Store;
use crate::store::plugins::KvWriteError;
use botyard_plugins::{KvScope, KvStore, KvStoreError};

/// Bytes of keys + values one (organization, plugin) may keep.
pub const KV_QUOTA_BYTES: i64 = 16 * 1024 * 1024;

pub struct SqliteKv {
    store: Store,
}

impl SqliteKv {
    pub fn new(store: Store) -> SqliteKv {
        SqliteKv { store }
    }
}

fn other(e: impl std::fmt::Display) -> KvStoreError {
    KvStoreError::Other(e.to_string())
}

/// Plugin calls run on the async runtime; the store blocks. `block_in_place` lets the worker
/// thread block without starving the other tasks (multi-threaded runtime); elsewhere (a
/// current-thread runtime, a plain thread) the call simply blocks.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl KvStore for SqliteKv {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvStoreError> {
        blocking(|| self.store.plugin_kv_get(&scope.org, &scope.plugin, key)).map_err(other)
    }

    fn set(&self, scope: &KvScope, key: &str, value: &[u8]) -> Result<(), KvStoreError> {
        blocking(|| {
            self.store
                .plugin_kv_set(&scope.org, &scope.plugin, key, value, KV_QUOTA_BYTES)
        })
        .map_err(|e| match e {
            KvWriteError::QuotaExceeded => KvStoreError::QuotaExceeded,
            KvWriteError::Store(e) => other(e),
        })
    }

    fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvStoreError> {
        blocking(|| self.store.plugin_kv_delete(&scope.org, &scope.plugin, key)).map_err(other)
    }

    fn list_keys(
        &self,
        scope: &KvScope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvStoreError> {
        blocking(|| {
            self.store
                .plugin_kv_list(&scope.org, &scope.plugin, prefix, limit)
        })
        .map_err(other)
    }
}
