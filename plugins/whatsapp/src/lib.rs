//! `whatsapp`: the WhatsApp Cloud API as a channel.
//!
//! In: `GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..` is answered with the
//! challenge when the token matches (403 otherwise). A POST must carry a valid
//! `X-Hub-Signature-256`; each user message becomes an event (id = the `wamid`, user and
//! conversation = the sender's number): `text`, `payload` for button/list replies, `image`...
//! A typed number answering a numbered list becomes that choice's `payload` (remembered in the
//! key-value store). Delivery statuses are ignored.
//! Out: `POST {api_base}/{phone_number_id}/messages`: text; questions as interactive reply
//! buttons when there are 1–3 buttons with titles ≤ 20 characters and no URL button, else
//! numbered text; images/video/audio/documents by link; cards as image + text; urls as text.

wit_bindgen::generate!({
    world: "channel-connector",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::channel_types::{HttpResponse, InboundEvent};
use botyard::plugin::{host, kv};
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use botyard_plugin_sdk::render::{self, Choice, Msg, Plain};
use botyard_plugin_sdk::{crypto, form, str_of};
use serde_json::{Value, json};

struct WhatsApp;

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

fn remembered(conversation: &str) -> Vec<String> {
    kv::get(&format!("choices:{conversation}"))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn normalize(msg: &Value, names: &Value) -> Option<InboundEvent> {
    let from = str_of(msg, "from")?;
    let id = str_of(msg, "id")?;
    let (ctype, content) = match msg.get("type")?.as_str()? {
        "text" => {
            let text = msg.pointer("/text/body")?.as_str()?.to_string();
            match render::pick_numbered(&text, &remembered(&from)) {
                Some(p) => ("payload", json!({"payload": p, "text": text})),
                None => ("text", json!({"text": text})),
            }
        }
        "interactive" => {
            let r = msg
                .pointer("/interactive/button_reply")
                .or_else(|| msg.pointer("/interactive/list_reply"))?;
            (
                "payload",
                json!({"payload": r.get("id"), "text": r.get("title")}),
            )
        }
        "button" => (
            "payload",
            json!({"payload": msg.pointer("/button/payload"), "text": msg.pointer("/button/text")}),
        ),
        "image" => (
            "image",
            json!({"media_id": msg.pointer("/image/id"), "caption": msg.pointer("/image/caption")}),
        ),
        "audio" => ("audio", json!({"media_id": msg.pointer("/audio/id")})),
        "video" => ("video", json!({"media_id": msg.pointer("/video/id")})),
        "document" => (
            "file",
            json!({"media_id": msg.pointer("/document/id"), "filename": msg.pointer("/document/filename")}),
        ),
        "location" => (
            "location",
            json!({"latitude": msg.pointer("/location/latitude"), "longitude": msg.pointer("/location/longitude")}),
        ),
        _ => return None,
    };
    Some(InboundEvent {
        event_id: id,
        user_id: from.clone(),
        conversation: from.clone(),
        content_type: ctype.into(),
        content: content.to_string(),
        metadata: json!({"whatsapp": {"wa_id": from, "name": names.get(&from)}}).to_string(),
    })
}

fn fits_buttons(choices: &[Choice]) -> bool {
    (1..=3).contains(&choices.len())
        && choices
            .iter()
            .all(|c| c.url.is_none() && !c.title.is_empty() && c.title.chars().count() <= 20)
}

struct Api {
    url: String,
    token: String,
    to: String,
}

impl Api {
    fn send(&self, kind: &str, payload: Value) -> Result<Option<String>, PluginError> {
        let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": self.to, "type": kind, kind: payload});
        let resp =
            send_json(Request::post(&self.url).bearer(&self.token).json(&body)).map_err(failure)?;
        Ok(resp
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .map(String::from))
    }
    fn text(&self, t: &str) -> Result<Option<String>, PluginError> {
        self.send("text", json!({"body": t, "preview_url": true}))
    }
    fn plain(&self, pieces: Vec<Plain>, ids: &mut Vec<String>) -> Result<(), PluginError> {
        for p in pieces {
            ids.extend(match p {
                Plain::Text(t) => self.text(&t)?,
                Plain::Image { url, caption } => {
                    self.send("image", json!({"link": url, "caption": caption}))?
                }
            });
        }
        Ok(())
    }
}

impl Guest for WhatsApp {
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
        let mut events = Vec::new();
        for entry in body
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for change in entry
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let value = change.get("value").unwrap_or(&Value::Null);
                let mut names = serde_json::Map::new();
                for c in value
                    .get("contacts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(id), Some(name)) = (str_of(c, "wa_id"), c.pointer("/profile/name"))
                    {
                        names.insert(id, name.clone());
                    }
                }
                let names = Value::Object(names);
                for m in value
                    .get("messages")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    events.extend(normalize(m, &names));
                }
            }
        }
        Ok(IngestResult {
            response: None,
            events,
        })
    }

    fn deliver(
        _ctx: ChannelContext,
        conversation: String,
        messages: Vec<BotMessage>,
    ) -> Result<Delivery, PluginError> {
        let base =
            host::config("api_base").unwrap_or_else(|| "https://graph.facebook.com/v21.0".into());
        let phone = host::config("phone_number_id")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| PluginError::Config("phone_number_id is not set".into()))?;
        let api = Api {
            url: format!("{}/{phone}/messages", base.trim_end_matches('/')),
            token: secret("access_token")?,
            to: conversation.clone(),
        };
        let mut ids = Vec::new();
        for m in messages {
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            match render::parse(&m.content_type, &content) {
                Msg::Question { title, choices } if fits_buttons(&choices) => {
                    let buttons: Vec<Value> = choices.iter().map(|c| json!({"type": "reply", "reply": {"id": c.payload.clone().unwrap_or_else(|| c.title.clone()), "title": c.title}})).collect();
                    let body = title
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "\u{2063}".into());
                    ids.extend(api.send("interactive", json!({"type": "button", "body": {"text": body}, "action": {"buttons": buttons}}))?);
                }
                Msg::Question { title, choices } => {
                    let _ = kv::set(
                        &format!("choices:{conversation}"),
                        json!(render::choice_payloads(&choices))
                            .to_string()
                            .as_bytes(),
                    );
                    ids.extend(api.text(&render::numbered(title.as_deref(), &choices))?);
                }
                Msg::Video { url, title } => {
                    ids.extend(api.send("video", json!({"link": url, "caption": title}))?)
                }
                Msg::Audio { url } => ids.extend(api.send("audio", json!({"link": url}))?),
                Msg::File { url } => ids.extend(api.send("document", json!({"link": url}))?),
                Msg::Raw(v) if v.get("type").is_some() => {
                    let mut body = v.clone();
                    body["messaging_product"] = json!("whatsapp");
                    body["to"] = json!(conversation);
                    let resp = send_json(Request::post(&api.url).bearer(&api.token).json(&body))
                        .map_err(failure)?;
                    ids.extend(
                        resp.pointer("/messages/0/id")
                            .and_then(Value::as_str)
                            .map(String::from),
                    );
                }
                other => {
                    let choices: Vec<Choice> = match &other {
                        Msg::Card(c) => c.choices.clone(),
                        _ => vec![],
                    };
                    if !choices.is_empty() {
                        let _ = kv::set(
                            &format!("choices:{conversation}"),
                            json!(render::choice_payloads(&choices))
                                .to_string()
                                .as_bytes(),
                        );
                    }
                    api.plain(render::plain(&other), &mut ids)?;
                }
            }
        }
        Ok(Delivery { platform_ids: ids })
    }
}

export!(WhatsApp);
