//! The store: the only module that speaks SQL. One SQLite file (`botyard.db`) in the data
//! directory, opened as
//!
//! * **one writer connection** on a dedicated thread ([`writer`]) that applies write jobs with
//!   *group commit*: it takes every job queued while the previous commit ran and commits them
//!   in one `BEGIN IMMEDIATE` transaction (each job inside its own savepoint, so a failing job
//!   never spoils its neighbours; chat turns, which check before they write, run without one),
//!   then acknowledges each job. Acknowledged = committed, so a
//!   SIGKILL never loses an acknowledged write;
//! * **a small r2d2 pool of read connections** (`query_only`) for lookups.
//!
//! Calling convention: every `pub fn` on [`Store`] is **blocking** (it may wait on SQLite or on
//! the writer). Call them from `spawn_blocking`, a plain thread, or the CLI — never from an
//! async task. The `pub async fn`s (a turn's read and commit, OCS task starts, ...) await the
//! writer's acknowledgement without blocking a runtime thread. The writer's job functions
//! (`write`, `write_async`, `write_async_bare`) and `read` are private to this module: every
//! job is SQL written here, over plain data (the writer runs SQL only).
//!
//! Tenancy: every function that reads or changes tenant data takes the organization id first
//! and filters on it; a row of another organization is reported as not found.
//!
//! Submodules: `ids` (ids, tokens, time), `migrate` (embedded numbered migrations), `writer`
//! (group commit), `types` (row types), `orgs`, `bots` (bots, flows, builds), `channels`
//! (channels and OCS API keys), `conversations` (turn state, transcript, memories), `usage`,
//! `broadcasts`, `maintenance` (expiry sweep, backup), `setup` (first run).

pub mod admin;
pub mod bots;
pub mod broadcasts;
pub mod channels;
pub mod conversations;
pub mod copy;
pub mod db;
pub mod ids;
pub mod maintenance;
mod migrate;
mod nodes;
pub mod ocs;
pub mod orgs;
mod pg;
pub mod plugins;
pub mod setup;
pub mod types;
pub mod uploads;
pub mod usage;
mod walvfs;
mod writer;

pub use migrate::MIGRATIONS;
pub use pg::redact as redact_url;
pub use types::*;

use crate::secrets::Secrets;
use db::Db;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "botyard.db";

/// How hard a commit pushes data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed transaction survives a process crash or
    /// SIGKILL; the last commits may be lost on power failure. The default.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced (survives power failure; slower commits).
    Full,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Durability::Normal),
            "full" => Ok(Durability::Full),
            _ => Err(format!(
                "unknown durability `{s}` (expected normal or full)"
            )),
        }
    }
}

/// Store errors. `NotFound`/`Conflict`/`Invalid` are the caller's fault (404/409/400); the
/// rest are internal.
#[derive(Debug)]
pub enum Error {
    NotFound(String),
    Conflict(String),
    Invalid(String),
    /// A turn's commit found its client's conversation changed since the turn's read (another
    /// turn of the client committed first, possibly on another node): nothing was written;
    /// the turn may run again from a new read.
    Stale(String),
    Sqlite(rusqlite::Error),
    Postgres(String),
    Pool(String),
    /// A query that must return a row found none (turned into `None` by
    /// [`db::OptionalExtension::optional`]).
    NoRows,
    Io(std::io::Error),
    /// The writer thread is gone (the store is shutting down).
    Closed,
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Invalid(m)
            | Error::Stale(m)
            | Error::Other(m) => f.write_str(m),
            Error::Sqlite(e) => write!(f, "database error: {e}"),
            Error::Postgres(e) => write!(f, "database error: {e}"),
            Error::NoRows => f.write_str("no row found"),
            Error::Pool(e) => write!(f, "database pool error: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for Error {}

/// A unique key taken is a conflict; a foreign key failing is a row that is gone: every foreign
/// key cascades on delete, so it only fails when a write refers to a bot, channel,
/// organization... deleted meanwhile (e.g. a broadcast queued with a just-deleted bot's key
/// still in a server's auth cache). That is the caller's 404, not our 500.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::QueryReturnedNoRows = e {
            return Error::NoRows;
        }
        if let rusqlite::Error::SqliteFailure(f, msg) = &e
            && f.code == rusqlite::ErrorCode::ConstraintViolation
        {
            match f.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                    return Error::Conflict(msg.clone().unwrap_or_else(|| "already exists".into()));
                }
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    return Error::NotFound(
                        "something this refers to no longer exists (deleted meanwhile)".into(),
                    );
                }
                _ => {}
            }
        }
        Error::Sqlite(e)
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Pool(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Other(format!("stored JSON is malformed: {e}"))
    }
}

