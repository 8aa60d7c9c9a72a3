//! Plugins of an organization: the installed and first-party plugins with their manifests,
//! settings (config values; only the names of the secrets that are set), allowed hosts and
//! recent failed calls; upload (a raw `.wasm` body), settings and allowed-hosts edits,
//! removal. Every rule is `crate::plugins::manage`'s, the same as the CLI's.

use super::{Call, wire};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, no_content, ok_json};
use crate::plugins::manage;
use crate::store::plugins::SettingsUpdate;
use botyard_plugins::builtin;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

fn runtime(call: &Call<'_>) -> ApiResult<Arc<crate::plugins::PluginRuntime>> {
    call.state
        .plugins
        .clone()
        .ok_or_else(|| ApiError::not_found("this server runs without the plugin host"))
}

/// The organization's view of one plugin (`name`), from [`manage::list`].
async fn entry(call: &Call<'_>, name: &str) -> ApiResult<Json> {
    let (org, n) = (call.org()?, name.to_string());
    let (list, errors) = call
        .store(move |s| {
            Ok((
                manage::list(Some(s), Some(&org), true)?,
                s.plugin_errors(&org, Some(&n))?,
            ))
        })
        .await?;
    let mut p = list
        .into_iter()
        .find(|p| p["name"] == name)
        .ok_or_else(|| ApiError::not_found(format!("plugin `{name}` not found")))?;
    p["errors"] = wire::plugin_errors(&errors);
    Ok(p)
}

/// `GET /orgs/:org/plugins`: installations first-party plugins not replaced, each with its
/// recent errors (newest first).
pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let supported = call.state.plugins.is_some();
    let (mut list, errors) = call
        .store(move |s| {
            Ok((
                manage::list(Some(s), Some(&org), true)?,
                s.plugin_errors(&org, None)?,
            ))
        })
        .await?;
    for p in &mut list {
        p["errors"] = wire::plugin_errors(errors.iter().filter(|e| p["name"] == e.plugin));
    }
    Ok(ok_json(&json!({
        "supported": supported,
        "max_upload_bytes": manage::MAX_UPLOAD_BYTES,
        "plugins": list,
    })))
}

/// `POST /orgs/:org/plugins` with the component as the body (`Content-Type:
/// application/wasm`). Replaces an installation of the same name, keeping its settings and
/// allowed hosts. The component is compiled and linked first (unsupported API, wrong world or
/// imports, malformed: 400).
pub(super) async fn upload(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let rt = runtime(&call)?;
    let wasm = call
        .raw
        .clone()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "send the .wasm component as the body (Content-Type: application/wasm)",
            )
        })?
        .to_vec();
    let manifest =
        manage::read_component(&wasm, None).map_err(|e| ApiError::bad_request(e.to_string()))?;
    rt.load(manifest.clone(), &wasm)
        .await
        .map_err(|e| ApiError::bad_request(format!("the plugin cannot be loaded: {e}")))?;
    let name = manifest.name.clone();
    call.store(move |s| {
        let (hosts, kept) = match s.get_plugin(&org, &manifest.name)? {
            Some((row, _)) => (row.allowed_hosts, row.config),
            None => (Vec::new(), json!({})),
        };
        let row = manage::install(s, &org, &manifest, wasm, hosts, &SettingsUpdate::default())?;
        // The settings of the replaced version stay (secrets remain sealed to the same row).
        if kept.as_object().is_some_and(|o| !o.is_empty()) {
            let up = SettingsUpdate {
                config: kept.as_object().cloned().unwrap_or_default(),
                ..Default::default()
            };
            s.update_plugin_settings(&org, &row.name, None, up)?;
        }
        Ok(row)
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &entry(&call, &name).await?,
    ))
}

/// `PUT /orgs/:org/plugins/:name {allowed_hosts?, settings?}`: settings by the names the
/// manifest declares (a blank secret keeps the stored one). On a first-party plugin that is
/// not installed yet, this installs it for the organization with these settings (as
/// `botyard plugin install NAME --org ORG` does).
pub(super) async fn update(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, name) = (call.org()?, call.param("name")?);
    let hosts = call.body.opt_string_array("allowed_hosts")?;
    let settings: Map<String, Json> = call
        .body
        .opt_object("settings")?
        .cloned()
        .unwrap_or_default();
    let installed = {
        let (o, n) = (org.clone(), name.clone());
        call.store(move |s| Ok(s.get_plugin(&o, &n)?.is_some()))
            .await?
    };
    if !installed {
        let wasm = builtin::wasm(&name)
            .ok_or_else(|| ApiError::not_found(format!("plugin `{name}` not found")))?;
        let manifest = manage::first_party_manifest(&name)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("first-party {name} has no manifest")))?;
        let (o, hosts) = (org.clone(), hosts.clone().unwrap_or_default());
        call.store(move |s| {
            let up = manage::split_settings(&manifest, &settings, false)?;
            manage::install(s, &o, &manifest, wasm.to_vec(), hosts, &up)
        })
        .await?;
        return Ok(json_response(
            StatusCode::CREATED,
            &entry(&call, &name).await?,
        ));
    }
    let (o, n) = (org.clone(), name.clone());
    call.store(move |s| manage::update_installation(s, &o, &n, hosts, &settings))
        .await?;
    Ok(ok_json(&entry(&call, &name).await?))
}

/// `DELETE /orgs/:org/plugins/:name`: the organization's installation (first-party plugins
/// cannot be removed; removing an installation that replaced one brings it back).
pub(super) async fn remove(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, name) = (call.org()?, call.param("name")?);
    call.store(move |s| s.remove_plugin(&org, &name)).await?;
    Ok(no_content())
}
