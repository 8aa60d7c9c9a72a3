//! A real PostgreSQL server for the integration tests, started by the tests themselves.
//!
//! [`PgCluster::shared`] starts one server per test process, the first time a test asks for
//! it: `initdb` in a fresh temp dir, then `pg_ctl start` listening on a unix socket in that
//! dir only (no TCP port, so parallel test processes and other servers on the machine never
//! collide). Each test takes its own database from [`PgCluster::new_database`].
//!
//! Design choices the issue leaves open:
//! * Binaries: `pg_config --bindir` when it holds `initdb`, else the newest
//!   `/usr/lib/postgresql/<version>/bin` (Debian's layout, where `initdb` is not on `PATH`),
//!   else `initdb` on `PATH`.
//! * PostgreSQL refuses to run as root, so when the tests run as root the temp dir is given to
//!   the `postgres` user and `initdb`/`pg_ctl` run through `runuser -u postgres --`. Clients
//!   (`psql`, the botyard binary) still run as the test user: the socket uses trust auth.
//! * The cluster is `initdb --locale=C -E UTF8`: UTF-8 text whatever the machine's locale,
//!   and byte-order collation, the order SQLite compares text in.
//! * Speed over crash safety (`fsync=off`, `initdb --no-sync`): the server lives as long as
//!   the test process and its data is thrown away.
//! * Stopping: an `atexit` handler stops the server (`pg_ctl -m immediate stop`) and removes
//!   the dir when the test binary exits (libtest ends with `exit`/`process::exit`, which run
//!   `atexit` handlers). A watchdog shell (`cat` on a pipe whose only writer is this process,
//!   ignoring SIGINT/SIGTERM/SIGHUP) does the same once the pipe closes, so a test process that
//!   is killed, or interrupted with Ctrl-C, leaves no server and no dir behind either
//!   (`initdb` holds a copy of that pipe, so a kill during `initdb` is cleaned up after it).
//! * The socket still needs a port number (it names `.s.PGSQL.<port>` and PostgreSQL's
//!   shared-memory key); a free loopback TCP port is picked so the number is not one a
//!   running server uses.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// One PostgreSQL server owned by this test process.
pub struct PgCluster {
    /// Where `initdb`, `pg_ctl` and `psql` live.
    bindir: PathBuf,
    /// The temp dir: the socket, `data/` (PGDATA) and `server.log`.
    root: PathBuf,
    port: u16,
    /// Running as root: server-side commands go through `runuser -u postgres --`.
    as_postgres: bool,
    /// Numbers the databases this process creates.
    next_db: AtomicU64,
    /// The write end of the watchdog's pipe; never written, closed only when the process ends.
    _watchdog: Option<ChildStdin>,
}

static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();

