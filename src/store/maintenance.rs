//! Housekeeping: the expiry sweep (data TTL, csml-language §7.6) and online backups.

use super::{Error, Result, Store};
use rusqlite::params;
use std::path::Path;

/// Rows removed by one sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepCounts {
    pub conversations: usize,
    pub messages: usize,
    pub memories: usize,
}

impl Store {
    /// Delete rows whose `expires_at` has passed, at most `batch` per table, in small write
    /// jobs so turns are never held up behind a big delete. Call repeatedly until it returns
    /// zeros.
    pub fn sweep_expired(&self, now: i64, batch: u32) -> Result<SweepCounts> {
        self.write_lite(move |c| {
            let messages = c.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages
                 WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now, batch],
            )?;
            // memories is WITHOUT ROWID: delete by its primary key.
            let memories = c.execute(
                "DELETE FROM memories WHERE (bot_id, channel_id, user_id, key) IN
                 (SELECT bot_id, channel_id, user_id, key FROM memories
                  WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now, batch],
            )?;
            let conversations = c.execute(
                "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations
                 WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now, batch],
            )?;
            Ok(SweepCounts {
                conversations,
                messages,
                memories,
            })
        })
    }

    /// A consistent copy of the database into `dest` (which must not exist), taken while the
    /// server may keep writing (`VACUUM INTO` reads one snapshot; WAL writers are not blocked).
    pub fn backup(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::Conflict(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| Error::Invalid("backup path is not UTF-8".into()))?;
        // VACUUM cannot run on a query_only connection, so use a private one.
        let c = rusqlite::Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        c.execute("VACUUM INTO ?1", [dest])?;
        Ok(())
    }
}
