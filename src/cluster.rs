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
    id: String,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let (store, id) = (self.store.clone(), self.id.clone());
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
    let id = crate::store::ids::new_id();
    let (s, node) = (store.clone(), id.clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (s2, n2) = (s.clone(), node.clone());
            let now = crate::store::ids::now_millis();
            match tokio::task::spawn_blocking(move || s2.node_heartbeat(&n2, now, STALE_MS)).await {
                Ok(Ok(n)) if shared => {
                    if NODES.swap(n, Ordering::Relaxed) != n {
                        tracing::info!(nodes = n, "live nodes on this database");
                    }
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "node heartbeat"),
            }
        }
    });
    Some(Heartbeat {
        task: Some(task),
        store: store.clone(),
        id,
    })
}
