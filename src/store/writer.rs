//! The single writer thread with group commit.
//!
//! Jobs arrive on a channel. The thread takes one job, then every job already waiting (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction — each inside a savepoint so
//! a failing job is rolled back alone — commits, and only then sends each job its result. While
//! a commit is in progress new jobs queue up, so the batch size grows with the load and the
//! per-turn cost of a commit shrinks.

use super::{Error, Result};
use rusqlite::Connection;
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

type Output = Result<Box<dyn Any + Send>>;
type Work = Box<dyn FnOnce(&Connection) -> Output + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Output>,
}

pub(super) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
    jobs: Arc<AtomicU64>,
}

/// The receiving end of one job's acknowledgement: `.await` it, or `blocking_recv()` off the
/// runtime.
pub(super) struct Ack<R> {
    rx: oneshot::Receiver<Output>,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R: 'static> Ack<R> {
    fn unpack(out: Result<Output, oneshot::error::RecvError>) -> Result<Result<R>, ()> {
        match out {
            Err(_) => Err(()),
            Ok(Err(e)) => Ok(Err(e)),
            Ok(Ok(b)) => Ok(Ok(*b.downcast::<R>().expect("writer job returned another type"))),
        }
    }

    pub(super) fn blocking_recv(self) -> Result<Result<R>, ()> {
        Self::unpack(self.rx.blocking_recv())
    }
}

impl<R: 'static> std::future::IntoFuture for Ack<R> {
    type Output = Result<Result<R>, ()>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { Self::unpack(self.rx.await) })
    }
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let jobs = Arc::new(AtomicU64::new(0));
        let (c2, j2) = (commits.clone(), jobs.clone());
        let thread = std::thread::Builder::new()
            .name("botyard-db-writer".into())
            .spawn(move || run(conn, rx, &c2, &j2))?;
        Ok(Writer { tx: Some(tx), thread: Some(thread), commits, jobs })
    }

    pub(super) fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<Ack<R>> {
        let (reply, rx) = oneshot::channel();
        let work: Work = Box::new(move |c| f(c).map(|r| Box::new(r) as Box<dyn Any + Send>));
        self.tx.as_ref().ok_or(Error::Closed)?.send(Job { work, reply }).map_err(|_| Error::Closed)?;
        Ok(Ack { rx, _r: std::marker::PhantomData })
    }

    pub(super) fn stats(&self) -> (u64, u64) {
        (self.commits.load(Ordering::Relaxed), self.jobs.load(Ordering::Relaxed))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queued jobs and exit; joining makes
        // "store dropped" mean "everything acknowledged is on disk and the file is closed".
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, commits: &AtomicU64, jobs: &AtomicU64) {
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
            let _ = reply.send(out);
        }
    }
    // Fold the WAL back into the main file on a clean shutdown.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Job>) -> Vec<(oneshot::Sender<Output>, Output)> {
    let mut results = Vec::with_capacity(batch.len());
    if let Err(e) = begin(conn) {
        let msg = e.to_string();
        for job in batch.drain(..) {
            results.push((job.reply, Err(Error::Other(format!("cannot start a transaction: {msg}")))));
        }
        return results;
    }
    for job in batch.drain(..) {
        let out = run_job(conn, job.work);
        results.push((job.reply, out));
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let msg = e.to_string();
        let _ = conn.execute_batch("ROLLBACK");
        for (_, out) in results.iter_mut() {
            *out = Err(Error::Other(format!("commit failed: {msg}")));
        }
    }
    results
}

fn begin(conn: &Connection) -> rusqlite::Result<()> {
    // Another process (a management command) may hold the write lock briefly; busy_timeout
    // covers that, a retry loop covers a timeout under a long external write.
    let mut tries = 0;
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
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

fn run_job(conn: &Connection, work: Work) -> Output {
    if let Err(e) = conn.execute_batch("SAVEPOINT job") {
        return Err(e.into());
    }
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(Error::Other("a write job panicked".into())));
    let end = if out.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
    match conn.execute_batch(end) {
        Ok(()) => out,
        Err(e) => Err(e.into()),
    }
}
