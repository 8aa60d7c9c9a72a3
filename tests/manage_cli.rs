//! The management commands through the real binary: setup contract and idempotence, org, bot
//! (create/list/export/import), channel (create/list/rotate), apikey (create/list/revoke),
//! backup — each with `--json`; and `bench` on a tiny budget.

use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;

fn run(data: &Path, args: &[&str]) -> (bool, Json, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_botyard"))
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(args)
        .env_remove("BOTYARD_DATA")
        .output()
        .expect("run botyard");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Json::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &Path, args: &[&str]) -> Json {
    let (success, json, err) = run(data, args);
    assert!(success, "botyard {args:?} failed: {err}");
    json
}

fn s(v: &Json) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("not a non-empty string: {v}"))
}

#[test]
fn setup_contract_and_idempotence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let j = ok(&data, &["setup"]);
    for p in [
        "/organization/id",
        "/organization/name",
        "/bot/id",
        "/bot/name",
        "/studio/channel_id",
        "/studio/api_key",
        "/studio/api_secret",
        "/ocs/api_key",
    ] {
        assert!(!s(j.pointer(p).unwrap()).is_empty(), "{p} in {j}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(data.join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }
    let db = std::fs::read(data.join("botyard.db")).unwrap();
    let before = ok(&data, &["org", "list"]);
    // Second run: unchanged, ids without secrets.
    let again = ok(&data, &["setup"]);
    assert_eq!(again["created"], Json::Bool(false));
    assert_eq!(again["organization"], j["organization"]);
    assert_eq!(again["bot"], j["bot"]);
    assert_eq!(again["studio"]["channel_id"], j["studio"]["channel_id"]);
    assert!(again["studio"].get("api_secret").is_none() && again.get("ocs").is_none());
    assert_eq!(ok(&data, &["org", "list"]), before);
    assert!(!db.is_empty());
    // The demo bot's channel and key are listed.
    let chans = ok(&data, &["channel", "list"]);
    assert_eq!(chans[0]["api_key"], j["studio"]["api_key"]);
    assert!(chans[0].get("api_secret").is_none());
    let keys = ok(&data, &["apikey", "list"]);
    assert!(s(&j["ocs"]["api_key"]).starts_with(s(&keys[0]["prefix"])));
}

#[test]
fn orgs_bots_channels_keys_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Without setup there is no default organization.
    let (success, _, err) = run(&data, &["bot", "list"]);
    assert!(!success && err.contains("default organization"), "{err}");
    ok(&data, &["setup"]);
    let acme = ok(&data, &["org", "create", "Acme"]);
    assert_eq!(acme["name"], "Acme");
    assert!(
        !run(&data, &["org", "create", "acme"]).0,
        "duplicate org name"
    );
    assert_eq!(ok(&data, &["org", "list"]).as_array().unwrap().len(), 2);

    let bot = ok(&data, &["bot", "create", "Helper", "--org", "Acme"]);
    assert_eq!(bot["organization_id"], acme["id"]);
    let listed = ok(&data, &["bot", "list", "--org", s(&acme["id"])]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // The default organization does not see Acme's bot.
    let default_bots = ok(&data, &["bot", "list"]);
    assert!(
        default_bots
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["name"] != "Helper")
    );
    assert!(
        !run(&data, &["channel", "create", "--bot", "Helper"]).0,
        "bot of another org"
    );

    let ch = ok(
        &data,
        &[
            "channel",
            "create",
            "--bot",
            "Helper",
            "--org",
            "Acme",
            "--webhook",
            "http://127.0.0.1:9/hook",
        ],
    );
    assert!(s(&ch["api_key"]).starts_with("pk_") && s(&ch["api_secret"]).starts_with("sk_"));
    assert_eq!(ch["webhook_url"], "http://127.0.0.1:9/hook");
    let rot = ok(&data, &["channel", "rotate", s(&ch["id"]), "--org", "Acme"]);
    assert_ne!(rot["api_key"], ch["api_key"]);
    assert_ne!(rot["api_secret"], ch["api_secret"]);
    let chans = ok(
        &data,
        &["channel", "list", "--org", "Acme", "--bot", "Helper"],
    );
    assert_eq!(chans[0]["api_key"], rot["api_key"]);

    let key = ok(
        &data,
        &[
            "apikey",
            "create",
            "--org",
            "Acme",
            "--read-only",
            "--name",
            "ci",
        ],
    );
    assert!(s(&key["api_key"]).starts_with("ocs_"));
    assert_eq!(key["read_only"], true);
    assert_eq!(key["name"], "ci");
    assert!(
        !run(&data, &["apikey", "revoke", s(&key["id"])]).0,
        "revoke from another org"
    );
    let revoked = ok(
        &data,
        &["apikey", "revoke", s(&key["prefix"]), "--org", "Acme"],
    );
    assert!(revoked["revoked_at"].is_i64());
    let keys = ok(&data, &["apikey", "list", "--org", "Acme"]);
    assert!(keys[0]["revoked_at"].is_i64() && keys[0].get("api_key").is_none());

    let copy = dir.path().join("backup.db");
    let b = ok(&data, &["backup", copy.to_str().unwrap()]);
    assert!(b["bytes"].as_u64().unwrap() > 0);
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join("botyard.db")).unwrap();
    std::fs::copy(data.join("secret.key"), restored.join("secret.key")).unwrap();
    assert_eq!(ok(&restored, &["org", "list"]).as_array().unwrap().len(), 2);
    assert!(
        !run(&data, &["backup", copy.to_str().unwrap()]).0,
        "backup over an existing file"
    );
}

