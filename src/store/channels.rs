//! Channels (with their Studio API key pair) and Open Chat Studio API keys.

use super::db::{Db, OptionalExtension, Row, params};
use super::ids::{new_id, now_millis, random_token};
use super::{
    ApiKey, Channel, ChannelAuth, ChannelPatch, Credentials, Error, NewChannel, Result, Store,
};
use crate::secrets::{Secrets, hash_api_key};

const CHANNEL_COLS: &str = "id, organization_id, bot_id, kind, name, api_key, webhook_url, token, \
                            plugin_id, config, status, created_at, updated_at";
const KEY_COLS: &str =
    "id, organization_id, name, prefix, read_only, revoked_at, last_used_at, created_at";

fn channel_from_row(r: &Row) -> Result<Channel> {
    let config: String = r.get(9)?;
    Ok(Channel {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        bot_id: r.get(2)?,
        kind: r.get(3)?,
        name: r.get(4)?,
        api_key: r.get(5)?,
        webhook_url: r.get(6)?,
        token: r.get(7)?,
        plugin_id: r.get(8)?,
        config: serde_json::from_str(&config).unwrap_or_default(),
        status: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

fn key_from_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        organization_id: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        read_only: r.get(4)?,
        revoked_at: r.get(5)?,
        last_used_at: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// Prefix of Studio API keys (public half of the pair).
pub const STUDIO_KEY_PREFIX: &str = "pk_";
/// Prefix of Studio API secrets.
pub const STUDIO_SECRET_PREFIX: &str = "sk_";
/// Prefix of OCS API keys.
pub const OCS_KEY_PREFIX: &str = "ocs_";

/// Count one credential change (see [`Store::auth_epoch`]). The row's update lock makes
/// concurrent bumps add up on PostgreSQL too. `meta.value` is text on both backends.
pub(super) fn bump_auth_epoch(c: &Db) -> Result<()> {
    c.execute(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'auth_epoch'",
        (),
    )?;
    Ok(())
}

fn load_channel(c: &Db, org: &str, id: &str) -> Result<Channel> {
    load_channel_sql(c, org, id, "")
}

/// The channel's row, locked until the job ends (`FOR UPDATE` on PostgreSQL; SQLite's single
/// writer runs one job at a time): for jobs that read the row, then write from it.
fn lock_channel(c: &Db, org: &str, id: &str) -> Result<Channel> {
    load_channel_sql(c, org, id, c.pick("", " FOR UPDATE"))
}

fn load_channel_sql(c: &Db, org: &str, id: &str, lock: &str) -> Result<Channel> {
    c.prepare_cached(&format!(
        "SELECT {CHANNEL_COLS} FROM channels WHERE id = ?1 AND organization_id = ?2{lock}"
    ))?
    .query_row([id, org], channel_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("channel `{id}` not found")))
}

fn check_webhook(url: &Option<String>) -> Result<()> {
    if let Some(u) = url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(Error::Invalid(format!(
            "webhook URL `{u}` must start with http:// or https://"
        )));
    }
    Ok(())
}

/// Insert a channel of `bot` with a fresh key pair (the body of
/// [`Store::create_channel_sealed`], also part of first-run setup's single job). The bot's
/// existence is checked for a clear error; should it be deleted meanwhile on PostgreSQL, the
/// foreign key fails the insert (`NotFound`) all the same.
pub(super) fn insert_channel(
    c: &Db,
    secrets: &Secrets,
    org: &str,
    bot: &str,
    new: NewChannel,
    sealed: Vec<(String, String)>,
) -> Result<(Channel, Credentials)> {
    check_webhook(&new.webhook_url)?;
    let kind = if new.kind.is_empty() {
        super::KIND_API.to_string()
    } else {
        new.kind
    };
    let name = if new.name.trim().is_empty() {
        format!("{kind} channel")
    } else {
        new.name
    };
    let now = now_millis();
    let exists: bool = c.query_row(
        "SELECT EXISTS(SELECT 1 FROM bots WHERE id = ?1 AND organization_id = ?2)",
        [bot, org],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(Error::NotFound(format!("bot `{bot}` not found")));
    }
    let id = new_id();
    let api_key = format!("{STUDIO_KEY_PREFIX}{}", random_token(32));
    let api_secret = format!("{STUDIO_SECRET_PREFIX}{}", random_token(48));
    // A webhook token only for a connector channel (see `is_builtin_kind`).
    let token = if super::is_builtin_kind(&kind) {
        None
    } else {
        Some(random_token(32))
    };
    let mut config = if new.config.is_null() {
        serde_json::json!({})
    } else {
        new.config
    };
    super::plugins::seal_channel_secrets(secrets, &id, &mut config, sealed);
    c.execute(
        "INSERT INTO channels(id, organization_id, bot_id, kind, name, api_key, secret_enc,
                              webhook_url, token, config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        params![
            id,
            org,
            bot,
            kind,
            name,
            api_key,
            secrets.encrypt(api_secret.as_bytes(), &id),
            new.webhook_url,
            token,
            serde_json::to_string(&config)?,
            now
        ],
    )?;
    let ch = load_channel(c, org, &id)?;
    Ok((
        ch,
        Credentials {
            channel_id: id,
            api_key,
            api_secret,
        },
    ))
}

/// Insert an OCS API key of `org` (the body of [`Store::create_api_key`], also part of
/// first-run setup's single job); returns the key itself once (only its hash is stored). A
/// missing organization is `NotFound` (checked, and backed by the foreign key).
pub(super) fn insert_api_key(
    c: &Db,
    org: &str,
    name: &str,
    read_only: bool,
) -> Result<(ApiKey, String)> {
    let name = name.trim();
    let exists: bool = c.query_row(
        "SELECT EXISTS(SELECT 1 FROM organizations WHERE id = ?1)",
        [org],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(Error::NotFound(format!("organization `{org}` not found")));
    }
    let key = format!("{OCS_KEY_PREFIX}{}", random_token(40));
    let k = ApiKey {
        id: new_id(),
        organization_id: org.to_string(),
        name: if name.is_empty() {
            "API key".into()
        } else {
            name.to_string()
        },
        prefix: key[..12].to_string(),
        read_only,
        revoked_at: None,
        last_used_at: None,
        created_at: now_millis(),
    };
    c.execute(
        "INSERT INTO api_keys(id, organization_id, name, prefix, key_hash, read_only, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            k.id,
            k.organization_id,
            k.name,
            k.prefix,
            hash_api_key(&key),
            k.read_only,
            k.created_at
        ],
    )?;
    Ok((k, key))
}

