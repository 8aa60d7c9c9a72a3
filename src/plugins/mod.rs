//! Platform glue of the WASM plugins (issue 5): the plugin host of the server, which plugin
//! answers an `App()` call or a channel, the SQLite key-value store behind it, and the durable
//! path of connector channels.
//!
//! - [`PluginRuntime`]: one per server. Resolves a plugin for (organization, name): an
//!   installed plugin (`plugins` table) first, else a first-party plugin embedded in the
//!   binary; compiled components are shared by `.wasm` hash.
//! - [`apps`]: `App()` from CSML turns ([`crate::engine::AppRouter`]).
//! - [`channels`]: webhook ingress (store each event, deduplicated, before acknowledging), the
//!   inbound worker that runs turns from that queue, the turn sink that fills the outbox, and
//!   the outbox sender (retries with backoff); both ordered per conversation and concurrent
//!   across conversations and organizations, with a per-organization cap.
//! - [`kv`]: [`botyard_plugins::KvStore`] over the store.
//! - [`manage`]: the management rules the CLI and the admin API share.
//!
//! A connector channel is a `channels` row whose `kind` names the connector plugin
//! (`telegram`, ...). Its `config` JSON holds the connector's settings and secrets by the names
//! the manifest declares, plus optional `allow_hosts` (extra outbound hosts, e.g. a test fake).
//! Secrets are sealed at rest (`crate::store::plugins`) and opened only in [`installation`],
//! right before a plugin call. Every failed call is logged and recorded in the store's bounded
//! list of recent errors per plugin (shown by the admin UI).

pub mod apps;
pub mod channels;
pub mod kv;
pub mod manage;

