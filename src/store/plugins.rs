//! Plugin rows (installed `.wasm` and their installation settings), the plugins' key-value
//! store, the inbound event queue of connector webhooks and the outbox of connector replies,
//! the recent failed calls per plugin, and the sealing of plugin secrets at rest.
//!
//! Work queues, as use-case operations on plain data (a second backend implements the same):
//! - inbound events: [`Store::enqueue_inbound`], [`Store::pending_inbound`] (the oldest
//!   pending events of each organization, so one organization's backlog never hides
//!   another's), [`Store::finish_inbound`]; a turn marks its event done in its own commit
//!   ([`inbound_turn_done`]).
//! - outbox: [`Store::enqueue_outbox`] (and [`inbound_turn_done`]), [`Store::claim_outbox`],
//!   [`Store::finish_outbox`]. Only a conversation's oldest undelivered row (its head) is
//!   `pending`/`sending`; its later rows are `queued` and the head's end promotes the next
//!   one, so replies go out in order and a claim reads heads only. A claim takes due heads
//!   per organization up to a cap of rows in flight (`sending` with a live lease, whichever
//!   sender holds them), oldest first, and leases them; [`Store::renew_outbox`] extends the
//!   leases of deliveries still running. A sender that dies mid-delivery leaves rows that
//!   another sender takes again when the lease ends (at-least-once).
//!
//! Several processes (the nodes of a PostgreSQL cluster) work the same queues, so every claim
//! is made so that two of them never take one row (see each function's "Guard"): an inbound
//! event is claimed under a lease ([`Store::claim_inbound`]) before its turn runs, an outbox
//! row only while it is still as the claimer read it (a conditional update, row count
//! checked), and claims are taken one at a time across nodes so that the per-organization cap
//! counts every node's deliveries. On SQLite the single writer already runs every job alone;
//! the same statements run there.
//!
//! Secrets at rest: the values of the secrets a plugin's manifest declares (in `plugins.config`
//! and in a connector channel's `channels.config`) are stored as `{"sealed": "<hex>"}`, the
//! data-dir key's ChaCha20-Poly1305 ([`crate::secrets::Secrets`]) bound to the owning row and
//! the secret's name, so a sealed value cannot be moved to another row or name. They are
//! opened only to build the installation of a plugin call ([`Store::open_secret`]). A plain
//! string is still read (rows written before sealing, or by an older binary) and sealed by
//! [`Store::seal_plain_secrets`] at the next server start.

use super::conversations::TurnWrite;
use super::db::{Db, OptionalExtension, Row, params};
use super::ids::{hex, new_id, now_millis, unhex};
use super::{Channel, Direction, Error, Result, Store};
use crate::secrets::Secrets;
use serde_json::{Map, Value as Json, json};

/// How many failed calls are kept per (organization, plugin).
pub const PLUGIN_ERRORS_KEPT: i64 = 20;

/// The key of a sealed secret value: `{"sealed": "<hex of nonce || ciphertext>"}`.
const SEALED: &str = "sealed";

/// The row a secret belongs to: part of the associated data of its encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner<'a> {
    /// A `plugins` row (its id).
    Plugin(&'a str),
    /// A connector channel (its id).
    Channel(&'a str),
}

impl SecretOwner<'_> {
    fn aad(self, name: &str) -> String {
        match self {
            SecretOwner::Plugin(id) => format!("plugin-secret:{id}:{name}"),
            SecretOwner::Channel(id) => format!("channel-secret:{id}:{name}"),
        }
    }
}

/// Whether a settings value is a sealed secret.
pub fn is_sealed(v: &Json) -> bool {
    v.get(SEALED).is_some_and(Json::is_string)
}

fn seal_value(secrets: &Secrets, owner: SecretOwner<'_>, name: &str, plain: &str) -> Json {
    json!({ SEALED: hex(&secrets.encrypt(plain.as_bytes(), &owner.aad(name))) })
}

