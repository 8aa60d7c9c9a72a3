//! The admin JSON API (`/_/api`) and the embedded UI's static serving, over real HTTP against
//! the real binary: setup link, login/throttling/logout, cookies, CSRF, roles and tenancy,
//! bots/flows/validate/build/versions/publish, try-it, conversations, channels and keys, and
//! that the admin API and the Studio API see the same data.

mod common;

use common::{Client, Response, Server, sign};
use serde_json::{Value as Json, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "a long enough password";

/// A logged-in browser: its cookies and CSRF token.
struct Session {
    client: Client,
    cookie: String,
    csrf: String,
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect()
}

fn cookie_header(r: &Response) -> (String, String) {
    let cookies = set_cookies(r);
    let pair = |name: &str| {
        cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
    };
    let (s, c) = (pair("botyard_session"), pair("botyard_csrf"));
    let csrf = c.split_once('=').unwrap().1.to_string();
    (format!("{s}; {c}"), csrf)
}

impl Session {
    fn headers(&self, write: bool) -> Vec<(String, String)> {
        let mut h = vec![("Cookie".to_string(), self.cookie.clone())];
        if write {
            h.push(("X-CSRF-Token".into(), self.csrf.clone()));
        }
        h
    }
    fn get(&self, path: &str) -> Response {
        self.client
            .get(&format!("/_/api{path}"), &self.headers(false))
    }
    fn post(&self, path: &str, body: Json) -> Response {
        self.client
            .post(&format!("/_/api{path}"), &self.headers(true), &body)
    }
    fn put(&self, path: &str, body: Json) -> Response {
        self.client
            .put(&format!("/_/api{path}"), &self.headers(true), &body)
    }
    fn delete(&self, path: &str) -> Response {
        self.client
            .delete(&format!("/_/api{path}"), &self.headers(true))
    }
}

fn login(client: &Client, email: &str, password: &str) -> Session {
    let r = client.post(
        "/_/api/login",
        &[],
        &json!({"email": email, "password": password}),
    );
    r.expect(200);
    let (cookie, csrf) = cookie_header(&r);
    assert_eq!(r.json()["csrf"], json!(csrf));
    Session {
        client: client.clone(),
        cookie,
        csrf,
    }
}

fn setup_link(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = server.logs();
        if let Some(i) = logs.find("/_/#/setup/") {
            let end = logs[i..]
                .find(char::is_whitespace)
                .map_or(logs.len(), |e| i + e);
            return logs[i + "/_/#/setup/".len()..end].to_string();
        }
        assert!(Instant::now() < deadline, "no setup link:\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `botyard admin create` through the real CLI (password on stdin).
fn admin_create(server: &Server, email: &str, extra: &[&str]) -> std::process::Output {
    let mut child = Command::new(common::BIN)
        .args([
            "admin",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--json",
            "--data",
        ])
        .arg(&server.data)
        .args(common::database_args(&server.data))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A server whose first admin was made through the setup link; their session and org id.
fn server_with_owner() -> (Server, Session, String) {
    let server = Server::start();
    let token = setup_link(&server);
    let c = server.client();
    let r = c.post(
        "/_/api/setup",
        &[],
        &json!({"token": token, "email": "owner@example.com", "password": PASSWORD}),
    );
    r.expect(201);
    let (cookie, csrf) = cookie_header(&r);
    let s = Session {
        client: c,
        cookie,
        csrf,
    };
    let org = s.get("/session").json()["orgs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (server, s, org)
}

#[test]
fn setup_link_works_once_and_login_sets_strict_cookies() {
    let server = Server::start();
    let c = server.client();
    let st = c.get("/_/api/setup", &[]);
    st.expect(200);
    assert_eq!(st.json(), json!({"needed": true, "has_token": true}));
    assert_eq!(st.header("cache-control"), Some("no-store"));
    let token = setup_link(&server);
    // No session yet.
    c.get("/_/api/session", &[]).expect(401);
    // Wrong token, short password, bad e-mail.
    c.post(
        "/_/api/setup",
        &[],
        &json!({"token": "nope", "email": "a@example.com", "password": PASSWORD}),
    )
    .expect(403);
    c.post(
        "/_/api/setup",
        &[],
        &json!({"token": token, "email": "a@example.com", "password": "short"}),
    )
    .expect(400);
    c.post(
        "/_/api/setup",
        &[],
        &json!({"token": token, "email": "not-an-email", "password": PASSWORD}),
    )
    .expect(400);
    let r = c.post(
        "/_/api/setup",
        &[],
        &json!({"token": token, "email": "a@example.com", "password": PASSWORD}),
    );
    r.expect(201);
    let cookies = set_cookies(&r);
    let sess = cookies
        .iter()
        .find(|c| c.starts_with("botyard_session="))
        .unwrap();
    assert!(
        sess.contains("HttpOnly") && sess.contains("SameSite=Strict") && sess.contains("Path=/_/"),
        "{sess}"
    );
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("botyard_csrf="))
        .unwrap();
    assert!(
        !csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"),
        "{csrf}"
    );
    // The first admin owns the default organization.
    assert_eq!(r.json()["orgs"][0]["role"], "owner");
    // The link works once.
    c.post(
        "/_/api/setup",
        &[],
        &json!({"token": token, "email": "b@example.com", "password": PASSWORD}),
    )
    .expect(403);
    assert_eq!(
        c.get("/_/api/setup", &[]).json(),
        json!({"needed": false, "has_token": false})
    );

    // Login, session, logout.
    c.post(
        "/_/api/login",
        &[],
        &json!({"email": "a@example.com", "password": "wrong password"}),
    )
    .expect(401);
    c.post(
        "/_/api/login",
        &[],
        &json!({"email": "nobody@example.com", "password": PASSWORD}),
    )
    .expect(401);
    let s = login(&c, "A@Example.com", PASSWORD);
    let me = s.get("/session");
    me.expect(200);
    assert_eq!(me.json()["user"]["email"], "a@example.com");
    s.post("/logout", json!({})).expect(200);
    s.get("/session").expect(401);
    s.get("/orgs").expect(401);
}

#[test]
fn failed_logins_are_throttled() {
    let server = Server::start();
    let c = server.client();
    let out = admin_create(&server, "t@example.com", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..5 {
        c.post(
            "/_/api/login",
            &[],
            &json!({"email": "t@example.com", "password": "wrong password"}),
        )
        .expect(401);
    }
    let r = c.post(
        "/_/api/login",
        &[],
        &json!({"email": "t@example.com", "password": PASSWORD}),
    );
    r.expect(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Another account is not locked out by it.
    assert!(admin_create(&server, "u@example.com", &[]).status.success());
    login(&c, "u@example.com", PASSWORD);
}

#[test]
fn writes_need_the_csrf_token_and_json() {
    let (_server, s, org) = server_with_owner();
    let path = format!("/_/api/orgs/{org}/bots");
    let body = json!({"name": "x"});
    let no_token = vec![("Cookie".to_string(), s.cookie.clone())];
    s.client.post(&path, &no_token, &body).expect(403);
    let mut wrong = no_token.clone();
    wrong.push(("X-CSRF-Token".into(), "wrong".into()));
    s.client.post(&path, &wrong, &body).expect(403);
    // The header alone, without the matching cookie, is not enough either.
    let session_only = s.cookie.split(';').next().unwrap().to_string();
    let header_only = vec![
        ("Cookie".to_string(), session_only),
        ("X-CSRF-Token".to_string(), s.csrf.clone()),
    ];
    s.client.post(&path, &header_only, &body).expect(403);
    // A form post (no preflight cross-site) is refused.
    let mut form = s.headers(true);
    form.push((
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    s.client
        .request("POST", &path, &form, Some(b"name=x"))
        .expect(415);
    s.post(&format!("/orgs/{org}/bots"), body).expect(201);
    // Malformed JSON is a 400 envelope.
    s.client
        .request("POST", &path, &s.headers(true), Some(b"{\"name\":"))
        .expect(400);
}

#[test]
fn roles_and_tenancy() {
    let (server, owner, org) = server_with_owner();
    // Members: an editor and a viewer (new accounts need a password).
    owner
        .post(
            &format!("/orgs/{org}/members"),
            json!({"email": "ed@example.com", "role": "editor"}),
        )
        .expect(400);
    owner
        .post(
            &format!("/orgs/{org}/members"),
            json!({"email": "ed@example.com", "role": "editor", "password": PASSWORD}),
        )
        .expect(201);
    owner
        .post(
            &format!("/orgs/{org}/members"),
            json!({"email": "vi@example.com", "role": "viewer", "password": PASSWORD}),
        )
        .expect(201);
    owner
        .post(
            &format!("/orgs/{org}/members"),
            json!({"email": "x@example.com", "role": "boss", "password": PASSWORD}),
        )
        .expect(400);
    let c = server.client();
    let ed = login(&c, "ed@example.com", PASSWORD);
    let vi = login(&c, "vi@example.com", PASSWORD);

    // Viewer: reads, cannot write.
    vi.get(&format!("/orgs/{org}/bots")).expect(200);
    vi.post(&format!("/orgs/{org}/bots"), json!({"name": "v"}))
        .expect(403);
    // Editor: bots yes, members and keys no.
    let bot = ed.post(&format!("/orgs/{org}/bots"), json!({"name": "Ed bot"}));
    bot.expect(201);
    let bot_id = bot.json()["id"].as_str().unwrap().to_string();
    ed.post(
        &format!("/orgs/{org}/members"),
        json!({"email": "z@example.com", "role": "viewer", "password": PASSWORD}),
    )
    .expect(403);
    ed.post(&format!("/orgs/{org}/apikeys"), json!({"name": "k"}))
        .expect(403);
    ed.delete(&format!("/orgs/{org}/bots/{bot_id}")).expect(403);
    vi.post(&format!("/orgs/{org}/bots/{bot_id}/build"), json!({}))
        .expect(403);

    // The last owner cannot leave or be demoted; a second owner makes it possible.
    let members = owner.get(&format!("/orgs/{org}/members")).json();
    let owner_id = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    owner
        .put(
            &format!("/orgs/{org}/members/{owner_id}"),
            json!({"role": "editor"}),
        )
        .expect(409);
    owner
        .delete(&format!("/orgs/{org}/members/{owner_id}"))
        .expect(409);

    // Another organization, created by the editor: the others cannot see it (404, not 403).
    let other = ed.post("/orgs", json!({"name": "Ed's org"}));
    other.expect(201);
    let other_id = other.json()["id"].as_str().unwrap().to_string();
    let ob = ed.post(
        &format!("/orgs/{other_id}/bots"),
        json!({"name": "Secret bot"}),
    );
    ob.expect(201);
    let other_bot = ob.json()["id"].as_str().unwrap().to_string();
    vi.get(&format!("/orgs/{other_id}/bots")).expect(404);
    owner.get(&format!("/orgs/{other_id}/bots")).expect(404);
    // A bot of another organization through an organization one belongs to: not found.
    owner
        .get(&format!("/orgs/{org}/bots/{other_bot}"))
        .expect(404);
    owner
        .put(
            &format!("/orgs/{org}/bots/{other_bot}"),
            json!({"name": "stolen"}),
        )
        .expect(404);
    owner
        .post(&format!("/orgs/{org}/bots/{other_bot}/build"), json!({}))
        .expect(404);
    let orgs = vi.get("/orgs").json();
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");

    // Removing a member ends their access at once.
    let vi_id = owner
        .get(&format!("/orgs/{org}/members"))
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "vi@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    owner
        .delete(&format!("/orgs/{org}/members/{vi_id}"))
        .expect(204);
    vi.get(&format!("/orgs/{org}/bots")).expect(404);
}

#[test]
fn bot_flows_validate_build_publish_and_try_it() {
    let (server, s, org) = server_with_owner();
    let b = s.post(&format!("/orgs/{org}/bots"), json!({"name": "Flow bot"}));
    b.expect(201);
    let bot = b.json()["id"].as_str().unwrap().to_string();
    s.post(&format!("/orgs/{org}/bots"), json!({"name": "flow BOT"}))
        .expect(409);
    let base = format!("/orgs/{org}/bots/{bot}");
    let got = s.get(&base).json();
    let flow_id = got["flows"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(got["bot"]["default_flow_id"], json!(flow_id));

    // Live validation of unsaved text: errors carry line and column.
    let bad = "start:\n  say \"unterminated\n  goto end\n";
    let v = s.post(
        &format!("{base}/validate"),
        json!({"flows": [{"name": "Default", "content": bad}]}),
    );
    v.expect(200);
    let v = v.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["flow"], "Default");
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["column"].as_u64().unwrap() >= 1);
    assert_eq!(
        s.post(&format!("{base}/validate"), json!({})).json()["valid"],
        true
    );

    // Save the broken text: the build refuses with the same diagnostics.
    s.put(&format!("{base}/flows/{flow_id}"), json!({"content": bad}))
        .expect(200);
    let r = s.post(&format!("{base}/build"), json!({}));
    r.expect(400);
    assert_eq!(r.json()["errors"][0]["line"], 2);

    // Fix, build twice, roll back to the first build.
    let good = "start:\n  say Question(\"Color?\", buttons = [Button(\"Red\"), Button(\"Blue\")])\n  hold\n  say \"You said {{event}}\"\n  goto end\n";
    let f = s.put(
        &format!("{base}/flows/{flow_id}"),
        json!({"content": good, "commands": ["/color"]}),
    );
    f.expect(200);
    assert!(
        f.json()["commands"]
            .as_array()
            .unwrap()
            .contains(&json!("/color"))
    );
    let v1 = s.post(&format!("{base}/build"), json!({}));
    v1.expect(201);
    assert_eq!(v1.json()["seq"], 1);
    s.put(
        &format!("{base}/flows/{flow_id}"),
        json!({"content": good.replace("You said", "Picked")}),
    )
    .expect(200);
    let v2 = s.post(&format!("{base}/build"), json!({}));
    v2.expect(201);
    let versions = s.get(&format!("{base}/versions")).json();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[0]["seq"], 2);
    assert_eq!(versions[0]["live"], true);
    let v1_id = v1.json()["id"].as_str().unwrap().to_string();
    let snap = s.get(&format!("{base}/versions/{v1_id}")).json();
    assert!(
        snap["snapshot"]["flows"][0]["content"]
            .as_str()
            .unwrap()
            .contains("You said")
    );
    let p = s.post(&format!("{base}/versions/{v1_id}/publish"), json!({}));
    p.expect(200);
    assert_eq!(p.json()["live_version"], 1);
    assert_eq!(s.get(&base).json()["bot"]["live_version"], 1);

    // Try it: buttons, hold, answer; the conversation appears in the list and can be ended.
    let t = s.post(
        &format!("{base}/try"),
        json!({"event": {"content_type": "text", "content": {"text": "hi"}}}),
    );
    t.expect(200);
    let t = t.json();
    assert_eq!(t["messages"][0]["content_type"], "question");
    let conv = t["conversation_id"].as_str().unwrap().to_string();
    let t2 = s
        .post(
            &format!("{base}/try"),
            json!({"event": {"content_type": "payload", "content": {"payload": "Blue"}}}),
        )
        .json();
    // Try-it runs the working copy ("Picked"), not the published build #1 ("You said").
    assert_eq!(t2["messages"][0]["content"]["text"], "Picked Blue", "{t2}");
    s.post(&format!("{base}/try"), json!({"event": "nope"}))
        .expect(400);
    let list = s
        .get(&format!("/orgs/{org}/conversations?bot={bot}"))
        .json();
    assert_eq!(list[0]["id"], json!(conv));
    assert_eq!(list[0]["user_id"], "admin:owner@example.com");
    let one = s.get(&format!("/orgs/{org}/conversations/{conv}"));
    one.expect(200);
    let one = one.json();
    let dirs: Vec<&str> = one["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["RECEIVE", "SEND", "RECEIVE", "SEND"]);
    assert_eq!(
        s.get(&format!("/orgs/{org}/conversations?status=open"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    s.post(
        &format!("{base}/try"),
        json!({"event": {"content_type": "text", "content": {"text": "again"}}}),
    )
    .expect(200);
    let open = s
        .get(&format!("/orgs/{org}/conversations?status=open"))
        .json();
    assert_eq!(open.as_array().unwrap().len(), 1);
    let open_id = open[0]["id"].as_str().unwrap().to_string();
    let ended = s.post(
        &format!("/orgs/{org}/conversations/{open_id}/end"),
        json!({}),
    );
    ended.expect(200);
    assert_eq!(ended.json()["status"], "closed");
    s.get(&format!("/orgs/{org}/conversations?status=bogus"))
        .expect(400);

    // Usage counts the try-it messages today.
    let u = s.get(&format!("{base}/usage?days=7")).json();
    let today = u["to"].as_i64().unwrap();
    let day = u["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == today)
        .unwrap_or_else(|| panic!("no usage today: {u}"));
    assert!(day["messages"].as_i64().unwrap() >= 5, "{u}");
    let ou = s.get(&format!("/orgs/{org}/usage")).json();
    assert!(
        ou["bots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == json!(bot))
    );

    // Settings merge, env, rename, default flow.
    let nf = s.post(&format!("{base}/flows"), json!({"name": "Other"}));
    nf.expect(201);
    let up = s.put(&base, json!({"name": "Renamed", "env": {"A": "1", "N": 2}, "default_flow": "Other", "settings": {"web_chat_public": true}}));
    up.expect(200);
    let up = up.json();
    assert_eq!(up["bot"]["name"], "Renamed");
    assert_eq!(up["bot"]["env"], json!({"A": "1", "N": "2"}));
    assert_eq!(up["bot"]["default_flow_id"], nf.json()["id"]);
    assert_eq!(up["bot"]["settings"]["web_chat_public"], true);
    let up2 = s
        .put(&base, json!({"settings": {"low_data_mode": true}}))
        .json();
    assert_eq!(
        up2["bot"]["settings"]["web_chat_public"], true,
        "settings are merged"
    );
    assert_eq!(up2["bot"]["settings"]["low_data_mode"], true);
    drop(server);
}

#[test]
fn channels_keys_and_the_studio_api_see_the_same_bot() {
    let (server, s, org) = server_with_owner();
    let bot = s
        .post(&format!("/orgs/{org}/bots"), json!({"name": "Chan bot"}))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/orgs/{org}/bots/{bot}");
    let ch = s.post(
        &format!("{base}/channels"),
        json!({"kind": "api", "name": "CI", "webhook_url": "ftp://x"}),
    );
    ch.expect(400);
    let ch = s.post(
        &format!("{base}/channels"),
        json!({"kind": "api", "name": "CI"}),
    );
    ch.expect(201);
    let ch = ch.json();
    let (key, secret) = (
        ch["credentials"]["api_key"].as_str().unwrap().to_string(),
        ch["credentials"]["api_secret"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let ch_id = ch["channel"]["id"].as_str().unwrap().to_string();
    // Listed without the secret.
    let list = s.get(&format!("{base}/channels"));
    assert!(!list.text().contains(&secret));
    assert_eq!(list.json()["channels"][0]["api_key"], json!(key));

    // The Studio API with that key pair sees the flows the admin API wrote.
    s.put(
        &format!(
            "{base}/flows/{}",
            s.get(&base).json()["flows"][0]["id"].as_str().unwrap()
        ),
        json!({"content": "start:\n  say \"from admin\"\n  goto end\n"}),
    )
    .expect(200);
    let studio = |key: &str, secret: &str| {
        let ts = common::now_secs();
        let k = format!("{key}|{ts}");
        let sig = sign(secret, &k);
        server.client().get(
            "/v1/api/bot",
            &[("X-Api-Key".into(), k), ("X-Api-Signature".into(), sig)],
        )
    };
    let bot_doc = studio(&key, &secret);
    bot_doc.expect(200);
    assert!(bot_doc.text().contains("from admin"), "{}", bot_doc.text());

    // Rotate: the old pair stops working, the new one works.
    let rot = s.post(&format!("{base}/channels/{ch_id}/rotate"), json!({}));
    rot.expect(200);
    let (k2, s2) = (
        rot.json()["api_key"].as_str().unwrap().to_string(),
        rot.json()["api_secret"].as_str().unwrap().to_string(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while studio(&key, &secret).status != 401 {
        assert!(Instant::now() < deadline, "old key still accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    studio(&k2, &s2).expect(200);
    s.put(
        &format!("{base}/channels/{ch_id}"),
        json!({"webhook_url": "http://127.0.0.1:9/h"}),
    )
    .expect(200);
    s.delete(&format!("{base}/channels/{ch_id}")).expect(204);

    // Web chat embed.
    let w = s.post(
        &format!("{base}/channels"),
        json!({"kind": "web", "name": "Site", "allowed_origins": ["example.com"]}),
    );
    w.expect(201);
    let chans = s.get(&format!("{base}/channels")).json();
    assert_eq!(
        chans["web_chat"]["widgets"][0]["allowed_origins"],
        json!(["example.com"])
    );
    assert!(
        !chans["web_chat"]["widgets"][0]["embed_key"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // OCS API keys: shown once, read-only flag, revoke.
    let k = s.post(
        &format!("/orgs/{org}/apikeys"),
        json!({"name": "ro", "read_only": true}),
    );
    k.expect(201);
    let k = k.json();
    let secret_key = k["key"].as_str().unwrap();
    let keys = s.get(&format!("/orgs/{org}/apikeys"));
    assert!(!keys.text().contains(secret_key));
    let mine = keys
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == k["api_key"]["id"])
        .cloned()
        .unwrap();
    assert_eq!(mine["read_only"], true);
    let rv = s.delete(&format!(
        "/orgs/{org}/apikeys/{}",
        mine["id"].as_str().unwrap()
    ));
    rv.expect(200);
    assert!(rv.json()["revoked_at"].is_i64());
}

#[test]
fn ui_is_served_with_csp_etag_and_cache_headers() {
    let server = Server::start();
    let c = server.client();
    let r = c.get("/_", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/_/"));
    let idx = c.get("/_/", &[]);
    idx.expect(200);
    assert!(idx.header("content-type").unwrap().starts_with("text/html"));
    let csp = idx.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("style-src 'self'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(idx.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(idx.header("cache-control"), Some("no-cache"));
    let html = idx.text();
    assert!(
        !html.contains("<style") && !html.contains("style=") && !html.contains("<script>"),
        "no inline code"
    );
    let etag = idx.header("etag").unwrap().to_string();
    let r304 = c.get("/_/", &[("If-None-Match".into(), etag)]);
    assert_eq!(r304.status, 304);
    assert!(r304.body.is_empty());
    // The script is loaded from the versioned, immutable prefix.
    let start = html.find("src=\"v/").unwrap() + 5;
    let src = &html[start..start + html[start..].find('"').unwrap()];
    let js = c.get(&format!("/_/{src}"), &[]);
    js.expect(200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.header("cache-control").unwrap().contains("immutable"));
    assert!(js.text().contains("import"));
    // Unversioned paths revalidate; unknown files and API routes are JSON 404s.
    assert_eq!(
        c.get("/_/app.css", &[]).header("cache-control"),
        Some("no-cache")
    );
    c.get("/_/nope.js", &[]).expect(404);
    c.get("/_/api/nope", &[]).expect(404);
    c.request("PATCH", "/_/api/orgs", &[], None).expect(405);
    assert!(
        c.get("/_/api/orgs", &[])
            .header("content-security-policy")
            .is_some()
    );
}

#[test]
fn cli_admin_create_rules() {
    let server = Server::start();
    let out = admin_create(&server, "cli@example.com", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["organizations"][0]["role"], "owner");
    let again = admin_create(&server, "cli@example.com", &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let org = v["organizations"][0]["id"].as_str().unwrap();
    let viewer = admin_create(
        &server,
        "view@example.com",
        &["--org", org, "--role", "viewer"],
    );
    assert!(
        viewer.status.success(),
        "{}",
        String::from_utf8_lossy(&viewer.stderr)
    );
    let v: Json = serde_json::from_slice(&viewer.stdout).unwrap();
    assert_eq!(v["organizations"][0]["role"], "viewer");
    // The server sees the accounts at once (no setup link needed any more).
    let s = login(&server.client(), "view@example.com", PASSWORD);
    assert_eq!(s.get("/session").json()["orgs"][0]["role"], "viewer");
}

impl Session {
    fn upload(&self, path: &str, bytes: &[u8], csrf: bool) -> Response {
        let mut h = self.headers(csrf);
        h.push(("Content-Type".into(), "application/wasm".into()));
        self.client
            .request("POST", &format!("/_/api{path}"), &h, Some(bytes))
    }
}

fn names(list: &Json) -> Vec<(String, bool)> {
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["first_party"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn plugins_upload_settings_hosts_errors_and_remove() {
    let (_server, s, org) = server_with_owner();
    let base = format!("/orgs/{org}/plugins");
    let list = s.get(&base).json();
    assert_eq!(list["supported"], true);
    let first = names(&list);
    for n in [
        "telegram",
        "slack",
        "whatsapp",
        "twilio-sms",
        "messenger",
        "llm",
        "echo",
    ] {
        assert!(first.contains(&(n.to_string(), true)), "{n}: {first:?}");
    }
    let tg = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "telegram")
        .unwrap();
    assert_eq!(tg["kind"], "channel");
    assert!(
        tg["manifest_hosts"][0]
            .as_str()
            .unwrap()
            .contains("telegram")
    );

    // Upload: the raw component, CSRF checked, malformed refused, owner only.
    let echo = botyard_plugins::builtin::wasm("echo").unwrap();
    s.upload(&base, echo, false).expect(403);
    let bad = s.upload(&base, b"\0asm not really", true);
    bad.expect(400);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .contains("WebAssembly")
    );
    let up = s.upload(&base, echo, true);
    up.expect(201);
    let up = up.json();
    assert_eq!(up["name"], "echo");
    assert_eq!(up["first_party"], false);
    assert_eq!(up["replaces_first_party"], true);
    assert_eq!(
        names(&s.get(&base).json())
            .iter()
            .filter(|(n, _)| n == "echo")
            .count(),
        1,
        "the installation replaces the first-party entry"
    );

    // Settings of a first-party app: installs it for the org; secrets never come back.
    let llm = s.put(
        &format!("{base}/llm"),
        json!({"allowed_hosts": ["127.0.0.1"],
               "settings": {"api_key": "sk-admin-secret-1", "base_url": "http://127.0.0.1:9/v1"}}),
    );
    llm.expect(201);
    assert!(!llm.text().contains("sk-admin-secret-1"));
    let llm = llm.json();
    assert_eq!(llm["values"]["secrets_set"], json!(["api_key"]));
    assert_eq!(llm["values"]["config"]["base_url"], "http://127.0.0.1:9/v1");
    assert_eq!(llm["allowed_hosts"], json!(["127.0.0.1"]));
    // A blank secret keeps the stored one; unknown names and bad hosts are refused.
    let again = s.put(
        &format!("{base}/llm"),
        json!({"settings": {"api_key": "", "model": "m1"}}),
    );
    again.expect(200);
    assert_eq!(again.json()["values"]["secrets_set"], json!(["api_key"]));
    assert_eq!(again.json()["values"]["config"]["model"], "m1");
    let unknown = s.put(&format!("{base}/llm"), json!({"settings": {"nope": "1"}}));
    unknown.expect(400);
    assert!(unknown.text().contains("declares no setting `nope`"));
    s.put(
        &format!("{base}/llm"),
        json!({"allowed_hosts": ["http://"]}),
    )
    .expect(400);
    s.put(&format!("{base}/nope"), json!({})).expect(404);
    assert!(!s.get(&base).text().contains("sk-admin-secret-1"));

    // A failing App() call shows up in the plugin's recent errors with its reason.
    let bot = s
        .post(&format!("/orgs/{org}/bots"), json!({"name": "LLM bot"}))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bot_base = format!("/orgs/{org}/bots/{bot}");
    let flow = s.get(&bot_base).json()["flows"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.put(
        &format!("{bot_base}/flows/{flow}"),
        json!({"content": "start:\n  do r = App(\"llm\", prompt=\"hi\")\n  say \"after\"\n  goto end\n"}),
    )
    .expect(200);
    s.post(
        &format!("{bot_base}/try"),
        json!({"event": {"content_type": "text", "content": {"text": "hi"}}}),
    )
    .expect(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let errors = loop {
        let list = s.get(&base).json();
        let llm = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "llm")
            .cloned()
            .unwrap();
        if !llm["errors"].as_array().unwrap().is_empty() {
            break llm["errors"].clone();
        }
        assert!(Instant::now() < deadline, "no error recorded: {llm}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(errors[0]["operation"], "app");
    assert!(errors[0]["at"].as_i64().unwrap() > 0);
    assert!(!errors[0]["message"].as_str().unwrap().is_empty());

    // Remove: the first-party echo is back; removing twice is a 404.
    s.delete(&format!("{base}/echo")).expect(204);
    s.delete(&format!("{base}/echo")).expect(404);
    assert!(names(&s.get(&base).json()).contains(&("echo".to_string(), true)));
}

#[test]
fn connector_channels_take_their_settings_from_the_manifest() {
    let (server, s, org) = server_with_owner();
    let bot = s
        .post(&format!("/orgs/{org}/bots"), json!({"name": "TG bot"}))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/orgs/{org}/bots/{bot}/channels");
    let list = s.get(&base).json();
    let tg = list["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "telegram")
        .cloned()
        .expect("telegram connector");
    let settings: Vec<(String, bool)> = tg["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["secret"] == true))
        .collect();
    assert!(
        settings.contains(&("bot_token".into(), true)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&("api_base".into(), false)),
        "{settings:?}"
    );
    assert!(
        list["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] != "echo"),
        "apps are not connectors"
    );

    let missing = s.post(&base, json!({"kind": "telegram", "settings": {}}));
    missing.expect(400);
    assert!(missing.text().contains("bot_token"), "{}", missing.text());
    let unknown = s.post(&base, json!({"kind": "fax", "name": "x"}));
    unknown.expect(400);
    assert!(unknown.text().contains("no connector plugin `fax`"));
    s.post(&base, json!({"kind": "echo"})).expect(400);

    let created = s.post(
        &base,
        json!({"kind": "telegram", "name": "Support TG",
               "settings": {"bot_token": "42:tg-admin-token", "webhook_secret": "tg-hook-secret"}}),
    );
    created.expect(201);
    assert!(!created.text().contains("tg-admin-token"));
    let ch = created.json()["channel"].clone();
    let hook_url = ch["hook_url"].as_str().unwrap().to_string();
    assert!(hook_url.contains("/hooks/"), "{ch}");
    assert_eq!(
        ch["settings"]["secrets_set"],
        json!(["bot_token", "webhook_secret"])
    );
    assert!(ch.get("token").is_none());
    let id = ch["id"].as_str().unwrap().to_string();

    // Listed with the webhook URL; no secret value anywhere.
    let list = s.get(&base);
    assert!(!list.text().contains("tg-admin-token") && !list.text().contains("tg-hook-secret"));
    let listed = list.json()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == json!(id))
        .cloned()
        .unwrap();
    assert_eq!(listed["hook_url"], json!(hook_url));
    assert_eq!(listed["connector"], true);

    // The platform's webhook: the sealed secret is opened for the call.
    let path = &hook_url[hook_url.find("/hooks/").unwrap()..];
    let update = json!({"update_id": 1, "message": {"message_id": 1, "from": {"id": 5}, "chat": {"id": 5}, "text": "hi"}});
    let header = |v: &str| vec![("X-Telegram-Bot-Api-Secret-Token".to_string(), v.to_string())];
    let c = server.client();
    c.post(path, &header("wrong"), &update).expect(401);
    c.post(path, &header("tg-hook-secret"), &update).expect(200);

    // Edit: a blank secret keeps it, a new one replaces it, unknown names are refused.
    let edited = s.put(
        &format!("{base}/{id}"),
        json!({"name": "Renamed", "settings": {"bot_token": "", "webhook_secret": "tg-hook-2"}}),
    );
    edited.expect(200);
    assert_eq!(edited.json()["name"], "Renamed");
    assert_eq!(
        edited.json()["settings"]["secrets_set"],
        json!(["bot_token", "webhook_secret"])
    );
    c.post(path, &header("tg-hook-secret"), &update).expect(401);
    s.put(&format!("{base}/{id}"), json!({"settings": {"x": 1}}))
        .expect(400);
    // The webhook refusals are the connector's recent errors.
    let plugins = s.get(&format!("/orgs/{org}/plugins")).json();
    let tg = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "telegram")
        .cloned()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut errors = tg["errors"].as_array().unwrap().len();
    while errors == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let p = s.get(&format!("/orgs/{org}/plugins")).json();
        errors = p["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "telegram")
            .unwrap()["errors"]
            .as_array()
            .unwrap()
            .len();
    }
    assert!(errors >= 1, "webhook refusals recorded");
}
