//! `messenger`: Facebook Messenger as a channel.
//!
//! In: `GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..` is answered with the
//! challenge when the token matches. POSTs need a valid `X-Hub-Signature-256`. Each
//! `messaging` item becomes an event (id = the message `mid`, else sender + timestamp; user and
//! conversation = the sender's PSID): text → `text`, quick reply or postback → `payload`
//! (the "Get started" button gives `GET_STARTED` like any postback), the thumbs-up sticker →
//! `payload` `:like:`, attachments → `image`/`audio`/`video`/`file`. Echoes and deliveries are
//! ignored.
//! Out: `POST {api_base}/me/messages`: text; questions as quick replies (≤ 13 buttons, no URL
//! button, titles cut to 20 characters), else a button template (≤ 3 buttons), else numbered
//! text; images/video/audio/files as attachments by URL; cards and carousels as generic
//! templates (≤ 3 buttons per card, ≤ 10 cards); typing as `typing_on`.

wit_bindgen::generate!({
    world: "channel-connector",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::channel_types::{HttpResponse, InboundEvent};
use botyard::plugin::host;
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use botyard_plugin_sdk::render::{self, Card, Choice, Msg, Plain};
use botyard_plugin_sdk::{crypto, form, str_of};
use serde_json::{Value, json};

const LIKE_STICKER: u64 = 369239263222822;

struct Messenger;

fn failure(f: Failure) -> PluginError {
    match f {
        Failure::Invalid(m) => PluginError::InvalidInput(m),
        Failure::Unauthorized(m) => PluginError::Unauthorized(m),
        Failure::RateLimited(s) => PluginError::RateLimited(s),
        Failure::Upstream(m) => PluginError::Upstream(m),
    }
}

fn secret(name: &str) -> Result<String, PluginError> {
    host::secret(name)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::Config(format!("{name} is not set")))
}

fn reply(status: u16, body: &str) -> IngestResult {
    IngestResult {
        response: Some(HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }),
        events: vec![],
    }
}

fn normalize(item: &Value) -> Option<InboundEvent> {
    let sender = item
        .pointer("/sender/id")
        .and_then(Value::as_str)?
        .to_string();
    let ts = str_of(item, "timestamp").unwrap_or_default();
    let (id, ctype, content) = if let Some(m) = item.get("message") {
        if m.get("is_echo").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let mid = str_of(m, "mid").unwrap_or_else(|| format!("{sender}:{ts}"));
        if let Some(p) = m.pointer("/quick_reply/payload") {
            (mid, "payload", json!({"payload": p, "text": m.get("text")}))
        } else if m.get("sticker_id").and_then(Value::as_u64) == Some(LIKE_STICKER) {
            (mid, "payload", json!({"payload": ":like:"}))
        } else if let Some(t) = m.get("text").and_then(Value::as_str) {
            (mid, "text", json!({"text": t}))
        } else if let Some(a) = m.get("attachments").and_then(|a| a.get(0)) {
            let kind = match a.get("type").and_then(Value::as_str) {
                Some("image") => "image",
                Some("audio") => "audio",
                Some("video") => "video",
                Some("location") => "location",
                _ => "file",
            };
            (mid, kind, json!({"url": a.pointer("/payload/url")}))
        } else {
            return None;
        }
    } else if let Some(pb) = item.get("postback") {
        let mid = str_of(pb, "mid").unwrap_or_else(|| format!("{sender}:{ts}:postback"));
        (
            mid,
            "payload",
            json!({"payload": pb.get("payload"), "text": pb.get("title")}),
        )
    } else {
        return None;
    };
    Some(InboundEvent {
        event_id: id,
        user_id: sender.clone(),
        conversation: sender.clone(),
        content_type: ctype.into(),
        content: content.to_string(),
        metadata: json!({"messenger": {"psid": sender, "page_id": item.pointer("/recipient/id")}})
            .to_string(),
    })
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn template_button(c: &Choice) -> Value {
    match &c.url {
        Some(u) => json!({"type": "web_url", "url": u, "title": cut(&c.title, 20)}),
        None => {
            json!({"type": "postback", "title": cut(&c.title, 20), "payload": c.payload.clone().unwrap_or_else(|| c.title.clone())})
        }
    }
}

fn element(c: &Card) -> Value {
    let mut e = json!({"title": cut(&c.title, 80)});
    if let Some(s) = &c.subtitle {
        e["subtitle"] = json!(cut(s, 80));
    }
    if let Some(i) = &c.image_url {
        e["image_url"] = json!(i);
    }
    if let Some(u) = &c.default_url {
        e["default_action"] = json!({"type": "web_url", "url": u});
    }
    if !c.choices.is_empty() {
        e["buttons"] = Value::Array(c.choices.iter().take(3).map(template_button).collect());
    }
    e
}

fn attachment(kind: &str, url: &str) -> Value {
    json!({"attachment": {"type": kind, "payload": {"url": url, "is_reusable": true}}})
}

/// The Send API `message` objects for one bot message (`None` entries = sender actions).
fn messages(msg: &Msg) -> Vec<Value> {
    match msg {
        Msg::Text(t) if !t.is_empty() => vec![json!({"text": t})],
        Msg::Image { url, .. } => vec![attachment("image", url)],
        Msg::Video { url, .. } => vec![attachment("video", url)],
        Msg::Audio { url } => vec![attachment("audio", url)],
        Msg::File { url } => vec![attachment("file", url)],
        Msg::Question { title, choices } => {
            let text = title
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "\u{2063}".into());
            if !choices.is_empty() && choices.len() <= 13 && choices.iter().all(|c| c.url.is_none())
            {
                let qr: Vec<Value> = choices.iter().map(|c| json!({"content_type": "text", "title": cut(&c.title, 20), "payload": c.payload.clone().unwrap_or_else(|| c.title.clone())})).collect();
                vec![json!({"text": text, "quick_replies": qr})]
            } else if !choices.is_empty() && choices.len() <= 3 {
                vec![
                    json!({"attachment": {"type": "template", "payload": {"template_type": "button", "text": text, "buttons": choices.iter().map(template_button).collect::<Vec<_>>()}}}),
                ]
            } else {
                vec![json!({"text": render::numbered(title.as_deref(), choices)})]
            }
        }
        Msg::Card(c) => vec![
            json!({"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": [element(c)]}}}),
        ],
        Msg::Carousel(cards) if !cards.is_empty() => vec![
            json!({"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": cards.iter().take(10).map(element).collect::<Vec<_>>()}}}),
        ],
        Msg::Raw(v) => vec![v.clone()],
        other => render::plain(other)
            .into_iter()
            .map(|p| match p {
                Plain::Text(t) => json!({"text": t}),
                Plain::Image { url, .. } => attachment("image", &url),
            })
            .collect(),
    }
}

