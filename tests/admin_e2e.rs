//! Runs the admin UI's end-to-end story (`tests/e2e/admin.spec.mjs`) in a real headless
//! Chromium against the real binary. Installs what it needs when missing: Debian's `chromium`
//! package (`apt-get update && apt-get install -y chromium`) and `playwright-core` from npm
//! (`npm install --no-audit --no-fund` in `tests/e2e`, pinned by its package-lock.json).
//! Screenshots go to `target/e2e-screenshots/` (not committed).

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    eprintln!("e2e: installing Debian's chromium package");
    run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    );
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install chromium",
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium installed but {CHROMIUM} is missing"
    );
}

fn ensure_playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    eprintln!("e2e: installing playwright-core from npm");
    run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(dir),
        "npm install",
    );
}

/// Waits for the one-time setup link `serve` prints when no admin exists.
fn setup_link(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = server.logs();
        if let Some(i) = logs.find("/_/#/setup/") {
            let start = logs[..i].rfind("http://").expect("link start");
            let end = logs[i..]
                .find(char::is_whitespace)
                .map_or(logs.len(), |e| i + e);
            return logs[start..end].to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no setup link in the server log:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_ui_end_to_end_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/e2e");
    ensure_chromium();
    ensure_playwright(&e2e);
    let server = Server::start();
    let link = setup_link(&server);
    let shots = root.join("target/e2e-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(e2e.join("admin.spec.mjs"))
        .current_dir(&e2e)
        .env("BASE_URL", format!("http://{}", server.addr))
        .env("SETUP_LINK", &link)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait node") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!(
                "the e2e run took more than 5 minutes\nserver log:\n{}",
                server.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "e2e: browser run took {:.1}s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        status.success(),
        "the browser test failed ({status})\nserver log:\n{}",
        server.logs()
    );
    assert!(shots.join("07-try-it.png").exists() && shots.join("09-transcript.png").exists());
}
