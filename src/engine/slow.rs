//! The threads that run slow turns: turns of bots that wait on the network (`HTTP`, `App`,
//! `SMTP`) or that once outran the inline try (see `turn::run_prepared`).
//!
//! They run at a lower CPU priority (nice 10) than the async workers, so that a tenant whose
//! turns burn CPU until their deadline takes the cores only when the fast turns of everyone
//! else (and the HTTP work, and the store's writer) leave them idle: the kernel's scheduler
//! gives a nice-10 thread about a tenth of the share of a nice-0 one. A thread's priority
//! cannot be raised back without privileges, which is why these are threads of their own
//! rather than tokio's blocking pool (whose threads also do the store's reads).
//!
//! How many run at once is bounded by the fair share's slots, not here: a thread is started
//! when every one is busy and ends after a minute idle.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(60);
/// Nice value of the threads.
const NICE: i32 = 10;

pub(super) struct SlowPool {
    tx: Mutex<mpsc::Sender<Job>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Threads waiting for a job.
    idle: Arc<Mutex<usize>>,
}

impl SlowPool {
    pub(super) fn new() -> SlowPool {
        let (tx, rx) = mpsc::channel();
        SlowPool {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(Mutex::new(0)),
        }
    }

    /// Run `f` on a slow-turn thread and await its result.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        let spawn = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if *idle > 0 {
                *idle -= 1;
                false
            } else {
                true
            }
        };
        if spawn {
            self.spawn_thread()?;
        }
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| "the slow-turn threads are gone".to_string())?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err("the turn panicked".into()),
            Err(_) => Err("the turn's thread ended".into()),
        }
    }

    fn spawn_thread(&self) -> Result<(), String> {
        let (rx, idle) = (Arc::clone(&self.rx), Arc::clone(&self.idle));
        std::thread::Builder::new()
            .name("botyard-slow".into())
            .spawn(move || {
                lower_priority();
                loop {
                    let job = rx
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .recv_timeout(IDLE);
                    match job {
                        Ok(job) => job(),
                        Err(_) => {
                            // Idle for a minute (or the pool is gone): end, unless a job
                            // was promised to this thread meanwhile.
                            let mut n = idle.lock().unwrap_or_else(|p| p.into_inner());
                            if *n > 0 {
                                *n -= 1;
                                return;
                            }
                            continue;
                        }
                    }
                    *idle.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start a slow-turn thread: {e}"))
    }
}

/// Nice this thread (Linux: a thread's own priority); a failure only costs the priority.
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE)
    };
    if r != 0 {
        tracing::debug!("slow-turn thread: could not lower its priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_reuses_threads() {
        let pool = SlowPool::new();
        for i in 0..5 {
            assert_eq!(pool.run(move || i * 2).await.unwrap(), i * 2);
        }
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
