//! Channels of a bot: Studio API channels (key, secret once, rotate, webhook URL), web chat
//! widgets of the Open Chat Studio API (embed key, allowed origins) and the bot's public
//! web-chat flag, connector channels: created and edited with the settings their connector's
//! manifest declares (`crate::plugins::manage`, the CLI's rules), shown with their
//! `/hooks/{token}` URL and the names of the secrets that are set, never their values.

use super::Call;
use super::bots::TRY_KIND;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, no_content, ok_json};
use crate::plugins::manage;
use crate::store::{Channel, ChannelPatch, KIND_API, NewChannel, Store};
use botyard_plugins::{Manifest, PluginKind};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;

/// Widget channels of OCS answer embed keys only (auth level 1): the admin UI's choice.
const WIDGET_AUTH_EMBED_KEY: i64 = 1;
const WIDGET_KIND: &str = "web";

/// How platforms reach this server, for webhook URLs to paste into them:
/// `BOTYARD_PUBLIC_URL` when set, else `scheme://host` of this request.
fn origin(call: &Call<'_>) -> String {
    if let Some(u) = call.state.plugins.as_ref().and_then(|p| p.public_url()) {
        return u.to_string();
    }
    let host = call
        .headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if call.secure() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Connector manifests by channel kind, for the kinds of `channels`.
type Manifests = HashMap<String, Manifest>;

fn manifests_of(s: &Store, org: &str, channels: &[Channel]) -> Manifests {
    let mut out = Manifests::new();
    for c in channels.iter().filter(|c| c.token.is_some()) {
        if !out.contains_key(&c.kind)
            && let Ok((m, _)) = manage::connector_manifest(s, org, &c.kind)
        {
            out.insert(c.kind.clone(), m);
        }
    }
    out
}

/// A channel as the admin UI shows it, named field by field: never its hook token (a
/// credential of connector webhooks, only shown as the URL) nor its config (secrets never
/// leave; `settings` names the ones that are set).
fn channel_json(c: &Channel, origin: &str, manifests: &Manifests) -> Json {
    let mut v = json!({
        "id": c.id,
        "organization_id": c.organization_id,
        "bot_id": c.bot_id,
        "kind": c.kind,
        "name": c.name,
        "api_key": c.api_key,
        "webhook_url": c.webhook_url,
        "plugin_id": c.plugin_id,
        "status": c.status,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "settings": manage::settings_view(manifests.get(&c.kind), &c.config),
    });
    // A connector channel whose plugin is installed: its webhook URL.
    if let Some(t) = c.token.as_ref().filter(|_| manifests.contains_key(&c.kind)) {
        v["connector"] = json!(true);
        v["hook_url"] = json!(format!("{origin}/hooks/{t}"));
    }
    v
}

/// The connector plugins the organization can create channels with.
fn connectors(s: &Store, org: &str) -> crate::store::Result<Vec<Json>> {
    Ok(manage::list(Some(s), Some(org), true)?
        .into_iter()
        .filter(|p| p["kind"] == PluginKind::Channel.as_str())
        .map(|p| {
            json!({"kind": p["name"], "name": p["name"], "version": p["version"],
                   "description": p["description"], "first_party": p["first_party"],
                   "settings": p["settings"]})
        })
        .collect())
}

/// A connector channel's settings from a body: `settings`, or `config` + `secrets`.
fn body_settings(call: &Call<'_>) -> ApiResult<Option<Map<String, Json>>> {
    let mut out = Map::new();
    let mut any = false;
    for key in ["settings", "config", "secrets"] {
        if let Some(o) = call.body.opt_object(key)? {
            out.extend(o.clone());
            any = true;
        }
    }
    Ok(any.then_some(out))
}

/// `GET …/bots/:bot/channels`.
pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (channels, widgets, b, manifests, connectors) = call
        .store(move |s| {
            let channels = s.list_channels(&org, Some(&bot))?;
            let manifests = manifests_of(s, &org, &channels);
            Ok((
                channels,
                s.ocs_widgets_of_bot(&org, &bot)?,
                s.get_bot(&org, &bot)?,
                manifests,
                connectors(s, &org)?,
            ))
        })
        .await?;
    let o = origin(&call);
    Ok(ok_json(&json!({
        "channels": channels.iter().filter(|c| c.kind != TRY_KIND).map(|c| channel_json(c, &o, &manifests)).collect::<Vec<_>>(),
        "web_chat": {
            "supported": true,
            "public": b.settings.web_chat_public,
            "widgets": widgets.iter().filter(|w| !w.deleted).map(|w| json!({
                "id": w.id, "name": w.name, "embed_key": w.embed_key, "allowed_origins": w.allowed_domains,
                "enabled": w.enabled,
            })).collect::<Vec<_>>(),
        },
        "connectors": connectors,
    })))
}

