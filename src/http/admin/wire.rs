//! Wire shapes of the admin API (as Studio's `dto.rs`): store rows → JSON by hand, field by
//! field, so that a column added to a store row (a hook token, sealed secrets) is never sent
//! unless it is named here. Times stay Unix milliseconds, as the admin UI reads them.

use crate::store::admin::BotSummary;
use crate::store::ocs::WidgetChannel;
use crate::store::plugins::PluginErrorRow;
use crate::store::{
    ApiKey, Bot, BotSettings, Conversation, ConversationStatus, Credentials, Membership,
    Organization, Participant, StoredMessage, UsageDay,
};
use serde_json::{Map, Value as Json, json};

/// A bot with the number of its live build (`None`: the working copy serves). Its `env` is
/// shown to the organization's editors (the bot page edits it).
pub(super) fn bot(b: &Bot, live_seq: Option<i64>) -> Json {
    json!({
        "id": b.id,
        "organization_id": b.organization_id,
        "name": b.name,
        "description": b.description,
        "default_flow_id": b.default_flow_id,
        "env": b.env,
        "settings": settings(&b.settings),
        "custom_components": b.custom_components,
        "live_version_id": b.live_version_id,
        "rev": b.rev,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
        "live_version": live_seq,
    })
}

/// A bot's settings: the known ones (optional ones only when set), then the rest as stored.
pub(super) fn settings(s: &BotSettings) -> Json {
    let mut o = Map::new();
    o.insert("web_chat_public".into(), json!(s.web_chat_public));
    if let Some(d) = s.ttl_days {
        o.insert("ttl_days".into(), json!(d));
    }
    o.insert("low_data_mode".into(), json!(s.low_data_mode));
    if let Some(n) = s.step_limit {
        o.insert("step_limit".into(), json!(n));
    }
    if let Some(ms) = s.turn_timeout_ms {
        o.insert("turn_timeout_ms".into(), json!(ms));
    }
    for (k, v) in &s.extra {
        o.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Json::Object(o)
}

pub(super) fn bot_summary(b: &BotSummary) -> Json {
    json!({
        "id": b.id,
        "name": b.name,
        "flows": b.flows,
        "live_version": b.live_version,
        "updated_at": b.updated_at,
    })
}

pub(super) fn org(o: &Organization) -> Json {
    json!({"id": o.id, "name": o.name, "is_default": o.is_default, "created_at": o.created_at})
}

pub(super) fn member(m: &Membership) -> Json {
    json!({
        "organization_id": m.organization_id,
        "user_id": m.user_id,
        "email": m.email,
        "role": m.role.as_str(),
    })
}

/// An OCS API key's record (never the key: it is shown once, by its creation's answer).
pub(super) fn api_key(k: &ApiKey) -> Json {
    json!({
        "id": k.id,
        "organization_id": k.organization_id,
        "name": k.name,
        "prefix": k.prefix,
        "read_only": k.read_only,
        "revoked_at": k.revoked_at,
        "last_used_at": k.last_used_at,
        "created_at": k.created_at,
    })
}

/// A channel's key pair, shown once (creation, rotation).
pub(super) fn credentials(c: &Credentials) -> Json {
    json!({"channel_id": c.channel_id, "api_key": c.api_key, "api_secret": c.api_secret})
}

/// A web-chat widget channel as its creation answers it.
pub(super) fn widget(w: &WidgetChannel) -> Json {
    json!({
        "id": w.id,
        "organization_id": w.organization_id,
        "bot_id": w.bot_id,
        "name": w.name,
        "embed_key": w.embed_key,
        "allowed_domains": w.allowed_domains,
        "auth_level": w.auth_level,
        "enabled": w.enabled,
        "disabled_message": w.disabled_message,
        "deleted": w.deleted,
        "session_token_lifetime": w.session_token_lifetime,
        "widget_version": w.widget_version,
    })
}

pub(super) fn plugin_error(e: &PluginErrorRow) -> Json {
    json!({
        "plugin": e.plugin,
        "operation": e.operation,
        "channel_id": e.channel_id,
        "message": e.message,
        "at": e.at,
    })
}

pub(super) fn plugin_errors<'a>(errors: impl IntoIterator<Item = &'a PluginErrorRow>) -> Json {
    Json::Array(errors.into_iter().map(plugin_error).collect())
}