/// Seal every plain value of `settings` named in `names` (sealed values stay as they are).
/// `true` when something changed.
fn seal_names(
    secrets: &Secrets,
    owner: SecretOwner<'_>,
    names: &[String],
    settings: &mut Json,
) -> bool {
    let Some(obj) = settings.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for name in names {
        let plain = match obj.get(name) {
            None | Some(Json::Null) => continue,
            Some(v) if is_sealed(v) => continue,
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        obj.insert(name.clone(), seal_value(secrets, owner, name, &plain));
        changed = true;
    }
    changed
}

/// Secret names declared by a stored manifest (`secrets: [{name, ...}]`).
fn manifest_secret_names(manifest: &Json) -> Vec<String> {
    manifest
        .get("secrets")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("name").and_then(Json::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A change of settings: config values to set (`null` removes one), secrets to set
/// (`Some`) or remove (`None`); names not mentioned keep their value.
#[derive(Debug, Clone, Default)]
pub struct SettingsUpdate {
    pub config: Map<String, Json>,
    pub secrets: Vec<(String, Option<String>)>,
}

fn apply_update(
    secrets: &Secrets,
    owner: SecretOwner<'_>,
    settings: &mut Json,
    update: &SettingsUpdate,
) {
    if !settings.is_object() {
        *settings = json!({});
    }
    let obj = settings.as_object_mut().expect("settings object");
    for (k, v) in &update.config {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &update.secrets {
        match v {
            Some(plain) => {
                obj.insert(k.clone(), seal_value(secrets, owner, k, plain));
            }
            None => {
                obj.remove(k);
            }
        }
    }
}

/// Seal `(name, plain)` secrets into a channel's config, bound to the channel `id`.
pub(super) fn seal_channel_secrets(
    secrets: &Secrets,
    id: &str,
    config: &mut Json,
    sealed: Vec<(String, String)>,
) {
    if sealed.is_empty() {
        return;
    }
    let update = SettingsUpdate {
        config: Map::new(),
        secrets: sealed.into_iter().map(|(k, v)| (k, Some(v))).collect(),
    };
    apply_update(secrets, SecretOwner::Channel(id), config, &update);
}

/// One failed plugin call, as the admin UI lists them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginErrorRow {
    pub plugin: String,
    /// `app` (an `App()` call), `webhook` (a connector's ingest) or `deliver`.
    pub operation: String,
    pub channel_id: Option<String>,
    pub message: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// An installed plugin (without its `.wasm` unless asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub api: String,
    pub sha256: String,
    pub manifest: Json,
    pub allowed_hosts: Vec<String>,
    pub config: Json,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewPlugin {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub api: String,
    pub sha256: String,
    pub manifest: Json,
    pub wasm: Vec<u8>,
    pub allowed_hosts: Vec<String>,
    pub config: Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboundRow {
    pub id: String,
    pub organization_id: String,
    pub channel_id: String,
    pub external_id: String,
    pub event: Json,
    pub attempts: i64,
    /// Unix milliseconds: when it was stored.
    pub created_at: i64,
    /// Unix milliseconds: while later than now, a worker (of this or another process) has
    /// claimed the event ([`Store::claim_inbound`]) and runs it; others leave it, and the
    /// events of its conversation behind it, alone. (The column is `processed_at`: for a
    /// pending event, when its last attempt started or failed, or its claim's end.)
    pub claimed_until: Option<i64>,
}

/// A claimed outbox row: one turn's replies to one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub organization_id: String,
    pub channel_id: String,
    pub conversation: String,
    pub messages: Json,
    pub attempts: i64,
}

/// What a sender asks [`Store::claim_outbox`] for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxClaim {
    /// Unix milliseconds: rows due at or before it are due.
    pub now: i64,
    /// How long the claimed rows stay the caller's (ms) unless renewed
    /// ([`Store::renew_outbox`]).
    pub lease_ms: i64,
    /// Rows in flight per organization, counting every sender's live claims.
    pub per_org: usize,
    /// At most this many rows (the caller's free delivery slots).
    pub limit: usize,
}

/// How one delivery of a claimed outbox row ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxOutcome {
    /// Delivered; the platform's message ids.
    Sent(Vec<String>),
    /// Failed, to be tried again at `at` (Unix ms); the conversation's later rows wait.
    Retry { error: String, at: i64 },
    /// Failed for good; the conversation's next row goes on.
    Failed(String),
}

/// Statuses of an outbox row that is not delivered yet (see the module doc).
const OUTBOX_OPEN: &str = "status IN ('queued', 'pending', 'sending')";

/// On PostgreSQL, waits for and takes a lock named by `key` until the end of the job's
/// transaction (`pg_advisory_xact_lock` on a 64-bit hash of the parts): jobs that take the
/// same lock, on any node, run their "read, then write" one after the other, as SQLite's
/// single writer runs every job. A no-op on SQLite. Transaction-scoped, so it also holds
/// under a pooler in transaction mode, and is released by the commit or rollback, whatever
/// happens. Two keys whose hashes collide only wait for each other.
pub(super) fn pg_xact_lock(c: &Db, key: &[&str]) -> Result<()> {
    if c.is_pg() {
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(CAST(?1 AS TEXT), 0))",
            [key.join("\u{1f}")],
        )?;
    }
    Ok(())
}

/// Insert an outbox row (`?1` id, `?2` org, `?3` channel, `?4` conversation, `?5` messages,
/// `?6` now): `queued` behind the conversation's open rows, else `pending`. An id queued
/// before is left as it is.
///
/// Guard (PostgreSQL): whether the conversation has open rows is read, then the row is
/// written accordingly, while [`Store::finish_outbox`] may be closing the head and promoting
/// the next queued row. Both take the conversation's lock ([`conversation_lock`]) first, so
/// a row is never queued behind a head that is done (it would wait forever) and a
/// conversation never has two heads.
fn insert_outbox(
    c: &Db,
    id: &str,
    org: &str,
    channel: &str,
    conversation: &str,
    messages: &str,
    now: i64,
) -> Result<bool> {
    conversation_lock(c, channel, conversation)?;
    let n = c
        .prepare_cached(&format!(
            "INSERT INTO outbox(id, organization_id, channel_id, conversation, messages,
                                status, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5,
                     CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE channel_id = ?3
                                       AND conversation = ?4 AND {OUTBOX_OPEN})
                          THEN 'queued' ELSE 'pending' END,
                     ?6, ?6)
             ON CONFLICT DO NOTHING"
        ))?
        .execute(params![id, org, channel, conversation, messages, now])?;
    Ok(n == 1)
}

