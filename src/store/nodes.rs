//! The serving nodes of one database and their heartbeats (see `crate::cluster`).

use super::{Result, Store};

impl Store {
    /// Record that node `id` is alive at `now` (ms), forget nodes silent for ten times
    /// `stale_ms`, and return how many nodes (this one included) were seen within `stale_ms`.
    pub fn node_heartbeat(&self, id: &str, now: i64, stale_ms: i64) -> Result<u32> {
        let id = id.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO nodes(id, started_at, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen",
                super::db::params![id, now],
            )?;
            c.execute(
                "DELETE FROM nodes WHERE last_seen < ?1",
                [now - 10 * stale_ms],
            )?;
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM nodes WHERE last_seen >= ?1",
                [now - stale_ms],
                |r| r.get(0),
            )?;
            Ok(n.max(1) as u32)
        })
    }

    /// Node `id` stops serving (a clean shutdown): the others' shares grow at once.
    pub fn node_leave(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM nodes WHERE id = ?1", [id])?;
            Ok(())
        })
    }
}
