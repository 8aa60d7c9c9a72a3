//! Bots and flows, validation, builds and versions, the try-it chat, per-bot usage. Every rule
//! lives in the engine or the store: validation is `Engine::validate` (the interpreter's
//! `csml::validate`), builds are `Engine::build`, try-it turns are `Engine::chat`.

use super::Call;
use crate::engine::{ChatRequest, ValidateFlow, ValidateRequest};
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::JsonFields;
use crate::http::response::{Body, json_response, no_content, ok_json};
use crate::store::{
    Bot, BotPatch, BotSettings, ClientKey, Flow, FlowPatch, NewBot, NewChannel, NewFlow,
};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value as Json, json};

/// The flow a new bot starts with: valid, and it answers.
const NEW_BOT_FLOW: &str =
    "start:\n  say \"Hello! Edit this flow to teach me something.\"\n  goto end\n";
/// The flow a new flow starts with.
const NEW_FLOW: &str = "start:\n  say \"Hi from a new flow\"\n  goto end\n";
/// Channel kind of the admin's try-it conversations (one channel per bot, made on first use).
pub(super) const TRY_KIND: &str = crate::engine::TRY_IT_KIND;

fn bot_json(b: &Bot, live_seq: Option<i64>) -> Json {
    super::wire::bot(b, live_seq)
}

fn flow_json(f: &Flow) -> Json {
    json!({"id": f.id, "name": f.name, "description": f.description, "content": f.content,
           "commands": f.commands, "updated_at": f.updated_at})
}

pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let bots = call.store(move |s| s.bot_summaries(&org)).await?;
    Ok(ok_json(&super::wire::list(&bots, super::wire::bot_summary)))
}

/// `POST /orgs/:org/bots {name}`.
pub(super) async fn create(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let name = call.body.req_nonempty_str("name")?.trim().to_string();
    let new = NewBot {
        name,
        flows: vec![NewFlow {
            name: "Default".into(),
            content: NEW_BOT_FLOW.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (b, _) = call.store(move |s| s.create_bot(&org, new)).await?;
    Ok(json_response(StatusCode::CREATED, &bot_json(&b, None)))
}

/// `GET /orgs/:org/bots/:bot`: the bot (with the live build's number) and its flows.
pub(super) async fn get(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (b, flows) = call.state.engine.get_bot(&org, &bot).await?;
    let live = live_seq(&call, &b).await?;
    Ok(ok_json(
        &json!({"bot": bot_json(&b, live), "flows": flows.iter().map(flow_json).collect::<Vec<_>>()}),
    ))
}

async fn live_seq(call: &Call<'_>, b: &Bot) -> ApiResult<Option<i64>> {
    let Some(v) = b.live_version_id.clone() else {
        return Ok(None);
    };
    let (org, bot) = (b.organization_id.clone(), b.id.clone());
    Ok(Some(
        call.store(move |s| s.get_version(&org, &bot, Some(&v)))
            .await?
            .seq,
    ))
}

/// `PUT /orgs/:org/bots/:bot {name?, description?, default_flow?, env?, settings?}`.
/// `settings` is merged into the current settings (so the UI can flip one flag).
pub(super) async fn update(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let body = &call.body;
    let mut patch = BotPatch::default();
    if let Some(n) = body.opt_str("name")? {
        if n.trim().is_empty() {
            return Err(ApiError::bad_request("field name must not be empty"));
        }
        patch.name = Some(n.trim().to_string());
    }
    if body.contains_key("description") {
        patch.description = Some(body.opt_str("description")?.map(str::to_string));
    }
    patch.default_flow = body.opt_str("default_flow")?.map(str::to_string);
    if let Some(env) = body.opt_object("env")? {
        patch.env = Some(
            env.iter()
                .map(|(k, v)| (k.clone(), Json::String(env_string(v))))
                .collect(),
        );
    }
    if let Some(changes) = body.opt_object("settings")? {
        let (o, b) = (org.clone(), bot.clone());
        let current = call.store(move |s| s.get_bot(&o, &b)).await?.settings;
        patch.settings = Some(merge_settings(current, changes)?);
    }
    let (b, flows) = call.state.engine.update_bot(&org, &bot, patch).await?;
    let live = live_seq(&call, &b).await?;
    Ok(ok_json(
        &json!({"bot": bot_json(&b, live), "flows": flows.iter().map(flow_json).collect::<Vec<_>>()}),
    ))
}

fn env_string(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn merge_settings(current: BotSettings, changes: &Map<String, Json>) -> ApiResult<BotSettings> {
    let mut v = serde_json::to_value(current).map_err(ApiError::internal)?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("settings are not an object"))?;
    for (k, val) in changes {
        if val.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid settings: {e}")))
}

pub(super) async fn delete(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    call.store(move |s| s.delete_bot(&org, &bot)).await?;
    Ok(no_content())
}

/// `POST …/flows {name, content?, commands?}`.
pub(super) async fn create_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let new = NewFlow {
        name: call.body.req_nonempty_str("name")?.trim().to_string(),
        content: call
            .body
            .opt_str("content")?
            .unwrap_or(NEW_FLOW)
            .to_string(),
        description: call.body.opt_str("description")?.map(str::to_string),
        commands: call.body.opt_string_array("commands")?.unwrap_or_default(),
    };
    let f = call.state.engine.create_flow(&org, &bot, new).await?;
    Ok(json_response(StatusCode::CREATED, &flow_json(&f)))
}

/// `PUT …/flows/:flow {name?, content?, commands?, description?}`.
pub(super) async fn update_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, flow) = (call.org()?, call.param("bot")?, call.param("flow")?);
    let body = &call.body;
    let patch = FlowPatch {
        name: match body.opt_str("name")? {
            Some(n) if n.trim().is_empty() => {
                return Err(ApiError::bad_request("field name must not be empty"));
            }
            n => n.map(|n| n.trim().to_string()),
        },
        content: body.opt_str("content")?.map(str::to_string),
        description: if body.contains_key("description") {
            Some(body.opt_str("description")?.map(str::to_string))
        } else {
            None
        },
        commands: body.opt_string_array("commands")?,
    };
    let f = call
        .state
        .engine
        .update_flow(&org, &bot, &flow, patch)
        .await?;
    Ok(ok_json(&flow_json(&f)))
}

pub(super) async fn delete_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, flow) = (call.org()?, call.param("bot")?, call.param("flow")?);
    call.state.engine.delete_flow(&org, &bot, &flow).await?;
    Ok(no_content())
}

