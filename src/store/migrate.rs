//! Embedded, numbered migrations applied at open, each in its own `BEGIN IMMEDIATE`
//! transaction and recorded in `schema_migrations`. To change the schema, ADD a file
//! `migrations/NNNN_name.sql` and a line to [`MIGRATIONS`] (a test fails when a file is not
//! listed); never edit an applied one.

use super::{Error, Result};
use rusqlite::Connection;

/// (version, name, SQL), in order.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "0001_core", include_str!("migrations/0001_core.sql")),
    (10, "0010_ocs", include_str!("migrations/0010_ocs.sql")),
    (30, "0030_admin", include_str!("migrations/0030_admin.sql")),
    (
        40,
        "0040_plugins",
        include_str!("migrations/0040_plugins.sql"),
    ),
    (
        41,
        "0041_plugins_errors",
        include_str!("migrations/0041_plugins_errors.sql"),
    ),
    (
        50,
        "0050_hot_path",
        include_str!("migrations/0050_hot_path.sql"),
    ),
];

pub(super) fn apply(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let newest: Option<u32> =
        conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    if let Some(v) = newest
        && v > known
    {
        return Err(Error::Other(format!(
            "the database is at schema version {v}, newer than this botyard ({known}): \
             upgrade botyard"
        )));
    }
    for &(version, name, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Checked inside the write transaction: two processes starting together apply once.
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)
                .map_err(|e| Error::Other(format!("migration {name} failed: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, super::ids::now_millis()],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}
