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
    (
        55,
        "0055_participant_keys",
        include_str!("migrations/0055_participant_keys.sql"),
    ),
    (
        56,
        "0056_builtin_channel_tokens",
        include_str!("migrations/0056_builtin_channel_tokens.sql"),
    ),
    (
        60,
        "0060_check_lists",
        include_str!("migrations/0060_check_lists.sql"),
    ),
    (
        61,
        "0061_fair_delivery",
        include_str!("migrations/0061_fair_delivery.sql"),
    ),
    (
        62,
        "0062_ocs_file_usage",
        include_str!("migrations/0062_ocs_file_usage.sql"),
    ),
    (
        63,
        "0063_ocs_file_content",
        include_str!("migrations/0063_ocs_file_content.sql"),
    ),
    (
        64,
        "0064_turn_guard",
        include_str!("migrations/0064_turn_guard.sql"),
    ),
    (70, "0070_nodes", include_str!("migrations/0070_nodes.sql")),
    (
        71,
        "0071_client_revs",
        include_str!("migrations/0071_client_revs.sql"),
    ),
];

/// Refuse a database whose schema (`newest` applied version) is newer than `known`, this
/// binary's migrations of its backend: an older botyard must not run on it.
pub(super) fn check_not_newer(newest: Option<i64>, known: &[(u32, &str, &str)]) -> Result<()> {
    let known = known.last().map(|m| m.0 as i64).unwrap_or(0);
    match newest {
        Some(v) if v > known => Err(Error::Other(format!(
            "the database is at schema version {v}, newer than this botyard ({known}): \
             upgrade botyard"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn apply(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    check_not_newer(newest, MIGRATIONS)?;
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

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;
    use rusqlite::Connection;

    /// 0055 re-keys daily usage by participant and the open-conversation index by
    /// participant: history keeps its counts, an orphan open conversation is closed.
    #[test]
    fn participant_keys_migration_keeps_usage_and_closes_orphans() {
        let c = Connection::open_in_memory().unwrap();
        for (v, _, sql) in MIGRATIONS.iter().filter(|m| m.0 < 55) {
            c.execute_batch(sql).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        c.execute_batch(
            "INSERT INTO organizations(id, name, created_at, updated_at) VALUES ('o', 'O', 0, 0);
             INSERT INTO bots(id, organization_id, name, created_at, updated_at)
                VALUES ('b', 'o', 'B', 0, 0);
             INSERT INTO channels(id, organization_id, bot_id, kind, name, api_key, secret_enc,
                created_at, updated_at) VALUES ('ch', 'o', 'b', 'studio', 'C', 'k', x'00', 0, 0);
             INSERT INTO participants(id, organization_id, platform, identifier, created_at,
                updated_at) VALUES ('p1', 'o', 'studio', 'alice', 0, 0);
             INSERT INTO usage_daily VALUES ('o', 'b', 10, 'ch', 'alice', 3);
             INSERT INTO usage_daily VALUES ('o', 'b', 10, 'ch', 'ghost', 2);
             INSERT INTO usage_daily VALUES ('o', 'b', 11, 'ch', 'alice', 4);
             INSERT INTO conversations(id, organization_id, bot_id, channel_id, user_id,
                participant_id, flow, step, status, last_interaction_at, created_at, updated_at)
                VALUES ('c1', 'o', 'b', 'ch', 'alice', 'p1', 'F', 's', 'open', 0, 0, 5),
                       ('c2', 'o', 'b', 'ch', 'ghost', NULL, 'F', 's', 'open', 0, 0, 7);
             -- An OCS session of alice's, whose conversations had an extra participant.
             INSERT INTO channels(id, organization_id, bot_id, kind, name, api_key, secret_enc,
                created_at, updated_at) VALUES ('oc', 'o', 'b', 'ocs', 'O', 'k2', x'00', 0, 0);
             INSERT INTO ocs_sessions(id, organization_id, bot_id, participant_id, platform,
                channel_kind, status, created_at, updated_at)
                VALUES ('sess', 'o', 'b', 'p1', 'api', 'api', 'active', 0, 0);
             INSERT INTO participants(id, organization_id, platform, identifier, created_at,
                updated_at) VALUES ('px', 'o', 'ocs', 'sess', 0, 0);
             INSERT INTO conversations(id, organization_id, bot_id, channel_id, user_id,
                participant_id, flow, step, status, last_interaction_at, created_at, updated_at)
                VALUES ('c4', 'o', 'b', 'oc', 'sess', 'px', 'F', 's', 'open', 0, 0, 0);
             INSERT INTO usage_daily VALUES ('o', 'b', 11, 'oc', 'sess', 5);",
        )
        .unwrap();
        let (_, _, sql) = MIGRATIONS.iter().find(|m| m.0 == 55).unwrap();
        c.execute_batch(sql).unwrap();
        let rows: Vec<(i64, String, i64)> = c
            .prepare(
                "SELECT day, client, messages FROM usage_daily ORDER BY day, channel_id, client",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (10, "p1".to_string(), 3),
                (10, "user:ghost".to_string(), 2),
                (11, "p1".to_string(), 4),
                (11, "p1".to_string(), 5)
            ]
        );
        let owner: String = c
            .query_row(
                "SELECT participant_id FROM conversations WHERE id = 'c4'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(owner, "p1");
        let extra: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM participants WHERE platform = 'ocs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0);
        let status = |id: &str| -> (String, Option<i64>) {
            c.query_row(
                "SELECT status, ended_at FROM conversations WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(status("c1"), ("open".to_string(), None));
        assert_eq!(status("c2"), ("closed".to_string(), Some(7)));
        // One open conversation per (participant, bot, channel).
        let dup = c.execute(
            "INSERT INTO conversations(id, organization_id, bot_id, channel_id, user_id,
                participant_id, flow, step, status, last_interaction_at, created_at, updated_at)
             VALUES ('c3', 'o', 'b', 'ch', 'alice', 'p1', 'F', 's', 'open', 0, 0, 0)",
            [],
        );
        assert!(dup.is_err());
    }

    /// 0060 rebuilds ocs_messages and ocs_tasks with their CHECK lists as comparisons: rows
    /// and ids are kept, the checks still refuse what they refused, the indexes are back, and
    /// a row written afterwards needs no ephemeral table.
    #[test]
    fn check_lists_migration_keeps_rows_and_checks() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for (v, _, sql) in MIGRATIONS.iter().filter(|m| m.0 < 60) {
            c.execute_batch(sql).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        c.execute_batch(
            "INSERT INTO organizations(id, name, created_at, updated_at) VALUES ('o', 'O', 0, 0);
             INSERT INTO bots(id, organization_id, name, created_at, updated_at)
                VALUES ('b', 'o', 'B', 0, 0);
             INSERT INTO participants(id, organization_id, platform, identifier, created_at,
                updated_at) VALUES ('p1', 'o', 'api', 'alice', 0, 0);
             INSERT INTO ocs_sessions(id, organization_id, bot_id, participant_id, platform,
                channel_kind, status, created_at, updated_at)
                VALUES ('s', 'o', 'b', 'p1', 'api', 'api', 'active', 0, 0);
             INSERT INTO ocs_messages(id, organization_id, session_id, role, content, created_at)
                VALUES (41, 'o', 's', 'user', 'hi', 1), (42, 'o', 's', 'assistant', 'hello', 2);
             INSERT INTO ocs_tasks(id, organization_id, session_id, status, request, message_id,
                created_at, updated_at) VALUES ('t', 'o', 's', 'complete', '{}', 42, 1, 2);",
        )
        .unwrap();
        let (_, _, sql) = MIGRATIONS.iter().find(|m| m.0 == 60).unwrap();
        c.execute_batch(sql).unwrap();
        let msgs: Vec<(i64, String)> = c
            .prepare("SELECT id, role FROM ocs_messages ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(msgs, vec![(41, "user".into()), (42, "assistant".into())]);
        let task: (String, i64) = c
            .query_row(
                "SELECT status, message_id FROM ocs_tasks WHERE id = 't'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(task, ("complete".into(), 42));
        assert!(
            c.execute(
                "INSERT INTO ocs_messages(organization_id, session_id, role, content, created_at)
                 VALUES ('o', 's', 'robot', 'x', 3)",
                [],
            )
            .is_err()
        );
        assert!(
            c.execute("UPDATE ocs_tasks SET status = 'lost' WHERE id = 't'", [])
                .is_err()
        );
        // Still a child of its session.
        c.execute("DELETE FROM ocs_sessions WHERE id = 's'", [])
            .unwrap();
        let left: i64 = c
            .query_row(
                "SELECT (SELECT COUNT(*) FROM ocs_messages) + (SELECT COUNT(*) FROM ocs_tasks)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let indexes: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
                 AND name IN ('ocs_messages_session', 'ocs_tasks_pending')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
        let ephemeral = |sql: &str| -> bool {
            c.prepare(&format!("EXPLAIN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(1))
                .unwrap()
                .any(|op| op.unwrap() == "OpenEphemeral")
        };
        assert!(!ephemeral(
            "INSERT INTO ocs_messages(organization_id, session_id, role, content, created_at)
             VALUES ('o', 's', 'user', 'x', 3)"
        ));
        assert!(!ephemeral(
            "UPDATE ocs_tasks SET status = 'complete', updated_at = 3 WHERE id = 't'"
        ));
    }
}
