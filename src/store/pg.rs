//! The PostgreSQL backend: a pool of connections (the `postgres` client, TLS through rustls
//! when the URL asks for it), each write job in a transaction of its own, migrations applied
//! under an advisory lock, and the installation's key fingerprint kept in the database.
//!
//! Why a pool and not one writer: PostgreSQL serializes conflicting writes itself (row locks),
//! and several nodes write to it at once anyway; a job never waits behind another job that
//! touches other rows. Jobs still must only run SQL (the store's rule): a transaction stays
//! open for the job's duration.
//!
//! The blocking client is used because the store's interface is blocking (its callers are
//! `spawn_blocking` threads and the CLI); the async jobs run on tokio's blocking pool.

use super::db::{Db, PgConn};
use super::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Advisory lock key held while migrations are applied (any constant of our own).
const MIGRATION_LOCK: i64 = 7_262_011_401;

/// Connections per node unless `BOTYARD_DATABASE_POOL` says otherwise.
const DEFAULT_POOL: u32 = 16;

/// (version, name, SQL), in order. Versions match the SQLite list's for the same schema, so
/// that `store copy` can check both sides are at one version.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        62,
        "0062_schema",
        include_str!("migrations_pg/0062_schema.sql"),
    ),
    (
        63,
        "0063_ocs_file_content",
        include_str!("migrations_pg/0063_ocs_file_content.sql"),
    ),
    (
        64,
        "0064_turn_guard",
        include_str!("migrations_pg/0064_turn_guard.sql"),
    ),
    (
        70,
        "0070_nodes",
        include_str!("migrations_pg/0070_nodes.sql"),
    ),
    (
        71,
        "0071_client_revs",
        include_str!("migrations_pg/0071_client_revs.sql"),
    ),
];

/// Connects a new client for the pool.
pub(super) struct Manager {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Manager {
    fn new(url: &str) -> Result<Manager> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| Error::Invalid(format!("bad database URL: {e}")))?;
        // TLS only over TCP: a unix socket has no server name to check (and tokio-postgres
        // never negotiates TLS on one).
        let tcp = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, postgres::config::Host::Tcp(_)));
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ if !tcp => None,
            _ => {
                let cfg = crate::outbound::tls_client_config().map_err(Error::Other)?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (*cfg).clone(),
                ))
            }
        };
        Ok(Manager { config, tls })
    }

    pub(super) fn connect(&self) -> Result<postgres::Client> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("botyard");
        }
        let client = match &self.tls {
            Some(tls) => config.connect(tls.clone())?,
            None => config.connect(postgres::NoTls)?,
        };
        Ok(client)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = Error;

    fn connect(&self) -> Result<PgConn> {
        Ok(PgConn::new(Manager::connect(self)?))
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<()> {
        conn.batch("")
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.is_closed()
    }
}

/// The URL with its password replaced, for logs and `Store::path`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(super) struct Pg {
    /// Always `Some` until dropped (see `Drop`).
    pool: Option<r2d2::Pool<Manager>>,
    commits: Arc<AtomicU64>,
}

impl Pg {
    fn pool(&self) -> &r2d2::Pool<Manager> {
        self.pool
            .as_ref()
            .expect("the pool lives as long as the store")
    }

    pub(super) fn open(url: &str) -> Result<Pg> {
        off_runtime(|| Self::open_here(url))
    }