/// `POST …/validate {flows?: [{name, content, commands}]}`: validates the given flows (the
/// editor's unsaved text), or the saved working copy, with the bot's default flow.
pub(super) async fn validate(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (b, saved) = call.state.engine.get_bot(&org, &bot).await?;
    let default_flow = b
        .default_flow_id
        .as_deref()
        .and_then(|d| saved.iter().find(|f| f.id == d))
        .map(|f| f.name.clone());
    let flows = match call.body.get("flows") {
        None | Some(Json::Null) => saved
            .iter()
            .map(|f| ValidateFlow {
                id: Some(f.id.clone()),
                name: f.name.clone(),
                content: f.content.clone(),
                commands: f.commands.clone(),
            })
            .collect(),
        Some(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, f) in items.iter().enumerate() {
                let f = f.as_object().ok_or_else(|| {
                    ApiError::bad_request(format!("flows[{i}] must be an object"))
                })?;
                out.push(ValidateFlow {
                    id: None,
                    name: f
                        .req_str("name")
                        .map_err(|_| ApiError::missing_field(&format!("flows[{i}].name")))?
                        .to_string(),
                    content: f
                        .req_str("content")
                        .map_err(|_| ApiError::missing_field(&format!("flows[{i}].content")))?
                        .to_string(),
                    commands: f.opt_string_array("commands")?.unwrap_or_default(),
                });
            }
            out
        }
        Some(_) => return Err(ApiError::bad_request("field flows must be an array")),
    };
    let report = call
        .state
        .engine
        .validate(ValidateRequest {
            default_flow,
            flows,
        })
        .await?;
    Ok(ok_json(&report))
}

/// `POST …/build`: 201 with the new version; 400 with `errors` when invalid.
pub(super) async fn build(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let v = call.state.engine.build(&org, &bot).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &version_summary(&v, true),
    ))
}

fn version_summary(v: &crate::store::BotVersion, live: bool) -> Json {
    json!({"id": v.id, "seq": v.seq, "created_at": v.created_at, "engine_version": v.engine_version,
           "flows": v.snapshot.flows.len(), "live": live})
}

