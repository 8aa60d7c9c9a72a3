//! Plugin rows (installed `.wasm` and their installation settings), the plugins' key-value
//! store, the inbound event queue of connector webhooks and the outbox of connector replies.

use super::ids::{new_id, now_millis};
use super::{Error, Result, Store};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value as Json;

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub organization_id: String,
    pub channel_id: String,
    pub conversation: String,
    pub messages: Json,
    pub attempts: i64,
}

/// Why a key-value write was refused.
#[derive(Debug)]
pub enum KvWriteError {
    QuotaExceeded,
    Store(Error),
}

const PLUGIN_COLS: &str = "id, organization_id, name, version, kind, api, sha256, manifest, \
                           allowed_hosts, config, created_at, updated_at";

fn plugin_from_row(r: &Row) -> rusqlite::Result<PluginRow> {
    let json = |i: usize| -> rusqlite::Result<Json> {
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
    /// Install `new` for `org`, replacing an installed plugin of the same name.
    pub fn install_plugin(&self, org: &str, new: NewPlugin) -> Result<PluginRow> {
        let org = org.to_string();
        self.write(move |c| {
            let now = now_millis();
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
                    new_id(),
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
            .map_err(Error::from)
        })
    }

    /// Installed plugins of `org` (every organization's when `None`), by name.
    pub fn list_plugins(&self, org: Option<&str>) -> Result<Vec<PluginRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS} FROM plugins
                 WHERE ?1 IS NULL OR organization_id = ?1 ORDER BY name, organization_id"
            ))?;
            let rows = st.query_map([org], plugin_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// One installed plugin and its `.wasm`.
    pub fn get_plugin(&self, org: &str, name: &str) -> Result<Option<(PluginRow, Vec<u8>)>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PLUGIN_COLS}, wasm FROM plugins WHERE organization_id = ?1 AND name = ?2"
            ))?
            .query_row([org, name], |r| {
                Ok((plugin_from_row(r)?, r.get::<_, Vec<u8>>(12)?))
            })
            .optional()?)
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
            Ok(c.prepare_cached(
                "SELECT value FROM plugin_kv WHERE organization_id = ?1 AND plugin = ?2 AND key = ?3",
            )?
            .query_row([org, plugin, key], |r| r.get(0))
            .optional()?)
        })
    }

    /// Set a key; refused when the scope would hold more than `quota_bytes` of keys+values.
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
                let used: i64 = c.query_row(
                    "SELECT COALESCE(SUM(length(key) + length(value)), 0) FROM plugin_kv
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
            // start with it.
            let mut st = c.prepare_cached(
                "SELECT key FROM plugin_kv WHERE organization_id = ?1 AND plugin = ?2 AND key >= ?3
                 ORDER BY key LIMIT ?4",
            )?;
            let keys = st
                .query_map(params![org, plugin, prefix, (limit * 4 + 16) as i64], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
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
                "INSERT OR IGNORE INTO inbound_events(id, organization_id, channel_id, external_id,
                                                      event, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![new_id(), org, channel, external_id, event, now_millis()],
            )?;
            Ok(n == 1)
        })
    }

    /// Pending inbound events, oldest first.
    pub fn pending_inbound(&self, limit: usize) -> Result<Vec<InboundRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, organization_id, channel_id, external_id, event, attempts
                 FROM inbound_events WHERE status = 'pending' ORDER BY created_at, id LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                let ev: String = r.get(4)?;
                Ok(InboundRow {
                    id: r.get(0)?,
                    organization_id: r.get(1)?,
                    channel_id: r.get(2)?,
                    external_id: r.get(3)?,
                    event: serde_json::from_str(&ev).unwrap_or(Json::Null),
                    attempts: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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
                Err(e) => c.execute(
                    "UPDATE inbound_events SET status = CASE WHEN ?3 THEN 'failed' ELSE 'pending' END,
                     attempts = attempts + 1, last_error = ?2, processed_at = ?4 WHERE id = ?1",
                    params![id, e, give_up, now_millis()],
                )?,
            };
            Ok(())
        })
    }

    /// Queue one turn's replies for a connector channel. The id makes it idempotent.
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
            let now = now_millis();
            let n = c.execute(
                "INSERT OR IGNORE INTO outbox(id, organization_id, channel_id, conversation, messages,
                                              next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id, org, channel, conversation, messages, now],
            )?;
            Ok(n == 1)
        })
    }

    /// Outbox rows due now, oldest first.
    pub fn due_outbox(&self, now: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, organization_id, channel_id, conversation, messages, attempts FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, created_at LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, limit as i64], |r| {
                let m: String = r.get(4)?;
                Ok(OutboxRow {
                    id: r.get(0)?,
                    organization_id: r.get(1)?,
                    channel_id: r.get(2)?,
                    conversation: r.get(3)?,
                    messages: serde_json::from_str(&m).unwrap_or(Json::Null),
                    attempts: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Earliest pending outbox time, for the sender's sleep.
    pub fn next_outbox_at(&self) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
    }

    /// `Ok(ids)` = sent; `Err((msg, Some(at)))` = retry at `at`; `Err((msg, None))` = give up.
    pub fn finish_outbox(
        &self,
        id: &str,
        outcome: std::result::Result<Vec<String>, (String, Option<i64>)>,
    ) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            let now = now_millis();
            match outcome {
                Ok(ids) => c.execute(
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, platform_ids = ?2,
                     sent_at = ?3, last_error = NULL WHERE id = ?1",
                    params![id, serde_json::to_string(&ids)?, now],
                )?,
                Err((e, Some(at))) => {
                    // Later replies of the same conversation wait behind this one.
                    c.execute(
                        "UPDATE outbox SET next_attempt_at = MAX(next_attempt_at, ?2)
                         WHERE status = 'pending' AND id <> ?1
                           AND (channel_id, conversation) =
                               (SELECT channel_id, conversation FROM outbox WHERE id = ?1)",
                        params![id, at + 1],
                    )?;
                    c.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
                         WHERE id = ?1",
                        params![id, e, at],
                    )?
                }
                Err((e, None)) => c.execute(
                    "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2
                     WHERE id = ?1",
                    params![id, e],
                )?,
            };
            Ok(())
        })
    }

    /// `(status, attempts, platform_ids)` of an outbox row (tests, admin views).
    pub fn outbox_status(&self, id: &str) -> Result<Option<(String, i64, Option<String>)>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT status, attempts, platform_ids FROM outbox WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
        })
    }
}
