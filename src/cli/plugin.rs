//! `botyard plugin install|list|inspect|remove|test`: WASM plugins from the command line.
//!
//! `install` takes a `.wasm` component (manifest embedded, or `--manifest FILE`) or the name of
//! a first-party plugin (to give an organization its settings, e.g. the `llm` app's base URL
//! and key). `test` runs a plugin locally on a sample webhook with a throw-away key-value
//! store and prints the normalized events; nothing is stored.

use super::Cli;
use crate::plugins::manage;
use crate::store::{Organization, Store};
use botyard_plugins::builtin;
use botyard_plugins::{
    ChannelContext, InMemoryKvStore, Manifest, PluginHost, PluginHostConfig, Webhook,
};
use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a plugin for an organization (replaces an installed plugin of the same name).
    Install(InstallArgs),
    /// List first-party and installed plugins.
    List {
        /// Only this organization's installations (id or name).
        #[arg(long)]
        org: Option<String>,
    },
    /// Show a plugin's manifest: a `.wasm` file, an installed or a first-party plugin.
    Inspect {
        /// File, or plugin name.
        plugin: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Remove an organization's installation.
    Remove {
        name: String,
        #[arg(long)]
        org: String,
    },
    /// Run a connector on a sample webhook (JSON: method, path, query, headers, body) and print
    /// the normalized events; nothing is stored.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A `.wasm` component, or the name of a first-party plugin.
    pub file: String,
    /// Organization id or name.
    #[arg(long)]
    pub org: String,
    /// Extra host the plugin may call (`[scheme://]host[:port]`, `*.domain`); repeatable.
    #[arg(long = "allow-host")]
    pub allow_host: Vec<String>,
    /// Configuration value `NAME=VALUE` (app plugins); repeatable.
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// Secret `NAME=VALUE` (app plugins); repeatable.
    #[arg(long = "secret")]
    pub secret: Vec<String>,
    /// The manifest as a separate JSON file (else the one embedded in the component).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A `.wasm` component, or the name of a first-party plugin.
    pub file: String,
    /// The sample webhook request, a JSON file.
    #[arg(long)]
    pub webhook: PathBuf,
    #[arg(long = "config")]
    pub config: Vec<String>,
    #[arg(long = "secret")]
    pub secret: Vec<String>,
    #[arg(long = "allow-host")]
    pub allow_host: Vec<String>,
    /// Addresses the plugin may reach although private (e.g. `127.0.0.1` for a local fake).
    #[arg(long = "allow-private")]
    pub allow_private: Vec<String>,
    /// The manifest as a separate JSON file.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

use super::manage::{Out, finish, open};

fn org(store: &Store, id_or_name: &str) -> Result<Organization, String> {
    store.find_org(id_or_name).map_err(|e| e.to_string())
}

fn pairs(list: &[String], what: &str) -> Result<serde_json::Map<String, Json>, String> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
                .ok_or_else(|| format!("--{what} {p:?}: expected NAME=VALUE"))
        })
        .collect()
}

