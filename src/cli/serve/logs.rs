//! The server's log output: tracing's fmt layer writing into a shared buffer that a background
//! thread flushes to stderr every few milliseconds (or sooner when it fills up). One write
//! syscall per batch instead of one per line keeps the access log cheap at thousands of
//! requests per second. [`flush`] empties the buffer at exit; lines of the last few
//! milliseconds can be lost only if the process is killed.

use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Flush interval of the background thread.
const INTERVAL: Duration = Duration::from_millis(10);
/// Buffer size that triggers an early flush.
const HIGH_WATER: usize = 64 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    full: Condvar,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        std::thread::Builder::new()
            .name("botyard-logs".into())
            .spawn(flusher)
            .expect("log flusher thread");
        Shared {
            buf: Mutex::new(Vec::with_capacity(HIGH_WATER)),
            full: Condvar::new(),
        }
    })
}

fn flusher() {
    let s = shared();
    let mut out = Vec::with_capacity(HIGH_WATER);
    loop {
        {
            let guard = s.buf.lock().unwrap_or_else(|p| p.into_inner());
            let (mut guard, _) = s
                .full
                .wait_timeout_while(guard, INTERVAL, |b| b.len() < HIGH_WATER)
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *guard, &mut out);
        }
        if !out.is_empty() {
            let _ = std::io::stderr().lock().write_all(&out);
            out.clear();
        }
    }
}

/// Writes everything buffered so far to stderr.
pub fn flush() {
    let s = shared();
    let pending = std::mem::take(&mut *s.buf.lock().unwrap_or_else(|p| p.into_inner()));
    if !pending.is_empty() {
        let _ = std::io::stderr().lock().write_all(&pending);
    }
}

/// The `MakeWriter` given to tracing-subscriber.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferedStderr;

pub struct Line;

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let s = shared();
        let mut buf = s.buf.lock().unwrap_or_else(|p| p.into_inner());
        buf.extend_from_slice(data);
        if buf.len() >= HIGH_WATER {
            s.full.notify_one();
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line
    }
}
