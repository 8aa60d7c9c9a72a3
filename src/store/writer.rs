//! The single writer thread with group commit.
//!
//! Jobs arrive on a channel. The thread takes one job, then every job already waiting (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction — each inside a savepoint so
//! a failing job is rolled back alone — commits, and only then sends each job its result. While
//! a commit is in progress new jobs queue up, so the batch size grows with the load and the
//! per-turn cost of a commit shrinks. (Also taking jobs that arrive while a batch runs made
//! batches bigger but cost more CPU per turn in `botyard bench`, so batches stay closed.)
//!
//! A savepoint makes SQLite copy every existing page the job then changes into a statement
//! journal (in 1 KiB heap chunks): for a chat turn that was ~10% of the writer thread. So the
//! hot jobs (chat turns) run *bare*, without one. A bare job promises that an `Err` it returns
//! left nothing written (it checks before it writes); the writer verifies that promise with
//! SQLite's change counter. When a bare job does fail after writing (a storage error, a bug),
//! there is no savepoint to go back to: the writer rolls back the whole transaction, reports
//! the jobs of the batch that ran before it as failed (nothing of theirs is committed, nothing
//! is half-written), and runs the rest of the batch in a new transaction. Bare jobs must not
//! run DDL, which the change counter does not see.
//!
//! Checkpoints (copying the WAL back into the database file, with its fsyncs) run on a second
//! thread with its own connection: the writer connection has `wal_autocheckpoint` off, so a
//! commit never stalls behind a checkpoint's disk flushes. The checkpointer runs a PASSIVE
//! checkpoint whenever commits happened since its last one (at most every [`CHECKPOINT_EVERY`]).
//!
//! Under steady load a PASSIVE checkpoint never quite catches up (the writer appends while it
//! copies), so SQLite would never restart the WAL from its start: the file would grow without
//! end and every commit would append to fresh file blocks, which costs the kernel a block
//! allocation and a new page-cache page per WAL frame (most of the writer's system time in
//! `botyard bench`). So once the WAL holds [`RESTART_FRAMES`] frames the checkpointer asks the
//! writer, which then copies the short remaining tail itself between two batches; with nothing
//! left to copy, its next transaction rewrites the WAL from the start, over pages the kernel
//! already holds.

use super::db::Db;
use super::{Error, Result};
use rusqlite::Connection;
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
/// How often the checkpointer logs the group-commit factor (debug level).
const STATS_EVERY: Duration = Duration::from_secs(2);
/// Pause between checkpoints while commits keep coming.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL length (frames of one page) past which the writer finishes a checkpoint itself so the
/// WAL restarts from its start (16384 frames of 4 KiB: 64 MiB).
const RESTART_FRAMES: i64 = 16384;
/// New frames since the checkpointer's previous pass below which the writer is asked to copy
/// the rest (about a millisecond of copying).
const TAIL_FRAMES: i64 = 128;

type Output = Result<Box<dyn Any + Send>>;
type Work = Box<dyn FnOnce(&Db) -> Output + Send>;

/// Where a job's result goes: an async waiter, or a blocked thread. The blocking form uses a
/// std channel so it also works (merely blocks) when called on a runtime thread, e.g. while a
/// server is starting.
enum Reply {
    Async(oneshot::Sender<Output>),
    Blocking(mpsc::SyncSender<Output>),
}

impl Reply {
    fn send(self, out: Output) {
        let _ = match self {
            Reply::Async(tx) => tx.send(out).map_err(|_| ()),
            Reply::Blocking(tx) => tx.send(out).map_err(|_| ()),
        };
    }
}

struct Job {
    work: Work,
    reply: Reply,
    /// Run without a savepoint (see the module doc).
    bare: bool,
}

pub(super) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
    jobs: Arc<AtomicU64>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

fn unpack<R: 'static>(out: Option<Output>) -> Result<Result<R>, ()> {
    match out {
        None => Err(()),
        Some(Err(e)) => Ok(Err(e)),
        Some(Ok(b)) => Ok(Ok(*b
            .downcast::<R>()
            .expect("writer job returned another type"))),
    }
}

fn boxed<R: Send + 'static>(f: impl FnOnce(&Db) -> Result<R> + Send + 'static) -> Work {
    Box::new(move |c| f(c).map(|r| Box::new(r) as Box<dyn Any + Send>))
}