    fn open_here(url: &str) -> Result<Pg> {
        let manager = Manager::new(url)?;
        let mut first = manager.connect()?;
        migrate(&mut first)?;
        drop(first);
        let size = std::env::var("BOTYARD_DATABASE_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_POOL);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| Error::Pool(e.to_string()))?;
        Ok(Pg {
            pool: Some(pool),
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Record the key's fingerprint on first open; refuse a node whose key differs.
    pub(super) fn check_key(&self, fingerprint: &str) -> Result<()> {
        self.write(|c| check_key_on(c, fingerprint))
    }

    pub(super) fn read<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        off_runtime(|| job(self.pool(), &self.commits, false, f))
    }

    pub(super) fn write<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        off_runtime(|| job(self.pool(), &self.commits, true, f))
    }

    /// A job on tokio's blocking pool: a transaction of its own when `write`, else the
    /// connection as it is (no BEGIN/COMMIT).
    pub(super) async fn run_async<R: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (pool, commits) = (self.pool().clone(), Arc::clone(&self.commits));
        tokio::task::spawn_blocking(move || job(&pool, &commits, write, f))
            .await
            .map_err(|_| Error::Other("a store job panicked".into()))?
    }

    /// Jobs committed: every write job is one transaction, so jobs and commits are one count.
    pub(super) fn stats(&self) -> (u64, u64) {
        let n = self.commits.load(Ordering::Relaxed);
        (n, n)
    }
}

fn job<R>(
    pool: &r2d2::Pool<Manager>,
    commits: &AtomicU64,
    write: bool,
    f: impl FnOnce(&Db) -> Result<R>,
) -> Result<R> {
    let conn = pool.get()?;
    if !write {
        return f(&Db::Pg(&conn));
    }
    let out = transaction(&conn, f);
    commits.fetch_add(1, Ordering::Relaxed);
    out
}

/// A blocking client closes its connection with its own runtime, which tokio forbids on a
/// thread inside a runtime: when the last store handle goes there (a server's shutdown, a
/// test), the pool's connections are closed on a thread of their own.
impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

/// Runs a blocking store call. The blocking client drives its connection with a runtime of its
/// own, which tokio forbids on a thread that runs async tasks; the store's blocking functions
/// are meant for `spawn_blocking` threads and the CLI, but a few run on a runtime worker (at
/// start-up, which SQLite merely blocks through): there the worker hands its other tasks
/// over for the call (`block_in_place`).
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `f` in one transaction: committed when it returns `Ok`, rolled back otherwise (and when it
/// panics, so a pooled connection never goes back with a transaction open).
fn transaction<R>(conn: &PgConn, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
    conn.batch("BEGIN")?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&Db::Pg(conn))))
        .unwrap_or_else(|_| Err(Error::Other("a write job panicked".into())));
    match out {
        Ok(r) => {
            conn.batch("COMMIT")?;
            Ok(r)
        }
        Err(e) => {
            conn.batch("ROLLBACK")?;
            Err(e)
        }
    }
}

fn check_key_on(c: &Db, fingerprint: &str) -> Result<()> {
    c.execute(
        "INSERT INTO node_settings(name, value) VALUES ('key_fingerprint', ?1)
         ON CONFLICT (name) DO NOTHING",
        [fingerprint],
    )?;
    let stored: String = c.query_row(
        "SELECT value FROM node_settings WHERE name = 'key_fingerprint'",
        (),
        |r| r.get(0),
    )?;
    if stored != fingerprint {
        return Err(Error::Invalid(format!(
            "this node's secret key (fingerprint {fingerprint}) is not the one this database was \
             set up with ({stored}): give every node the same key file or {} (see the deployment guide)",
            crate::secrets::KEY_ENV
        )));
    }
    Ok(())
}

/// Apply pending migrations, each in its own transaction, under a session advisory lock: the
/// first node to start applies them, the others wait and then find nothing to do.
fn migrate(client: &mut postgres::Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let out = migrate_locked(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    out
}

fn migrate_locked(client: &mut postgres::Client) -> Result<()> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS node_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    let newest: Option<i64> = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])?
        .get(0);
    super::migrate::check_not_newer(newest, MIGRATIONS)?;
    for &(version, name, sql) in MIGRATIONS {
        let version = version as i64;
        let done = client
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )?
            .is_some();
        if done {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)
            .map_err(|e| Error::Other(format!("migration {name}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations(version, name, applied_at) VALUES ($1, $2, $3)",
            &[&version, &name, &super::ids::now_millis()],
        )?;
        tx.commit()?;
        tracing::info!(migration = name, "applied a PostgreSQL migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(super::redact("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(
            super::redact("postgresql:///x?host=/tmp"),
            "postgresql:///x?host=/tmp"
        );
    }
}
