//! CSML outputs → OCS assistant messages (ocs-api §7).
//!
//! * Every CSML output is its own assistant message, in emission order.
//! * `text` outputs give their text. Every other component is rendered as text (markdown) in
//!   `content`, and its structured form is kept under **`metadata.csml`** as
//!   `{"content_type", "content"}`, so a rich client can draw buttons, cards and so on.
//! * `typing` and `wait` are pacing hints for live channels, not messages: they are dropped.
//! * `file` outputs also become attachments of the synchronous endpoints
//!   (`{"file_name", "link"}` with the file URL as the link).
//! * **Write-back.** A flow changes OCS data by saying an object with the single key
//!   `_ocs_update`, e.g. `say {"_ocs_update": {"session_state": {"step": 2},
//!   "participant_data": {"tz": "UTC"}, "participant_name": "Ada"}}`. `session_state` and
//!   `participant_data` are shallow-merged; `participant_name` sets the participant's name.
//!   Such outputs are applied and never shown as messages.

use serde_json::{Map, Value as Json, json};

pub use crate::store::ocs::WriteBack;

/// One rendered assistant message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub content: String,
    /// `{}` for plain text, `{"csml": {...}}` otherwise.
    pub metadata: Json,
    /// `(file_name, url)` of a file output.
    pub file: Option<(String, String)>,
}

impl Rendered {
    /// The message as a connector delivers it (`{content_type, content}`): the structured
    /// CSML form when there is one, else text.
    pub fn payload(&self) -> Json {
        match self.metadata.get("csml") {
            Some(c) => c.clone(),
            None => json!({"content_type": "text", "content": {"text": self.content}}),
        }
    }
}

/// Render a turn's outputs; returns the messages and the merged write-back.
pub fn render_all<'a>(
    outputs: impl IntoIterator<Item = &'a csml::Message>,
) -> (Vec<Rendered>, WriteBack) {
    let mut out = Vec::new();
    let mut wb = WriteBack::default();
    for m in outputs {
        if let Some(update) = write_back_of(m) {
            merge_write_back(&mut wb, update);
            continue;
        }
        if let Some(r) = render(m) {
            out.push(r);
        }
    }
    (out, wb)
}

fn write_back_of(m: &csml::Message) -> Option<&Map<String, Json>> {
    let obj = m.content.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get("_ocs_update")?.as_object()
}

fn merge_write_back(wb: &mut WriteBack, u: &Map<String, Json>) {
    if let Some(Json::Object(s)) = u.get("session_state") {
        wb.session_state.extend(s.clone());
    }
    if let Some(Json::Object(p)) = u.get("participant_data") {
        wb.participant_data.extend(p.clone());
    }
    if let Some(Json::String(n)) = u.get("participant_name") {
        wb.participant_name = Some(n.clone());
    }
}

fn s<'a>(c: &'a Json, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Json::as_str)
}

/// Render one output; `None` for outputs that are not messages.
pub fn render(m: &csml::Message) -> Option<Rendered> {
    let ct = m.content_type.as_str();
    let c = &m.content;
    if ct == "typing" || ct == "wait" {
        return None;
    }
    if ct == "text" {
        let text = match c.get("text") {
            Some(Json::String(t)) => t.clone(),
            Some(Json::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        return Some(Rendered {
            content: text,
            metadata: json!({}),
            file: None,
        });
    }
    let mut file = None;
    let content = match ct {
        "question" | "card" => component_text(c),
        "button" => s(c, "title").unwrap_or_default().to_string(),
        "carousel" => c
            .get("cards")
            .and_then(Json::as_array)
            .map(|cards| {
                cards
                    .iter()
                    .map(|k| component_text(unwrap(k)))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
            .unwrap_or_default(),
        "url" => {
            let url = s(c, "url").unwrap_or_default();
            let text = s(c, "text").or(s(c, "title")).unwrap_or(url);
            format!("[{text}]({url})")
        }
        "image" => format!("![image]({})", s(c, "url").unwrap_or_default()),
        "video" | "audio" => s(c, "url").unwrap_or_default().to_string(),
        "file" => {
            let url = s(c, "url").unwrap_or_default().to_string();
            let name = url
                .rsplit('/')
                .next()
                .unwrap_or("file")
                .split('?')
                .next()
                .unwrap_or("file");
            let name = if name.is_empty() {
                "file".to_string()
            } else {
                name.to_string()
            };
            file = Some((name.clone(), url.clone()));
            format!("[{name}]({url})")
        }
        "error" => s(c, "error").unwrap_or_default().to_string(),
        "debug" => c
            .get("args")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| c.to_string()),
        _ => match c {
            Json::String(t) => t.clone(),
            other => other.to_string(),
        },
    };
    Some(Rendered {
        content,
        metadata: json!({"csml": {"content_type": ct, "content": c}}),
        file,
    })
}

/// A nested component is `{"content_type", "content"}`; plain objects are themselves.
fn unwrap(v: &Json) -> &Json {
    match (v.get("content_type"), v.get("content")) {
        (Some(_), Some(c)) => c,
        _ => v,
    }
}

/// Title, subtitle and buttons as markdown lines.
fn component_text(c: &Json) -> String {
    let mut lines = Vec::new();
    if let Some(t) = s(c, "title") {
        lines.push(t.to_string());
    }
    if let Some(t) = s(c, "subtitle") {
        lines.push(t.to_string());
    }
    if let Some(buttons) = c.get("buttons").and_then(Json::as_array) {
        for b in buttons {
            let b = unwrap(b);
            if let Some(t) = s(b, "title") {
                lines.push(format!("- {t}"));
            }
        }
    }
    lines.join("\n")
}

/// The synchronous endpoints' reply: all renderings joined with a blank line.
pub fn joined(rendered: &[Rendered]) -> String {
    rendered
        .iter()
        .map(|r| r.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ct: &str, c: Json) -> csml::Message {
        csml::Message {
            content_type: ct.into(),
            content: c,
        }
    }

    #[test]
    fn components_render_as_text_with_structure_in_metadata() {
        let q = msg(
            "question",
            json!({"title":"Pick","buttons":[{"content_type":"button","content":{"title":"A","payload":"a"}},
                                              {"content_type":"button","content":{"title":"B","payload":"b"}}]}),
        );
        let r = render(&q).unwrap();
        assert_eq!(r.content, "Pick\n- A\n- B");
        assert_eq!(r.metadata["csml"]["content_type"], "question");
        let t = render(&msg("text", json!({"text":"hi"}))).unwrap();
        assert_eq!((t.content.as_str(), t.metadata.clone()), ("hi", json!({})));
        assert!(render(&msg("typing", json!({"duration":1}))).is_none());
        let f = render(&msg("file", json!({"url":"https://x.org/a/tips.pdf"}))).unwrap();
        assert_eq!(
            f.file,
            Some(("tips.pdf".into(), "https://x.org/a/tips.pdf".into()))
        );
    }

    #[test]
    fn write_back_is_applied_not_shown() {
        let (r, wb) = render_all(&[
            msg(
                "object",
                json!({"_ocs_update":{"session_state":{"a":1},"participant_name":"Ada"}}),
            ),
            msg("text", json!({"text":"x"})),
        ]);
        assert_eq!(r.len(), 1);
        assert_eq!(wb.session_state.get("a"), Some(&json!(1)));
        assert_eq!(wb.participant_name.as_deref(), Some("Ada"));
        assert_eq!(joined(&[r[0].clone(), r[0].clone()]), "x\n\nx");
    }
}
