//! The serving nodes of one database and their heartbeats (see `crate::cluster`).

use super::db::OptionalExtension;
use super::{Result, Store};

impl Store {
    /// Record that node `id` (a process started at `started`) is alive at `now` (ms), forget
    /// nodes silent for ten times `stale_ms`, and return how many nodes (this one included)
    /// were seen within `stale_ms` — or `None` when another live process holds `id` (its row
    /// has another start time and was written less than `fresh_ms` ago): two nodes share a
    /// data directory, and the caller takes an id of its own.
    pub fn node_heartbeat(
        &self,
        id: &str,
        started: i64,
        now: i64,
        stale_ms: i64,
        fresh_ms: i64,
    ) -> Result<Option<u32>> {
        let id = id.to_string();
        self.write(move |c| {
            let other: Option<(i64, i64)> = c
                .query_row(
                    "SELECT started_at, last_seen FROM nodes WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((s, seen)) = other
                && s != started
                && seen > now - fresh_ms
            {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO nodes(id, started_at, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET started_at = excluded.started_at,
                 last_seen = excluded.last_seen",
                super::db::params![id, started, now],
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
            Ok(Some(n.max(1) as u32))
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
