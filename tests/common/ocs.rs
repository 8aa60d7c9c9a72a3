//! OCS test helpers: a server started with OCS settings in its environment, direct store
//! access for fixtures the API has no endpoint for (roles, widget channels, builds, other
//! organizations), and request helpers for the API-key, chat and multipart forms.

#![allow(dead_code)]

use crate::common::{BIN, Client, Response, TestDatabase, backend_is_pg, cli_json, database_of};
use botyard::store::ocs::WidgetChannel;
use botyard::store::{Durability, NewBot, NewFlow, Snapshot, SnapshotFlow, Store};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Ocs {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub tmp: Option<tempfile::TempDir>,
    pub log: Arc<Mutex<String>>,
    pub org: String,
    pub bot: String,
    pub key: String,
    env: Vec<(String, String)>,
    /// PostgreSQL backend: this server's database.
    db: Option<Arc<TestDatabase>>,
}

impl Drop for Ocs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: &Path, env: &[(String, String)]) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let db = database_of(data);
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(db.iter().flat_map(|db| ["--database", db.url.as_str()]))
        .args(["--addr", "127.0.0.1:0"])
        .env("BOTYARD_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
                let addr = line[i + 20..]
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
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server did not start");
    (child, addr.parse().unwrap(), log)
}

impl Ocs {
    pub fn start() -> Ocs {
        Self::start_env(&[])
    }

