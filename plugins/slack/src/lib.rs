//! `slack`: the Slack Events API and Web API as a channel.
//!
//! In: every request must carry a valid `X-Slack-Signature` (`v0=` HMAC-SHA256 of
//! `v0:{timestamp}:{body}` with the signing secret) and an `X-Slack-Request-Timestamp` within
//! five minutes. `url_verification` is answered with its challenge; `event_callback` message
//! events from users (not bots, not edits) become `text` events (id = `event_id`,
//! conversation = channel id); interactive `block_actions` (form field `payload`) become
//! `payload` events.
//! Out: `chat.postMessage` with `text` and Block Kit blocks: buttons as an `actions` block
//! (style `primary`/`danger` kept), images as `image` blocks, cards as a section with an image
//! accessory plus buttons. Typing and waits have no Slack equivalent and are skipped.

wit_bindgen::generate!({
    world: "channel-connector",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::channel_types::{HttpResponse, InboundEvent};
use botyard::plugin::host;
use botyard::plugin::types::Header;
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use botyard_plugin_sdk::render::{self, Choice, Msg};
use botyard_plugin_sdk::{crypto, form};
use serde_json::{Value, json};

const MAX_SKEW_SECS: u64 = 5 * 60;

struct Slack;

fn failure(f: Failure) -> PluginError {
    match f {
        Failure::Invalid(m) => PluginError::InvalidInput(m),
        Failure::Unauthorized(m) => PluginError::Unauthorized(m),
        Failure::RateLimited(s) => PluginError::RateLimited(s),
        Failure::Upstream(m) => PluginError::Upstream(m),
    }
}

fn header<'a>(req: &'a Webhook, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn verify(req: &Webhook) -> Result<(), PluginError> {
    let secret = host::secret("signing_secret")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::Config("signing_secret is not set".into()))?;
    let ts = header(req, "x-slack-request-timestamp").unwrap_or("");
    let ts_num: u64 = ts
        .parse()
        .map_err(|_| PluginError::Unauthorized("missing timestamp".into()))?;
    if botyard_plugin_sdk::now_secs().abs_diff(ts_num) > MAX_SKEW_SECS {
        return Err(PluginError::Unauthorized("stale request timestamp".into()));
    }
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(&req.body);
    let expected = format!(
        "v0={}",
        crypto::hex(&crypto::hmac_sha256(secret.as_bytes(), &base))
    );
    let given = header(req, "x-slack-signature").unwrap_or("");
    if !crypto::ct_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(PluginError::Unauthorized("bad X-Slack-Signature".into()));
    }
    Ok(())
}

fn answer(status: u16, content_type: &str, body: &str) -> IngestResult {
    IngestResult {
        response: Some(HttpResponse {
            status,
            headers: vec![Header {
                name: "content-type".into(),
                value: content_type.into(),
            }],
            body: body.as_bytes().to_vec(),
        }),
        events: vec![],
    }
}

fn message_event(envelope: &Value) -> Option<InboundEvent> {
    let e = envelope.get("event")?;
    let plain_message = e.get("type").and_then(Value::as_str) == Some("message")
        && e.get("bot_id").is_none()
        && e.get("subtype").is_none();
    if !plain_message {
        return None;
    }
    Some(InboundEvent {
        event_id: envelope.get("event_id")?.as_str()?.to_string(),
        user_id: e.get("user")?.as_str()?.to_string(),
        conversation: e.get("channel")?.as_str()?.to_string(),
        content_type: "text".into(),
        content: json!({"text": e.get("text").and_then(Value::as_str).unwrap_or("")}).to_string(),
        metadata: json!({"slack": {"team_id": envelope.get("team_id"), "user": e.get("user"), "channel": e.get("channel"), "thread_ts": e.get("thread_ts")}}).to_string(),
    })
}

fn action_event(payload: &Value) -> Option<InboundEvent> {
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return None;
    }
    let action = payload.get("actions")?.get(0)?;
    let value = action.get("value").and_then(Value::as_str)?;
    let user = payload.pointer("/user/id")?.as_str()?.to_string();
    let channel = payload
        .pointer("/channel/id")
        .or_else(|| payload.pointer("/container/channel_id"))?
        .as_str()?
        .to_string();
    let id = action
        .get("action_ts")
        .and_then(Value::as_str)
        .or_else(|| payload.get("trigger_id").and_then(Value::as_str))?;
    Some(InboundEvent {
        event_id: format!("action:{id}"),
        user_id: user.clone(),
        conversation: channel,
        content_type: "payload".into(),
        content: json!({"payload": value, "text": action.pointer("/text/text")}).to_string(),
        metadata: json!({"slack": {"user": user, "team_id": payload.pointer("/team/id")}})
            .to_string(),
    })
}

fn button(i: usize, c: &Choice) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": format!("choice_{i}"),
        "text": {"type": "plain_text", "text": c.title, "emoji": true},
    });
    match &c.url {
        Some(u) => b["url"] = Value::String(u.clone()),
        None => b["value"] = Value::String(c.payload.clone().unwrap_or_else(|| c.title.clone())),
    }
    if let Some(s) = c
        .style
        .as_deref()
        .filter(|s| *s == "primary" || *s == "danger")
    {
        b["style"] = Value::String(s.into());
    }
    b
}

