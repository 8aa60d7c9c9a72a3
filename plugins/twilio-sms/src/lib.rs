//! `twilio-sms`: Twilio Programmable Messaging as a channel.
//!
//! In: the form-encoded webhook. `X-Twilio-Signature` must equal base64(HMAC-SHA1(auth token,
//! full webhook URL + every POST parameter's name and value, sorted by name)). The message
//! becomes a `text` event (id = `MessageSid`, user and conversation = `From`); a reply that is
//! the number of a choice of the last numbered list becomes that choice's `payload`; MMS media
//! become `image` events. The answer is an empty TwiML `<Response/>` so Twilio sends nothing
//! itself.
//! Out: `POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json` per message, Basic auth.
//! Everything degrades to text (spec §4.3 SMS): questions and cards as numbered lists, urls as
//! addresses; images go as MMS `MediaUrl`.

wit_bindgen::generate!({
    world: "channel-connector",
    path: "../../wit/botyard-plugin@0.1.0",
});

botyard_plugin_sdk::manifest!();

use botyard::plugin::channel_types::{HttpResponse, InboundEvent};
use botyard::plugin::types::Header;
use botyard::plugin::{host, kv};
use botyard_plugin_sdk::http::{Failure, Request, send_json};
use botyard_plugin_sdk::render::{self, Msg, Plain};
use botyard_plugin_sdk::{crypto, form};
use serde_json::{Value, json};

struct TwilioSms;

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

fn config(name: &str) -> Result<String, PluginError> {
    host::config(name)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PluginError::Config(format!("{name} is not set")))
}

/// The string Twilio signs: the URL it called, then each POST parameter name+value by name.
pub fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut s = url.to_string();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn twiml() -> IngestResult {
    IngestResult {
        response: Some(HttpResponse {
            status: 200,
            headers: vec![Header {
                name: "content-type".into(),
                value: "text/xml".into(),
            }],
            body: b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".to_vec(),
        }),
        events: vec![],
    }
}

fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        crypto::base64(format!("{user}:{password}").as_bytes())
    )
}

impl Guest for TwilioSms {
    fn ingest(ctx: ChannelContext, request: Webhook) -> Result<IngestResult, PluginError> {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let params = form::parse(&body);
        let url = if request.query.is_empty() {
            ctx.webhook_url.clone()
        } else {
            format!("{}?{}", ctx.webhook_url, request.query)
        };
        let expected = crypto::base64(&crypto::hmac_sha1(
            secret("auth_token")?.as_bytes(),
            signed_string(&url, &params).as_bytes(),
        ));
        let given = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-twilio-signature"))
            .map(|h| h.value.as_str())
            .unwrap_or("");
        if !crypto::ct_eq(expected.as_bytes(), given.as_bytes()) {
            return Err(PluginError::Unauthorized("bad X-Twilio-Signature".into()));
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(sid), Some(from)) = (get("MessageSid").or_else(|| get("SmsSid")), get("From"))
        else {
            return Ok(twiml());
        };
        let text = get("Body").unwrap_or_default();
        let metadata = json!({"twilio": {"from": from, "to": get("To"), "from_city": get("FromCity"), "from_country": get("FromCountry")}}).to_string();
        let mut result = twiml();
        let media: usize = get("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
        for i in 0..media.min(10) {
            if let Some(url) = get(&format!("MediaUrl{i}")) {
                result.events.push(InboundEvent {
                    event_id: format!("{sid}:media{i}"),
                    user_id: from.clone(),
                    conversation: from.clone(),
                    content_type: "image".into(),
                    content: json!({"url": url, "mime": get(&format!("MediaContentType{i}"))})
                        .to_string(),
                    metadata: metadata.clone(),
                });
            }
        }
        if !text.is_empty() || media == 0 {
            let remembered: Vec<String> = kv::get(&format!("choices:{from}"))
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let (ctype, content) = match render::pick_numbered(&text, &remembered) {
                Some(p) => ("payload", json!({"payload": p, "text": text})),
                None => ("text", json!({"text": text})),
            };
            result.events.insert(
                0,
                InboundEvent {
                    event_id: sid,
                    user_id: from.clone(),
                    conversation: from,
                    content_type: ctype.into(),
                    content: content.to_string(),
                    metadata,
                },
            );
        }
        Ok(result)
    }

    fn deliver(
        _ctx: ChannelContext,
        conversation: String,
        messages: Vec<BotMessage>,
    ) -> Result<Delivery, PluginError> {
        let sid = config("account_sid")?;
        let token = secret("auth_token")?;
        let from = config("from_number")?;
        let base = host::config("api_base").unwrap_or_else(|| "https://api.twilio.com".into());
        let url = format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            base.trim_end_matches('/')
        );
        let mut ids = Vec::new();
        for m in messages {
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            let msg = render::parse(&m.content_type, &content);
            let choices = match &msg {
                Msg::Question { choices, .. } => choices.clone(),
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
            for piece in render::plain(&msg) {
                let mut form = vec![("To", conversation.clone()), ("From", from.clone())];
                match piece {
                    Plain::Text(t) => form.push(("Body", t)),
                    Plain::Image { url, caption } => {
                        form.push(("MediaUrl", url));
                        form.extend(caption.map(|c| ("Body", c)));
                    }
                }
                let req = Request::post(&url)
                    .header("authorization", basic_auth(&sid, &token))
                    .form(&form);
                let resp = send_json(req).map_err(failure)?;
                ids.extend(resp.get("sid").and_then(Value::as_str).map(String::from));
            }
        }
        Ok(Delivery { platform_ids: ids })
    }
}

export!(TwilioSms);