/// `GET /orgs/:org/channels`: every channel of the organization (filters of the
/// conversation list), including the try-it channels.
pub(super) async fn org_list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let (list, manifests) = call
        .store(move |s| {
            let list = s.list_channels(&org, None)?;
            let m = manifests_of(s, &org, &list);
            Ok((list, m))
        })
        .await?;
    let o = origin(&call);
    Ok(ok_json(
        &list
            .iter()
            .map(|c| channel_json(c, &o, &manifests))
            .collect::<Vec<_>>(),
    ))
}

/// `POST …/channels {kind: "api"|"web"|<connector>, name, webhook_url?, allowed_origins?,
/// settings?}`: a connector kind (`telegram`, an installed connector's name...) takes the
/// settings its manifest declares (`settings`, or `config` + `secrets`) and answers the
/// channel with its `hook_url`.
pub(super) async fn create(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let kind = call.body.opt_str("kind")?.unwrap_or(KIND_API).to_string();
    let name = call
        .body
        .opt_str("name")?
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        KIND_API => {
            let new = NewChannel {
                kind,
                name,
                webhook_url: call
                    .body
                    .opt_str("webhook_url")?
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                config: json!({}),
            };
            let (c, creds) = call
                .store(move |s| s.create_channel(&org, &bot, new))
                .await?;
            let o = origin(&call);
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"channel": channel_json(&c, &o, &Manifests::new()), "credentials": super::wire::credentials(&creds)}),
            ))
        }
        WIDGET_KIND => {
            let origins = call
                .body
                .opt_string_array("allowed_origins")?
                .unwrap_or_default();
            let name = if name.is_empty() {
                "Web chat".to_string()
            } else {
                name
            };
            let w = call
                .store(move |s| {
                    s.ocs_create_widget_channel(&org, &bot, &name, origins, WIDGET_AUTH_EMBED_KEY)
                })
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"widget": super::wire::widget(&w)}),
            ))
        }
        TRY_KIND => Err(ApiError::bad_request(
            "try-it channels are made by the try-it panel",
        )),
        connector => {
            let settings = body_settings(&call)?.unwrap_or_default();
            let name = if name.is_empty() {
                connector.to_string()
            } else {
                name
            };
            let kind = connector.to_string();
            let (c, manifests) = call
                .store(move |s| {
                    let c =
                        manage::create_connector_channel(s, &org, &bot, &kind, &name, &settings)?;
                    let m = manifests_of(s, &org, std::slice::from_ref(&c));
                    Ok((c, m))
                })
                .await?;
            let o = origin(&call);
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"channel": channel_json(&c, &o, &manifests)}),
            ))
        }
    }
}

/// `PUT …/channels/:channel {name?, webhook_url?, status?, settings?}` (`settings` on
/// connector channels: a blank secret keeps the stored one).
pub(super) async fn update(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, id) = (call.org()?, call.param("channel")?);
    let bot = call.param("bot")?;
    let patch = ChannelPatch {
        name: call
            .body
            .opt_str("name")?
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        webhook_url: if call.body.contains_key("webhook_url") {
            Some(
                call.body
                    .opt_str("webhook_url")?
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            )
        } else {
            None
        },
        config: None,
        status: match call.body.opt_str("status")? {
            Some(s @ ("active" | "disabled")) => Some(s.to_string()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "status `{other}` must be active or disabled"
                )));
            }
            None => None,
        },
    };
    let settings = body_settings(&call)?;
    let (c, manifests) = call
        .store(move |s| {
            let c = own_channel(s, &org, &bot, &id)?;
            if let Some(settings) = settings {
                if c.token.is_none() {
                    return Err(crate::store::Error::Invalid(
                        "only connector channels have settings".into(),
                    ));
                }
                manage::update_connector_channel(s, &org, &c, &settings)?;
            }
            let c = s.update_channel(&org, &id, patch)?;
            let m = manifests_of(s, &org, std::slice::from_ref(&c));
            Ok((c, m))
        })
        .await?;
    let o = origin(&call);
    Ok(ok_json(&channel_json(&c, &o, &manifests)))
}

/// The channel must belong to the bot in the path (not only to the organization).
fn own_channel(
    s: &crate::store::Store,
    org: &str,
    bot: &str,
    id: &str,
) -> crate::store::Result<Channel> {
    let c = s.get_channel(org, id)?;
    if c.bot_id != bot || c.kind == TRY_KIND {
        return Err(crate::store::Error::NotFound(format!(
            "channel `{id}` not found"
        )));
    }
    Ok(c)
}

/// `POST …/channels/:channel/rotate`: new key and secret, shown once.
pub(super) async fn rotate(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, id) = (call.org()?, call.param("bot")?, call.param("channel")?);
    let creds = call
        .store(move |s| {
            own_channel(s, &org, &bot, &id)?;
            s.rotate_channel(&org, &id)
        })
        .await?;
    Ok(ok_json(&super::wire::credentials(&creds)))
}

pub(super) async fn delete(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, id) = (call.org()?, call.param("bot")?, call.param("channel")?);
    call.store(move |s| {
        own_channel(s, &org, &bot, &id)?;
        s.delete_channel(&org, &id)
    })
    .await?;
    Ok(no_content())
}
