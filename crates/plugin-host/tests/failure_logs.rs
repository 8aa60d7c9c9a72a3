//! Failed plugin calls are logged with their reason. This test has a binary of its own and
//! installs a global subscriber: tracing caches each log site's interest process-wide, so a
//! thread-local subscriber set while other tests log on other threads misses events at random.

mod common;

use botyard_plugins::{AppContext, PluginHost};
use common::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects every log line of the process.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_with_their_reason() {
    let buf = LogBuf::default();
    let b = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || b.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let mut c = config();
    c.memory_limit = 16 * 1024 * 1024;
    let host = PluginHost::new(c.clone());
    let p = load_built(&host, "hostile").await;
    let ctx = AppContext::default();
    host.call_app(
        &p,
        &install("org-log", &[], &[]),
        &ctx,
        &json!({"do": "bomb"}),
    )
    .await
    .unwrap_err();
    c.app_timeout = Duration::from_millis(200);
    let host = PluginHost::new(c);
    let p = load_built(&host, "hostile").await;
    host.call_app(
        &p,
        &install("org-log", &[], &[]),
        &ctx,
        &json!({"do": "loop"}),
    )
    .await
    .unwrap_err();
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("org-log/hostile") && text.contains("memory limit of 16 MiB"),
        "{text}"
    );
    assert!(text.contains("200 ms deadline"), "{text}");
}
