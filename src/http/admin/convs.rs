//! Conversations (filtered list, transcript, end), participants, usage of every bot of an
//! organization.

use super::bots::day_range;
use super::{Call, wire};
use crate::http::error::{ApiError, ApiResult};
use crate::http::response::{Body, ok_json};
use crate::store::{ClientKey, ConversationFilter, ConversationStatus};
use hyper::Response;
use serde_json::json;

fn millis(call: &Call<'_>, name: &str) -> ApiResult<Option<i64>> {
    call.query(name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{name} must be Unix milliseconds")))
        })
        .transpose()
}

/// `GET /orgs/:org/conversations?bot&channel&user&status&since&until&before&limit`.
pub(super) async fn list(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let status = match call.query("status").as_deref() {
        None => None,
        Some("open") => Some(ConversationStatus::Open),
        Some("closed") => Some(ConversationStatus::Closed),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status `{other}` must be open or closed"
            )));
        }
    };
    let f = ConversationFilter {
        bot_id: call.query("bot"),
        channel_id: call.query("channel"),
        user_id: call.query("user"),
        status,
        since: millis(&call, "since")?,
        until: millis(&call, "until")?,
        before_id: call.query("before"),
        limit: call
            .query("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(50)
            .clamp(1, 500),
    };
    let list = call.store(move |s| s.list_conversations(&org, &f)).await?;
    Ok(ok_json(&wire::list(&list, wire::conversation)))
}

/// `GET /orgs/:org/conversations/:conv`: the conversation, its transcript, memories,
/// participant, and names for display.
pub(super) async fn get(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, id) = (call.org()?, call.param("conv")?);
    let doc = call
        .store(move |s| {
            let c = s.get_conversation(&org, &id)?;
            let messages = s.list_messages(&org, &id, None, 10_000)?;
            let bot = s.get_bot(&org, &c.bot_id)?;
            let channel = s.get_channel(&org, &c.channel_id).ok();
            let participant = match &c.participant_id {
                Some(p) => s.get_participant(&org, p)?,
                None => None,
            };
            let client = ClientKey {
                organization_id: org.clone(),
                bot_id: c.bot_id.clone(),
                channel_id: c.channel_id.clone(),
                user_id: c.user_id.clone(),
            };
            let memories = s.memories(&client, crate::store::ids::now_millis())?;
            Ok(json!({
                "conversation": wire::conversation(&c), "messages": wire::list(&messages, wire::message),
                "participant": participant.as_ref().map(wire::participant), "memories": memories,
                "bot_name": bot.name, "channel_name": channel.map(|c| c.name),
                "low_data_mode": bot.settings.low_data_mode,
            }))
        })
        .await?;
    Ok(ok_json(&doc))
}

/// `POST /orgs/:org/conversations/:conv/end`.
pub(super) async fn end(call: Call<'_>) -> ApiResult<Response<Body>> {
    let (org, id) = (call.org()?, call.param("conv")?);
    let c = call.store(move |s| s.close_conversation(&org, &id)).await?;
    Ok(ok_json(&wire::conversation(&c)))
}

pub(super) async fn participants(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let list = call.store(move |s| s.list_participants(&org, 500)).await?;
    Ok(ok_json(&wire::list(&list, wire::participant)))
}

/// `GET /orgs/:org/usage?days=30`: per bot, messages and active users per day.
pub(super) async fn org_usage(call: Call<'_>) -> ApiResult<Response<Body>> {
    let org = call.org()?;
    let (from, to) = day_range(&call);
    let bots = call
        .store(move |s| {
            let mut out = Vec::new();
            for b in s.bot_summaries(&org)? {
                let days = s.usage_by_day(&org, &b.id, from, to + 1)?;
                out.push(json!({"id": b.id, "name": b.name, "days": wire::usage_days(&days)}));
            }
            Ok(out)
        })
        .await?;
    Ok(ok_json(&json!({"from": from, "to": to, "bots": bots})))
}
