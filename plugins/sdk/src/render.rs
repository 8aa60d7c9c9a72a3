//! CSML bot messages (`{"content_type", "content"}`, spec §4.1) parsed into a small enum, and
//! the generic fallback chain of §4.3 for platforms that lack a type: `typing`→nothing visible,
//! `url`→its text and address, `image`/`video`/`audio`/`file`→the address, `question`→the title
//! and a numbered list of the buttons, `card`→title, subtitle, image and buttons as text,
//! `carousel`→every card's fallback in order (spec UNSURE; our choice).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub title: String,
    /// What the bot receives when the user picks it (absent for URL buttons).
    pub payload: Option<String>,
    /// URL buttons open this address instead of answering.
    pub url: Option<String>,
    /// Slack `primary`/`danger`.
    pub style: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub title: String,
    pub subtitle: Option<String>,
    pub image_url: Option<String>,
    pub choices: Vec<Choice>,
    pub default_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Text(String),
    /// Typing indicator for this many milliseconds.
    Typing(u64),
    /// A silent pause.
    Wait(u64),
    Image {
        url: String,
        title: Option<String>,
    },
    Video {
        url: String,
        title: Option<String>,
    },
    Audio {
        url: String,
    },
    File {
        url: String,
    },
    Url {
        url: String,
        text: String,
    },
    Question {
        title: Option<String>,
        choices: Vec<Choice>,
    },
    Card(Card),
    Carousel(Vec<Card>),
    /// `say {object}`: forwarded to the platform unchanged.
    Raw(Value),
    /// A runtime error of the flow: not shown to end users.
    Error(String),
    /// Anything else (rich inputs...): its `text`/`title` if any.
    Other {
        content_type: String,
        content: Value,
    },
}

fn s(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(x) => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn choice(wrapped: &Value) -> Option<Choice> {
    let kind = wrapped
        .get("content_type")
        .and_then(Value::as_str)
        .unwrap_or("button");
    let c = wrapped.get("content").unwrap_or(wrapped);
    match kind {
        "url" => {
            let url = s(c, "url")?;
            Some(Choice {
                title: s(c, "text")
                    .or_else(|| s(c, "title"))
                    .unwrap_or_else(|| url.clone()),
                payload: None,
                url: Some(url),
                style: None,
            })
        }
        _ => {
            let title = s(c, "title")?;
            Some(Choice {
                payload: Some(s(c, "payload").unwrap_or_else(|| title.clone())),
                title,
                url: None,
                style: s(c, "style"),
            })
        }
    }
}

fn choices(list: Option<&Value>) -> Vec<Choice> {
    list.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(choice).collect())
        .unwrap_or_default()
}

fn card(c: &Value) -> Card {
    Card {
        title: s(c, "title").unwrap_or_default(),
        subtitle: s(c, "subtitle"),
        image_url: s(c, "image_url"),
        choices: choices(c.get("buttons")),
        default_url: c
            .get("default_action")
            .and_then(|d| d.get("content").unwrap_or(d).get("url"))
            .and_then(Value::as_str)
            .map(String::from),
    }
}