    pub fn start_env(env: &[(&str, &str)]) -> Ocs {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_path_buf();
        // A fresh database owned by this server (dropped with it).
        let db = backend_is_pg().then(TestDatabase::create);
        if let Some(db) = &db {
            crate::common::pair(&data, db);
        }
        let setup = cli_json(&data, &["setup"]);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr, log) = spawn(&data, &env);
        Ocs {
            child,
            addr,
            data,
            tmp: Some(tmp),
            log,
            org: setup["organization"]["id"].as_str().unwrap().to_string(),
            bot: setup["bot"]["id"].as_str().unwrap().to_string(),
            key: setup["ocs"]["api_key"].as_str().unwrap().to_string(),
            env,
            db,
        }
    }

    /// SIGKILL and start again on the same data dir.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr, log) = spawn(&self.data, &self.env);
        self.child = child;
        self.addr = addr;
        self.log = log;
    }

    /// Restart with more environment (e.g. a rate-limit exemption for a known team).
    pub fn restart_with(&mut self, extra: &[(&str, &str)]) {
        self.env
            .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.restart();
    }

    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// A second handle on the database (the server keeps running; SQLite serializes writers),
    /// on this run's backend.
    pub fn store(&self) -> Store {
        crate::common::open_store(&self.data, Durability::Normal)
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A new API key of `org` with an OCS role.
    pub fn key_with(&self, org: &str, role: &str, read_only: bool) -> String {
        let st = self.store();
        let (k, key) = st.create_api_key(org, role, read_only).unwrap();
        st.ocs_set_key_role(
            org,
            &k.id,
            role,
            Some(&format!("{role}-{}@example.org", &k.id[30..])),
        )
        .unwrap();
        key
    }

    /// A bot with one flow (`start` is the entry), optionally a trigger flow.
    pub fn bot_with(&self, org: &str, name: &str, flow: &str, trigger: Option<&str>) -> String {
        let mut flows = vec![NewFlow {
            name: "main".into(),
            content: flow.into(),
            ..Default::default()
        }];
        if let Some(t) = trigger {
            flows.push(NewFlow {
                name: "ocs_trigger".into(),
                content: t.into(),
                ..Default::default()
            });
        }
        let (bot, _) = self
            .store()
            .create_bot(
                org,
                NewBot {
                    name: name.into(),
                    flows,
                    default_flow: Some("main".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        bot.id
    }

    /// Freeze the bot's working flows as a new build (the new live version).
    pub fn build(&self, org: &str, bot: &str) -> i64 {
        let st = self.store();
        let (b, flows) = st.bot_with_flows(org, bot).unwrap();
        let snap = Snapshot {
            name: b.name.clone(),
            default_flow: b.default_flow_id.clone().unwrap(),
            flows: flows
                .iter()
                .map(|f| SnapshotFlow {
                    id: f.id.clone(),
                    name: f.name.clone(),
                    commands: f.commands.clone(),
                    content: f.content.clone(),
                })
                .collect(),
            custom_components: Default::default(),
        };
        st.create_version(org, bot, snap, "test").unwrap().seq
    }

    pub fn org2(&self, name: &str) -> String {
        self.store().create_org(name, false).unwrap().id
    }

    pub fn widget(&self, bot: &str, domains: &[&str], level: i64) -> WidgetChannel {
        self.store()
            .ocs_create_widget_channel(
                &self.org,
                bot,
                "widget",
                domains.iter().map(|d| d.to_string()).collect(),
                level,
            )
            .unwrap()
    }

    pub fn set_public(&self, bot: &str, public: bool) {
        let st = self.store();
        let b = st.get_bot(&self.org, bot).unwrap();
        let mut settings = b.settings.clone();
        settings.web_chat_public = public;
        st.update_bot(
            &self.org,
            bot,
            botyard::store::BotPatch {
                settings: Some(settings),
                ..Default::default()
            },
        )
        .unwrap();
    }

    pub fn auth(&self) -> Vec<(String, String)> {
        key_header(&self.key)
    }

    pub fn get(&self, path: &str) -> Response {
        self.client().get(path, &self.auth())
    }

    pub fn post(&self, path: &str, body: &Json) -> Response {
        self.client().post(path, &self.auth(), body)
    }

    /// `POST /api/chat/start/` keyless for the demo bot: `(session_id, token)`.
    pub fn start_chat(&self) -> (String, String) {
        let r = self
            .client()
            .post("/api/chat/start/", &[], &json!({"chatbot_id": self.bot}));
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        (
            v["session_id"].as_str().unwrap().into(),
            v["session_token"].as_str().unwrap().into(),
        )
    }

    /// Keyless chat start for a public bot: `(session_id, token)`.
    pub fn start_chat_for(&self, bot: &str) -> (String, String) {
        let r = self
            .client()
            .post("/api/chat/start/", &[], &json!({"chatbot_id": bot}));
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        (
            v["session_id"].as_str().unwrap().into(),
            v["session_token"].as_str().unwrap().into(),
        )
    }

    /// Send a chat message and wait for the task to complete; the task-poll body.
    pub fn chat_turn(&self, sid: &str, token: &str, text: &str) -> Json {
        let h = token_header(token);
        let r = self.client().post(
            &format!("/api/chat/{sid}/message/"),
            &h,
            &json!({"message": text}),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let task = r.json()["task_id"].as_str().unwrap().to_string();
        wait_task(&self.client(), sid, &task, &h)
    }
}

pub fn key_header(key: &str) -> Vec<(String, String)> {
    vec![("X-api-key".into(), key.into())]
}

pub fn bearer(key: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {key}"))]
}

pub fn token_header(token: &str) -> Vec<(String, String)> {
    vec![("X-Session-Token".into(), token.into())]
}

/// Poll a task until it is no longer `processing` (5 s at most).
pub fn wait_task(c: &Client, sid: &str, task: &str, h: &[(String, String)]) -> Json {
    for _ in 0..500 {
        let r = c.get(&format!("/api/chat/{sid}/{task}/poll/"), h);
        let v = r.json();
        if v["status"] != "processing" {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("task {task} never completed");
}

/// A multipart body with `files` parts `(name, content type, bytes)` and plain fields.
pub fn multipart(files: &[(&str, &str, &[u8])], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let b = "----botyardtestboundary7d1";
    let mut body = Vec::new();
    for (name, ct, data) in files {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// A CSML flow for tests: says two messages and a question, then holds; the next message is
/// echoed along with `_metadata` facts and a write-back.
pub const ECHO_FLOW: &str = r#"start:
  say "first"
  say Question("Pick one", buttons = [Button("A"), Button("B")])
  hold
  say "you said {{event}}"
  say "who: {{_metadata.participant.identifier}} state: {{_metadata.session_state.color}}"
  say {"_ocs_update": {"session_state": {"seen": true}, "participant_data": {"last": "{{event}}"}}}
  goto start
"#;

pub const TRIGGER_FLOW: &str = r#"start:
  say "Reminder: {{event.ocs_trigger.prompt}}"
  goto end
"#;

/// A keep-alive HTTP/1.1 client on one connection (benchmarks: no connect per request).
pub struct KeepAlive {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr) -> KeepAlive {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive {
            stream: std::io::BufReader::new(s),
        }
    }

    /// Send a request; `(status, body)`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&Json>,
    ) -> (u16, Json) {
        use std::io::{Read, Write};
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        self.stream.get_mut().write_all(head.as_bytes()).unwrap();
        let mut status = 0;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if l.starts_with("HTTP/1.1 ") {
                status = l[9..12].parse().unwrap();
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).unwrap();
        (status, serde_json::from_slice(&buf).unwrap_or(Json::Null))
    }
}
