//! Bot API handlers (spec §2.3–§2.12, C1): the key's bot, its flows, usage, validate, build.
//! Every call is scoped to the key's organization and bot.

use super::super::error::{ApiError, ApiResult};
use super::super::request::JsonFields;
use super::super::response::{Body, no_content, ok_json};
use super::super::router::query_param;
use super::{Call, dto};
use crate::engine::{ValidateFlow, ValidateRequest};
use crate::store::{BotPatch, FlowPatch, NewFlow};
use hyper::Response;
use serde_json::Value as Json;

pub(super) async fn get_bot(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (b, flows) = call.state.engine.get_bot(call.org(), call.bot()).await?;
    Ok(ok_json(&dto::bot(&b, &flows)))
}

pub(super) async fn put_bot(call: Call<'_>) -> ApiResult<Response<Body>> {
    let body = &call.body;
    let mut patch = BotPatch::default();
    if let Some(name) = body.opt_str("name")? {
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("field name must not be empty"));
        }
        patch.name = Some(name.to_string());
    }
    if body.contains_key("description") {
        patch.description = Some(body.opt_str("description")?.map(str::to_string));
    }
    patch.default_flow = body.opt_str("default_flow")?.map(str::to_string);
    if let Some(env) = body.opt_object("env")? {
        // Values are coerced to strings (spec §2.4).
        patch.env = Some(
            env.iter()
                .map(|(k, v)| (k.clone(), Json::String(dto::value_string(v))))
                .collect(),
        );
    }
    patch.flow_commands = match body.get("airules") {
        None | Some(Json::Null) => None,
        Some(Json::Array(rules)) => Some(parse_airules(rules)?),
        Some(_) => return Err(ApiError::bad_request("field airules must be an array")),
    };
    // One store transaction: the bot fields and every flow's commands change together (an
    // unknown flow in `airules` is a 404 and nothing changes).
    let (b, flows) = call
        .state
        .engine
        .update_bot(call.org(), call.bot(), patch)
        .await?;
    Ok(ok_json(&dto::bot(&b, &flows)))
}

/// `[{"commands": [...], "target": {"flow_name": "X"}}]` → (flow name, commands). Each named
/// flow gets its rules' commands; flows not named keep only their automatic `/<name>` command
/// (compat, spec §2.4).
fn parse_airules(rules: &[Json]) -> ApiResult<Vec<(String, Vec<String>)>> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r
                .as_object()
                .ok_or_else(|| ApiError::bad_request(format!("airules[{i}] must be an object")))?;
            let name = r.req_str("target.flow_name").map_err(|_| {
                ApiError::bad_request(format!("missing field: airules[{i}].target.flow_name"))
            })?;
            let commands = r.opt_string_array("commands")?.unwrap_or_default();
            Ok((name.to_string(), commands))
        })
        .collect()
}

pub(super) async fn list_flows(call: Call<'_>) -> ApiResult<Response<Body>> {
    let flows = call.state.engine.list_flows(call.org(), call.bot()).await?;
    Ok(ok_json(&flows.iter().map(dto::flow).collect::<Vec<_>>()))
}

pub(super) async fn create_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let body = &call.body;
    // A client-side `id` is sent by the official tools and ignored (spec §2.6).
    let new = NewFlow {
        name: body.req_nonempty_str("name")?.to_string(),
        content: body.req_str("content")?.to_string(),
        description: body.opt_str("description")?.map(str::to_string),
        commands: body.opt_string_array("commands")?.unwrap_or_default(),
    };
    let f = call
        .state
        .engine
        .create_flow(call.org(), call.bot(), new)
        .await?;
    Ok(ok_json(&dto::flow(&f)))
}

pub(super) async fn get_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let f = call
        .state
        .engine
        .get_flow(call.org(), call.bot(), call.flow_id())
        .await?;
    Ok(ok_json(&dto::flow(&f)))
}

pub(super) async fn update_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    let body = &call.body;
    // `id`, `bot_id`, `organization_id` and timestamps sent back by tools are ignored.
    let patch = FlowPatch {
        name: match body.opt_str("name")? {
            Some(n) if n.trim().is_empty() => {
                return Err(ApiError::bad_request("field name must not be empty"));
            }
            n => n.map(str::to_string),
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
        .update_flow(call.org(), call.bot(), call.flow_id(), patch)
        .await?;
    Ok(ok_json(&dto::flow(&f)))
}

pub(super) async fn delete_flow(call: Call<'_>) -> ApiResult<Response<Body>> {
    call.state
        .engine
        .delete_flow(call.org(), call.bot(), call.flow_id())
        .await?;
    Ok(no_content())
}

pub(super) async fn usage(call: Call<'_>) -> ApiResult<Response<Body>> {
    let report = call.state.engine.usage(call.org(), call.bot()).await?;
    Ok(ok_json(&report))
}

pub(super) async fn validate(call: Call<'_>) -> ApiResult<Response<Body>> {
    let body = &call.body;
    let flows = match body.get("flows") {
        Some(Json::Array(items)) => items,
        None | Some(Json::Null) => return Err(ApiError::missing_field("flows")),
        Some(_) => return Err(ApiError::bad_request("field flows must be an array")),
    };
    let mut req = ValidateRequest {
        default_flow: body.opt_str("default_flow")?.map(str::to_string),
        flows: Vec::with_capacity(flows.len()),
    };
    for (i, f) in flows.iter().enumerate() {
        let f = f
            .as_object()
            .ok_or_else(|| ApiError::bad_request(format!("flows[{i}] must be an object")))?;
        let field = |k: &str| match f.opt_str(k) {
            Ok(Some(v)) => Ok(v.to_string()),
            Ok(None) => Err(ApiError::bad_request(format!(
                "missing field: flows[{i}].{k}"
            ))),
            Err(_) => Err(ApiError::bad_request(format!(
                "field flows[{i}].{k} must be a string"
            ))),
        };
        req.flows.push(ValidateFlow {
            // Tools send the name as id; a non-string id is ignored rather than refused.
            id: f.get("id").and_then(Json::as_str).map(str::to_string),
            name: field("name")?,
            content: field("content")?,
            commands: f.opt_string_array("commands")?.unwrap_or_default(),
        });
    }
    let report = call.state.engine.validate(req).await?;
    Ok(ok_json(&dto::validation(&report)))
}

pub(super) async fn build(call: Call<'_>) -> ApiResult<Response<Body>> {
    let v = call.state.engine.build(call.org(), call.bot()).await?;
    Ok(ok_json(&dto::build(&v)))
}

pub(super) async fn get_build(call: Call<'_>) -> ApiResult<Response<Body>> {
    let version = query_param(call.query.as_deref(), "version_id").filter(|v| !v.is_empty());
    let v = call
        .state
        .engine
        .get_build(call.org(), call.bot(), version.as_deref())
        .await?;
    Ok(ok_json(&dto::build(&v)))
}