/// `(manifest, wasm, first_party)` of a file or a first-party name.
fn read_plugin(spec: &str, manifest: Option<&Path>) -> Result<(Manifest, Vec<u8>, bool), String> {
    let (wasm, first_party) = match builtin::wasm(spec) {
        Some(w) if !Path::new(spec).exists() => (w.to_vec(), true),
        _ => (
            std::fs::read(spec).map_err(|e| format!("{spec}: {e}"))?,
            false,
        ),
    };
    let manifest = match manifest {
        Some(p) => {
            Manifest::from_json(&std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?)?
        }
        None => Manifest::from_wasm(&wasm)?,
    };
    Ok((manifest, wasm, first_party))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Compile and link without running: the same checks as the server's (API version, world,
/// imports), so a bad plugin is refused at install.
fn check(manifest: &Manifest, wasm: &[u8]) -> Result<(), String> {
    let rt = runtime()?;
    rt.block_on(async {
        let host = PluginHost::new(PluginHostConfig::new(Arc::new(InMemoryKvStore::default())));
        host.load(manifest.clone(), wasm)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn manifest_json(m: &Manifest, first_party: bool) -> Json {
    let mut j = serde_json::to_value(m).unwrap_or(Json::Null);
    j["first_party"] = json!(first_party);
    j
}

pub fn run(cli: &Cli, cmd: &PluginCommand) -> ExitCode {
    let out = match cmd {
        PluginCommand::Install(a) => install(cli, a),
        PluginCommand::List { org } => list(cli, org.as_deref()),
        PluginCommand::Inspect { plugin, org } => inspect(cli, plugin, org.as_deref()),
        PluginCommand::Remove { name, org: o } => (|| {
            let store = open(cli)?;
            let o = org(&store, o)?;
            store
                .remove_plugin(&o.id, name)
                .map_err(|e| e.to_string())?;
            Ok((
                json!({"removed": name, "org": o.id}),
                format!("removed {name} from {}", o.name),
            ))
        })(),
        PluginCommand::Test(a) => test(a),
    };
    finish(cli, out)
}

fn install(cli: &Cli, a: &InstallArgs) -> Out {
    let (manifest, wasm, first_party) = read_plugin(&a.file, a.manifest.as_deref())?;
    manage::check_hosts(&a.allow_host).map_err(|e| e.to_string())?;
    let config = pairs(&a.config, "config")?;
    let secrets = pairs(&a.secret, "secret")?;
    // `--config` and `--secret` must name what the manifest declares as such.
    for k in config.keys() {
        if manifest.config_setting(k).is_none() {
            return Err(format!("plugin {} declares no config `{k}`", manifest.name));
        }
    }
    for k in secrets.keys() {
        if manifest.secret_setting(k).is_none() {
            return Err(format!("plugin {} declares no secret `{k}`", manifest.name));
        }
    }
    let mut settings = config;
    settings.extend(secrets);
    let settings =
        manage::split_settings(&manifest, &settings, false).map_err(|e| e.to_string())?;
    check(&manifest, &wasm)?;
    let store = open(cli)?;
    let o = org(&store, &a.org)?;
    let row = manage::install(
        &store,
        &o.id,
        &manifest,
        wasm,
        a.allow_host.clone(),
        &settings,
    )
    .map_err(|e| e.to_string())?;
    let j = json!({
        "id": row.id, "org": o.id, "name": row.name, "version": row.version, "kind": row.kind,
        "api": row.api, "sha256": row.sha256, "allowed_hosts": row.allowed_hosts,
        "first_party": first_party,
    });
    Ok((
        j,
        format!(
            "installed {} {} ({}) for {}",
            row.name, row.version, row.kind, o.name
        ),
    ))
}

fn list(cli: &Cli, org_filter: Option<&str>) -> Out {
    // Installed plugins need a data directory; a fresh one simply has none.
    let store = if cli.database.is_some() || cli.data.join(crate::store::DB_FILE).exists() {
        Some(open(cli)?)
    } else {
        None
    };
    let org_id = match (org_filter, &store) {
        (Some(o), Some(s)) => Some(org(s, o)?.id),
        (Some(o), None) => return Err(format!("organization `{o}` not found")),
        (None, _) => None,
    };
    let out = manage::list(store.as_ref(), org_id.as_deref(), org_filter.is_none())
        .map_err(|e| e.to_string())?;
    let text = out
        .iter()
        .map(|p| {
            format!(
                "{:<12} {:<8} {:<8} {}",
                p["name"].as_str().unwrap_or(""),
                p["kind"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or(""),
                if p["first_party"] == json!(true) {
                    "first-party".to_string()
                } else {
                    format!("org {}", p["org"].as_str().unwrap_or(""))
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok((Json::Array(out), text))
}

fn inspect(cli: &Cli, spec: &str, org_name: Option<&str>) -> Out {
    if let Some(o) = org_name {
        let store = open(cli)?;
        let o = org(&store, o)?;
        if let Some((row, _)) = store.get_plugin(&o.id, spec).map_err(|e| e.to_string())? {
            let mut j = row.manifest.clone();
            j["first_party"] = json!(false);
            j["sha256"] = json!(row.sha256);
            j["installation_allowed_hosts"] = json!(row.allowed_hosts);
            let text = serde_json::to_string_pretty(&j).unwrap_or_default();
            return Ok((j, text));
        }
    }
    let (m, wasm, first_party) = read_plugin(spec, None)?;
    let mut j = manifest_json(&m, first_party);
    j["sha256"] = json!(botyard_plugins::sha256_hex(&wasm));
    j["size"] = json!(wasm.len());
    let text = serde_json::to_string_pretty(&j).unwrap_or_default();
    Ok((j, text))
}

fn test(a: &TestArgs) -> Out {
    let (manifest, wasm, _) = read_plugin(&a.file, a.manifest.as_deref())?;
    let text = std::fs::read(&a.webhook).map_err(|e| format!("{}: {e}", a.webhook.display()))?;
    let webhook: Webhook = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a webhook sample ({e}); expected {{method, path, query, headers: [[name, value]...], body}}", a.webhook.display()))?;
    let mut settings = pairs(&a.config, "config")?;
    settings.extend(pairs(&a.secret, "secret")?);
    let install = crate::plugins::installation(
        "plugin-test",
        &manifest,
        &Json::Object(settings),
        &a.allow_host,
        &crate::plugins::plain_secret,
    )?;
    let mut config = PluginHostConfig::new(Arc::new(InMemoryKvStore::default()));
    for p in &a.allow_private {
        config
            .allow_private
            .push(botyard_plugins::outbound::IpNet::parse(p)?);
    }
    let rt = runtime()?;
    let outcome = rt.block_on(async {
        let host = PluginHost::new(config);
        let plugin = host
            .load(manifest, &wasm)
            .await
            .map_err(|e| e.to_string())?;
        let ctx = ChannelContext {
            bot: "test-bot".into(),
            channel: "test-channel".into(),
            webhook_url: format!("http://localhost{}", webhook.path),
        };
        host.connector_ingest(&plugin, &install, &ctx, &webhook)
            .await
            .map_err(|e| e.to_string())
    })?;
    let j = serde_json::to_value(&outcome).map_err(|e| e.to_string())?;
    let mut lines: Vec<String> = outcome
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    if let Some(r) = &outcome.response {
        lines.push(format!(
            "response: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    if lines.is_empty() {
        lines.push("no events".into());
    }
    Ok((j, lines.join("\n")))
}