/// Where the store lives: SQLite in `data_dir` (the default), or the PostgreSQL database at
/// `database`. The data directory also holds the key files on both backends (see
/// [`crate::secrets`]): every node of a PostgreSQL cluster needs the same keys.
#[derive(Debug, Clone, Default)]
pub struct Location {
    pub data_dir: PathBuf,
    /// A `postgres://` URL (tokio-postgres syntax; `sslmode=require` for TLS).
    pub database: Option<String>,
}

impl Location {
    pub fn sqlite(data_dir: &Path) -> Location {
        Location {
            data_dir: data_dir.to_path_buf(),
            database: None,
        }
    }
}

/// A handle on the database. Cheap to clone; on SQLite the writer thread stops and the file is
/// closed when the last clone is dropped (after every queued write is committed).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    data_dir: PathBuf,
    backend: Backend,
    secrets: Secrets,
}

/// The two implementations of the store's jobs: the same SQL (see [`db`]) runs on either.
enum Backend {
    /// Reads on a small pool of read-only connections, writes on the single writer thread
    /// with group commit.
    Sqlite {
        read: r2d2::Pool<SqliteConnectionManager>,
        writer: writer::Writer,
    },
    /// Reads and writes on a pool of connections; each write job is its own transaction.
    Postgres(pg::Pg),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Pragmas for every connection, busy_timeout first so a connection waits (instead of failing)
/// while another one switches the journal mode.
fn init_connection(
    conn: &Connection,
    durability: Durability,
    read_only: bool,
) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "journal_size_limit", 128 * 1024 * 1024)?;
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -16000)?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