impl Store {
    /// Create a channel of `bot` with a fresh key pair; the secret is returned once, stored
    /// encrypted.
    pub fn create_channel(
        &self,
        org: &str,
        bot: &str,
        new: NewChannel,
    ) -> Result<(Channel, Credentials)> {
        self.create_channel_sealed(org, bot, new, Vec::new())
    }

    /// [`Store::create_channel`] with secrets (name, plain value) sealed into its config,
    /// bound to the new row's id, in the same transaction: a connector channel never exists
    /// without its secrets, and a plain secret never reaches the file.
    pub fn create_channel_sealed(
        &self,
        org: &str,
        bot: &str,
        new: NewChannel,
        sealed: Vec<(String, String)>,
    ) -> Result<(Channel, Credentials)> {
        let secrets = self.secrets().clone();
        let (org, bot) = (org.to_string(), bot.to_string());
        self.write(move |c| insert_channel(c, &secrets, &org, &bot, new, sealed))
    }

    /// Channels of the organization, of one bot when `bot` is given.
    pub fn list_channels(&self, org: &str, bot: Option<&str>) -> Result<Vec<Channel>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CHANNEL_COLS} FROM channels WHERE organization_id = ?1
                 AND (CAST(?2 AS TEXT) IS NULL OR bot_id = ?2) ORDER BY created_at"
            ))?;
            st.query_map(params![org, bot], channel_from_row)
        })
    }

    pub fn get_channel(&self, org: &str, channel: &str) -> Result<Channel> {
        self.read(|c| load_channel(c, org, channel))
    }

    /// Change name, webhook URL, config or status. Guard: the channel row is locked before
    /// it is read, so two patches apply one after the other (no lost update).
    pub fn update_channel(&self, org: &str, channel: &str, patch: ChannelPatch) -> Result<Channel> {
        if let Some(w) = &patch.webhook_url {
            check_webhook(w)?;
        }
        let (org, channel) = (org.to_string(), channel.to_string());
        self.write(move |c| {
            let mut ch = lock_channel(c, &org, &channel)?;
            if let Some(n) = patch.name {
                ch.name = n;
            }
            if let Some(w) = patch.webhook_url {
                ch.webhook_url = w;
            }
            if let Some(cfg) = patch.config {
                ch.config = cfg;
            }
            if let Some(s) = patch.status {
                ch.status = s;
            }
            c.execute(
                "UPDATE channels SET name = ?3, webhook_url = ?4, config = ?5, status = ?6,
                        updated_at = ?7 WHERE id = ?1 AND organization_id = ?2",
                params![
                    channel,
                    org,
                    ch.name,
                    ch.webhook_url,
                    serde_json::to_string(&ch.config)?,
                    ch.status,
                    now_millis()
                ],
            )?;
            bump_auth_epoch(c)?;
            load_channel(c, &org, &channel)
        })
    }

    /// New key pair for a channel; the old one stops working at once (returned once).
    pub fn rotate_channel(&self, org: &str, channel: &str) -> Result<Credentials> {
        let secrets = self.secrets().clone();
        let (org, channel) = (org.to_string(), channel.to_string());
        self.write(move |c| {
            load_channel(c, &org, &channel)?;
            let api_key = format!("{STUDIO_KEY_PREFIX}{}", random_token(32));
            let api_secret = format!("{STUDIO_SECRET_PREFIX}{}", random_token(48));
            c.execute(
                "UPDATE channels SET api_key = ?3, secret_enc = ?4, updated_at = ?5
                 WHERE id = ?1 AND organization_id = ?2",
                params![
                    channel,
                    org,
                    api_key,
                    secrets.encrypt(api_secret.as_bytes(), &channel),
                    now_millis()
                ],
            )?;
            bump_auth_epoch(c)?;
            Ok(Credentials {
                channel_id: channel,
                api_key,
                api_secret,
            })
        })
    }

    pub fn delete_channel(&self, org: &str, channel: &str) -> Result<()> {
        let (org, channel) = (org.to_string(), channel.to_string());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM channels WHERE id = ?1 AND organization_id = ?2",
                [&channel, &org],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("channel `{channel}` not found")));
            }
            bump_auth_epoch(c)
        })
    }

    /// Resolve a Studio API key to its channel and decrypted secret. The one lookup that is
    /// not scoped by an organization: the key is what determines the organization. Only
    /// Studio API channels (kind [`super::KIND_API`]) resolve: every channel row has a key
    /// pair, but a connector's (Telegram, Slack...) or the try-it channel's key authorizes
    /// nothing on the Studio API, else whoever sees it could skip the platform's webhook
    /// signature and post as the bot anywhere. Inactive channels resolve to `None` too.
    pub fn channel_auth_by_key(&self, api_key: &str) -> Result<Option<ChannelAuth>> {
        let secrets = self.secrets();
        self.read(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {CHANNEL_COLS}, secret_enc FROM channels
                     WHERE api_key = ?1 AND status = 'active' AND kind = ?2"
                ))?
                .query_row([api_key, super::KIND_API], |r| {
                    Ok((channel_from_row(r)?, r.get::<Vec<u8>>(13)?))
                })
                .optional()?;
            let Some((channel, blob)) = row else {
                return Ok(None);
            };
            let secret = secrets.decrypt(&blob, &channel.id).ok_or_else(|| {
                Error::Other(format!(
                    "the secret of channel {} cannot be decrypted with this data dir's key",
                    channel.id
                ))
            })?;
            Ok(Some(ChannelAuth {
                channel,
                secret: String::from_utf8_lossy(&secret).into_owned(),
            }))
        })
    }

    /// A connector channel by its public webhook token (`/hooks/{token}`).
    pub fn channel_by_token(&self, token: &str) -> Result<Option<Channel>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {CHANNEL_COLS} FROM channels WHERE token = ?1 AND status = 'active'"
            ))?
            .query_row([token], channel_from_row)
            .optional()
        })
    }

    /// Incremented by every change of a credential (rotate, revoke, delete); a server polls it
    /// to drop cached authentications made stale by another process.
    pub fn auth_epoch(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row(
                "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'auth_epoch'",
                (),
                |r| r.get(0),
            )
        })
    }

    /// Create an OCS API key; returns the key itself once (only its hash is stored).
    pub fn create_api_key(
        &self,
        org: &str,
        name: &str,
        read_only: bool,
    ) -> Result<(ApiKey, String)> {
        let (org, name) = (org.to_string(), name.to_string());
        self.write(move |c| insert_api_key(c, &org, &name, read_only))
    }

    pub fn list_api_keys(&self, org: &str) -> Result<Vec<ApiKey>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE organization_id = ?1 ORDER BY created_at"
            ))?;
            st.query_map([org], key_from_row)
        })
    }

    /// Revoke a key given its id or its prefix. Revoking twice is fine.
    pub fn revoke_api_key(&self, org: &str, id_or_prefix: &str) -> Result<ApiKey> {
        let (org, k) = (org.to_string(), id_or_prefix.to_string());
        self.write(move |c| {
            let found = c
                .query_row(
                    &format!(
                        "SELECT {KEY_COLS} FROM api_keys WHERE organization_id = ?1
                         AND (id = ?2 OR prefix = ?2 OR key_hash = ?3)"
                    ),
                    params![org, k, hash_api_key(&k)],
                    key_from_row,
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("API key `{k}` not found")))?;
            c.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![found.id, now_millis()],
            )?;
            bump_auth_epoch(c)?;
            c.query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"),
                [&found.id],
                key_from_row,
            )
        })
    }

    /// Resolve an OCS API key (unscoped: the key determines the organization). Revoked or
    /// unknown → `None`.
    pub fn api_key_lookup(&self, key: &str) -> Result<Option<ApiKey>> {
        let hash = hash_api_key(key);
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([hash], key_from_row)
            .optional()
        })
    }
}