pub(super) async fn versions(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (b, list) = call
        .store(move |s| Ok((s.get_bot(&org, &bot)?, s.list_versions(&org, &bot, 200)?)))
        .await?;
    let live = b.live_version_id.as_deref();
    Ok(ok_json(
        &list
            .iter()
            .map(|v| version_summary(v, Some(v.id.as_str()) == live))
            .collect::<Vec<_>>(),
    ))
}

pub(super) async fn version(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, v) = (call.org()?, call.param("bot")?, call.param("version")?);
    Ok(ok_json(
        &call.state.engine.get_build(&org, &bot, Some(&v)).await?,
    ))
}

/// `POST …/versions/:version/publish`: that build serves traffic (also how to roll back).
pub(super) async fn publish(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot, v) = (call.org()?, call.param("bot")?, call.param("version")?);
    let b = call
        .store(move |s| s.set_live_version(&org, &bot, Some(&v)))
        .await?;
    let live = live_seq(&call, &b).await?;
    Ok(ok_json(&bot_json(&b, live)))
}

/// The bot's try-it channel, created on first use.
async fn try_channel(call: &Call<'_>, org: &str, bot: &str) -> ApiResult<crate::store::Channel> {
    let (o, b) = (org.to_string(), bot.to_string());
    call.store(move |s| {
        if let Some(c) = s
            .list_channels(&o, Some(&b))?
            .into_iter()
            .find(|c| c.kind == TRY_KIND)
        {
            return Ok(c);
        }
        let new = NewChannel {
            kind: TRY_KIND.into(),
            name: "Try it (admin)".into(),
            webhook_url: None,
            config: json!({}),
        };
        Ok(s.create_channel(&o, &b, new)?.0)
    })
    .await
}

/// The try-it user of an admin: one conversation per admin and bot.
fn try_user(call: &Call<'_>) -> ApiResult<String> {
    Ok(format!("admin:{}", call.user()?.email))
}

/// `POST …/try {event: {content_type, content}}`: one turn as the admin's test user, through
/// the engine's chat (the same path as `POST /v1/api/chat`).
pub(super) async fn try_it(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let payload = call.body.req_object("event")?.clone();
    let channel = try_channel(&call, &org, &bot).await?;
    let req = ChatRequest {
        channel,
        user_id: try_user(&call)?,
        payload: Json::Object(payload),
        metadata: json!({"admin_try_it": true}),
        turn_metadata: Default::default(),
        request_id: None,
        received_at: crate::store::ids::now_millis(),
    };
    let r = call.state.engine.chat(req).await?;
    Ok(ok_json(&json!({
        "conversation_id": r.conversation_id,
        "conversation_end": r.conversation_end,
        "messages": r.messages.iter().map(|m| serde_json::to_value(&m.payload).unwrap_or(Json::Null)).collect::<Vec<_>>(),
    })))
}

/// `POST …/try/reset`: ends the admin's open try-it conversation.
pub(super) async fn try_reset(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let channel = try_channel(&call, &org, &bot).await?;
    let client = ClientKey {
        organization_id: org.clone(),
        bot_id: bot,
        channel_id: channel.id,
        user_id: try_user(&call)?,
    };
    let now = crate::store::ids::now_millis();
    call.store(move |s| {
        if let Some(c) = s.open_conversation(&client, now)? {
            s.close_conversation(&org, &c.id)?;
        }
        Ok(())
    })
    .await?;
    Ok(ok_json(&json!({"ok": true})))
}

/// Days of usage requested (`?days=`, 1..=366, default 30) as (from_day, to_day).
pub(super) fn day_range(call: &Call<'_>) -> (i64, i64) {
    let days = call
        .query("days")
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(30)
        .clamp(1, 366);
    let today = crate::store::ids::day_of(crate::store::ids::now_millis());
    (today - days + 1, today)
}

/// `GET …/usage?days=30`: messages and active users per UTC day.
pub(super) async fn usage(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, bot) = (call.org()?, call.param("bot")?);
    let (from, to) = day_range(&call);
    let days = call
        .store(move |s| s.usage_by_day(&org, &bot, from, to + 1))
        .await?;
    Ok(ok_json(
        &json!({"from": from, "to": to, "days": super::wire::usage_days(&days)}),
    ))
}
