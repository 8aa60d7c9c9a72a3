//! Integration-test harness: runs the real `botyard` binary on an ephemeral port with a
//! temporary data directory, and talks plain HTTP/1.1 to it.
//!
//! * [`Server`]: `setup --json` (credentials), then `serve --addr 127.0.0.1:0`; the address is
//!   read from the `listening on http://…` line on stderr; stderr is kept for assertions.
//! * [`Client`]: a small blocking HTTP/1.1 client (one connection per request,
//!   `Connection: close`), so tests need no HTTP client crate.
//! * [`sign`]: the Studio HMAC signature; [`Creds`]: a channel's key and secret with helpers
//!   that build signed or bare auth headers.
//! * [`Receiver`]: a fake webhook endpoint on 127.0.0.1 recording every body in order.
//! * Backend: SQLite in the data dir by default; with `BOTYARD_TEST_BACKEND=postgres` every
//!   data dir the harness hands to botyard is paired with a fresh database on the test
//!   process's own PostgreSQL server ([`pg::PgCluster`]), passed as `--database URL` (see
//!   [`database_args`], [`open_store`], [`Server::start_node_of`]).

#![allow(dead_code)]

pub mod pg;

use botyard::store::{Durability, Location, Store};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_botyard");

/// Whether this run tests the PostgreSQL backend (`BOTYARD_TEST_BACKEND=postgres`); anything
/// else, or unset, is SQLite.
pub fn backend_is_pg() -> bool {
    static PG: OnceLock<bool> = OnceLock::new();
    *PG.get_or_init(|| match std::env::var("BOTYARD_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("BOTYARD_TEST_BACKEND={other:?}: expected `sqlite` or `postgres`"),
    })
}

/// One database of the test PostgreSQL server, dropped with its last owner (the servers
/// using it); databases of data dirs a test owns itself live until the process ends.
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    pub(crate) fn create() -> Arc<TestDatabase> {
        Arc::new(TestDatabase {
            url: pg::PgCluster::shared().new_database(),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        databases()
            .lock()
            .unwrap()
            .retain(|_, db| db.strong_count() > 0);
        pg::PgCluster::shared().drop_database(&self.url);
    }
}

/// Which database each data dir is paired with (PostgreSQL backend only).
fn databases() -> &'static Mutex<HashMap<PathBuf, Weak<TestDatabase>>> {
    static MAP: OnceLock<Mutex<HashMap<PathBuf, Weak<TestDatabase>>>> = OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// Databases no server owns (made for a data dir a test created itself, or whose server gave
/// its dir away with [`Server::take_dir`]): kept until the process ends.
fn kept() -> &'static Mutex<Vec<Arc<TestDatabase>>> {
    static KEPT: OnceLock<Mutex<Vec<Arc<TestDatabase>>>> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// Pairs `data` with `db`: botyard commands on `data` use it from now on.
pub(crate) fn pair(data: &Path, db: &Arc<TestDatabase>) {
    databases()
        .lock()
        .unwrap()
        .insert(data.to_path_buf(), Arc::downgrade(db));
}

/// The database paired with `data`, made (and kept) the first time `data` is seen; `None`
/// on SQLite.
pub fn database_of(data: &Path) -> Option<Arc<TestDatabase>> {
    if !backend_is_pg() {
        return None;
    }
    let mut map = databases().lock().unwrap();
    if let Some(db) = map.get(data).and_then(Weak::upgrade) {
        return Some(db);
    }
    let db = TestDatabase::create();
    map.insert(data.to_path_buf(), Arc::downgrade(&db));
    kept().lock().unwrap().push(Arc::clone(&db));
    Some(db)
}

/// The `--database URL` arguments for a botyard command on `data` (none on SQLite), for
/// tests that run the binary themselves.
pub fn database_args(data: &Path) -> Vec<String> {
    database_of(data)
        .map(|db| vec!["--database".to_string(), db.url.clone()])
        .unwrap_or_default()
}

/// The store of `data` on this run's backend (tests reading or seeding it directly).
/// Runs one statement without parameters (values written into `sql` by the test) on the
/// data dir's store, whichever backend it is on, the way an operator or an older binary would
/// touch the database behind the server's back. Rows as text, columns in order.
#[allow(dead_code)]
pub fn sql(data: &Path, sql: &str) -> Vec<Vec<String>> {
    match database_of(data) {
        Some(db) => pg::PgCluster::shared()
            .psql(&db.url, sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect(),
        None => {
            let conn = rusqlite::Connection::open(data.join("botyard.db")).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let mut st = conn.prepare(sql).unwrap();
            let n = st.column_count();
            st.query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Real(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                        })
                    })
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
    }
}

