//! Plugin and connector-channel management rules, shared by the CLI (`botyard plugin ...`,
//! `botyard channel create`) and the admin API, so both accept and refuse exactly the same
//! things: which settings a plugin takes (the names its manifest declares), which hosts an
//! installation may add, which kinds of connector channel exist for an organization, and how
//! settings are shown (config values, and only the *names* of the secrets that are set).
//!
//! Errors are [`store::Error`]s: `Invalid` (400), `NotFound` (404), the rest internal.

use crate::store::plugins::{NewPlugin, PluginRow, SettingsUpdate, is_sealed};
use crate::store::{self, Channel, NewChannel, Store};
use botyard_plugins::outbound::HostPattern;
use botyard_plugins::{Manifest, PluginKind, builtin};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Largest `.wasm` the admin API accepts for upload.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

/// The settings key of a connector channel listing extra outbound hosts (e.g. a local fake).
pub const ALLOW_HOSTS: &str = "allow_hosts";

fn invalid(m: impl Into<String>) -> store::Error {
    store::Error::Invalid(m.into())
}

/// The manifest of a first-party plugin, parsed once per process.
pub fn first_party_manifest(name: &str) -> Option<&'static Manifest> {
    static M: OnceLock<HashMap<&'static str, Manifest>> = OnceLock::new();
    M.get_or_init(|| {
        builtin::FIRST_PARTY
            .iter()
            .filter_map(|(n, w)| match Manifest::from_wasm(w) {
                Ok(m) => Some((*n, m)),
                Err(e) => {
                    tracing::error!(target: "botyard::plugins", "first-party {n}: {e}");
                    None
                }
            })
            .collect()
    })
    .get(name)
}

/// Every first-party manifest, in the fixed order.
pub fn first_party_manifests() -> Vec<&'static Manifest> {
    builtin::FIRST_PARTY
        .iter()
        .filter_map(|(n, _)| first_party_manifest(n))
        .collect()
}

/// The manifest of a stored installation.
pub fn row_manifest(row: &PluginRow) -> Result<Manifest, store::Error> {
    Manifest::from_json(row.manifest.to_string().as_bytes())
        .map_err(|e| store::Error::Other(format!("plugin `{}`: {e}", row.name)))
}

/// A component's manifest (embedded, or `side` when given), checked.
pub fn read_component(wasm: &[u8], side: Option<Manifest>) -> Result<Manifest, store::Error> {
    match side {
        Some(m) => Ok(m),
        None => Manifest::from_wasm(wasm).map_err(invalid),
    }
}

pub fn check_hosts(hosts: &[String]) -> Result<(), store::Error> {
    for h in hosts {
        HostPattern::parse(h).map_err(|e| invalid(format!("allowed host {h:?}: {e}")))?;
    }
    Ok(())
}

fn value_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn declared(manifest: &Manifest) -> String {
    let names: Vec<&str> = manifest
        .config
        .iter()
        .chain(&manifest.secrets)
        .map(|s| s.name.as_str())
        .collect();
    if names.is_empty() {
        "it takes no settings".into()
    } else {
        format!("it reads: {}", names.join(", "))
    }
}

/// Split `settings` (names → values) into config and secrets by the manifest's declarations.
/// Unknown names are refused. An empty or `null` secret means "leave as it is" when
/// `keep_empty_secrets` (an edit form with blank password fields), else "not set".
pub fn split_settings(
    manifest: &Manifest,
    settings: &Map<String, Json>,
    keep_empty_secrets: bool,
) -> Result<SettingsUpdate, store::Error> {
    let mut up = SettingsUpdate::default();
    for (k, v) in settings {
        if manifest.secret_setting(k).is_some() {
            match value_text(v).filter(|s| !s.is_empty()) {
                Some(s) => up.secrets.push((k.clone(), Some(s))),
                None if keep_empty_secrets => {}
                None => up.secrets.push((k.clone(), None)),
            }
        } else if manifest.config_setting(k).is_some() {
            let v = match v {
                Json::String(s) if s.is_empty() => Json::Null,
                other => other.clone(),
            };
            up.config.insert(k.clone(), v);
        } else {
            return Err(invalid(format!(
                "plugin {} declares no setting `{k}`; {}",
                manifest.name,
                declared(manifest)
            )));
        }
    }
    Ok(up)
}