impl PgCluster {
    /// The process's server, started on first use (thread-safe: concurrent first callers wait
    /// for one start). Panics with the reason when PostgreSQL cannot be started.
    pub fn shared() -> &'static PgCluster {
        let started = SHARED.get_or_init(|| {
            let cluster = PgCluster::start()?;
            // SAFETY: registers a plain `extern "C"` function with no arguments; it only
            // reads the already-initialized `SHARED`.
            if unsafe { libc::atexit(stop_shared_at_exit) } != 0 {
                eprintln!(
                    "pg harness: atexit registration failed; the watchdog will stop the server"
                );
            }
            Ok(cluster)
        });
        match started {
            Ok(c) => c,
            Err(e) => panic!("test PostgreSQL server: {e}"),
        }
    }

    fn start() -> Result<PgCluster, String> {
        let bindir = find_bindir().ok_or(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's \
             `postgresql` package (scripts/test.sh does)",
        )?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let root = tempfile::Builder::new()
            .prefix("botyard-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        let root_str = root.to_str().ok_or("temp dir path is not UTF-8")?;
        // The path goes into pg_ctl's `-o` string, which a shell splits.
        if root_str.contains(['\'', '"', '\\', ' ', '$', '`']) {
            let _ = std::fs::remove_dir_all(&root);
            return Err(format!(
                "temp dir path `{root_str}` needs shell quoting; set TMPDIR"
            ));
        }
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses='' -k '{root_str}' -p {port} -c fsync=off \
             -c max_connections=400 -c shared_buffers=64MB"
        );
        let mut cluster = PgCluster {
            bindir,
            root,
            port,
            as_postgres,
            next_db: AtomicU64::new(1),
            _watchdog: None,
        };
        // Before initdb: a process killed while the server starts leaves nothing behind.
        cluster._watchdog = cluster.spawn_watchdog();
        if let Err(e) = cluster.init_and_start(&options) {
            let log = std::fs::read_to_string(cluster.root.join("server.log")).unwrap_or_default();
            cluster.stop();
            return Err(format!("{e}\nserver log:\n{log}"));
        }
        Ok(cluster)
    }

    /// `initdb`, then `pg_ctl start` (waiting until it accepts connections).
    fn init_and_start(&self, options: &str) -> Result<(), String> {
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&self.root))?;
        }
        let data = self.root.join("data");
        let mut initdb = self.server_cmd("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        if let Some(pipe) = &self._watchdog {
            // initdb recreates its dir (`mkdir -p`) if the watchdog removed it under it; so it
            // holds a copy of the watchdog's pipe, which then sees EOF only once initdb ended too.
            let fd = pipe.as_raw_fd();
            // SAFETY: the hook runs in the child between fork and exec and calls only
            // async-signal-safe functions (dup2, fcntl).
            unsafe {
                initdb.pre_exec(move || inherit_as(fd, 3));
            }
        }
        run(&mut initdb)?;
        run(self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o", options, "start"]))?;
        Ok(())
    }

    /// A fresh, empty database with a name unique in this cluster; its URL (tokio-postgres
    /// form, unix socket): `postgresql://postgres@/NAME?host=SOCKET_DIR&port=PORT&sslmode=disable`.
    pub fn new_database(&self) -> String {
        let name = format!(
            "botyard_test_{}",
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_of(&name)
    }

    /// Drops a database made by [`Self::new_database`] (by URL or name), closing any
    /// connection still open to it. Cleanup, so it reports a failure on stderr instead of
    /// panicking (it runs from `Drop`, possibly while a failed test unwinds).
    pub fn drop_database(&self, url_or_name: &str) {
        let name = database_name(url_or_name);
        if !name.starts_with("botyard_test_")
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            eprintln!("pg harness: not dropping `{name}`: not a test database");
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = self.try_psql("postgres", &sql) {
            eprintln!("pg harness: {e}");
        }
    }

    /// The URL of database `name` on this server. `sslmode=disable`: a unix socket has no
    /// TLS (libpq never tries it there), and the default `prefer` would have the client ask
    /// its TLS connector for a server name made from the socket path.
    pub fn url_of(&self, name: &str) -> String {
        format!(
            "postgresql://postgres@/{name}?host={}&port={}&sslmode=disable",
            percent_encode(&self.root.to_string_lossy()),
            self.port
        )
    }

    /// Runs `sql` in database `db` (a name or a URL) with `psql` as the `postgres` role;
    /// its output unaligned, tuples only (`-At`). Panics with psql's stderr on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// [`Self::psql`], returning psql's failure instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]);
        if db.contains("://") {
            cmd.args(["-d", db]);
        } else {
            cmd.arg("-h").arg(&self.root).args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ]);
        }
        cmd.args(["-c", sql]);
        run(&mut cmd).map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once and removes its dir. Never panics (it runs from `atexit`).
    fn stop(&self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// The watchdog: waits for EOF on its stdin (this process gone), then stops the server
    /// and removes the dir; a no-op when `atexit` already did.
    fn spawn_watchdog(&self) -> Option<ChildStdin> {
        let stop = self.server_cmd("pg_ctl");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"trap '' INT TERM HUP; cat >/dev/null; "$@"; rm -rf -- "$PG_HARNESS_ROOT""#)
            .arg("sh")
            .arg(stop.get_program())
            .args(stop.get_args())
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "immediate", "stop"])
            .env("PG_HARNESS_ROOT", &self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(mut child) => child.stdin.take(),
            Err(e) => {
                eprintln!("pg harness: no watchdog ({e}); relying on atexit");
                None
            }
        }
    }

    /// `tool` from the bindir, as the `postgres` user when running as root.
    fn server_cmd(&self, tool: &str) -> Command {
        let program = self.bindir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.stop();
    }
}

/// Makes `fd` available to the exec'd program as `target` (not closed on exec).
fn inherit_as(fd: RawFd, target: RawFd) -> std::io::Result<()> {
    // SAFETY: plain fd syscalls on descriptors this process owns.
    let r = unsafe {
        if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The database name in a URL made by [`PgCluster::url_of`] (or the name itself).
pub fn database_name(url_or_name: &str) -> &str {
    match url_or_name.split_once("://") {
        Some((_, rest)) => {
            let path = rest.split_once('/').map_or("", |(_, p)| p);
            path.split(['?', '#']).next().unwrap_or("")
        }
        None => url_or_name,
    }
}

/// Runs `cmd` to completion; its output, or an error naming it with its stderr.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(d) = from_pg_config.filter(|d| has_server(d)) {
        return Some(d);
    }
    let newest_debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            // "15", "16", "9.6": compare as numbers so 10 sorts after 9.6.
            let v: Vec<u32> = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_server(d))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, d)| d);
    if newest_debian.is_some() {
        return newest_debian;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| has_server(d))
}

/// A port number no loopback TCP listener holds right now.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("pick a port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("pick a port: {e}"))
}

/// Percent-encodes everything but unreserved characters and `/` (a path in a URL query).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