impl Store {
    /// Open (creating if needed) the data directory and its SQLite database.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Store> {
        Store::open_at(&Location::sqlite(data_dir), durability)
    }

    /// Open the store at `at`: create the data directory, load (or create, mode 0600) its key
    /// files, apply pending migrations (on PostgreSQL under an advisory lock, so nodes starting
    /// together apply them once), start the writer (SQLite) or the pool (PostgreSQL).
    /// `durability` concerns SQLite only: a PostgreSQL server's durability is its own
    /// `synchronous_commit`.
    pub fn open_at(at: &Location, durability: Durability) -> Result<Store> {
        let data_dir = at.data_dir.as_path();
        std::fs::create_dir_all(data_dir)?;
        let secrets = Secrets::load_or_create(data_dir)?;
        if let Some(url) = &at.database {
            let pg = pg::Pg::open(url)?;
            pg.check_key(&secrets.fingerprint())?;
            return Ok(Store {
                inner: Arc::new(Inner {
                    path: PathBuf::from(pg::redact(url)),
                    data_dir: data_dir.to_path_buf(),
                    backend: Backend::Postgres(pg),
                    secrets,
                }),
            });
        }
        let path = data_dir.join(DB_FILE);
        // The writer's WAL appends go through walvfs (one write per commit).
        let mut conn = match walvfs::register() {
            Ok(()) => Connection::open_with_flags_and_vfs(
                &path,
                rusqlite::OpenFlags::default(),
                walvfs::NAME,
            )?,
            Err(e) => {
                tracing::warn!(error = %e, "WAL write batching unavailable");
                Connection::open(&path)?
            }
        };
        init_connection(&conn, durability, false)?;
        migrate::apply(&mut conn)?;
        uploads::import_disk_files(&Db::Lite(&conn), data_dir)?;
        let checkpoint_conn = Connection::open(&path)?;
        init_connection(&checkpoint_conn, durability, false)?;
        let writer = writer::Writer::start(conn, Some(checkpoint_conn))?;
        let read = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build(
                SqliteConnectionManager::file(&path)
                    .with_init(move |c| init_connection(c, durability, true)),
            )?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                data_dir: data_dir.to_path_buf(),
                backend: Backend::Sqlite { read, writer },
                secrets,
            }),
        })
    }

    /// Path of the SQLite file (on PostgreSQL: the database URL without its password).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Which backend this store runs on.
    pub fn dialect(&self) -> db::Dialect {
        match self.inner.backend {
            Backend::Sqlite { .. } => db::Dialect::Sqlite,
            Backend::Postgres(_) => db::Dialect::Postgres,
        }
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// Run `f` on a read connection (blocking).
    fn read<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        match &self.inner.backend {
            Backend::Sqlite { read, .. } => {
                let conn = read.get()?;
                f(&Db::Lite(&conn))
            }
            Backend::Postgres(pg) => pg.read(f),
        }
    }

    /// Run `f` inside a write transaction and wait (blocking) until it is committed: on
    /// SQLite the writer's next group transaction, on PostgreSQL a transaction of its own.
    /// `f` must only touch the database: no I/O, no waiting.
    fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer.run_blocking(f).map_err(|_| Error::Closed)?,
            Backend::Postgres(pg) => pg.write(f),
        }
    }

    /// Like [`Store::write`], awaiting the commit without blocking the async runtime.
    async fn write_async<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer
                .run_async(f, false)
                .await
                .map_err(|_| Error::Closed)?,
            Backend::Postgres(pg) => pg.run_async(true, f).await,
        }
    }

    /// Like [`Store::write_async`] for a hot job that runs without its own savepoint on
    /// SQLite: every `Err` it returns must leave nothing written (check, then write). Should it
    /// fail after writing anyway, the writer rolls back the whole group transaction and the
    /// jobs that ran before it in the batch fail too (see `writer`): nothing is ever
    /// half-written. On PostgreSQL every job is its own transaction, so this is `write_async`.
    async fn write_async_bare<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                writer.run_async(f, true).await.map_err(|_| Error::Closed)?
            }
            Backend::Postgres(pg) => pg.run_async(true, f).await,
        }
    }

    /// Run `f` on a private read-write connection to the SQLite file, outside the writer and
    /// the read pool: for the few statements that cannot run inside a transaction or on a
    /// `query_only` connection (`VACUUM INTO`). SQLite only.
    fn private_sqlite<R>(&self, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
        if let Backend::Postgres(_) = self.inner.backend {
            return Err(Error::Invalid(
                "this needs a SQLite store, not PostgreSQL".into(),
            ));
        }
        let c = Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(10))?;
        f(&Db::Lite(&c))
    }

    /// A read-only job awaited without blocking the runtime. On SQLite it runs on the writer
    /// (a bare job: it sees every write acknowledged before it, in the writer's order); on
    /// PostgreSQL on a pooled connection without a transaction of its own (no BEGIN/COMMIT
    /// round trips). Its statements may then see different commits: callers either read one
    /// row, or, like a turn's read, are checked at their commit (the conversation's `rev`).
    async fn read_async<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match &self.inner.backend {
            Backend::Sqlite { .. } => self.write_async_bare(f).await,
            Backend::Postgres(pg) => pg.run_async(false, f).await,
        }
    }

    /// Number of transactions the writer has committed and jobs it has run (for tests and the
    /// bench: jobs/commits = the group-commit factor). On PostgreSQL, every job is a commit.
    pub fn writer_stats(&self) -> (u64, u64) {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer.stats(),
            Backend::Postgres(pg) => pg.stats(),
        }
    }

    /// The highest applied migration version.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|c| {
            c.query_row("SELECT MAX(version) FROM schema_migrations", (), |r| {
                r.get(0)
            })
        })
    }
}