/// The settings JSON a new installation starts with (the store seals the secrets).
fn initial_settings(update: &SettingsUpdate) -> Json {
    let mut obj = Map::new();
    for (k, v) in &update.config {
        if !v.is_null() {
            obj.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &update.secrets {
        if let Some(v) = v {
            obj.insert(k.clone(), Json::String(v.clone()));
        }
    }
    Json::Object(obj)
}

/// Store an installation whose component has been loaded successfully (the caller compiled
/// it with the same host checks as the server: API version, world, imports).
pub fn install(
    store: &Store,
    org: &str,
    manifest: &Manifest,
    wasm: Vec<u8>,
    allowed_hosts: Vec<String>,
    settings: &SettingsUpdate,
) -> Result<PluginRow, store::Error> {
    check_hosts(&allowed_hosts)?;
    store.install_plugin(
        org,
        NewPlugin {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind.as_str().into(),
            api: manifest.api.clone(),
            sha256: botyard_plugins::sha256_hex(&wasm),
            manifest: serde_json::to_value(manifest).map_err(store::Error::from)?,
            wasm,
            allowed_hosts,
            config: initial_settings(settings),
        },
    )
}

/// Change an installation's allowed hosts and/or settings.
pub fn update_installation(
    store: &Store,
    org: &str,
    name: &str,
    allowed_hosts: Option<Vec<String>>,
    settings: &Map<String, Json>,
) -> Result<PluginRow, store::Error> {
    if let Some(h) = &allowed_hosts {
        check_hosts(h)?;
    }
    let (row, _) = store
        .get_plugin(org, name)?
        .ok_or_else(|| store::Error::NotFound(format!("plugin `{name}` is not installed")))?;
    let update = split_settings(&row_manifest(&row)?, settings, true)?;
    store.update_plugin_settings(org, name, allowed_hosts, update)
}

/// The connector plugin behind channels of `kind` for `org`: its installation, else the
/// first-party connector of that name. `(manifest, first_party)`.
pub fn connector_manifest(
    store: &Store,
    org: &str,
    kind: &str,
) -> Result<(Manifest, bool), store::Error> {
    let (manifest, first_party) = match store.get_plugin(org, kind)? {
        Some((row, _)) => (row_manifest(&row)?, false),
        None => match first_party_manifest(kind) {
            Some(m) => (m.clone(), true),
            None => {
                let known: Vec<&str> = first_party_manifests()
                    .into_iter()
                    .filter(|m| m.kind == PluginKind::Channel)
                    .map(|m| m.name.as_str())
                    .collect();
                return Err(invalid(format!(
                    "no connector plugin `{kind}` for this organization: install one \
                     (botyard plugin install FILE --org ORG) or use a first-party connector ({})",
                    known.join(", ")
                )));
            }
        },
    };
    if manifest.kind != PluginKind::Channel {
        return Err(invalid(format!(
            "plugin `{kind}` is an app, not a channel connector"
        )));
    }
    Ok((manifest, first_party))
}

/// The channel-only settings (`allow_hosts`) out of `settings`, checked.
fn take_allow_hosts(settings: &mut Map<String, Json>) -> Result<Option<Json>, store::Error> {
    let Some(v) = settings.remove(ALLOW_HOSTS) else {
        return Ok(None);
    };
    if v.is_null() {
        return Ok(Some(Json::Null));
    }
    let hosts: Vec<String> = serde_json::from_value(v)
        .map_err(|_| invalid(format!("{ALLOW_HOSTS} must be an array of hosts")))?;
    check_hosts(&hosts)?;
    Ok(Some(json!(hosts)))
}

/// Create a connector channel of `kind` for `bot`: the settings are checked against the
/// connector's manifest, config values stored as given, secrets sealed to the channel.
pub fn create_connector_channel(
    store: &Store,
    org: &str,
    bot: &str,
    kind: &str,
    name: &str,
    settings: &Map<String, Json>,
) -> Result<Channel, store::Error> {
    if store::is_builtin_kind(kind) {
        return Err(invalid(format!("`{kind}` is not a connector kind")));
    }
    let (manifest, _) = connector_manifest(store, org, kind)?;
    let mut settings = settings.clone();
    let hosts = take_allow_hosts(&mut settings)?;
    let mut update = split_settings(&manifest, &settings, false)?;
    let missing: Vec<&str> = manifest
        .secrets
        .iter()
        .filter(|s| {
            s.required
                && !update
                    .secrets
                    .iter()
                    .any(|(k, v)| k == &s.name && v.is_some())
        })
        .chain(manifest.config.iter().filter(|s| {
            s.required
                && s.default.is_none()
                && update.config.get(&s.name).is_none_or(Json::is_null)
        }))
        .map(|s| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "connector {kind} needs: {}",
            missing.join(", ")
        )));
    }
    let mut config = Map::new();
    for (k, v) in std::mem::take(&mut update.config) {
        if !v.is_null() {
            config.insert(k, v);
        }
    }
    if let Some(h) = hosts.filter(|h| !h.is_null()) {
        config.insert(ALLOW_HOSTS.into(), h);
    }
    // One transaction: the row and its secrets, sealed to the row's id.
    let sealed = std::mem::take(&mut update.secrets)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let (channel, _) = store.create_channel_sealed(
        org,
        bot,
        NewChannel {
            kind: kind.to_string(),
            name: name.to_string(),
            webhook_url: None,
            config: Json::Object(config),
        },
        sealed,
    )?;
    Ok(channel)
}

