//! Conversation endpoints: `POST /chat` (spec §2.1), `POST /broadcasts` (§2.2) and
//! `POST /conversations/open` (§2.13). Identity (organization, bot, channel) comes from the
//! key; the body only names the end user.

use super::super::error::{ApiError, ApiResult};
use super::super::request::JsonFields;
use super::super::response::{Body, ok_json};
use super::{Call, dto};
use crate::engine::{BroadcastRequest, ChatRequest};
use hyper::Response;
use serde_json::{Value as Json, json};

/// `client.user_id`, `payload` (object), `metadata` (object or absent), `request_id`.
struct Envelope {
    user_id: String,
    payload: Json,
    metadata: Json,
    request_id: Option<String>,
}

fn envelope(call: &Call<'_>) -> ApiResult<Envelope> {
    let b = &call.body;
    let user_id = b.req_nonempty_str("client.user_id")?.to_string();
    b.req_object("payload")?;
    b.req_str("payload.content_type")?;
    let metadata = match b.get("metadata") {
        None | Some(Json::Null) => Json::Null,
        Some(m @ Json::Object(_)) => m.clone(),
        Some(_) => return Err(ApiError::bad_request("field metadata must be an object")),
    };
    Ok(Envelope {
        user_id,
        payload: b["payload"].clone(),
        metadata,
        request_id: b.opt_str("request_id")?.map(str::to_string),
    })
}

pub(super) async fn chat(call: Call<'_>) -> ApiResult<Response<Body>> {
    let received_at =
        crate::store::ids::now_millis() - call.ctx.started.elapsed().as_millis() as i64;
    let e = envelope(&call)?;
    let req = ChatRequest {
        channel: call.auth.channel.channel.clone(),
        user_id: e.user_id,
        payload: e.payload,
        metadata: e.metadata,
        turn_metadata: Default::default(),
        request_id: e.request_id,
        received_at,
    };
    let resp = Box::pin(call.state.engine.chat(req)).await?;
    Ok(ok_json(&resp))
}

pub(super) async fn broadcast(call: Call<'_>) -> ApiResult<Response<Body>> {
    let e = envelope(&call)?;
    let req = BroadcastRequest {
        channel: call.auth.channel.channel.clone(),
        user_id: e.user_id,
        payload: e.payload,
        metadata: e.metadata,
        request_id: e.request_id,
    };
    let normalised = call.state.engine.broadcast(req).await?;
    Ok(ok_json(&normalised))
}

pub(super) async fn conversations_open(call: Call<'_>) -> ApiResult<Response<Body>> {
    let user_id = call.body.req_nonempty_str("user_id")?.to_string();
    let a = &call.auth;
    let open = call
        .state
        .engine
        .conversations_open(&a.org_id, &a.bot_id, &a.channel_id, &user_id)
        .await?;
    Ok(match open {
        Some(o) => ok_json(&dto::open_conversation(&o)),
        None => ok_json(&json!({"has_open": false, "conversation": null})),
    })
}