impl Writer {
    /// Start the writer on `conn`. `checkpoint_conn`: a second connection to the same file
    /// for the checkpointer thread (`None` leaves checkpoints to SQLite's automatic ones on
    /// the writer).
    pub(super) fn start(conn: Connection, checkpoint_conn: Option<Connection>) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let jobs = Arc::new(AtomicU64::new(0));
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let checkpointer = match checkpoint_conn {
            Some(cc) => {
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                let (stop_tx, stop_rx) = mpsc::channel::<()>();
                let (c3, j3, r3) = (commits.clone(), jobs.clone(), restart_wanted.clone());
                let handle = std::thread::Builder::new()
                    .name("botyard-db-checkpoint".into())
                    .spawn(move || checkpoints(cc, stop_rx, &c3, &j3, &r3))?;
                Some((stop_tx, handle))
            }
            None => None,
        };
        let (c2, j2) = (commits.clone(), jobs.clone());
        let thread = std::thread::Builder::new()
            .name("botyard-db-writer".into())
            .spawn(move || run(conn, rx, &c2, &j2, &restart_wanted))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            commits,
            jobs,
            checkpointer,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or(Error::Closed)?
            .send(job)
            .map_err(|_| Error::Closed)
    }

    /// Queue `f` and wait (blocking the thread) for its commit.
    pub(super) fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
    ) -> Result<Result<R>, ()> {
        let (tx, rx) = mpsc::sync_channel(1);
        if self
            .send(Job {
                work: boxed(f),
                reply: Reply::Blocking(tx),
                bare: false,
            })
            .is_err()
        {
            return Err(());
        }
        unpack(rx.recv().ok())
    }

    /// Queue `f` and await its commit. `bare`: run it without a savepoint (see the module
    /// doc for what that asks of `f`).
    pub(super) async fn run_async<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R> + Send + 'static,
        bare: bool,
    ) -> Result<Result<R>, ()> {
        let (tx, rx) = oneshot::channel();
        if self
            .send(Job {
                work: boxed(f),
                reply: Reply::Async(tx),
                bare,
            })
            .is_err()
        {
            return Err(());
        }
        unpack(rx.await.ok())
    }

    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queued jobs and exit; joining makes
        // "store dropped" mean "everything acknowledged is on disk and the file is closed".
        // The checkpointer stops first so the writer's final TRUNCATE checkpoint runs alone.
        if let Some((stop, handle)) = self.checkpointer.take() {
            drop(stop);
            let _ = handle.join();
        }
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The checkpointer thread: a PASSIVE checkpoint (never waits for the writer, never blocks
/// it) whenever commits happened since the last one, then a pause. Stops when `stop` closes.
fn checkpoints(
    conn: Connection,
    stop: mpsc::Receiver<()>,
    commits: &AtomicU64,
    jobs: &AtomicU64,
    restart_wanted: &AtomicBool,
) {
    let mut seen = commits.load(Ordering::Relaxed);
    let mut report = (Instant::now(), seen, jobs.load(Ordering::Relaxed));
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = commits.load(Ordering::Relaxed);
        if report.0.elapsed() >= STATS_EVERY && now > report.1 {
            let j = jobs.load(Ordering::Relaxed);
            tracing::debug!(
                commits = now - report.1,
                jobs = j - report.2,
                jobs_per_commit =
                    format_args!("{:.1}", (j - report.2) as f64 / (now - report.1) as f64),
                "store writer group commit"
            );
            report = (Instant::now(), now, j);
        }
        if now == seen {
            continue;
        }
        seen = now;
        // Once the WAL is long, keep copying until a pass finds only a short tail of new
        // frames, so the writer's own final pass (which holds up the queue) stays short.
        let mut last = 0;
        loop {
            match passive_checkpoint(&conn) {
                Ok(Checkpoint { frames, .. }) if frames >= RESTART_FRAMES => {
                    if frames - last <= TAIL_FRAMES {
                        restart_wanted.store(true, Ordering::Relaxed);
                        break;
                    }
                    last = frames;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    break;
                }
            }
        }
    }
}

/// What `PRAGMA wal_checkpoint` reports.
struct Checkpoint {
    /// It could not finish (another checkpoint, or a reader on an older snapshot).
    busy: bool,
    /// The WAL's length in frames.
    frames: i64,
    /// Frames copied into the database file.
    copied: i64,
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Checkpoint> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Checkpoint {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}

fn run(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    commits: &AtomicU64,
    jobs: &AtomicU64,
    restart_wanted: &AtomicBool,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let results = commit_batch(&conn, &mut batch);
        commits.fetch_add(1, Ordering::Relaxed);
        jobs.fetch_add(n, Ordering::Relaxed);
        for (reply, out) in results {
            reply.send(out);
        }
        if restart_wanted.swap(false, Ordering::Relaxed) {
            let t = Instant::now();
            match passive_checkpoint(&conn) {
                Ok(cp) => tracing::debug!(
                    busy = cp.busy,
                    frames = cp.frames,
                    copied = cp.copied,
                    took_us = t.elapsed().as_micros() as u64,
                    "WAL tail checkpoint on the writer"
                ),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint on the writer failed"),
            }
        }
    }
    // Fold the WAL back into the main file on a clean shutdown.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Job>) -> Vec<(Reply, Output)> {
    let mut results: Vec<(Reply, Output)> = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..).peekable();
    // One transaction, or more when a bare job spoils one (the rest go on in a new one).
    while jobs.peek().is_some() {
        if let Err(e) = begin(conn) {
            let msg = e.to_string();
            for job in jobs.by_ref() {
                results.push((
                    job.reply,
                    Err(Error::Other(format!("cannot start a transaction: {msg}"))),
                ));
            }
            return results;
        }
        let start = results.len();
        let mut spoiled = None;
        for job in jobs.by_ref() {
            let before = conn.total_changes();
            let out = if job.bare {
                run_bare(conn, job.work)
            } else {
                run_job(conn, job.work)
            };
            // A transaction SQLite rolled back by itself (some I/O errors do) is lost whatever
            // kind of job saw it, and whatever that job returned.
            let wrote = job.bare && out.is_err() && conn.total_changes() != before;
            if wrote || conn.is_autocommit() {
                spoiled = Some(match &out {
                    Err(e) => e.to_string(),
                    Ok(_) => "the database rolled back the transaction".to_string(),
                });
            }
            results.push((job.reply, out));
            if spoiled.is_some() {
                break;
            }
        }
        if let Some(msg) = spoiled {
            let _ = exec_cached(conn, "ROLLBACK");
            tracing::warn!(error = %msg, "a write job failed after writing: its group transaction was rolled back");
            for (_, out) in &mut results[start..] {
                if out.is_ok() {
                    *out = Err(Error::Other(format!(
                        "rolled back with another write that failed: {msg}"
                    )));
                }
            }
            continue;
        }
        if let Err(e) = exec_cached(conn, "COMMIT") {
            let msg = e.to_string();
            let _ = conn.execute_batch("ROLLBACK");
            for (_, out) in &mut results[start..] {
                *out = Err(Error::Other(format!("commit failed: {msg}")));
            }
        }
    }
    results
}

