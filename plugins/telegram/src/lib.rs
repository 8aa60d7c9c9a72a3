//! `telegram`: the Telegram Bot API as a channel.
//!
//! In: a webhook update (checked against `X-Telegram-Bot-Api-Secret-Token` when a
//! `webhook_secret` is set) → a `text` event (a message), a `payload` event (an inline button),
//! `image`/`location` events. The event id is the `update_id`; the conversation is the chat id.
//! Out: `sendMessage` (text, questions with an inline keyboard, urls, cards without image),
//! `sendPhoto` (images, cards with an image, with the buttons under it), `sendVideo`,
//! `sendAudio`, `sendDocument`, `sendChatAction` for typing; raw objects go to `sendMessage`
//! with `chat_id` added.

wit_bindgen::generate!({
    world: "channel-connector",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::channel_types::{HttpResponse, InboundEvent};
use botyard::plugin::host;
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use botyard_plugin_sdk::render::{self, Choice, Msg};
use botyard_plugin_sdk::{crypto, str_of};
use serde_json::{Value, json};

struct Telegram;

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

fn profile(from: &Value) -> Value {
    json!({
        "id": str_of(from, "id"),
        "first_name": from.get("first_name"),
        "last_name": from.get("last_name"),
        "username": from.get("username"),
        "language_code": from.get("language_code"),
    })
}

fn event(
    update_id: &str,
    from: &Value,
    chat: &str,
    content_type: &str,
    content: Value,
) -> InboundEvent {
    InboundEvent {
        event_id: update_id.to_string(),
        user_id: str_of(from, "id").unwrap_or_default(),
        conversation: chat.to_string(),
        content_type: content_type.into(),
        content: content.to_string(),
        metadata: json!({"telegram": profile(from)}).to_string(),
    }
}

fn normalize(update: &Value) -> Option<InboundEvent> {
    let id = str_of(update, "update_id")?;
    if let Some(q) = update.get("callback_query") {
        let chat = q.pointer("/message/chat").and_then(|c| str_of(c, "id"))?;
        let data = q.get("data").and_then(Value::as_str)?;
        return Some(event(
            &id,
            q.get("from")?,
            &chat,
            "payload",
            json!({"payload": data}),
        ));
    }
    let m = update
        .get("message")
        .or_else(|| update.get("edited_message"))?;
    let chat = m.get("chat").and_then(|c| str_of(c, "id"))?;
    let from = m.get("from").unwrap_or(&Value::Null);
    if let Some(t) = m.get("text").and_then(Value::as_str) {
        return Some(event(&id, from, &chat, "text", json!({"text": t})));
    }
    if let Some(photos) = m.get("photo").and_then(Value::as_array) {
        // The largest size is last; the file id can be turned into a URL with getFile.
        let best = photos.last()?;
        let caption = m.get("caption").cloned().unwrap_or(Value::Null);
        return Some(event(
            &id,
            from,
            &chat,
            "image",
            json!({"file_id": best.get("file_id"), "caption": caption}),
        ));
    }
    if let Some(loc) = m.get("location") {
        return Some(event(
            &id,
            from,
            &chat,
            "location",
            json!({"latitude": loc.get("latitude"), "longitude": loc.get("longitude")}),
        ));
    }
    None
}

fn keyboard(choices: &[Choice]) -> Value {
    let rows: Vec<Value> = choices
        .iter()
        .map(|c| match &c.url {
            Some(u) => json!([{"text": c.title, "url": u}]),
            // callback_data is limited to 64 bytes by Telegram.
            None => json!([{"text": c.title, "callback_data": truncate(c.payload.as_deref().unwrap_or(&c.title), 64)}]),
        })
        .collect();
    json!({"inline_keyboard": rows})
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

struct Api {
    base: String,
    token: String,
    chat: String,
}

impl Api {
    fn call(&self, method: &str, mut body: Value) -> Result<Option<String>, PluginError> {
        body["chat_id"] = Value::String(self.chat.clone());
        let url = format!(
            "{}/bot{}/{method}",
            self.base.trim_end_matches('/'),
            self.token
        );
        let resp = send_json(Request::post(url).json(&body)).map_err(failure)?;
        if resp.get("ok") != Some(&Value::Bool(true)) {
            return Err(PluginError::Upstream(format!("{method}: {resp}")));
        }
        Ok(resp.pointer("/result/message_id").map(|v| v.to_string()))
    }

    fn media(
        &self,
        method: &str,
        field: &str,
        url: &str,
        caption: Option<String>,
    ) -> Result<Option<String>, PluginError> {
        let mut body = json!({ field: url });
        if let Some(c) = caption.filter(|c| !c.is_empty()) {
            body["caption"] = Value::String(c);
        }
        self.call(method, body)
    }
}

fn card(api: &Api, c: &render::Card) -> Result<Option<String>, PluginError> {
    let mut text = vec![c.title.clone()];
    text.extend(c.subtitle.clone());
    text.extend(c.default_url.clone());
    let text = text.join("\n");
    let mut body = match &c.image_url {
        Some(img) => json!({"photo": img, "caption": text}),
        None => json!({"text": text}),
    };
    if !c.choices.is_empty() {
        body["reply_markup"] = keyboard(&c.choices);
    }
    api.call(
        if c.image_url.is_some() {
            "sendPhoto"
        } else {
            "sendMessage"
        },
        body,
    )
}

impl Guest for Telegram {
    fn ingest(_ctx: ChannelContext, request: Webhook) -> Result<IngestResult, PluginError> {
        if request.method != "POST" {
            return Ok(IngestResult {
                response: Some(HttpResponse {
                    status: 405,
                    headers: vec![],
                    body: b"POST only".to_vec(),
                }),
                events: vec![],
            });
        }
        if let Some(secret) = host::secret("webhook_secret").filter(|s| !s.is_empty()) {
            let given = header(&request, "x-telegram-bot-api-secret-token").unwrap_or("");
            if !crypto::ct_eq(given.as_bytes(), secret.as_bytes()) {
                return Err(PluginError::Unauthorized(
                    "bad X-Telegram-Bot-Api-Secret-Token".into(),
                ));
            }
        }
        let update: Value = serde_json::from_slice(&request.body)
            .map_err(|e| PluginError::InvalidInput(format!("update is not JSON: {e}")))?;
        Ok(IngestResult {
            response: None,
            events: normalize(&update).into_iter().collect(),
        })
    }

    fn deliver(
        _ctx: ChannelContext,
        conversation: String,
        messages: Vec<BotMessage>,
    ) -> Result<Delivery, PluginError> {
        let token = host::secret("bot_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PluginError::Config("bot_token is not set".into()))?;
        let api = Api {
            base: host::config("api_base").unwrap_or_else(|| "https://api.telegram.org".into()),
            token,
            chat: conversation,
        };
        let mut ids = Vec::new();
        for m in messages {
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            let sent = match render::parse(&m.content_type, &content) {
                Msg::Text(t) if !t.is_empty() => api.call("sendMessage", json!({"text": t}))?,
                Msg::Typing(_) => api
                    .call("sendChatAction", json!({"action": "typing"}))
                    .map(|_| None)?,
                Msg::Image { url, title } => api.media("sendPhoto", "photo", &url, title)?,
                Msg::Video { url, title } => api.media("sendVideo", "video", &url, title)?,
                Msg::Audio { url } => api.media("sendAudio", "audio", &url, None)?,
                Msg::File { url } => api.media("sendDocument", "document", &url, None)?,
                Msg::Question { title, choices } => {
                    let text = title
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "\u{2063}".into());
                    api.call(
                        "sendMessage",
                        json!({"text": text, "reply_markup": keyboard(&choices)}),
                    )?
                }
                Msg::Card(c) => card(&api, &c)?,
                Msg::Carousel(cards) => {
                    for c in &cards {
                        ids.extend(card(&api, c)?);
                    }
                    None
                }
                Msg::Raw(v) if v.is_object() => api.call("sendMessage", v)?,
                other => {
                    for piece in render::plain(&other) {
                        let sent = match piece {
                            render::Plain::Text(t) => {
                                api.call("sendMessage", json!({"text": t}))?
                            }
                            render::Plain::Image { url, caption } => {
                                api.media("sendPhoto", "photo", &url, caption)?
                            }
                        };
                        ids.extend(sent);
                    }
                    None
                }
            };
            ids.extend(sent);
        }
        Ok(Delivery { platform_ids: ids })
    }
}

export!(Telegram);