fn actions(choices: &[Choice]) -> Value {
    json!({"type": "actions", "elements": choices.iter().enumerate().map(|(i, c)| button(i, c)).collect::<Vec<_>>()})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// `(fallback text, blocks)` of one message; `None` when Slack shows nothing for it.
fn blocks(msg: &Msg) -> Option<(String, Vec<Value>)> {
    Some(match msg {
        Msg::Typing(_) | Msg::Wait(_) | Msg::Error(_) => return None,
        Msg::Text(t) if t.is_empty() => return None,
        Msg::Text(t) => (t.clone(), vec![]),
        Msg::Image { url, title } => {
            let alt = title.clone().unwrap_or_else(|| "image".into());
            let mut b = json!({"type": "image", "image_url": url, "alt_text": alt});
            if let Some(t) = title {
                b["title"] = json!({"type": "plain_text", "text": t});
            }
            (alt, vec![b])
        }
        Msg::Question { title, choices } => {
            let t = title.clone().unwrap_or_default();
            let mut b = Vec::new();
            if !t.is_empty() {
                b.push(section(&t));
            }
            b.push(actions(choices));
            (
                if t.is_empty() {
                    render::numbered(None, choices)
                } else {
                    t
                },
                b,
            )
        }
        Msg::Card(c) => (c.title.clone(), card_blocks(c)),
        Msg::Carousel(cards) => (
            cards
                .iter()
                .map(|c| c.title.clone())
                .collect::<Vec<_>>()
                .join(", "),
            cards.iter().flat_map(card_blocks).collect(),
        ),
        Msg::Raw(v) => {
            return Some((
                v.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                v.get("blocks")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
        other => {
            let text = render::plain(other)
                .into_iter()
                .map(|p| match p {
                    render::Plain::Text(t) => t,
                    render::Plain::Image { url, .. } => url,
                })
                .collect::<Vec<_>>()
                .join("\n");
            if text.is_empty() {
                return None;
            }
            (text, vec![])
        }
    })
}

fn card_blocks(c: &render::Card) -> Vec<Value> {
    let mut text = format!("*{}*", c.title);
    if let Some(s) = &c.subtitle {
        text.push('\n');
        text.push_str(s);
    }
    if let Some(u) = &c.default_url {
        text = format!(
            "<{u}|{}>{}",
            c.title,
            text.split_once('\n')
                .map(|(_, r)| format!("\n{r}"))
                .unwrap_or_default()
        );
    }
    let mut s = section(&text);
    if let Some(img) = &c.image_url {
        s["accessory"] = json!({"type": "image", "image_url": img, "alt_text": c.title});
    }
    let mut out = vec![s];
    if !c.choices.is_empty() {
        out.push(actions(&c.choices));
    }
    out
}

impl Guest for Slack {
    fn ingest(_ctx: ChannelContext, request: Webhook) -> Result<IngestResult, PluginError> {
        verify(&request)?;
        let ctype = header(&request, "content-type").unwrap_or("");
        if ctype.starts_with("application/x-www-form-urlencoded") {
            let body = String::from_utf8_lossy(&request.body);
            let payload: Value = form::get(&body, "payload")
                .and_then(|p| serde_json::from_str(&p).ok())
                .ok_or_else(|| {
                    PluginError::InvalidInput("interactive request without payload".into())
                })?;
            return Ok(IngestResult {
                response: None,
                events: action_event(&payload).into_iter().collect(),
            });
        }
        let envelope: Value = serde_json::from_slice(&request.body)
            .map_err(|e| PluginError::InvalidInput(format!("body is not JSON: {e}")))?;
        match envelope.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                let challenge = envelope
                    .get("challenge")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Ok(answer(200, "text/plain", challenge))
            }
            Some("event_callback") => Ok(IngestResult {
                response: None,
                events: message_event(&envelope).into_iter().collect(),
            }),
            _ => Ok(IngestResult {
                response: None,
                events: vec![],
            }),
        }
    }

    fn deliver(
        _ctx: ChannelContext,
        conversation: String,
        messages: Vec<BotMessage>,
    ) -> Result<Delivery, PluginError> {
        let token = host::secret("bot_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PluginError::Config("bot_token is not set".into()))?;
        let base = host::config("api_base").unwrap_or_else(|| "https://slack.com/api".into());
        let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
        let mut ids = Vec::new();
        for m in messages {
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            let Some((text, blocks)) = blocks(&render::parse(&m.content_type, &content)) else {
                continue;
            };
            let mut body = json!({"channel": conversation, "text": text});
            if !blocks.is_empty() {
                body["blocks"] = Value::Array(blocks);
            }
            let resp =
                send_json(Request::post(&url).bearer(&token).json(&body)).map_err(failure)?;
            if resp.get("ok") != Some(&Value::Bool(true)) {
                let err = resp
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(match err {
                    "ratelimited" => PluginError::RateLimited(1),
                    "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
                        PluginError::Unauthorized(err.into())
                    }
                    _ => PluginError::Upstream(format!("chat.postMessage: {err}")),
                });
            }
            ids.extend(resp.get("ts").and_then(Value::as_str).map(String::from));
        }
        Ok(Delivery { platform_ids: ids })
    }
}

export!(Slack);