/// Edit a connector channel's settings: config values and secrets by name (a blank secret
/// keeps the stored one, `null` config removes a value), `allow_hosts`.
pub fn update_connector_channel(
    store: &Store,
    org: &str,
    channel: &Channel,
    settings: &Map<String, Json>,
) -> Result<Channel, store::Error> {
    let (manifest, _) = connector_manifest(store, org, &channel.kind)?;
    let mut settings = settings.clone();
    let hosts = take_allow_hosts(&mut settings)?;
    let mut update = split_settings(&manifest, &settings, true)?;
    if let Some(h) = hosts {
        update.config.insert(ALLOW_HOSTS.into(), h);
    }
    store.update_channel_settings(org, &channel.id, update)
}

/// Settings as shown to people: config values, and the names of the secrets that are set
/// (never a value, sealed or not).
pub fn settings_view(manifest: Option<&Manifest>, settings: &Json) -> Json {
    let mut config = Map::new();
    let mut secrets_set = Vec::new();
    if let Some(obj) = settings.as_object() {
        for (k, v) in obj {
            let secret = is_sealed(v) || manifest.is_some_and(|m| m.secret_setting(k).is_some());
            if secret {
                if !v.is_null() {
                    secrets_set.push(k.clone());
                }
            } else {
                config.insert(k.clone(), v.clone());
            }
        }
    }
    json!({"config": config, "secrets_set": secrets_set})
}

/// A manifest's declared settings, for forms: `[{name, description, required, secret,
/// default}]`.
pub fn declared_settings(manifest: &Manifest) -> Json {
    let one = |s: &botyard_plugins::manifest::Setting, secret: bool| {
        json!({"name": s.name, "description": s.description, "required": s.required,
               "secret": secret, "default": s.default})
    };
    Json::Array(
        manifest
            .config
            .iter()
            .map(|s| one(s, false))
            .chain(manifest.secrets.iter().map(|s| one(s, true)))
            .collect(),
    )
}

/// Installed plugins (of `org`, or of every organization when `None`), preceded by the
/// first-party plugins when `first_party` (for an organization, those it has not replaced by
/// an installation of the same name). Each entry: name, kind, version, api, description,
/// first_party, org, manifest_hosts and allowed_hosts (the installation's additions),
/// settings (declared); installations also sha256, values (config values and which secrets
/// are set), timestamps.
pub fn list(
    store: Option<&Store>,
    org: Option<&str>,
    first_party: bool,
) -> Result<Vec<Json>, store::Error> {
    let rows = match store {
        Some(s) => s.list_plugins(org)?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    if first_party {
        for m in first_party_manifests() {
            if org.is_some() && rows.iter().any(|r| r.name == m.name) {
                continue;
            }
            out.push(json!({
                "name": m.name, "kind": m.kind.as_str(), "version": m.version, "api": m.api,
                "description": m.description, "first_party": true, "org": null,
                "manifest_hosts": m.allowed_hosts, "allowed_hosts": [],
                "settings": declared_settings(m),
            }));
        }
    }
    for p in &rows {
        let m = row_manifest(p).ok();
        out.push(json!({
            "name": p.name, "kind": p.kind, "version": p.version, "api": p.api,
            "description": p.manifest.get("description").cloned().unwrap_or(Json::Null),
            "first_party": false, "org": p.organization_id, "sha256": p.sha256,
            "manifest_hosts": m.as_ref().map(|m| m.allowed_hosts.clone()).unwrap_or_default(),
            "allowed_hosts": p.allowed_hosts,
            "settings": m.as_ref().map(declared_settings).unwrap_or(json!([])),
            "values": settings_view(m.as_ref(), &p.config),
            "replaces_first_party": builtin::is_first_party(&p.name),
            "created_at": p.created_at, "updated_at": p.updated_at,
        }));
    }
    Ok(out)
}
