//! What a node knows of the other nodes serving the same PostgreSQL database: how many are
//! alive, from a heartbeat row each writes every second (`nodes` table).
//!
//! Rate limits are per node in memory (a shared counter would cost a database round trip per
//! request): each node enforces its **share**, the configured rate divided by the number of
//! live nodes ([`share`]), so behind a load balancer that spreads requests evenly a client gets
//! the configured rate in all. A node that dies stops counting after [`STALE_MS`]; until then
//! the others enforce a slightly smaller share (stricter, never looser). On SQLite there is
//! one node and the share is 1. The admin login throttle stays per node (see the deployment
//! guide).

use crate::store::Store;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A node not heard from for this long is not counted.
pub const STALE_MS: i64 = 5_000;

static NODES: AtomicU32 = AtomicU32::new(1);

/// The number of live nodes sharing this node's database (at least 1).
pub fn share() -> u32 {
    NODES.load(Ordering::Relaxed).max(1)
}

/// A running heartbeat; dropping it stops the task and removes the node's row.
pub struct Heartbeat {
    task: Option<tokio::task::JoinHandle<()>>,
    store: Store,
    id: Arc<Mutex<String>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let store = self.store.clone();
            let id = self.id.lock().unwrap_or_else(|p| p.into_inner()).clone();
            // Best effort: a node that cannot say goodbye ages out after STALE_MS.
            let _ = std::thread::spawn(move || store.node_leave(&id)).join();
        }
    }
}

/// Start the heartbeat (inside a tokio runtime). It runs on both backends, so that tools
/// (`botyard store copy`) can tell a store that is being served; only on a shared
/// (PostgreSQL) store does the count set the share: a SQLite store has one server.
pub fn start(store: &Store) -> Option<Heartbeat> {
    let shared = store.dialect() == crate::store::db::Dialect::Postgres;
    let started = crate::store::ids::now_millis();
    let node = Arc::new(Mutex::new(node_id(store.data_dir())));
    let (s, node2) = (store.clone(), Arc::clone(&node));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let fresh = HEARTBEAT_EVERY.as_millis() as i64 * 3 / 2;
        loop {
            tick.tick().await;
            let s2 = s.clone();
            let n2 = node2.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let now = crate::store::ids::now_millis();
            let beat = move || s2.node_heartbeat(&n2, started, now, STALE_MS, fresh);
            match tokio::task::spawn_blocking(beat).await {
                Ok(Ok(None)) => {
                    tracing::warn!(
                        "another live node uses this data directory's node id: this process \
                         takes an id of its own (give every node its own data directory)"
                    );
                    *node2.lock().unwrap_or_else(|p| p.into_inner()) = crate::store::ids::new_id();
                }
                Ok(Ok(Some(n))) if shared => {
                    if NODES.swap(n, Ordering::Relaxed) != n {
                        tracing::info!(nodes = n, "live nodes on this database");
                    }
                }
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "node heartbeat"),
            }
        }
    });
    Some(Heartbeat {
        task: Some(task),
        store: store.clone(),
        id: node,
    })
}

/// This node's id, kept in `DATA/node.id` so that a node restarted after a crash takes over
/// its old heartbeat row instead of counting as a second node until that row goes stale.
fn node_id(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("node.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return id.to_string();
        }
    }
    let id = crate::store::ids::new_id();
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!(error = %e, path = %path.display(), "cannot keep the node id");
    }
    id
}
