//! Channels of a bot: Studio API channels (key, secret once, rotate, webhook URL), web chat
//! widgets of the Open Chat Studio API (embed key, allowed origins) and the bot's public
//! web-chat flag, connector channels (shown with their `/hooks/{token}` URL).

use super::Call;
use super::bots::TRY_KIND;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, no_content, ok_json};
use crate::store::{Channel, ChannelPatch, KIND_API, NewChannel};
use hyper::{Response, StatusCode};
use serde_json::{Value as Json, json};

/// Widget channels of OCS answer embed keys only (auth level 1): the admin UI's choice.
const WIDGET_AUTH_EMBED_KEY: i64 = 1;
const WIDGET_KIND: &str = "web";

/// `scheme://host` of this request, for webhook URLs to paste into platforms.
fn origin(call: &Call<'_>) -> String {
    let host = call
        .headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if call.secure() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn channel_json(c: &Channel, origin: &str) -> Json {
    let mut v = serde_json::to_value(c).unwrap_or(Json::Null);
    if let Some(o) = v.as_object_mut() {
        // The hook token is a credential of connector webhooks: only shown as the URL.
        o.remove("token");
        if c.plugin_id.is_some()
            && let Some(t) = &c.token
        {
            o.insert("hook_url".into(), json!(format!("{origin}/hooks/{t}")));
        }
    }
    v
}

/// `GET …/bots/:bot/channels`.
pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (channels, widgets, b) = call
        .store(move |s| {
            Ok((
                s.list_channels(&org, Some(&bot))?,
                s.ocs_widgets_of_bot(&org, &bot)?,
                s.get_bot(&org, &bot)?,
            ))
        })
        .await?;
    let o = origin(&call);
    Ok(ok_json(&json!({
        "channels": channels.iter().filter(|c| c.kind != TRY_KIND).map(|c| channel_json(c, &o)).collect::<Vec<_>>(),
        "web_chat": {
            "supported": true,
            "public": b.settings.web_chat_public,
            "widgets": widgets.iter().filter(|w| !w.deleted).map(|w| json!({
                "id": w.id, "name": w.name, "embed_key": w.embed_key, "allowed_origins": w.allowed_domains,
                "enabled": w.enabled,
            })).collect::<Vec<_>>(),
        },
        // Connector plugins publish their manifests here once the plugin host is wired in.
        "connectors": [],
    })))
}

/// `GET /orgs/:org/channels`: every channel of the organization (filters of the
/// conversation list), including the try-it channels.
pub(super) async fn org_list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let list = call.store(move |s| s.list_channels(&org, None)).await?;
    let o = origin(&call);
    Ok(ok_json(
        &list.iter().map(|c| channel_json(c, &o)).collect::<Vec<_>>(),
    ))
}

/// `POST …/channels {kind: "api"|"web", name, webhook_url?, allowed_origins?}`.
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
                &json!({"channel": channel_json(&c, &o), "credentials": creds}),
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
            Ok(json_response(StatusCode::CREATED, &json!({"widget": w})))
        }
        other => Err(ApiError::bad_request(format!(
            "channel kind `{other}` cannot be created here (api or web; connectors come with plugins)"
        ))),
    }
}

/// `PUT …/channels/:channel {name?, webhook_url?, status?}`.
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
    let c = call
        .store(move |s| {
            own_channel(s, &org, &bot, &id)?;
            s.update_channel(&org, &id, patch)
        })
        .await?;
    let o = origin(&call);
    Ok(ok_json(&channel_json(&c, &o)))
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
    Ok(ok_json(&creds))
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
