//! The key-value store behind the `botyard:plugin/kv` interface. The platform implements
//! [`KvStore`] over SQLite; [`InMemoryKvStore`] is a complete implementation kept for this
//! crate's own tests and benchmarks (nothing persists, so the platform must not use it).
//!
//! Every method takes the [`KvScope`] the host fixed for the call — (organization, plugin) —
//! and the guest only ever names keys, so reaching another scope is impossible by construction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Host-side caps, checked before the store sees a request.
pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
pub const MAX_LIST_KEYS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvScope {
    pub org: String,
    pub plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvStoreError {
    QuotaExceeded,
    Other(String),
}

pub trait KvStore: Send + Sync {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvStoreError>;
    fn set(&self, scope: &KvScope, key: &str, value: &[u8]) -> Result<(), KvStoreError>;
    fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvStoreError>;
    /// Keys of `scope` starting with `prefix`, ascending, at most `limit`.
    fn list_keys(
        &self,
        scope: &KvScope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvStoreError>;
}

/// A [`KvStore`] in memory with a per-scope byte quota. Test and benchmark use only.
#[derive(Debug)]
pub struct InMemoryKvStore {
    data: Mutex<HashMap<KvScope, BTreeMap<String, Vec<u8>>>>,
    quota_bytes: usize,
}

impl InMemoryKvStore {
    pub fn new(quota_bytes: usize) -> Self {
        InMemoryKvStore {
            data: Mutex::new(HashMap::new()),
            quota_bytes,
        }
    }
}

impl Default for InMemoryKvStore {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl KvStore for InMemoryKvStore {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvStoreError> {
        let data = self.data.lock().expect("kv lock");
        Ok(data.get(scope).and_then(|m| m.get(key)).cloned())
    }

    fn set(&self, scope: &KvScope, key: &str, value: &[u8]) -> Result<(), KvStoreError> {
        let mut data = self.data.lock().expect("kv lock");
        let map = data.entry(scope.clone()).or_default();
        let used: usize = map
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if used + key.len() + value.len() > self.quota_bytes {
            return Err(KvStoreError::QuotaExceeded);
        }
        map.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, scope: &KvScope, key: &str) -> Result<(), KvStoreError> {
        let mut data = self.data.lock().expect("kv lock");
        if let Some(m) = data.get_mut(scope) {
            m.remove(key);
        }
        Ok(())
    }

    fn list_keys(
        &self,
        scope: &KvScope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvStoreError> {
        let data = self.data.lock().expect("kv lock");
        Ok(data
            .get(scope)
            .map(|m| {
                m.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}
