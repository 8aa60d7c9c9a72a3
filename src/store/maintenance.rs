//! Housekeeping: the expiry sweep (data TTL, csml-language §7.6) and online backups.
//!
//! Several nodes may sweep one PostgreSQL database at once: each batch takes the expired
//! rows no other sweep holds (`FOR UPDATE SKIP LOCKED`), so concurrent sweeps delete disjoint
//! rows and each counts only the rows it deleted itself. The expiry test is repeated on the
//! deleted row itself: PostgreSQL re-checks it on the row's latest version, so a row a turn
//! has just given a later expiry (a conversation, a memory) is left alone.

use super::db::params;
use super::{Error, Result, Store};
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
    ///
    /// One job per table: a job then never holds one table's row locks while it waits for
    /// another's, so concurrent sweeps on PostgreSQL cannot deadlock (a conversation's delete
    /// cascades to its messages, which another node's message batch may hold; in one
    /// transaction the two nodes could each wait for the other).
    pub fn sweep_expired(&self, now: i64, batch: u32) -> Result<SweepCounts> {
        let sweep = |table: &'static str, key: &'static str| {
            self.write(move |c| {
                let skip = c.pick("", " FOR UPDATE SKIP LOCKED");
                c.execute(
                    &format!(
                        "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}
                         WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2{skip})
                         AND expires_at <= ?1"
                    ),
                    params![now, batch],
                )
            })
        };
        let messages = sweep("messages", "id")?;
        // By primary key (memories is WITHOUT ROWID on SQLite).
        let memories = sweep("memories", "bot_id, channel_id, user_id, key")?;
        let conversations = sweep("conversations", "id")?;
        Ok(SweepCounts {
            conversations,
            messages,
            memories,
        })
    }

    /// A consistent copy of the database into `dest` (which must not exist), taken while the
    /// server may keep writing (`VACUUM INTO` reads one snapshot; WAL writers are not blocked).
    /// SQLite only: a PostgreSQL database is backed up with its own tools (or copied to a
    /// SQLite directory with `botyard store copy`).
    pub fn backup(&self, dest: &Path) -> Result<()> {
        if self.dialect() == super::db::Dialect::Postgres {
            return Err(Error::Invalid(
                "backup of a PostgreSQL store: use pg_dump or `botyard store copy`".into(),
            ));
        }
        if dest.exists() {
            return Err(Error::Conflict(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| Error::Invalid("backup path is not UTF-8".into()))?;
        // VACUUM cannot run in a transaction nor on a query_only connection.
        self.private_sqlite(|c| {
            c.execute("VACUUM INTO ?1", [dest])?;
            Ok(())
        })
    }
}