#[test]
fn bot_export_import_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let setup = ok(&data, &["setup"]);
    let out = dir.path().join("export");
    let e = ok(
        &data,
        &[
            "bot",
            "export",
            s(&setup["bot"]["name"]),
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(e["flows"], 1);
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("bot.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], setup["bot"]["name"]);
    assert_eq!(manifest["default_flow"], "Default");
    let flow = std::fs::read_to_string(out.join("flows/Default.csml")).unwrap();
    assert!(flow.contains("hold"));
    let cmds = std::fs::read_to_string(out.join("flows/Default.cmds.csml")).unwrap();
    assert_eq!(cmds.lines().collect::<Vec<_>>(), ["hello", "hi"]);

    // Edit locally: add a flow, then import onto the same bot (matched by name).
    std::fs::write(
        out.join("flows/Faq.csml"),
        "start:\n  say \"FAQ\"\n  goto end\n",
    )
    .unwrap();
    std::fs::write(out.join("flows/Faq.cmds.csml"), "faq\n").unwrap();
    let i = ok(&data, &["bot", "import", out.to_str().unwrap()]);
    assert_eq!(
        (i["created"].clone(), i["flows"].clone()),
        (Json::Bool(false), Json::from(2))
    );
    assert_eq!(i["bot"]["id"], setup["bot"]["id"]);

    // Import into another organization creates the bot there.
    ok(&data, &["org", "create", "Other"]);
    let i2 = ok(
        &data,
        &["bot", "import", out.to_str().unwrap(), "--org", "Other"],
    );
    assert_eq!(i2["created"], true);
    assert_ne!(i2["bot"]["id"], setup["bot"]["id"]);
    let again = dir.path().join("again");
    ok(
        &data,
        &[
            "bot",
            "export",
            s(&i2["bot"]["id"]),
            again.to_str().unwrap(),
            "--org",
            "Other",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(again.join("flows/Faq.cmds.csml")).unwrap(),
        "faq\n"
    );
    assert_eq!(
        std::fs::read_to_string(again.join("flows/Default.csml")).unwrap(),
        flow
    );
}

/// `botyard bench` end to end on a tiny budget: it starts its own server on loopback, drives
/// real chat turns through its load generator, and reports the documented JSON shape with
/// every run (`--runs`) and no errors. (Figures are not checked: a test never times.)
#[test]
fn bench_reports_every_run_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bench");
    let r = ok(
        &data,
        &[
            "bench",
            "--duration",
            "300ms",
            "--runs",
            "3",
            "--loop-duration",
            "300ms",
            "--conversations",
            "0",
            "--connections",
            "4",
            "--ocs-sessions",
            "3",
            "--ocs-duration",
            "300ms",
        ],
    );
    let runs = r["hello_runs"].as_array().expect("hello_runs");
    assert_eq!(runs.len(), 3, "{r}");
    for m in [
        &r["hello"],
        &r["loop_bot"],
        &r["http_baseline_healthz"],
        &r["ocs_chat"],
        &r["ocs_incoming_message"],
    ] {
        assert_eq!(m["errors"], 0, "{r}");
        assert!(m["turns"].as_u64().unwrap() > 0, "{r}");
    }
    // Every completed OCS chat turn read its task at least once.
    assert!(
        r["ocs_chat"]["polls_per_turn"].as_f64().unwrap() >= 1.0,
        "{r}"
    );
    assert_eq!(r["ocs_chat"]["sessions"], 3, "{r}");
    let median = r["hello"]["turns_per_second"].as_f64().unwrap();
    assert!(
        runs.iter()
            .any(|x| x["turns_per_second"].as_f64() == Some(median)),
        "{r}"
    );
    assert!(
        r["cold_start"]["to_first_chat_ms"].as_f64().unwrap() > 0.0,
        "{r}"
    );
}