use crate::engine::Engine;
use crate::store::plugins::SecretOwner;
use crate::store::{Channel, Store};
use botyard_plugins::outbound::IpNet;
use botyard_plugins::{
    Installation, LoadedPlugin, Manifest, PluginError, PluginHost, PluginHostConfig, PluginKind,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A plugin ready for one organization's call.
#[derive(Clone)]
pub struct Resolved {
    pub plugin: LoadedPlugin,
    pub install: Installation,
    pub first_party: bool,
}

pub struct PluginRuntime {
    host: PluginHost,
    store: Store,
    /// Loaded plugins by `.wasm` SHA-256 ([`PluginRuntime::load`]).
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
    /// Loaded installations by (SHA-256, manifest JSON) as stored, so a call neither reads
    /// the `.wasm` nor hashes it.
    installed: Mutex<HashMap<(String, String), LoadedPlugin>>,
    /// Loaded first-party plugins by name.
    first_party: Mutex<HashMap<&'static str, LoadedPlugin>>,
    /// Set once after the engine is built, taken back at shutdown ([`PluginRuntime::detach_engine`]):
    /// the engine holds this runtime (its app router and sink), so this link is a cycle
    /// that must be cut for the store to close.
    engine: Mutex<Option<Engine>>,
    rt: tokio::runtime::Handle,
    inbound_wake: Notify,
    outbox_wake: Notify,
    /// `BOTYARD_PUBLIC_URL`: how platforms reach this server (webhook URLs, Twilio signatures).
    public_url: Option<String>,
    /// How much connector work runs at once ([`channels::ChannelLimits`]).
    limits: channels::ChannelLimits,
}

impl PluginRuntime {
    /// `allow_private`: addresses plugins may reach although private (the server's
    /// `--outbound-allow`). Must be called inside the tokio runtime. Connector work runs
    /// within the default [`channels::ChannelLimits`].
    pub fn new(store: Store, data_dir: &Path, allow_private: Vec<IpNet>) -> Arc<PluginRuntime> {
        Self::with_limits(store, data_dir, allow_private, Default::default())
    }

    /// [`PluginRuntime::new`] with other limits on concurrent connector work.
    pub fn with_limits(
        store: Store,
        data_dir: &Path,
        allow_private: Vec<IpNet>,
        limits: channels::ChannelLimits,
    ) -> Arc<PluginRuntime> {
        let mut config = PluginHostConfig::new(Arc::new(kv::SqliteKv::new(store.clone())));
        config.cache_dir = Some(data_dir.join("plugins").join("cache"));
        config.allow_private = allow_private;
        Arc::new(PluginRuntime {
            host: PluginHost::new(config),
            store,
            loaded: Mutex::new(HashMap::new()),
            installed: Mutex::new(HashMap::new()),
            first_party: Mutex::new(HashMap::new()),
            engine: Mutex::new(None),
            rt: tokio::runtime::Handle::current(),
            inbound_wake: Notify::new(),
            outbox_wake: Notify::new(),
            public_url: std::env::var("BOTYARD_PUBLIC_URL")
                .ok()
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            limits,
        })
    }

    /// The engine runs the turns of connector events (set once, after the engine is built
    /// with this runtime as its app router and sink).
    pub fn set_engine(&self, engine: Engine) {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(engine);
    }

    /// Let go of the engine at shutdown (connector events are no longer run), so that the
    /// engine, this runtime and their store handles can be dropped.
    pub fn detach_engine(&self) {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `BOTYARD_PUBLIC_URL` without its trailing slash, when set.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Load (or take from memory) a component.
    pub async fn load(&self, manifest: Manifest, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let sha = botyard_plugins::sha256_hex(wasm);
        if let Some(p) = self.loaded.lock().expect("plugins lock").get(&sha)
            && p.manifest() == &manifest
        {
            return Ok(p.clone());
        }
        let p = self.host.load(manifest, wasm).await?;
        self.loaded
            .lock()
            .expect("plugins lock")
            .insert(sha, p.clone());
        Ok(p)
    }

    /// The plugin `name` as organization `org` sees it: its own installation, else the
    /// first-party plugin of that name. `Ok(None)` when neither exists.
    ///
    /// On the hot path (every `App()` call and webhook) this is one indexed read of the
    /// installation row (no `.wasm`), done in place: `App()` calls already run on a blocking
    /// thread, and elsewhere `block_in_place` keeps the runtime's other tasks moving.
    pub async fn resolve(&self, org: &str, name: &str) -> Result<Option<Resolved>, String> {
        let row =
            kv::blocking(|| self.store.get_plugin_row(org, name)).map_err(|e| e.to_string())?;
        if let Some(row) = row {
            let key = (row.sha256.clone(), row.manifest.to_string());
            let cached = self
                .installed
                .lock()
                .expect("plugins lock")
                .get(&key)
                .cloned();
            let plugin = match cached {
                Some(p) => p,
                None => {
                    let manifest = Manifest::from_json(key.1.as_bytes())?;
                    let store = self.store.clone();
                    let (o, n, sha) = (org.to_string(), name.to_string(), row.sha256.clone());
                    let wasm = tokio::task::spawn_blocking(move || store.plugin_wasm(&o, &n, &sha))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("plugin `{name}` was replaced during the call"))?;
                    let p = self
                        .host
                        .load(manifest, &wasm)
                        .await
                        .map_err(|e| e.to_string())?;
                    self.installed
                        .lock()
                        .expect("plugins lock")
                        .insert(key, p.clone());
                    p
                }
            };
            let install = installation(
                org,
                plugin.manifest(),
                &row.config,
                &row.allowed_hosts,
                &|name, v| {
                    self.store
                        .open_secret(SecretOwner::Plugin(&row.id), name, v)
                        .map_err(|e| e.to_string())
                },
            )?;
            return Ok(Some(Resolved {
                plugin,
                install,
                first_party: false,
            }));
        }
        let Some(&(static_name, wasm)) = botyard_plugins::builtin::FIRST_PARTY
            .iter()
            .find(|(n, _)| *n == name)
        else {
            return Ok(None);
        };
        let cached = self
            .first_party
            .lock()
            .expect("plugins lock")
            .get(static_name)
            .cloned();
        let plugin = match cached {
            Some(p) => p,
            None => {
                let manifest = manage::first_party_manifest(name)
                    .ok_or_else(|| format!("first-party plugin `{name}` has no valid manifest"))?;
                let p = self
                    .host
                    .load(manifest.clone(), wasm)
                    .await
                    .map_err(|e| e.to_string())?;
                self.first_party
                    .lock()
                    .expect("plugins lock")
                    .insert(static_name, p.clone());
                p
            }
        };
        let install = Installation {
            org: org.to_string(),
            ..Default::default()
        };
        Ok(Some(Resolved {
            plugin,
            install,
            first_party: true,
        }))
    }

    /// The connector of a channel with the channel's settings as the installation.
    pub async fn resolve_channel(&self, channel: &Channel) -> Result<Resolved, String> {
        let mut r = self
            .resolve(&channel.organization_id, &channel.kind)
            .await?
            .ok_or_else(|| {
                format!(
                    "no connector plugin `{}` for channel {}",
                    channel.kind, channel.id
                )
            })?;
        if r.plugin.manifest().kind != PluginKind::Channel {
            return Err(format!(
                "plugin `{}` is not a channel connector",
                channel.kind
            ));
        }
        let hosts = string_list(channel.config.get(manage::ALLOW_HOSTS));
        let from_channel = installation(
            &channel.organization_id,
            r.plugin.manifest(),
            &channel.config,
            &hosts,
            &|name, v| {
                self.store
                    .open_secret(SecretOwner::Channel(&channel.id), name, v)
                    .map_err(|e| e.to_string())
            },
        )?;
        r.install.config.extend(from_channel.config);
        r.install.secrets.extend(from_channel.secrets);
        r.install.allowed_hosts.extend(from_channel.allowed_hosts);
        Ok(r)
    }

    /// Record a failed plugin call in the store's list of recent errors (off the caller's
    /// path; a failure to record is only logged).
    pub(crate) fn note_error(
        &self,
        org: &str,
        plugin: &str,
        operation: &'static str,
        channel: Option<&str>,
        message: String,
    ) {
        let store = self.store.clone();
        let (org, plugin, channel) = (
            org.to_string(),
            plugin.to_string(),
            channel.map(str::to_string),
        );
        self.rt.spawn_blocking(move || {
            if let Err(e) =
                store.record_plugin_error(&org, &plugin, operation, channel.as_deref(), &message)
            {
                tracing::warn!(target: "botyard::plugins", "recording a plugin error: {e}");
            }
        });
    }

    fn engine(&self) -> Option<Engine> {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn string_list(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// How [`installation`] reads a secret's stored value: `(name, value) -> plain`.
pub type OpenSecret<'a> = &'a dyn Fn(&str, Option<&Json>) -> Result<Option<String>, String>;

/// Secrets given in the clear (`botyard plugin test`: nothing is stored).
pub fn plain_secret(_name: &str, v: Option<&Json>) -> Result<Option<String>, String> {
    Ok(match v {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    })
}

/// Split a settings object into the config values and secrets the manifest declares; the
/// secrets are opened with `open` (the only place stored secrets are decrypted). Non-string
/// config values are passed as their JSON text.
pub fn installation(
    org: &str,
    manifest: &Manifest,
    settings: &Json,
    hosts: &[String],
    open: OpenSecret<'_>,
) -> Result<Installation, String> {
    let value = |name: &str| -> Option<String> {
        match settings.get(name)? {
            Json::String(s) => Some(s.clone()),
            Json::Null => None,
            other => Some(other.to_string()),
        }
    };
    let config: BTreeMap<String, String> = manifest
        .config
        .iter()
        .filter_map(|s| value(&s.name).map(|v| (s.name.clone(), v)))
        .collect();
    let mut secrets = BTreeMap::new();
    for s in &manifest.secrets {
        if let Some(v) = open(&s.name, settings.get(&s.name))? {
            secrets.insert(s.name.clone(), v);
        }
    }
    Ok(Installation {
        org: org.to_string(),
        allowed_hosts: hosts.to_vec(),
        config,
        secrets,
    })
}
