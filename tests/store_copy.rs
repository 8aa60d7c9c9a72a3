//! `botyard store copy` through the real binary: a SQLite store filled by a served botyard (and
//! a few rows written straight into its file for tables only connectors and uploads fill)
//! copied to PostgreSQL and back to SQLite, with equal per-table counts and checksums, the
//! outbox's rowid order kept, identity sequences moved past the copied ids, and the copy
//! served with the source's credentials; and the refusals: a served source, a non-empty
//! destination, a destination directory holding another key, a destination whose rows do not
//! come out as they went in (rolled back).
//!
//! PostgreSQL: each test runs its own throwaway cluster (`initdb` in a temp dir, unix socket
//! only) from Debian's `postgresql` package; the tests are skipped with a message when it is
//! not installed.

mod common;

use common::{Server, text_event};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A PostgreSQL cluster of our own, stopped (and deleted) when dropped.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let dir = tempfile::tempdir().unwrap();
        let pg = Postgres { bin, dir };
        std::fs::create_dir(pg.sock()).unwrap();
        // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
        if is_root() {
            pg.run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:")
                    .arg(pg.dir.path()),
            );
        }
        let data = pg.dir.path().join("data");
        pg.run(pg.tool("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=off",
            pg.sock().display()
        );
        // With -l the server's output goes to the log, not to our pipes (which `output()`
        // would otherwise wait on for as long as the server runs).
        let log = pg.dir.path().join("log");
        pg.run(
            pg.tool("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &opts, "-w", "start"]),
        );
        Some(pg)
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// `name` on the server, as `root` would run it: as `postgres`.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, c: &mut Command) {
        let out = c.output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new database; its URL.
    fn database(&self, name: &str) -> String {
        self.run(
            self.tool("createdb")
                .arg("-h")
                .arg(self.sock())
                .args(["-U", "postgres", name]),
        );
        // sslmode=disable: no TLS over a unix socket.
        format!(
            "postgresql://postgres@/{name}?host={}&sslmode=disable",
            self.sock().display()
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn pg_or_skip() -> Option<Postgres> {
    let pg = Postgres::start();
    if pg.is_none() {
        eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
    }
    pg
}

/// `botyard --data DATA --json ARGS`: (success, stdout JSON, stderr).
fn botyard(data: &Path, args: &[&str]) -> (bool, Json, String) {
    let out = Command::new(common::BIN)
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .env_remove("BOTYARD_DATA")
        .env_remove("BOTYARD_DATABASE_URL")
        .env_remove("BOTYARD_SECRET_KEY")
        .env_remove("BOTYARD_OCS_TOKEN_KEY")
        .output()
        .expect("run botyard");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Json::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_ok(data: &Path, from: &str, to: &str) -> Json {
    let (ok, j, err) = botyard(data, &["store", "copy", "--from", from, "--to", to]);
    assert!(ok, "store copy {from} -> {to} failed: {err}");
    j
}

fn copy_err(data: &Path, from: &str, to: &str) -> String {
    let (ok, j, err) = botyard(data, &["store", "copy", "--from", from, "--to", to]);
    assert!(!ok, "store copy {from} -> {to} should fail: {j}");
    assert!(j["error"].is_string(), "a JSON error on stdout: {j}");
    err
}

/// A SQLite store with data in most tables; the server is stopped cleanly (no live heartbeat)
/// and returned with its setup output. The data dir is `tmp/a`.
fn filled_store(tmp: &Path) -> (PathBuf, Json) {
    let data = tmp.join("a");
    let setup = common::cli_json(&data, &["setup"]);
    let mut s = Server::spawn(&data, &[]);
    s.setup = setup.clone();
    s.set_default_flow(
        "start:\n  remember seen = event\n  say \"hi {{event}}\"\n  hold\n  say \"again\"\n  goto end\n",
    );
    let (_, other) = s.other_org("Other Co");
    let c = s.client();
    for (i, user) in ["ada", "bob", "cyd"].iter().enumerate() {
        for n in 0..=i {
            c.post(
                "/v1/api/chat",
                &s.creds().public(),
                &text_event(user, &format!("m{n}")),
            )
            .expect(200);
        }
    }
    c.post("/v1/api/chat", &other.public(), &text_event("zed", "hello"))
        .expect(200);
    let (ok, _, err) = botyard(&data, &["apikey", "create", "--name", "copy test"]);
    assert!(ok, "{err}");
    // Clean stop: the node says goodbye (its heartbeat row goes).
    s.signal("TERM");
    assert!(
        s.wait_exit(Duration::from_secs(20)).is_some(),
        "serve did not stop"
    );

    // Rows of tables that only connectors, uploads and plugins fill.
    let db = rusqlite::Connection::open(data.join("botyard.db")).unwrap();
    let org = setup["organization"]["id"].as_str().unwrap();
    let channel = setup["studio"]["channel_id"].as_str().unwrap();
    // Out-of-order rowids: delivery order is the rowid's, not the id's.
    for (rowid, id) in [(7, "ob-a"), (3, "ob-b"), (12, "ob-c")] {
        db.execute(
            "INSERT INTO outbox(rowid, id, organization_id, channel_id, conversation, messages, \
             status, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, 'conv', '[]', \
             'queued', 0, 0)",
            rusqlite::params![rowid, id, org, channel],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO inbound_events(rowid, id, organization_id, channel_id, external_id, event, \
         created_at) VALUES (40, 'ev-1', ?1, ?2, 'x1', '{\"t\":\"é\"}', 5)",
        rusqlite::params![org, channel],
    )
    .unwrap();
    for (size, session) in [(100, None), (250, Some("sess-1"))] {
        db.execute(
            "INSERT INTO ocs_files(organization_id, name, content_type, size, purpose, \
             session_id, created_at) VALUES (?1, 'f.txt', 'text/plain', ?2, 'assistants', ?3, 1)",
            rusqlite::params![org, size, session],
        )
        .unwrap();
    }
    // Bytes that are not UTF-8 (a NUL among them) in a BLOB column.
    db.execute(
        "INSERT INTO plugin_kv(organization_id, plugin, key, value) VALUES (?1, 'p', 'k', ?2)",
        rusqlite::params![org, vec![0u8, 159, 146, 150, 255, 10]],
    )
    .unwrap();
    (data, setup)
}

/// name -> (rows, checksum) of a copy report, after checking its shape.
fn tables(report: &Json) -> BTreeMap<String, (u64, String)> {
    let list = report["tables"].as_array().expect("tables");
    let map: BTreeMap<_, _> = list
        .iter()
        .map(|t| {
            let sum = t["checksum"].as_str().unwrap().to_string();
            assert_eq!(sum.len(), 16, "{t}");
            (
                t["name"].as_str().unwrap().to_string(),
                (t["rows"].as_u64().unwrap(), sum),
            )
        })
        .collect();
    assert_eq!(map.len(), list.len(), "each table once");
    let total: u64 = map.values().map(|v| v.0).sum();
    assert_eq!(report["rows"], json!(total));
    for skipped in ["schema_migrations", "node_settings", "nodes"] {
        assert!(!map.contains_key(skipped), "{skipped} is not copied");
    }
    map
}

fn rowids(dir: &Path, table: &str) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(dir.join("botyard.db")).unwrap();
    let mut st = db
        .prepare(&format!("SELECT id, rowid FROM {table} ORDER BY id"))
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sqlite_to_postgres_to_sqlite_round_trip() {
    let Some(pg) = pg_or_skip() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, setup) = filled_store(tmp.path());
    let url = pg.database("one");

    let first = copy_ok(&a, a.to_str().unwrap(), &url);
    assert_eq!(first["from"], json!(a.to_str().unwrap()));
    let t1 = tables(&first);
    for (table, at_least) in [
        ("organizations", 2),
        ("bots", 2),
        ("channels", 2),
        ("conversations", 4),
        ("messages", 8),
        ("memories", 3),
        ("bot_versions", 1),
        ("api_keys", 1),
        ("outbox", 3),
        ("inbound_events", 1),
        ("ocs_files", 2),
        ("ocs_file_usage", 2),
        ("plugin_kv", 1),
        ("meta", 1),
    ] {
        assert!(t1[table].0 >= at_least, "{table}: {:?}", t1[table]);
    }

    // On PostgreSQL: the rowids are `seq`, and new ids come after the copied ones.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let seqs: Vec<(String, i64)> = client
        .query("SELECT id, seq FROM outbox ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seqs, rowids(&a, "outbox"));
    let mut tx = client.transaction().unwrap();
    let max: i64 = tx
        .query_one("SELECT MAX(id) FROM messages", &[])
        .unwrap()
        .get(0);
    let fresh: i64 = tx
        .query_one(
            "INSERT INTO messages(organization_id, conversation_id, bot_id, turn_id, direction, \
             flow, step, content_type, payload, message_order, interaction_order, created_at) \
             SELECT organization_id, conversation_id, bot_id, turn_id, direction, flow, step, \
             content_type, payload, message_order, interaction_order, created_at \
             FROM messages LIMIT 1 RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(fresh > max, "identity sequence moved: {fresh} > {max}");
    let next_seq: i64 = tx
        .query_one(
            "INSERT INTO outbox(id, organization_id, channel_id, conversation, messages, \
             next_attempt_at, created_at) SELECT 'ob-z', organization_id, channel_id, \
             conversation, messages, 0, 0 FROM outbox LIMIT 1 RETURNING seq",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next_seq, 13);
    tx.rollback().unwrap();
    drop(client);

    // Back to SQLite (the PostgreSQL source's key from --data).
    let b = tmp.path().join("b");
    let second = copy_ok(&a, &url, b.to_str().unwrap());
    assert_eq!(tables(&second), t1, "the same rows both ways");
    assert_eq!(rowids(&b, "outbox"), rowids(&a, "outbox"));
    assert_eq!(rowids(&b, "inbound_events"), rowids(&a, "inbound_events"));
    for key in ["secret.key", "ocs-token.key"] {
        assert_eq!(
            std::fs::read(b.join(key)).unwrap(),
            std::fs::read(a.join(key)).unwrap(),
            "{key}"
        );
    }
    let (_, orgs_a, _) = botyard(&a, &["org", "list"]);
    let (_, orgs_b, _) = botyard(&b, &["org", "list"]);
    assert_eq!(orgs_a, orgs_b);

    // The copy serves the source's bot with the source's (encrypted) channel secret.
    let s = Server::spawn(&b, &[]);
    let creds = common::creds_from_setup(&setup);
    let v = s
        .client()
        .post("/v1/api/chat", &creds.signed(), &text_event("ada", "back"))
        .expect(200)
        .json();
    assert_eq!(
        v["messages"][0]["payload"]["content"]["text"],
        json!("again"),
        "ada's conversation went on where it was: {v}"
    );
}

#[test]
fn refuses_served_source_non_empty_or_foreign_destination_and_unverified_copy() {
    let Some(pg) = pg_or_skip() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = filled_store(tmp.path());
    let a_str = a.to_str().unwrap();
    let url = pg.database("two");

    // Served: refused, and nothing reaches the destination.
    let s = Server::spawn(&a, &[]);
    let err = copy_err(&a, a_str, &url);
    assert!(err.contains("source is being served"), "{err}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let orgs: i64 = client
        .query_one("SELECT COUNT(*) FROM organizations", &[])
        .unwrap()
        .get(0);
    assert_eq!(orgs, 0);
    drop(s); // SIGKILL: the heartbeat row stays, and counts until it is stale.
    std::thread::sleep(Duration::from_millis(
        (botyard::cluster::STALE_MS + 1_000) as u64,
    ));

    let report = copy_ok(&a, a_str, &url);
    let rows = report["rows"].as_u64().unwrap();
    assert!(rows > 20, "{report}");

    // Not empty: refused both ways, the destination unchanged.
    let err = copy_err(&a, a_str, &url);
    assert!(err.contains("not empty"), "{err}");
    let b = tmp.path().join("b");
    copy_ok(&a, &url, b.to_str().unwrap());
    let err = copy_err(&a, a_str, b.to_str().unwrap());
    assert!(err.contains("not empty"), "{err}");
    let again = pg.database("three");
    let back = copy_ok(&a, &url, &again);
    assert_eq!(
        tables(&back),
        tables(&report),
        "the refused copy changed nothing"
    );

    // A destination that changes rows as they go in (a trigger someone added): the
    // verification catches it and nothing is committed.
    let odd = pg.database("four");
    let (ok, _, err) = botyard(&a, &["--database", &odd, "org", "list"]);
    assert!(ok, "{err}");
    let mut client = postgres::Client::connect(&odd, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION odd() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.name := NEW.name || '!'; RETURN NEW; END $$;
             CREATE TRIGGER odd BEFORE INSERT ON bots FOR EACH ROW EXECUTE FUNCTION odd();",
        )
        .unwrap();
    let err = copy_err(&a, a_str, &odd);
    assert!(err.contains("verification failed for table bots"), "{err}");
    let orgs: i64 = client
        .query_one("SELECT COUNT(*) FROM organizations", &[])
        .unwrap()
        .get(0);
    assert_eq!(orgs, 0, "rolled back");

    // A destination directory with another key, and the same store twice.
    let c = tmp.path().join("c");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("secret.key"), "ab".repeat(32)).unwrap();
    let err = copy_err(&a, a_str, c.to_str().unwrap());
    assert!(err.contains("another key"), "{err}");
    assert!(!c.join("botyard.db").exists());
    let err = copy_err(&a, a_str, a_str);
    assert!(err.contains("same store"), "{err}");
}