/// The lock of one conversation's outbox rows (see [`insert_outbox`]).
fn conversation_lock(c: &Db, channel: &str, conversation: &str) -> Result<()> {
    pg_xact_lock(c, &["outbox", channel, conversation])
}

/// Why a key-value write was refused.
#[derive(Debug)]
pub enum KvWriteError {
    QuotaExceeded,
    Store(Error),
}

const PLUGIN_COLS: &str = "id, organization_id, name, version, kind, api, sha256, manifest, \
                           allowed_hosts, config, created_at, updated_at";

fn plugin_from_row(r: &Row) -> Result<PluginRow> {
    let json = |i: usize| -> Result<Json> {
        let s: String = r.get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(Json::Null))
    };
    Ok(PluginRow {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        version: r.get(3)?,
        kind: r.get(4)?,
        api: r.get(5)?,
        sha256: r.get(6)?,
        manifest: json(7)?,
        allowed_hosts: serde_json::from_value(json(8)?).unwrap_or_default(),
        config: json(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl Store {
    /// Install `new` for `org`, replacing an installed plugin of the same name. The secrets
    /// its manifest declares are sealed.
    ///
    /// Guard (PostgreSQL): the id of an installed plugin of the name is read (a reinstall
    /// keeps it), the secrets are sealed to it, then the row is upserted. Two installs of one
    /// name at once would each pick a new id and the second would keep the first's id with
    /// secrets sealed to its own; so the job first takes the lock of the (organization, name)
    /// ([`pg_xact_lock`]).
    pub fn install_plugin(&self, org: &str, mut new: NewPlugin) -> Result<PluginRow> {
        let org = org.to_string();
        let secrets = self.secrets().clone();
        self.write(move |c| {
            pg_xact_lock(c, &["plugin-install", &org, &new.name])?;
            let now = now_millis();
            // A reinstall keeps the row id, which the sealed secrets are bound to.
            let id: String = c
                .query_row(
                    "SELECT id FROM plugins WHERE organization_id = ?1 AND name = ?2",
                    [&org, &new.name],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_else(new_id);
            let names = manifest_secret_names(&new.manifest);
            seal_names(&secrets, SecretOwner::Plugin(&id), &names, &mut new.config);
            c.execute(
                "INSERT INTO plugins(id, organization_id, name, version, kind, api, sha256, manifest,
                                     wasm, allowed_hosts, config, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
                 ON CONFLICT(organization_id, name) DO UPDATE SET
                   version = excluded.version, kind = excluded.kind, api = excluded.api,
                   sha256 = excluded.sha256, manifest = excluded.manifest, wasm = excluded.wasm,
                   allowed_hosts = excluded.allowed_hosts, config = excluded.config,
                   updated_at = excluded.updated_at",
                params![
                    id,
                    org,
                    new.name,
                    new.version,
                    new.kind,
                    new.api,
                    new.sha256,
                    new.manifest.to_string(),
                    new.wasm,
                    serde_json::to_string(&new.allowed_hosts)?,
                    new.config.to_string(),
                    now
                ],
            )?;
            c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS} FROM plugins WHERE organization_id = ?1 AND name = ?2"
            ))?
            .query_row([&org, &new.name], plugin_from_row)
        })
    }

    /// Installed plugins of `org` (every organization's when `None`), by name.
    pub fn list_plugins(&self, org: Option<&str>) -> Result<Vec<PluginRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS} FROM plugins
                 WHERE CAST(?1 AS TEXT) IS NULL OR organization_id = ?1 ORDER BY name, organization_id"
            ))?
            .query_map([org], plugin_from_row)
        })
    }

    /// One installed plugin and its `.wasm`.
    pub fn get_plugin(&self, org: &str, name: &str) -> Result<Option<(PluginRow, Vec<u8>)>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS}, wasm FROM plugins WHERE organization_id = ?1 AND name = ?2"
            ))?
            .query_row([org, name], |r| {
                Ok((plugin_from_row(r)?, r.get::<Vec<u8>>(12)?))
            })
            .optional()
        })
    }

    /// Change an installation's allowed hosts (when given) and settings; secrets are sealed.
    ///
    /// Guard (PostgreSQL): the settings are read, changed, and written back; the row is read
    /// `FOR NO KEY UPDATE`, so a concurrent change of the same installation waits and then
    /// starts from this one's result instead of overwriting it.
    pub fn update_plugin_settings(
        &self,
        org: &str,
        name: &str,
        allowed_hosts: Option<Vec<String>>,
        update: SettingsUpdate,
    ) -> Result<PluginRow> {
        let (org, name) = (org.to_string(), name.to_string());
        let secrets = self.secrets().clone();
        self.write(move |c| {
            let mut row = c
                .prepare_cached(&format!(
                    "SELECT {PLUGIN_COLS} FROM plugins WHERE organization_id = ?1 AND name = ?2{}",
                    c.pick("", " FOR NO KEY UPDATE")
                ))?
                .query_row([&org, &name], plugin_from_row)
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("plugin `{name}` is not installed")))?;
            apply_update(
                &secrets,
                SecretOwner::Plugin(&row.id),
                &mut row.config,
                &update,
            );
            if let Some(h) = allowed_hosts {
                row.allowed_hosts = h;
            }
            row.updated_at = now_millis();
            c.execute(
                "UPDATE plugins SET allowed_hosts = ?2, config = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    row.id,
                    serde_json::to_string(&row.allowed_hosts)?,
                    row.config.to_string(),
                    row.updated_at
                ],
            )?;
            Ok(row)
        })
    }

    /// Change the settings of a connector channel; secrets are sealed to the channel.
    ///
    /// Guard (PostgreSQL): read, change, write back, with the channel's row read
    /// `FOR NO KEY UPDATE` (a concurrent change waits, then starts from this one's result).
    pub fn update_channel_settings(
        &self,
        org: &str,
        channel: &str,
        update: SettingsUpdate,
    ) -> Result<Channel> {
        let (o, ch) = (org.to_string(), channel.to_string());
        let secrets = self.secrets().clone();
        self.write(move |c| {
            let (org, channel) = (o, ch);
            let config: String = c
                .query_row(
                    &format!(
                        "SELECT config FROM channels WHERE id = ?1 AND organization_id = ?2{}",
                        c.pick("", " FOR NO KEY UPDATE")
                    ),
                    [&channel, &org],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("channel `{channel}` not found")))?;
            let mut config: Json = serde_json::from_str(&config).unwrap_or_else(|_| json!({}));
            apply_update(
                &secrets,
                SecretOwner::Channel(&channel),
                &mut config,
                &update,
            );
            c.execute(
                "UPDATE channels SET config = ?3, updated_at = ?4 WHERE id = ?1 AND organization_id = ?2",
                params![channel, org, config.to_string(), now_millis()],
            )?;
            Ok(())
        })?;
        self.get_channel(org, channel)
    }

    /// The plain value of a stored secret: a sealed value is opened with the data-dir key
    /// (an error when it cannot be: another key, or moved from another row); a plain string
    /// (not sealed yet) is returned as is; `null`/absent is `None`.
    pub fn open_secret(
        &self,
        owner: SecretOwner<'_>,
        name: &str,
        value: Option<&Json>,
    ) -> Result<Option<String>> {
        match value {
            None | Some(Json::Null) => Ok(None),
            Some(v) if is_sealed(v) => {
                let blob = v[SEALED].as_str().and_then(unhex).unwrap_or_default();
                let plain = self
                    .secrets()
                    .decrypt(&blob, &owner.aad(name))
                    .ok_or_else(|| {
                        Error::Other(format!(
                            "secret `{name}` cannot be decrypted with this data dir's key"
                        ))
                    })?;
                Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
            }
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Ok(Some(other.to_string())),
        }
    }

    /// Seal the plain secrets left in `plugins.config` (names from each row's manifest) and in
    /// connector channels' `config` (names from `channel_secrets(org, kind)`, `None` for kinds
    /// without a connector). Idempotent; returns how many rows were rewritten.
    ///
    /// Guard (both backends): the rows are read in one job and written in another (the
    /// callback may read the store), so each write only applies while the row's config is
    /// still the text that was read; a row changed meanwhile (by an admin, or by another node
    /// sealing it at its start) is left to that change.
    pub fn seal_plain_secrets(
        &self,
        channel_secrets: &dyn Fn(&str, &str) -> Option<Vec<String>>,
    ) -> Result<usize> {
        type Rows = Vec<(String, String, String, String)>;
        // (id, organization, manifest or kind, config as stored).
        let (plugins, channels): (Rows, Rows) = self.read(|c| {
            let row = |r: &Row| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            Ok((
                c.query_map(
                    "SELECT id, organization_id, manifest, config FROM plugins",
                    (),
                    row,
                )?,
                c.query_map(
                    "SELECT id, organization_id, kind, config FROM channels WHERE token IS NOT NULL",
                    (),
                    row,
                )?,
            ))
        })?;
        let secrets = self.secrets().clone();
        let parse = |s: &str| serde_json::from_str::<Json>(s).unwrap_or(Json::Null);
        // (id, new config, config as read).
        let mut plugin_rows = Vec::new();
        for (id, _, manifest, stored) in plugins {
            let names = manifest_secret_names(&parse(&manifest));
            let mut config = parse(&stored);
            if seal_names(&secrets, SecretOwner::Plugin(&id), &names, &mut config) {
                plugin_rows.push((id, config.to_string(), stored));
            }
        }
        let mut channel_rows = Vec::new();
        for (id, org, kind, stored) in channels {
            let Some(names) = channel_secrets(&org, &kind) else {
                continue;
            };
            let mut config = parse(&stored);
            if seal_names(&secrets, SecretOwner::Channel(&id), &names, &mut config) {
                channel_rows.push((id, config.to_string(), stored));
            }
        }
        if plugin_rows.is_empty() && channel_rows.is_empty() {
            return Ok(0);
        }
        self.write(move |c| {
            let mut n = 0;
            for (id, cfg, old) in &plugin_rows {
                n += c.execute(
                    "UPDATE plugins SET config = ?2 WHERE id = ?1 AND config = ?3",
                    [id, cfg, old],
                )?;
            }
            for (id, cfg, old) in &channel_rows {
                n += c.execute(
                    "UPDATE channels SET config = ?2 WHERE id = ?1 AND config = ?3",
                    [id, cfg, old],
                )?;
            }
            Ok(n)
        })
    }

    /// Remember a failed plugin call; only the newest [`PLUGIN_ERRORS_KEPT`] of each
    /// (organization, plugin) are kept.
    pub fn record_plugin_error(
        &self,
        org: &str,
        plugin: &str,
        operation: &str,
        channel: Option<&str>,
        message: &str,
    ) -> Result<()> {
        let (org, plugin, operation, channel) = (
            org.to_string(),
            plugin.to_string(),
            operation.to_string(),
            channel.map(str::to_string),
        );
        // A plugin's message is its own text: bounded so a hostile one cannot bloat the table.
        let message: String = message.chars().take(2000).collect();
        self.write(move |c| record_error_on(c, &org, &plugin, &operation, channel, &message))
    }

    /// Recent failed calls of `org`'s plugins (of one plugin when `plugin` is given), newest
    /// first.
    pub fn plugin_errors(&self, org: &str, plugin: Option<&str>) -> Result<Vec<PluginErrorRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT plugin, operation, channel_id, message, at FROM plugin_errors
                 WHERE organization_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR plugin = ?2) ORDER BY id DESC LIMIT 500",
            )?
            .query_map(params![org, plugin], |r| {
                Ok(PluginErrorRow {
                    plugin: r.get(0)?,
                    operation: r.get(1)?,
                    channel_id: r.get(2)?,
                    message: r.get(3)?,
                    at: r.get(4)?,
                })
            })
        })
    }

    /// One installed plugin without its `.wasm` (the per-call lookup).
    pub fn get_plugin_row(&self, org: &str, name: &str) -> Result<Option<PluginRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS} FROM plugins WHERE organization_id = ?1 AND name = ?2"
            ))?
            .query_row([org, name], plugin_from_row)
            .optional()
        })
    }

    /// The `.wasm` of an installed plugin whose SHA-256 is `sha256` (`None` once replaced).
    pub fn plugin_wasm(&self, org: &str, name: &str, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT wasm FROM plugins WHERE organization_id = ?1 AND name = ?2 AND sha256 = ?3",
            )?
            .query_row([org, name, sha256], |r| r.get(0))
            .optional()
        })
    }

    pub fn remove_plugin(&self, org: &str, name: &str) -> Result<()> {
        let (org, name) = (org.to_string(), name.to_string());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM plugins WHERE organization_id = ?1 AND name = ?2",
                [&org, &name],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("plugin `{name}` is not installed")));
            }
            Ok(())
        })
    }

    pub fn plugin_kv_get(&self, org: &str, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT value FROM plugin_kv WHERE organization_id = ?1 AND plugin = ?2 AND key = ?3",
            )?
            .query_row([org, plugin, key], |r| r.get(0))
            .optional()
        })
    }

    /// Set a key; refused when the scope would hold more than `quota_bytes` of keys+values
    /// (their bytes: `octet_length`, text and blobs alike, on both backends).
    ///
    /// Guard (PostgreSQL): the scope's bytes are summed, then the key is written; the job
    /// first takes the lock of the (organization, plugin) scope ([`pg_xact_lock`]), so two
    /// writes on any nodes cannot both pass a quota that only one of them fits.
    pub fn plugin_kv_set(
        &self,
        org: &str,
        plugin: &str,
        key: &str,
        value: &[u8],
        quota_bytes: i64,
    ) -> std::result::Result<(), KvWriteError> {
        let (org, plugin, key, value) = (
            org.to_string(),
            plugin.to_string(),
            key.to_string(),
            value.to_vec(),
        );
        let over = self
            .write(move |c| {
                pg_xact_lock(c, &["plugin-kv", &org, &plugin])?;
                let used: i64 = c.query_row(
                    "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0) FROM plugin_kv
                     WHERE organization_id = ?1 AND plugin = ?2 AND key <> ?3",
                    [&org, &plugin, &key],
                    |r| r.get(0),
                )?;
                if used + (key.len() + value.len()) as i64 > quota_bytes {
                    return Ok(true);
                }
                c.execute(
                    "INSERT INTO plugin_kv(organization_id, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(organization_id, plugin, key) DO UPDATE SET value = excluded.value",
                    params![org, plugin, key, value],
                )?;
                Ok(false)
            })
            .map_err(KvWriteError::Store)?;
        if over {
            Err(KvWriteError::QuotaExceeded)
        } else {
            Ok(())
        }
    }

    pub fn plugin_kv_delete(&self, org: &str, plugin: &str, key: &str) -> Result<()> {
        let (org, plugin, key) = (org.to_string(), plugin.to_string(), key.to_string());
        self.write(move |c| {
            c.execute(
                "DELETE FROM plugin_kv WHERE organization_id = ?1 AND plugin = ?2 AND key = ?3",
                [&org, &plugin, &key],
            )?;
            Ok(())
        })
    }

    pub fn plugin_kv_list(
        &self,
        org: &str,
        plugin: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.read(|c| {
            // Range scan on the primary key: keys >= prefix, stop at the first that does not
            // start with it (text compares bytewise on both backends: COLLATE "C").
            let keys = c
                .prepare_cached(
                    "SELECT key FROM plugin_kv WHERE organization_id = ?1 AND plugin = ?2 AND key >= ?3
                     ORDER BY key LIMIT ?4",
                )?
                .query_map(params![org, plugin, prefix, (limit * 4 + 16) as i64], |r| {
                    r.get::<String>(0)
                })?;
            Ok(keys
                .into_iter()
                .take_while(|k| k.starts_with(prefix))
                .take(limit)
                .collect())
        })
    }

    /// Store a normalized inbound event unless the channel already has one with this external
    /// id. `true` when it is new.
    pub fn enqueue_inbound(
        &self,
        org: &str,
        channel: &str,
        external_id: &str,
        event: &Json,
    ) -> Result<bool> {
        let (org, channel, external_id, event) = (
            org.to_string(),
            channel.to_string(),
            external_id.to_string(),
            event.to_string(),
        );
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO inbound_events(id, organization_id, channel_id, external_id,
                                            event, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO NOTHING",
                params![new_id(), org, channel, external_id, event, now_millis()],
            )?;
            Ok(n == 1)
        })
    }

    /// The oldest pending inbound events of every organization that has some, at most
    /// `per_org` each (oldest first within an organization): one organization's backlog
    /// never hides another's events. Reads one index probe per such organization. Events
    /// claimed by a worker are included (see [`InboundRow::claimed_until`]): they hold up
    /// their conversation's later events.
    pub fn pending_inbound(&self, per_org: usize) -> Result<Vec<InboundRow>> {
        self.read(|c| {
            let mut next_org = c.prepare_cached(
                "SELECT organization_id FROM inbound_events
                 WHERE status = 'pending' AND organization_id > ?1
                 ORDER BY organization_id LIMIT 1",
            )?;
            let mut of_org = c.prepare_cached(&format!(
                "SELECT id, organization_id, channel_id, external_id, event, attempts, created_at,
                        processed_at
                 FROM inbound_events WHERE status = 'pending' AND organization_id = ?1
                 ORDER BY created_at, {} LIMIT ?2",
                c.pick("rowid", "seq")
            ))?;
            let mut out = Vec::new();
            let mut org = String::new();
            while let Some(o) = next_org
                .query_row([&org], |r| r.get::<String>(0))
                .optional()?
            {
                let rows = of_org.query_map(params![o, per_org as i64], |r| {
                    let ev: String = r.get(4)?;
                    Ok(InboundRow {
                        id: r.get(0)?,
                        organization_id: r.get(1)?,
                        channel_id: r.get(2)?,
                        external_id: r.get(3)?,
                        event: serde_json::from_str(&ev).unwrap_or(Json::Null),
                        attempts: r.get(5)?,
                        created_at: r.get(6)?,
                        claimed_until: r.get(7)?,
                    })
                })?;
                out.extend(rows);
                org = o;
            }
            Ok(out)
        })
    }

    /// Claim pending events `ids` for running now: the ones returned are this caller's until
    /// `now + lease_ms` (or until it records their outcome); the others are gone or claimed
    /// by another worker, and must not run.
    ///
    /// Guard (PostgreSQL, several nodes): each claim is a conditional update, "pending and
    /// not claimed (or the claim ended)", whose row count says whether this caller got the
    /// event; two nodes updating one row at once are serialized by its row lock, and the
    /// second sees the first's claim. An event whose turn outlives the lease may be claimed
    /// again, but its turn's commit ([`inbound_turn_done`]) still lets only one run write.
    /// On SQLite one server serves the data directory and its worker never runs an event
    /// twice itself, so the lease is zero there: the claim only checks the event is pending,
    /// and after a crash the event runs at once at restart, as before.
    pub fn claim_inbound(&self, ids: Vec<String>, now: i64, lease_ms: i64) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(ids);
        }
        self.write(move |c| {
            let until = if c.is_pg() { now + lease_ms } else { now };
            let mut claim = c.prepare_cached(
                "UPDATE inbound_events SET processed_at = ?3
                 WHERE id = ?1 AND status = 'pending'
                   AND (processed_at IS NULL OR processed_at <= ?2)",
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if claim.execute(params![id, now, until])? == 1 {
                    out.push(id);
                }
            }
            Ok(out)
        })
    }

    /// Record the outcome of running an inbound event: `Ok` = done; `Err(msg)` = try again
    /// unless `give_up`.
    pub fn finish_inbound(
        &self,
        id: &str,
        outcome: std::result::Result<(), String>,
        give_up: bool,
    ) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            match outcome {
                Ok(()) => c.execute(
                    "UPDATE inbound_events SET status = 'done', attempts = attempts + 1,
                     processed_at = ?2 WHERE id = ?1",
                    params![id, now_millis()],
                )?,
                // Only while pending: a turn that committed the event (see
                // `inbound_turn_done`) is never turned back into a pending one.
                Err(e) => c.execute(
                    "UPDATE inbound_events SET status = CASE WHEN ?3 THEN 'failed' ELSE 'pending' END,
                     attempts = attempts + 1, last_error = ?2, processed_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                    params![id, e, give_up, now_millis()],
                )?,
            };
            Ok(())
        })
    }

    /// Queue one turn's replies for a connector channel, behind the conversation's earlier
    /// undelivered replies. The id makes it idempotent: `true` when it is new.
    pub fn enqueue_outbox(
        &self,
        id: &str,
        org: &str,
        channel: &str,
        conversation: &str,
        messages: &Json,
    ) -> Result<bool> {
        let (id, org, channel, conversation, messages) = (
            id.to_string(),
            org.to_string(),
            channel.to_string(),
            conversation.to_string(),
            messages.to_string(),
        );
        self.write(move |c| {
            insert_outbox(
                c,
                &id,
                &org,
                &channel,
                &conversation,
                &messages,
                now_millis(),
            )
        })
    }

    /// Claim due outbox rows for delivery (see the module doc): conversation heads that are
    /// `pending` and due, or `sending` with an ended lease, at most `per_org` in flight per
    /// organization and `limit` in all, oldest first. They become `sending` until
    /// `now + lease_ms`. One index probe per organization with pending rows, never a scan of
    /// one organization's backlog.
    ///
    /// Guard (PostgreSQL, several senders): the job first takes the claim lock
    /// ([`pg_xact_lock`]), so claims run one at a time across nodes and each counts the rows
    /// in flight with every earlier claim committed (the per-organization cap holds across
    /// nodes). Each row is then leased by a conditional update, "still in the status and at
    /// the time this claim read", whose row count says whether it was taken: a row finished,
    /// retried or renewed meanwhile by its sender (which does not take the claim lock) is
    /// left to it, so one row is never handed to two senders while a lease is live.
    pub fn claim_outbox(&self, claim: OutboxClaim) -> Result<Vec<OutboxRow>> {
        if claim.limit == 0 || claim.per_org == 0 {
            return Ok(Vec::new());
        }
        self.write(move |c| {
            let OutboxClaim {
                now,
                lease_ms,
                per_org,
                limit,
            } = claim;
            pg_xact_lock(c, &["outbox-claim"])?;
            let order = c.pick("rowid", "seq");
            let mut in_flight: std::collections::HashMap<String, usize> = Default::default();
            // (due at, order, id, organization), oldest first: live and ended leases alike,
            // bounded by the senders' slots.
            let mut candidates: Vec<(i64, i64, String, String)> = Vec::new();
            let sending = c
                .prepare_cached(&format!(
                    "SELECT next_attempt_at, {order}, id, organization_id FROM outbox
                     WHERE status = 'sending'"
                ))?
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            for row in sending {
                let row: (i64, i64, String, String) = row;
                if row.0 > now {
                    *in_flight.entry(row.3).or_default() += 1;
                } else {
                    candidates.push(row);
                }
            }
            let mut next_org = c.prepare_cached(
                "SELECT organization_id FROM outbox
                 WHERE status = 'pending' AND organization_id > ?1
                 ORDER BY organization_id LIMIT 1",
            )?;
            let mut due = c.prepare_cached(&format!(
                "SELECT next_attempt_at, {order}, id FROM outbox
                 WHERE status = 'pending' AND organization_id = ?1 AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at, {order} LIMIT ?3"
            ))?;
            let mut org = String::new();
            while let Some(o) = next_org
                .query_row([&org], |r| r.get::<String>(0))
                .optional()?
            {
                let spare = per_org.saturating_sub(in_flight.get(&o).copied().unwrap_or(0));
                if spare > 0 {
                    let rows = due.query_map(params![o, now, spare as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                    for (at, seq, id) in rows {
                        candidates.push((at, seq, id, o.clone()));
                    }
                }
                org = o;
            }
            candidates.sort();
            let mut taken: Vec<(String, i64)> = Vec::new();
            for (at, _, id, org) in candidates {
                if taken.len() >= limit {
                    break;
                }
                let n = in_flight.entry(org).or_default();
                if *n < per_org {
                    *n += 1;
                    taken.push((id, at));
                }
            }
            let mut lease = c.prepare_cached(
                "UPDATE outbox SET status = 'sending', next_attempt_at = ?2
                 WHERE id = ?1 AND status IN ('pending', 'sending') AND next_attempt_at = ?3
                 RETURNING id, organization_id, channel_id, conversation, messages, attempts",
            )?;
            let mut out = Vec::with_capacity(taken.len());
            for (id, at) in taken {
                let row = lease
                    .query_row(params![id, now + lease_ms, at], |r| {
                        let m: String = r.get(4)?;
                        Ok(OutboxRow {
                            id: r.get(0)?,
                            organization_id: r.get(1)?,
                            channel_id: r.get(2)?,
                            conversation: r.get(3)?,
                            messages: serde_json::from_str(&m).unwrap_or(Json::Null),
                            attempts: r.get(5)?,
                        })
                    })
                    .optional()?;
                out.extend(row);
            }
            Ok(out)
        })
    }

    /// Extend the leases of claimed rows whose delivery still runs, to `until` (Unix ms).
    /// Rows finished meanwhile are left as they are.
    pub fn renew_outbox(&self, ids: Vec<String>, until: i64) -> Result<()> {
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1 AND status = 'sending'",
            )?;
            for id in &ids {
                st.execute(params![id, until])?;
            }
            Ok(())
        })
    }

    /// Record how the delivery of a claimed row ended. A row no longer `sending` (finished
    /// already by a sender whose lease had ended) is left as it is. When the row is done
    /// (sent, or failed for good) the conversation's next queued row becomes due, in the
    /// same transaction.
    ///
    /// Guard (PostgreSQL): the promotion of the next row takes the conversation's lock first
    /// (see [`insert_outbox`]), so it sees every row queued before it.
    pub fn finish_outbox(&self, id: &str, outcome: OutboxOutcome) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            let now = now_millis();
            let done = match &outcome {
                OutboxOutcome::Sent(ids) => c
                    .prepare_cached(
                        "UPDATE outbox SET status = 'sent', attempts = attempts + 1,
                         platform_ids = ?2, sent_at = ?3, last_error = NULL
                         WHERE id = ?1 AND status = 'sending'
                         RETURNING channel_id, conversation",
                    )?
                    .query_row(params![id, serde_json::to_string(ids)?, now], |r| {
                        Ok((r.get::<String>(0)?, r.get::<String>(1)?))
                    })
                    .optional()?,
                OutboxOutcome::Failed(e) => c
                    .prepare_cached(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1,
                         last_error = ?2 WHERE id = ?1 AND status = 'sending'
                         RETURNING channel_id, conversation",
                    )?
                    .query_row(params![id, e], |r| {
                        Ok((r.get::<String>(0)?, r.get::<String>(1)?))
                    })
                    .optional()?,
                OutboxOutcome::Retry { error, at } => {
                    // Still the conversation's head: its later rows stay queued behind it.
                    c.prepare_cached(
                        "UPDATE outbox SET status = 'pending', attempts = attempts + 1,
                         last_error = ?2, next_attempt_at = ?3
                         WHERE id = ?1 AND status = 'sending'",
                    )?
                    .execute(params![id, error, at])?;
                    None
                }
            };
            if let Some((channel, conversation)) = done {
                conversation_lock(c, &channel, &conversation)?;
                c.prepare_cached(&format!(
                    "UPDATE outbox SET status = 'pending' WHERE {order} =
                       (SELECT {order} FROM outbox WHERE channel_id = ?1 AND conversation = ?2
                        AND status = 'queued' ORDER BY {order} LIMIT 1)",
                    order = c.pick("rowid", "seq")
                ))?
                .execute([&channel, &conversation])?;
            }
            Ok(())
        })
    }

    /// `(status, attempts, platform_ids)` of an outbox row (tests, admin views).
    pub fn outbox_status(&self, id: &str) -> Result<Option<(String, i64, Option<String>)>> {
        self.read(|c| {
            c.query_row(
                "SELECT status, attempts, platform_ids FROM outbox WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
    }
}

/// The outbox row of the replies of inbound event `event`'s turn.
pub fn inbound_outbox_id(event: &str) -> String {
    format!("turn-in-{event}")
}

/// Part of a turn's commit (`apply_turn`, when the write set names an inbound event): mark
/// the connector's inbound event done and queue the turn's replies for delivery, in the same
/// transaction as the turn, so a crash can neither run the event twice nor lose its replies.
/// The event must still be pending on the turn's channel; otherwise (another worker or
/// process ran it) the whole turn is refused with `Conflict` and rolls back.
pub(super) fn inbound_turn_done(c: &Db, w: &TurnWrite, event: &str) -> Result<()> {
    let k = &w.client;
    let n = c
        .prepare_cached(
            "UPDATE inbound_events SET status = 'done', attempts = attempts + 1, last_error = NULL,
             processed_at = ?4
             WHERE id = ?1 AND organization_id = ?2 AND channel_id = ?3 AND status = 'pending'",
        )?
        .execute(params![event, k.organization_id, k.channel_id, w.now])?;
    if n == 0 {
        return Err(Error::Conflict(format!(
            "inbound event {event} is not pending (already handled)"
        )));
    }
    let replies: Vec<&Json> = w
        .messages
        .iter()
        .filter(|m| m.direction == Direction::Send)
        .map(|m| &m.payload)
        .collect();
    if !replies.is_empty() {
        insert_outbox(
            c,
            &inbound_outbox_id(event),
            &k.organization_id,
            &k.channel_id,
            &k.user_id,
            &serde_json::to_string(&replies)?,
            w.now,
        )?;
    }
    Ok(())
}

impl Store {
    /// `(status, attempts)` of an inbound event (tests, admin views).
    pub fn inbound_status(&self, id: &str) -> Result<Option<(String, i64)>> {
        self.read(|c| {
            c.query_row(
                "SELECT status, attempts FROM inbound_events WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }
}

/// Guard: none needed. Two failures recorded at once on PostgreSQL may each trim before
/// seeing the other's row, keeping one more than [`PLUGIN_ERRORS_KEPT`] until the next.
fn record_error_on(
    c: &Db,
    org: &str,
    plugin: &str,
    operation: &str,
    channel: Option<String>,
    message: &str,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO plugin_errors(organization_id, plugin, operation, channel_id, message, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        org,
        plugin,
        operation,
        channel,
        message,
        now_millis()
    ])?;
    c.prepare_cached(
        "DELETE FROM plugin_errors WHERE organization_id = ?1 AND plugin = ?2 AND id <=
           (SELECT id FROM plugin_errors WHERE organization_id = ?1 AND plugin = ?2
            ORDER BY id DESC LIMIT 1 OFFSET ?3)",
    )?
    .execute(params![org, plugin, PLUGIN_ERRORS_KEPT])?;
    Ok(())
}
