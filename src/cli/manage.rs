//! `botyard setup|org|bot|channel|apikey|backup`: management commands over the store. They
//! open the same database file as a running server (WAL lets both work at once) and print
//! JSON with `--json`, text otherwise. Secrets (channel secrets, API keys) are printed once,
//! when created or rotated. Commands that act inside an organization take `--org ID_OR_NAME`,
//! defaulting to the default organization made by `setup`.
//!
//! Bot export/import layout (the Studio CLI's local layout, studio-api §5.8):
//! ```text
//! DIR/bot.json              {"name", "description", "default_flow": <flow name>, "env": {...}}
//! DIR/flows/<Flow>.csml     the flow's source
//! DIR/flows/<Flow>.cmds.csml  the flow's commands, one per line (automatic `/<flow>` omitted)
//! ```

use super::Cli;
use crate::store::setup::{self, SetupOutcome};
use crate::store::{self, Durability, KIND_API, NewBot, NewChannel, NewFlow, Organization, Store};
use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct OrgArg {
    /// Organization id or name (default: the default organization).
    #[arg(long)]
    pub org: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create { name: String },
    /// List organizations.
    List,
}

#[derive(Debug, Subcommand)]
pub enum BotCommand {
    /// Create a bot with a one-step `Default` flow (or the flows of `--from DIR`).
    Create {
        name: String,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List the organization's bots.
    List {
        #[command(flatten)]
        org: OrgArg,
    },
    /// Write a bot's working copy to DIR (bot.json + flows/*.csml).
    Export {
        /// Bot id or name.
        bot: String,
        dir: PathBuf,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Read DIR (bot.json + flows/*.csml): update the bot of the same name (or `--bot`),
    /// or create it.
    Import {
        dir: PathBuf,
        /// Update this bot (id or name) instead of matching by the manifest's name.
        #[arg(long)]
        bot: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel (a Studio API channel by default); prints its key and secret once.
    Create {
        /// Bot id or name.
        #[arg(long)]
        bot: String,
        /// Channel name.
        #[arg(long, default_value = "Studio API")]
        name: String,
        /// Channel kind (`api`; connector kinds come with plugins).
        #[arg(long, default_value = KIND_API)]
        kind: String,
        /// Webhook URL receiving every bot message (API channels).
        #[arg(long)]
        webhook: Option<String>,
        /// Connector configuration, as a JSON object.
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List channels (of one bot with `--bot`).
    List {
        #[arg(long)]
        bot: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// New key and secret for a channel (printed once); the old pair stops working.
    Rotate {
        channel: String,
        #[command(flatten)]
        org: OrgArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an Open Chat Studio API key (printed once).
    Create {
        /// A label for the key.
        #[arg(long, default_value = "API key")]
        name: String,
        /// The key may only read.
        #[arg(long)]
        read_only: bool,
        /// Open Chat Studio role of the key: admin, chatbot_admin, chat_viewer, event_admin,
        /// assistant_admin, annotation_reviewer or member.
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List keys (prefixes only).
    List {
        #[command(flatten)]
        org: OrgArg,
    },
    /// Revoke a key by id, prefix or the key itself.
    Revoke {
        key: String,
        #[command(flatten)]
        org: OrgArg,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Destination file (must not exist).
    pub file: PathBuf,
}

/// A command's result: (JSON for `--json`, text otherwise) or an error message.
pub(super) type Out = Result<(Json, String), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub(super) fn open(cli: &Cli) -> Result<Store, String> {
    Store::open_at(&cli.location(), Durability::Normal)
        .map_err(|e| format!("cannot open {}: {e}", cli.store_name()))
}

/// Print the result: JSON on stdout with `--json`, else the text; errors on stderr, exit 1.
pub(super) fn finish(cli: &Cli, out: Out) -> ExitCode {
    match out {
        Ok((j, text)) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if cli.json {
                println!("{}", json!({"error": e}));
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn resolve_org(store: &Store, org: &OrgArg) -> Result<Organization, String> {
    match &org.org {
        Some(o) => store.find_org(o).map_err(err),
        None => store.default_org().map_err(err)?.ok_or_else(|| {
            "no default organization: run `botyard setup` or pass --org".to_string()
        }),
    }
}

pub fn setup(cli: &Cli) -> ExitCode {
    let out = (|| -> Out {
        let (_store, outcome) = setup::ensure(&cli.location(), Durability::Normal).map_err(err)?;
        Ok((
            serde_json::to_value(&outcome).map_err(err)?,
            setup_text(&outcome),
        ))
    })();
    finish(cli, out)
}

/// Readable form of a setup outcome (also used by `serve` on first run).
pub fn setup_text(o: &SetupOutcome) -> String {
    let mut s = String::new();
    if !o.created {
        s.push_str(&format!(
            "{} is already set up; nothing changed.\norganization: {} ({})\n",
            o.data_dir, o.organization.name, o.organization.id
        ));
        if let Some(b) = &o.bot {
            s.push_str(&format!("bot: {} ({})\n", b.name, b.id));
        }
        if let Some(st) = &o.studio {
            s.push_str(&format!("studio channel: {}\n", st.channel_id));
        }
        return s.trim_end().to_string();
    }
    s.push_str(&format!("Set up {}:\n", o.data_dir));
    s.push_str(&format!(
        "  organization  {} ({})\n",
        o.organization.name, o.organization.id
    ));
    if let Some(b) = &o.bot {
        s.push_str(&format!("  bot           {} ({})\n", b.name, b.id));
    }
    if let Some(st) = &o.studio {
        s.push_str(&format!("  studio channel {}\n", st.channel_id));
        if let (Some(k), Some(sec)) = (&st.api_key, &st.api_secret) {
            s.push_str(&format!(
                "    api_key     {k}\n    api_secret  {sec}   (shown once)\n"
            ));
        }
    }
    if let Some(ocs) = &o.ocs
        && let Some(k) = &ocs.api_key
    {
        s.push_str(&format!("  OCS API key   {k}   (shown once)\n"));
    }
    s.trim_end().to_string()
}

pub fn org(cli: &Cli, cmd: &OrgCommand) -> ExitCode {
    let out = (|| -> Out {
        let store = open(cli)?;
        match cmd {
            OrgCommand::Create { name } => {
                let o = store.create_org(name, false).map_err(err)?;
                Ok((
                    json!(o),
                    format!("created organization {} ({})", o.name, o.id),
                ))
            }
            OrgCommand::List => {
                let orgs = store.list_orgs().map_err(err)?;
                let text = orgs
                    .iter()
                    .map(|o| {
                        format!(
                            "{}  {}{}",
                            o.id,
                            o.name,
                            if o.is_default { "  (default)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok((json!(orgs), text))
            }
        }
    })();
    finish(cli, out)
}

fn bot_json(b: &store::Bot) -> Json {
    json!({
        "id": b.id, "organization_id": b.organization_id, "name": b.name,
        "description": b.description, "default_flow_id": b.default_flow_id,
        "live_version_id": b.live_version_id, "settings": b.settings, "created_at": b.created_at,
    })
}

pub fn bot(cli: &Cli, cmd: &BotCommand) -> ExitCode {
    let out = (|| -> Out {
        let store = open(cli)?;
        match cmd {
            BotCommand::Create { name, org } => {
                let org = resolve_org(&store, org)?;
                let (b, _) = store
                    .create_bot(
                        &org.id,
                        NewBot {
                            name: name.clone(),
                            flows: vec![NewFlow {
                                name: "Default".into(),
                                content: "start:\n  say \"Hello!\"\n  goto end\n".into(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    )
                    .map_err(err)?;
                Ok((bot_json(&b), format!("created bot {} ({})", b.name, b.id)))
            }
            BotCommand::List { org } => {
                let org = resolve_org(&store, org)?;
                let bots = store.list_bots(&org.id).map_err(err)?;
                let text = bots
                    .iter()
                    .map(|b| format!("{}  {}", b.id, b.name))
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok((Json::Array(bots.iter().map(bot_json).collect()), text))
            }
            BotCommand::Export { bot, dir, org } => {
                let org = resolve_org(&store, org)?;
                let b = store.find_bot(&org.id, bot).map_err(err)?;
                let n = export(&store, &org.id, &b.id, dir)?;
                Ok((
                    json!({"bot": {"id": b.id, "name": b.name}, "dir": dir, "flows": n}),
                    format!("exported {} ({} flows) to {}", b.name, n, dir.display()),
                ))
            }
            BotCommand::Import { dir, bot, org } => {
                let org = resolve_org(&store, org)?;
                let (b, n, created) = import(&store, &org.id, bot.as_deref(), dir)?;
                Ok((
                    json!({"bot": {"id": b.id, "name": b.name}, "flows": n, "created": created}),
                    format!(
                        "{} {} ({} flows)",
                        if created { "created" } else { "updated" },
                        b.name,
                        n
                    ),
                ))
            }
        }
    })();
    finish(cli, out)
}

/// Write the export layout; returns the number of flows.
pub fn export(store: &Store, org: &str, bot: &str, dir: &Path) -> Result<usize, String> {
    let (b, flows) = store.bot_with_flows(org, bot).map_err(err)?;
    let fdir = dir.join("flows");
    std::fs::create_dir_all(&fdir).map_err(|e| format!("{}: {e}", fdir.display()))?;
    let default = flows
        .iter()
        .find(|f| Some(&f.id) == b.default_flow_id.as_ref())
        .map(|f| f.name.clone());
    let mut manifest =
        json!({"name": b.name, "description": b.description, "default_flow": default});
    if !b.env.is_empty() {
        manifest["env"] = Json::Object(b.env.clone());
    }
    let write =
        |p: PathBuf, s: &str| std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()));
    write(
        dir.join("bot.json"),
        &(serde_json::to_string_pretty(&manifest).map_err(err)? + "\n"),
    )?;
    for f in &flows {
        write(fdir.join(format!("{}.csml", f.name)), &f.content)?;
        let auto = store::bots::auto_command(&f.name);
        let cmds: Vec<&str> = f
            .commands
            .iter()
            .filter(|c| **c != auto)
            .map(String::as_str)
            .collect();
        let cmd_file = fdir.join(format!("{}.cmds.csml", f.name));
        if cmds.is_empty() {
            let _ = std::fs::remove_file(&cmd_file);
        } else {
            write(cmd_file, &(cmds.join("\n") + "\n"))?;
        }
    }
    Ok(flows.len())
}

/// Read the export layout into a bot; returns (bot, flow count, created?).
pub fn import(
    store: &Store,
    org: &str,
    bot: Option<&str>,
    dir: &Path,
) -> Result<(store::Bot, usize, bool), String> {
    let manifest_path = dir.join("bot.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest: Json =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let name = manifest["name"]
        .as_str()
        .ok_or_else(|| format!("{}: missing \"name\"", manifest_path.display()))?;
    let default_flow = manifest["default_flow"].as_str().map(str::to_string);
    let env = manifest["env"].as_object().cloned();
    let fdir = dir.join("flows");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&fdir)
        .map_err(|e| format!("{}: {e}", fdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".csml") && !n.ends_with(".cmds.csml")
        })
        .collect();
    entries.sort();
    let mut flows = Vec::with_capacity(entries.len());
    for p in entries {
        let fname = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let content = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let cmds_path = fdir.join(format!("{fname}.cmds.csml"));
        let commands = std::fs::read_to_string(&cmds_path)
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        flows.push(NewFlow {
            name: fname,
            content,
            description: None,
            commands,
        });
    }
    if flows.is_empty() {
        return Err(format!("{}: no .csml flow files", fdir.display()));
    }
    // Keep the default flow first so a new bot's first flow is the default when unnamed.
    let n = flows.len();
    let existing = match bot {
        Some(b) => Some(store.find_bot(org, b).map_err(err)?),
        None => match store.find_bot(org, name) {
            Ok(b) => Some(b),
            Err(store::Error::NotFound(_)) => None,
            Err(e) => return Err(err(e)),
        },
    };
    match existing {
        Some(b) => {
            store
                .replace_flows(org, &b.id, flows, default_flow, env)
                .map_err(err)?;
            let b = store
                .update_bot(
                    org,
                    &b.id,
                    store::BotPatch {
                        description: manifest
                            .get("description")
                            .map(|d| d.as_str().map(str::to_string)),
                        ..Default::default()
                    },
                )
                .map_err(err)?;
            Ok((b, n, false))
        }
        None => {
            let (b, _) = store
                .create_bot(
                    org,
                    NewBot {
                        name: name.to_string(),
                        description: manifest["description"].as_str().map(str::to_string),
                        flows,
                        default_flow,
                        env: env.unwrap_or_default(),
                        ..Default::default()
                    },
                )
                .map_err(err)?;
            Ok((b, n, true))
        }
    }
}

fn channel_json(c: &store::Channel) -> Json {
    json!({
        "id": c.id, "organization_id": c.organization_id, "bot_id": c.bot_id, "kind": c.kind,
        "name": c.name, "api_key": c.api_key, "webhook_url": c.webhook_url, "token": c.token,
        "status": c.status, "created_at": c.created_at,
    })
}

pub fn channel(cli: &Cli, cmd: &ChannelCommand) -> ExitCode {
    let out = (|| -> Out {
        let store = open(cli)?;
        match cmd {
            ChannelCommand::Create {
                bot,
                name,
                kind,
                webhook,
                config,
                org,
            } => {
                let org = resolve_org(&store, org)?;
                let b = store.find_bot(&org.id, bot).map_err(err)?;
                let config = match config {
                    Some(c) => serde_json::from_str(c).map_err(|e| format!("--config: {e}"))?,
                    None => json!({}),
                };
                if kind != KIND_API {
                    // A connector channel: the connector plugin must exist; its secrets are sealed.
                    let settings = config
                        .as_object()
                        .cloned()
                        .ok_or("--config: not an object")?;
                    let ch = crate::plugins::manage::create_connector_channel(
                        &store, &org.id, &b.id, kind, name, &settings,
                    )
                    .map_err(err)?;
                    let hook = format!("/hooks/{}", ch.token.clone().unwrap_or_default());
                    let text = format!(
                        "created {} channel {} ({}); webhook {hook}",
                        ch.kind, ch.name, ch.id
                    );
                    return Ok((channel_json(&ch), text));
                }
                let (ch, creds) = store
                    .create_channel(
                        &org.id,
                        &b.id,
                        NewChannel {
                            kind: kind.clone(),
                            name: name.clone(),
                            webhook_url: webhook.clone(),
                            config,
                        },
                    )
                    .map_err(err)?;
                let mut j = channel_json(&ch);
                j["api_secret"] = json!(creds.api_secret);
                j["channel_id"] = json!(creds.channel_id);
                Ok((
                    j,
                    format!(
                        "created channel {} ({}) for {}\n  api_key     {}\n  api_secret  {}   (shown once)",
                        ch.name, ch.id, b.name, creds.api_key, creds.api_secret
                    ),
                ))
            }
            ChannelCommand::List { bot, org } => {
                let org = resolve_org(&store, org)?;
                let bot_id = match bot {
                    Some(b) => Some(store.find_bot(&org.id, b).map_err(err)?.id),
                    None => None,
                };
                let chans = store
                    .list_channels(&org.id, bot_id.as_deref())
                    .map_err(err)?;
                let text = chans
                    .iter()
                    .map(|c| {
                        format!(
                            "{}  {}  {}  bot {}  key {}",
                            c.id, c.kind, c.name, c.bot_id, c.api_key
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok((Json::Array(chans.iter().map(channel_json).collect()), text))
            }
            ChannelCommand::Rotate { channel, org } => {
                let org = resolve_org(&store, org)?;
                let creds = store.rotate_channel(&org.id, channel).map_err(err)?;
                Ok((
                    json!(creds),
                    format!(
                        "rotated channel {}\n  api_key     {}\n  api_secret  {}   (shown once)",
                        creds.channel_id, creds.api_key, creds.api_secret
                    ),
                ))
            }
        }
    })();
    finish(cli, out)
}

pub fn apikey(cli: &Cli, cmd: &ApikeyCommand) -> ExitCode {
    let out = (|| -> Out {
        let store = open(cli)?;
        match cmd {
            ApikeyCommand::Create {
                name,
                read_only,
                role,
                org,
            } => {
                if !crate::ocs::KEY_ROLES.contains(&role.as_str()) {
                    return Err(format!(
                        "unknown role `{role}` (one of: {})",
                        crate::ocs::KEY_ROLES.join(", ")
                    ));
                }
                let org = resolve_org(&store, org)?;
                let (k, key) = store
                    .create_api_key(&org.id, name, *read_only)
                    .map_err(err)?;
                store
                    .ocs_set_key_role(&org.id, &k.id, role, None)
                    .map_err(err)?;
                let mut j = json!(k);
                j["api_key"] = json!(key);
                j["role"] = json!(role);
                Ok((
                    j,
                    format!(
                        "created {}API key {} ({role}) for {}\n  {}   (shown once)",
                        if *read_only { "read-only " } else { "" },
                        k.id,
                        org.name,
                        key
                    ),
                ))
            }
            ApikeyCommand::List { org } => {
                let org = resolve_org(&store, org)?;
                let keys = store.list_api_keys(&org.id).map_err(err)?;
                let roles = store.ocs_key_roles(&org.id).map_err(err)?;
                let role = |id: &str| roles.get(id).map(String::as_str).unwrap_or("admin");
                let text = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}  {}…  {}  {}{}{}",
                            k.id,
                            k.prefix,
                            k.name,
                            role(&k.id),
                            if k.read_only { "  read-only" } else { "" },
                            if k.revoked_at.is_some() {
                                "  REVOKED"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                // The stored key fields unchanged, plus the key's OCS `role`.
                let list: Vec<Json> = keys
                    .iter()
                    .map(|k| {
                        let mut j = json!(k);
                        j["role"] = json!(role(&k.id));
                        j
                    })
                    .collect();
                Ok((json!(list), text))
            }
            ApikeyCommand::Revoke { key, org } => {
                let org = resolve_org(&store, org)?;
                let k = store.revoke_api_key(&org.id, key).map_err(err)?;
                Ok((
                    json!(k),
                    format!("revoked API key {} ({}…)", k.id, k.prefix),
                ))
            }
        }
    })();
    finish(cli, out)
}

pub fn backup(cli: &Cli, args: &BackupArgs) -> ExitCode {
    let out = (|| -> Out {
        let store = open(cli)?;
        store.backup(&args.file).map_err(err)?;
        let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
        Ok((
            json!({"file": args.file, "bytes": size}),
            format!(
                "backed up {} to {} ({size} bytes)",
                store.path().display(),
                args.file.display()
            ),
        ))
    })();
    finish(cli, out)
}
