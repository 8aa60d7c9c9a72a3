//! Request payload → interpreter event (csml-language §3.9, studio-api §2.1): the content type
//! must be one the API accepts and carry its required key; the event's value is the text,
//! payload or url, or the whole content (as JSON text) for `flow_trigger`.

use super::EngineError;
use serde_json::Value as Json;

/// A validated incoming event.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub content_type: String,
    pub content: serde_json::Map<String, Json>,
    pub secure: bool,
}

impl Incoming {
    /// The string flow commands are matched against (`None` for `flow_trigger`).
    pub fn match_value(&self) -> Option<&str> {
        let key = required_key(&self.content_type)?;
        if self.content_type == "flow_trigger" {
            return None;
        }
        self.content.get(key).and_then(Json::as_str)
    }

    /// `{flow_id, step_id?, close_flows?}` of a `flow_trigger`.
    pub fn flow_trigger(&self) -> Option<(&str, Option<&str>, Option<bool>)> {
        if self.content_type != "flow_trigger" {
            return None;
        }
        Some((
            self.content.get("flow_id").and_then(Json::as_str)?,
            self.content.get("step_id").and_then(Json::as_str),
            self.content.get("close_flows").and_then(Json::as_bool),
        ))
    }

    pub fn to_event(&self) -> csml::Event {
        let content_value = match self.content_type.as_str() {
            "flow_trigger" => Json::Object(self.content.clone()).to_string(),
            _ => self.match_value().unwrap_or_default().to_string(),
        };
        csml::Event {
            content_type: self.content_type.clone(),
            content_value,
            content: Json::Object(self.content.clone()),
            secure: self.secure,
        }
    }

    /// `{content_type, content}` as stored in the transcript (a secure event is redacted).
    pub fn transcript_payload(&self) -> Json {
        if self.secure {
            serde_json::json!({"content_type": "secure"})
        } else {
            serde_json::json!({"content_type": self.content_type, "content": self.content})
        }
    }
}

fn required_key(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "text" => "text",
        "image" | "video" | "audio" | "file" | "url" => "url",
        "payload" => "payload",
        "flow_trigger" => "flow_id",
        _ => return None,
    })
}

/// Validate a request `payload` object.
pub fn parse_payload(payload: &Json) -> Result<Incoming, EngineError> {
    let Json::Object(p) = payload else {
        return Err(EngineError::BadRequest("payload must be an object".into()));
    };
    let content_type = match p.get("content_type") {
        Some(Json::String(s)) => s.clone(),
        Some(_) => {
            return Err(EngineError::BadRequest(
                "payload.content_type must be a string".into(),
            ));
        }
        None => {
            return Err(EngineError::BadRequest(
                "missing field: payload.content_type".into(),
            ));
        }
    };
    let Some(key) = required_key(&content_type) else {
        return Err(EngineError::BadRequest(format!(
            "unsupported payload.content_type `{content_type}` (expected text, image, video, \
             audio, file, url, payload or flow_trigger)"
        )));
    };
    let content = match p.get("content") {
        Some(Json::Object(c)) => c.clone(),
        Some(_) => {
            return Err(EngineError::BadRequest(
                "payload.content must be an object".into(),
            ));
        }
        None => {
            return Err(EngineError::BadRequest(
                "missing field: payload.content".into(),
            ));
        }
    };
    match content.get(key) {
        Some(Json::String(_)) => {}
        Some(_) => {
            return Err(EngineError::BadRequest(format!(
                "payload.content.{key} must be a string"
            )));
        }
        None => {
            return Err(EngineError::BadRequest(format!(
                "no {key} content in event: missing field payload.content.{key}"
            )));
        }
    }
    let secure = match p.get("secure") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err(EngineError::BadRequest(
                "payload.secure must be a boolean".into(),
            ));
        }
    };
    Ok(Incoming {
        content_type,
        content,
        secure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_rules() {
        let e =
            parse_payload(&json!({"content_type":"text","content":{"text":"Hi","x":1}})).unwrap();
        assert_eq!(e.match_value(), Some("Hi"));
        assert_eq!(e.to_event().content_value, "Hi");
        let e =
            parse_payload(&json!({"content_type":"payload","content":{"payload":"B"}})).unwrap();
        assert_eq!(e.match_value(), Some("B"));
        let e = parse_payload(
            &json!({"content_type":"flow_trigger","content":{"flow_id":"f","close_flows":true}}),
        )
        .unwrap();
        assert_eq!(e.flow_trigger(), Some(("f", None, Some(true))));
        assert_eq!(e.match_value(), None);
        for bad in [
            json!({"content_type":"text","content":{}}),
            json!({"content_type":"sticker","content":{"text":"x"}}),
            json!({"content":{"text":"x"}}),
            json!({"content_type":"text"}),
            json!({"content_type":"image","content":{"text":"x"}}),
            json!("text"),
        ] {
            assert_eq!(parse_payload(&bad).unwrap_err().status(), 400, "{bad}");
        }
        let s =
            parse_payload(&json!({"content_type":"text","content":{"text":"pw"},"secure":true}))
                .unwrap();
        assert_eq!(s.transcript_payload(), json!({"content_type":"secure"}));
    }
}