/// Parse one message. Unknown shapes become [`Msg::Other`], never an error.
pub fn parse(content_type: &str, content: &Value) -> Msg {
    let c = content;
    let dur = || c.get("duration").and_then(Value::as_u64).unwrap_or(1000);
    let url = || s(c, "url").unwrap_or_default();
    match content_type {
        "text" => Msg::Text(s(c, "text").unwrap_or_else(|| match c {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        })),
        "typing" => Msg::Typing(dur()),
        "wait" => Msg::Wait(dur()),
        "image" => Msg::Image {
            url: url(),
            title: s(c, "title"),
        },
        "video" => Msg::Video {
            url: url(),
            title: s(c, "title"),
        },
        "audio" => Msg::Audio { url: url() },
        "file" => Msg::File { url: url() },
        "url" => Msg::Url {
            text: s(c, "text").unwrap_or_else(url),
            url: url(),
        },
        "question" | "quickreply" => Msg::Question {
            title: s(c, "title"),
            choices: choices(c.get("buttons")),
        },
        "button" => Msg::Question {
            title: None,
            choices: choice(&serde_json::json!({"content_type": "button", "content": c}))
                .into_iter()
                .collect(),
        },
        "card" => Msg::Card(card(c)),
        "carousel" => Msg::Carousel(
            c.get("cards")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|w| card(w.get("content").unwrap_or(w)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "object" => Msg::Raw(c.clone()),
        "error" => Msg::Error(s(c, "error").unwrap_or_default()),
        other => Msg::Other {
            content_type: other.to_string(),
            content: c.clone(),
        },
    }
}

/// `title` then `1. First`, `2. Second`... one per line; URL buttons show their address.
pub fn numbered(title: Option<&str>, choices: &[Choice]) -> String {
    let mut lines: Vec<String> = title
        .filter(|t| !t.is_empty())
        .map(String::from)
        .into_iter()
        .collect();
    for (i, c) in choices.iter().enumerate() {
        match &c.url {
            Some(u) => lines.push(format!("{}. {} ({u})", i + 1, c.title)),
            None => lines.push(format!("{}. {}", i + 1, c.title)),
        }
    }
    lines.join("\n")
}

/// A card as text: title, subtitle, link, then numbered buttons. The image goes separately.
pub fn card_text(card: &Card) -> String {
    let mut head = vec![card.title.clone()];
    head.extend(card.subtitle.clone());
    head.extend(card.default_url.clone());
    let head = head.join("\n");
    if card.choices.is_empty() {
        head
    } else {
        numbered(Some(&head), &card.choices)
    }
}

/// One piece of the generic fallback: text, or an image with an optional caption.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    Text(String),
    Image {
        url: String,
        caption: Option<String>,
    },
}

/// The generic fallback chain: what a text-only (plus images) platform shows for `msg`.
pub fn plain(msg: &Msg) -> Vec<Plain> {
    let text = |t: String| {
        if t.is_empty() {
            vec![]
        } else {
            vec![Plain::Text(t)]
        }
    };
    match msg {
        Msg::Text(t) => text(t.clone()),
        Msg::Typing(_) | Msg::Wait(_) | Msg::Error(_) => vec![],
        Msg::Image { url, title } => vec![Plain::Image {
            url: url.clone(),
            caption: title.clone(),
        }],
        Msg::Video { url, title } => text(match title {
            Some(t) => format!("{t}\n{url}"),
            None => url.clone(),
        }),
        Msg::Audio { url } | Msg::File { url } => text(url.clone()),
        Msg::Url { url, text: t } => text(if t == url {
            url.clone()
        } else {
            format!("{t}\n{url}")
        }),
        Msg::Question { title, choices } => text(numbered(title.as_deref(), choices)),
        Msg::Card(c) => card_plain(c),
        Msg::Carousel(cards) => cards.iter().flat_map(card_plain).collect(),
        Msg::Raw(v) => text(v.to_string()),
        Msg::Other { content, .. } => text(
            s(content, "text")
                .or_else(|| s(content, "title"))
                .unwrap_or_default(),
        ),
    }
}

fn card_plain(c: &Card) -> Vec<Plain> {
    let mut out = Vec::new();
    if let Some(url) = &c.image_url {
        out.push(Plain::Image {
            url: url.clone(),
            caption: None,
        });
    }
    out.push(Plain::Text(card_text(c)));
    out
}

/// The payloads of the numbered choices last shown in a conversation, so that a user answering
/// `2` on a text-only platform sends the second button's payload. Stored by connectors in their
/// key-value store under `choices:<conversation>`.
pub fn choice_payloads(choices: &[Choice]) -> Vec<String> {
    choices
        .iter()
        .map(|c| c.payload.clone().unwrap_or_else(|| c.title.clone()))
        .collect()
}

/// If `text` is a number within the remembered choices, that choice's payload.
pub fn pick_numbered(text: &str, remembered: &[String]) -> Option<String> {
    let n: usize = text.trim().trim_end_matches('.').parse().ok()?;
    remembered.get(n.checked_sub(1)?).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn question_degrades_to_numbered_text() {
        let q = json!({"title": "Pick", "buttons": [
            {"content_type": "button", "content": {"title": "Yes", "payload": "Y"}},
            {"content_type": "url", "content": {"url": "https://x.org", "text": "Docs"}}]});
        let m = parse("question", &q);
        assert_eq!(
            plain(&m),
            vec![Plain::Text("Pick\n1. Yes\n2. Docs (https://x.org)".into())]
        );
        let Msg::Question { choices, .. } = m else {
            panic!()
        };
        assert_eq!(
            pick_numbered("1", &choice_payloads(&choices)).as_deref(),
            Some("Y")
        );
        assert_eq!(pick_numbered("3", &choice_payloads(&choices)), None);
    }

    #[test]
    fn card_degrades_to_image_and_text() {
        let c = json!({"title": "Plan", "subtitle": "5 seats", "image_url": "https://i/x.png",
            "buttons": [{"content_type": "button", "content": {"title": "Choose"}}]});
        assert_eq!(
            plain(&parse("card", &c)),
            vec![
                Plain::Image {
                    url: "https://i/x.png".into(),
                    caption: None
                },
                Plain::Text("Plan\n5 seats\n1. Choose".into())
            ]
        );
    }
}