impl Guest for Messenger {
    fn ingest(_ctx: ChannelContext, request: Webhook) -> Result<IngestResult, PluginError> {
        if request.method == "GET" {
            let q = &request.query;
            let ok = form::get(q, "hub.mode").as_deref() == Some("subscribe")
                && form::get(q, "hub.verify_token").is_some_and(|t| {
                    crypto::ct_eq(
                        t.as_bytes(),
                        secret("verify_token").unwrap_or_default().as_bytes(),
                    )
                });
            return Ok(if ok {
                reply(200, &form::get(q, "hub.challenge").unwrap_or_default())
            } else {
                reply(403, "verify token mismatch")
            });
        }
        let sig = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-hub-signature-256"))
            .map(|h| h.value.as_str())
            .unwrap_or("");
        if !crypto::hub_signature_ok(&secret("app_secret")?, &request.body, sig) {
            return Err(PluginError::Unauthorized("bad X-Hub-Signature-256".into()));
        }
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| PluginError::InvalidInput(format!("body is not JSON: {e}")))?;
        let events = body
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e.get("messaging")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|item| normalize(&item))
            .collect();
        Ok(IngestResult {
            response: None,
            events,
        })
    }

    fn deliver(
        _ctx: ChannelContext,
        conversation: String,
        batch: Vec<BotMessage>,
    ) -> Result<Delivery, PluginError> {
        let base =
            host::config("api_base").unwrap_or_else(|| "https://graph.facebook.com/v21.0".into());
        let token = secret("page_access_token")?;
        let url = format!(
            "{}/me/messages?access_token={}",
            base.trim_end_matches('/'),
            form::encode(&token)
        );
        let mut ids = Vec::new();
        for m in batch {
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            let msg = render::parse(&m.content_type, &content);
            if let Msg::Typing(_) = msg {
                let body = json!({"recipient": {"id": conversation}, "sender_action": "typing_on"});
                send_json(Request::post(&url).json(&body)).map_err(failure)?;
                continue;
            }
            for message in messages(&msg) {
                let body = json!({"recipient": {"id": conversation}, "messaging_type": "RESPONSE", "message": message});
                let resp = send_json(Request::post(&url).json(&body)).map_err(failure)?;
                ids.extend(
                    resp.get("message_id")
                        .and_then(Value::as_str)
                        .map(String::from),
                );
            }
        }
        Ok(Delivery { platform_ids: ids })
    }
}

export!(Messenger);
