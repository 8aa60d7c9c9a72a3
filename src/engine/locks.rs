//! One turn at a time per client on this node: an async mutex per `(bot, channel, user)` key,
//! created on demand and removed when nobody holds or waits for it. Tokio's mutex is fair
//! (FIFO), so concurrent requests of one user run in arrival order. The map is sharded to keep
//! the short map-lock critical sections from contending under many parallel users.
//!
//! These locks live in process memory: they only order the turns this node runs. Across the
//! nodes of one PostgreSQL database the store's version check decides (a turn whose
//! conversation moved since its read is refused and runs again, see `turn`); the lock still
//! spares a node's own concurrent turns of one client that rerun.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

const SHARDS: usize = 32;

/// `bot \x1f channel \x1f user`: bot and channel are ids without that byte and the user id
/// comes last, so the key is unambiguous; one allocation per turn, shared by the map entry
/// and the guard.
type Key = Arc<str>;
type Slot = Arc<tokio::sync::Mutex<()>>;

pub struct ClientLocks {
    shards: Vec<Mutex<HashMap<Key, Slot>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ClientLocks {
    fn default() -> Self {
        ClientLocks {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

/// Held while a turn runs; releases (and cleans up) on drop.
pub struct ClientGuard<'a> {
    locks: &'a ClientLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl ClientLocks {
    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Slot>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    pub async fn lock(&self, bot: &str, channel: &str, user: &str) -> ClientGuard<'_> {
        let key: Key = Arc::from(format!("{bot}\u{1f}{channel}\u{1f}{user}"));
        let slot = {
            let mut map = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
            map.entry(Arc::clone(&key)).or_default().clone()
        };
        let guard = slot.lock_owned().await;
        ClientGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }

    /// Keys currently tracked (held or awaited).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .locks
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Only the map's reference left: nobody holds or waits, so the slot can go. Waiters
        // hold a clone of the Arc, which keeps the count above one.
        if map
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serializes_and_cleans_up() {
        let locks = Arc::new(ClientLocks::default());
        let g = locks.lock("b", "c", "u").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("b", "c", "u").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let other = locks.lock("b", "c", "v").await;
        drop(other);
        drop(g);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