/// Where a data dir's store lives in this test run (its own database on PostgreSQL).
pub fn location(data: &Path) -> Location {
    Location {
        data_dir: data.to_path_buf(),
        database: database_of(data).map(|db| db.url.clone()),
    }
}

pub fn open_store(data: &Path, durability: Durability) -> Store {
    match database_of(data) {
        None => Store::open(data, durability).expect("open store"),
        Some(db) => Store::open_at(
            &Location {
                data_dir: data.to_path_buf(),
                database: Some(db.url.clone()),
            },
            durability,
        )
        .expect("open store"),
    }
}

/// The files of a data dir that every node of one deployment must share.
pub const KEY_FILES: [&str; 2] = ["secret.key", "ocs-token.key"];

/// Runs a CLI command against `data`, returns its stdout parsed as JSON (`--json` is added).
pub fn cli_json(data: &Path, args: &[&str]) -> Json {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .args(database_args(data))
        .arg("--json")
        .output()
        .expect("run botyard");
    assert!(
        out.status.success(),
        "botyard {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "botyard {args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A channel's credentials.
#[derive(Debug, Clone)]
pub struct Creds {
    pub api_key: String,
    pub api_secret: String,
    pub channel_id: String,
    pub bot_id: String,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `sha256=<hex>` of HMAC-SHA-256(secret, message).
pub fn sign(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Creds {
    /// Signed-mode headers with the current time.
    pub fn signed(&self) -> Vec<(String, String)> {
        self.signed_at(now_secs())
    }
    pub fn signed_at(&self, ts: i64) -> Vec<(String, String)> {
        let key = format!("{}|{}", self.api_key, ts);
        let sig = sign(&self.api_secret, &key);
        vec![("X-Api-Key".into(), key), ("X-Api-Signature".into(), sig)]
    }
    /// Public-mode header (bare key).
    pub fn public(&self) -> Vec<(String, String)> {
        vec![("X-Api-Key".into(), self.api_key.clone())]
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Asserts the status and that an error body is the JSON envelope.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        if status >= 400 {
            let v = self.json();
            assert_eq!(v["code"], json!(status), "envelope code: {v}");
            assert!(v["message"].is_string(), "envelope message: {v}");
        }
        self
    }
}

/// A blocking HTTP/1.1 client for one server address.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub fn get(&self, path: &str, headers: &[(String, String)]) -> Response {
        self.request("GET", path, headers, None)
    }
    pub fn post(&self, path: &str, headers: &[(String, String)], body: &Json) -> Response {
        self.request("POST", path, headers, Some(body.to_string().as_bytes()))
    }
    pub fn put(&self, path: &str, headers: &[(String, String)], body: &Json) -> Response {
        self.request("PUT", path, headers, Some(body.to_string().as_bytes()))
    }
    pub fn delete(&self, path: &str, headers: &[(String, String)]) -> Response {
        self.request("DELETE", path, headers, None)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        let mut has_ct = false;
        for (k, v) in headers {
            has_ct |= k.eq_ignore_ascii_case("content-type");
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            if !has_ct {
                head.push_str("Content-Type: application/json\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        s.write_all(&out)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(status_line))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + size]);
        b = &b[pos + 2 + size + 2..];
    }
    out
}

/// A running server process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Kept alive so the data dir outlives the process; `None` when the caller owns the dir.
    _tmp: Option<tempfile::TempDir>,
    /// PostgreSQL backend: this server's database (shared with other nodes on it).
    db: Option<Arc<TestDatabase>>,
    pub log: Arc<Mutex<String>>,
    /// The default setup's credentials.
    pub setup: Json,
}

impl Server {
    /// Replaces the default flow of the setup bot (signed Studio API calls) and builds it.
    pub fn set_default_flow(&self, content: &str) {
        self.set_flow_of(&self.creds(), content)
    }

    /// Replaces the default flow of `creds`'s bot (signed Studio API calls) and builds it.
    pub fn set_flow_of(&self, creds: &Creds, content: &str) {
        let c = self.client();
        let bot = c.get("/v1/api/bot", &creds.signed()).json();
        let default = bot["default_flow"].as_str().unwrap().to_string();
        c.put(
            &format!("/v1/api/bot/flows/{default}"),
            &creds.signed(),
            &json!({"content": content}),
        )
        .expect(200);
        c.post("/v1/api/bot/build", &creds.signed(), &json!({}))
            .expect(200);
    }

    /// A fresh data dir, set up, served.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// `extra` arguments for `serve`. Unless `extra` sets `--rate-limit`, the limit is raised
    /// to 1000/s so functional tests are not throttled (the rate-limit test sets its own).
    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_path_buf();
        // A fresh database owned by the server (dropped with it), not kept like a test's own.
        let db = backend_is_pg().then(TestDatabase::create);
        if let Some(db) = &db {
            pair(&data, db);
        }
        let setup = cli_json(&data, &["setup"]);
        let mut s = Self::spawn(&data, extra);
        s._tmp = Some(tmp);
        s.setup = setup;
        s
    }

    /// Another node of `other`'s deployment (PostgreSQL backend only): its own data dir
    /// holding copies of `other`'s key files, serving `other`'s database with `extra`
    /// arguments. Its `setup` is `other`'s.
    pub fn start_node_of(other: &Server, extra: &[&str]) -> Server {
        let db = other
            .db
            .clone()
            .expect("start_node_of: several nodes share one PostgreSQL database (BOTYARD_TEST_BACKEND=postgres)");
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_path_buf();
        for name in KEY_FILES {
            let from = other.data.join(name);
            if from.exists() {
                std::fs::copy(&from, data.join(name))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
            }
        }
        pair(&data, &db);
        let mut s = Self::spawn(&data, extra);
        s._tmp = Some(tmp);
        s.setup = other.setup.clone();
        s
    }

    /// Serves an existing data dir (restart after a kill).
    pub fn spawn(data: &Path, extra: &[&str]) -> Server {
        let db = database_of(data);
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(db.iter().flat_map(|db| ["--database", db.url.as_str()]))
            .args(["--addr", "127.0.0.1:0", "--outbound-allow", "127.0.0.1"])
            .args(if extra.contains(&"--rate-limit") {
                &[][..]
            } else {
                &["--rate-limit", "1000"][..]
            })
            .args(extra)
            .env("BOTYARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn botyard serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let addr = line[i + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a
                .parse()
                .unwrap_or_else(|_| panic!("bad listening address `{a}`")),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            data: data.to_path_buf(),
            _tmp: None,
            db,
            log,
            setup: Json::Null,
        }
    }

    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// The default channel's credentials from `setup --json`.
    pub fn creds(&self) -> Creds {
        creds_from_setup(&self.setup)
    }

    /// A new Studio API channel of the default bot, with a webhook.
    pub fn webhook_channel(&self, url: &str) -> Creds {
        let bot = self.creds().bot_id;
        let v = cli_json(
            &self.data,
            &[
                "channel",
                "create",
                "--bot",
                &bot,
                "--name",
                "hooked",
                "--webhook",
                url,
            ],
        );
        Creds {
            api_key: v["api_key"].as_str().unwrap().to_string(),
            api_secret: v["api_secret"].as_str().unwrap().to_string(),
            channel_id: v["id"].as_str().unwrap().to_string(),
            bot_id: bot,
        }
    }

    /// A second organization with its own bot (`flow` as its `Default` flow, via the Studio
    /// API) and Studio API channel.
    pub fn other_org(&self, name: &str) -> (String, Creds) {
        let org = cli_json(&self.data, &["org", "create", name]);
        let org_id = org["id"].as_str().unwrap().to_string();
        let bot = cli_json(
            &self.data,
            &["bot", "create", &format!("{name} bot"), "--org", &org_id],
        );
        let bot_id = bot["id"].as_str().unwrap().to_string();
        let ch = cli_json(
            &self.data,
            &["channel", "create", "--bot", &bot_id, "--org", &org_id],
        );
        let creds = Creds {
            api_key: ch["api_key"].as_str().unwrap().to_string(),
            api_secret: ch["api_secret"].as_str().unwrap().to_string(),
            channel_id: ch["id"].as_str().unwrap().to_string(),
            bot_id,
        };
        (org_id, creds)
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit, at most `timeout`; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, then wait.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Takes the temp dir so a later server can reuse it after this one is killed (its
    /// database, on PostgreSQL, stays paired with the dir).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        if let Some(db) = self.db.take() {
            kept().lock().unwrap().push(db);
        }
        self._tmp.take()
    }

    /// The store this server serves, opened on this run's backend.
    pub fn store(&self) -> Store {
        open_store(&self.data, Durability::Normal)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn creds_from_setup(v: &Json) -> Creds {
    Creds {
        api_key: v["studio"]["api_key"]
            .as_str()
            .expect("studio.api_key")
            .to_string(),
        api_secret: v["studio"]["api_secret"]
            .as_str()
            .expect("studio.api_secret")
            .to_string(),
        channel_id: v["studio"]["channel_id"]
            .as_str()
            .expect("studio.channel_id")
            .to_string(),
        bot_id: v["bot"]["id"].as_str().expect("bot.id").to_string(),
    }
}

/// A `/chat` body with a text event.
pub fn text_event(user: &str, text: &str) -> Json {
    json!({"client": {"user_id": user}, "payload": {"content_type": "text", "content": {"text": text}}})
}

/// Reads one HTTP/1.1 request from `s`: its path and body (by `content-length`).
pub fn read_request(s: &TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    (path, body)
}

/// A fake platform API on 127.0.0.1 (Telegram, Slack, …): records `(path, body)` of each
/// call and answers `answer` (after `failures` 503s).
pub struct FakeApi {
    pub url: String,
    pub calls: Arc<Mutex<Vec<(String, Json)>>>,
}

impl FakeApi {
    pub fn start(answer: &'static str) -> FakeApi {
        Self::flaky(answer, 0)
    }

    pub fn flaky(answer: &'static str, failures: usize) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c2 = Arc::clone(&calls);
        std::thread::spawn(move || {
            let mut failures = failures;
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (path, body) = read_request(&s);
                c2.lock()
                    .unwrap()
                    .push((path, serde_json::from_slice(&body).unwrap_or(Json::Null)));
                if failures > 0 {
                    failures -= 1;
                    let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    continue;
                }
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                );
            }
        });
        FakeApi { url, calls }
    }

    pub fn calls(&self) -> Vec<(String, Json)> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until at least `n` calls arrived (or `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(String, Json)> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.calls();
            if c.len() >= n || Instant::now() >= deadline {
                return c;
            }
            // Short: the plugin latency benchmark measures through this loop.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// A fake webhook receiver on 127.0.0.1 recording bodies in arrival order.
pub struct Receiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<Json>>>,
}

impl Receiver {
    /// `delay` is applied before answering each call (to prove the chat reply is not held up).
    pub fn start(delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b2 = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                // One request per connection (the server's outbound client sends
                // `Connection: close`); handled inline so arrival order is call order.
                let (_, body) = read_request(&s);
                std::thread::sleep(delay);
                let v: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
                b2.lock().unwrap().push(v);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, bodies }
    }

    pub fn bodies(&self) -> Vec<Json> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until at least `n` bodies arrived (or `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Json> {
        let deadline = Instant::now() + timeout;
        loop {
            let b = self.bodies();
            if b.len() >= n || Instant::now() >= deadline {
                return b;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