/// A conversation with its interpreter position (`hold`, `previous`: the transcript view
/// shows where a conversation waits).
pub(super) fn conversation(c: &Conversation) -> Json {
    json!({
        "id": c.id,
        "organization_id": c.organization_id,
        "bot_id": c.bot_id,
        "channel_id": c.channel_id,
        "user_id": c.user_id,
        "participant_id": c.participant_id,
        "flow": c.flow,
        "step": c.step,
        "status": match c.status {
            ConversationStatus::Open => "open",
            ConversationStatus::Closed => "closed",
        },
        "hold": c.hold,
        "previous": c.previous,
        "metadata": c.metadata,
        "version_id": c.version_id,
        "tags": c.tags,
        "state": c.state,
        "last_interaction_at": c.last_interaction_at,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "ended_at": c.ended_at,
        "expires_at": c.expires_at,
    })
}

pub(super) fn message(m: &StoredMessage) -> Json {
    json!({
        "id": m.id,
        "conversation_id": m.conversation_id,
        "turn_id": m.turn_id,
        "direction": m.direction.as_str(),
        "flow": m.flow,
        "step": m.step,
        "content_type": m.content_type,
        "payload": m.payload,
        "message_order": m.message_order,
        "interaction_order": m.interaction_order,
        "created_at": m.created_at,
    })
}

pub(super) fn participant(p: &Participant) -> Json {
    json!({
        "id": p.id,
        "organization_id": p.organization_id,
        "platform": p.platform,
        "identifier": p.identifier,
        "name": p.name,
        "data": p.data,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

pub(super) fn usage_days(days: &[UsageDay]) -> Json {
    Json::Array(
        days.iter()
            .map(|d| json!({"day": d.day, "messages": d.messages, "clients": d.clients}))
            .collect(),
    )
}

/// A list of rows in one shape.
pub(super) fn list<T>(rows: &[T], shape: impl Fn(&T) -> Json) -> Json {
    Json::Array(rows.iter().map(shape).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written shapes say what the rows' own serialization says (no field lost), and
    /// a channel-like secret added to a row would not appear without being named here.
    #[test]
    fn shapes_match_the_rows() {
        let mut extra = Map::new();
        extra.insert("greeting".into(), json!("hi"));
        let b = Bot {
            id: "b1".into(),
            organization_id: "o1".into(),
            name: "Bot".into(),
            description: None,
            default_flow_id: Some("f1".into()),
            env: Map::new(),
            settings: BotSettings {
                web_chat_public: true,
                ttl_days: Some(3),
                low_data_mode: false,
                step_limit: None,
                turn_timeout_ms: Some(2000),
                extra,
            },
            custom_components: Map::new(),
            live_version_id: None,
            rev: 4,
            created_at: 1,
            updated_at: 2,
        };
        let mut want = serde_json::to_value(&b).unwrap();
        want["live_version"] = json!(7);
        assert_eq!(bot(&b, Some(7)), want);
        let k = ApiKey {
            id: "k".into(),
            organization_id: "o".into(),
            name: "n".into(),
            prefix: "p".into(),
            read_only: true,
            revoked_at: None,
            last_used_at: Some(5),
            created_at: 6,
        };
        assert_eq!(api_key(&k), serde_json::to_value(&k).unwrap());
        let c = Conversation {
            id: "c".into(),
            organization_id: "o".into(),
            bot_id: "b".into(),
            channel_id: "ch".into(),
            user_id: "u".into(),
            participant_id: None,
            flow: "Default".into(),
            step: "start".into(),
            status: ConversationStatus::Closed,
            hold: None,
            previous: Some(json!({"flow": "Default"})),
            metadata: json!({}),
            version_id: None,
            tags: json!([]),
            state: json!({}),
            last_interaction_at: 1,
            created_at: 2,
            updated_at: 3,
            ended_at: Some(4),
            expires_at: None,
        };
        assert_eq!(conversation(&c), serde_json::to_value(&c).unwrap());
        let m = StoredMessage {
            id: 1,
            conversation_id: "c".into(),
            turn_id: "t".into(),
            direction: crate::store::Direction::Send,
            flow: "Default".into(),
            step: "start".into(),
            content_type: "text".into(),
            payload: json!({"content_type": "text", "content": {"text": "hi"}}),
            message_order: 0,
            interaction_order: 0,
            created_at: 5,
        };
        assert_eq!(message(&m), serde_json::to_value(&m).unwrap());
    }
}