fn begin(conn: &Connection) -> rusqlite::Result<()> {
    // Another process (a management command) may hold the write lock briefly; busy_timeout
    // covers that, a retry loop covers a timeout under a long external write.
    let mut tries = 0;
    loop {
        match exec_cached(conn, "BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e) if tries < 5 && is_busy(&e) => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs a cached statement that returns no rows (savepoint control). `execute_batch` would
/// parse the text again on every job.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

fn run_bare(conn: &Connection, work: Work) -> Output {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&Db::Lite(conn))))
        .unwrap_or_else(|_| Err(Error::Other("a write job panicked".into())))
}

fn run_job(conn: &Connection, work: Work) -> Output {
    if let Err(e) = exec_cached(conn, "SAVEPOINT job") {
        return Err(e.into());
    }
    let out = run_bare(conn, work);
    let end = if out.is_ok() {
        exec_cached(conn, "RELEASE job")
    } else {
        exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
    };
    match end {
        Ok(()) => out,
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        writer: &Writer,
        bare: bool,
        f: impl FnOnce(&Db) -> Result<()> + Send + 'static,
    ) -> mpsc::Receiver<Output> {
        let (tx, rx) = mpsc::sync_channel(1);
        writer
            .send(Job {
                work: boxed(f),
                reply: Reply::Blocking(tx),
                bare,
            })
            .unwrap();
        rx
    }

    fn insert(c: &Db, x: i64) -> Result<()> {
        c.execute("INSERT INTO t(x) VALUES (?1)", [x])?;
        Ok(())
    }

    fn fail() -> Result<()> {
        Err(Error::Invalid("no".into()))
    }

    /// A savepoint job's failure stays its own; a bare job's failure before writing stays its
    /// own; a bare job's failure after writing rolls back the jobs before it in its batch, and
    /// the jobs after it commit in a new transaction.
    #[test]
    fn bare_jobs_fail_alone_unless_they_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER PRIMARY KEY);")
            .unwrap();
        let writer = Writer::start(conn, None).unwrap();
        // Hold the writer inside a job so the next ones queue up and form one batch.
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let gate = job(&writer, false, move |_| {
            started_tx.send(()).unwrap();
            released.recv().unwrap();
            Ok(())
        });
        started.recv().unwrap();
        let results = vec![
            job(&writer, false, |c| insert(c, 1)),
            job(&writer, true, |c| insert(c, 2)),
            job(&writer, false, |c| insert(c, 3).and_then(|()| fail())),
            job(&writer, true, |_| fail()),
            job(&writer, true, |c| insert(c, 5).and_then(|()| fail())),
            job(&writer, true, |c| insert(c, 6)),
            job(&writer, false, |c| insert(c, 7)),
        ];
        release.send(()).unwrap();
        assert!(gate.recv().unwrap().is_ok());
        let outcome: Vec<Option<String>> = results
            .into_iter()
            .map(|rx| rx.recv().unwrap().err().map(|e| e.to_string()))
            .collect();
        let (c1, j1) = writer.stats();
        drop(writer);
        assert!(
            outcome[0]
                .as_deref()
                .unwrap()
                .starts_with("rolled back with another write")
        );
        assert!(
            outcome[1]
                .as_deref()
                .unwrap()
                .starts_with("rolled back with another write")
        );
        assert_eq!(outcome[2].as_deref(), Some("no"));
        assert_eq!(outcome[3].as_deref(), Some("no"));
        assert_eq!(outcome[4].as_deref(), Some("no"));
        assert_eq!(outcome[5], None);
        assert_eq!(outcome[6], None);
        assert_eq!(
            (c1, j1),
            (2, 8),
            "the gate's batch, then one batch of seven"
        );
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, vec![6, 7]);
    }
}
