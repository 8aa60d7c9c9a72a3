//! API-key endpoints on data: experiments (= bots), sessions, participants and file content
//! (ocs-api §5.1–5.4), plus the JSON shapes shared with the chat and channel handlers.

use super::{Answer, Call, Caller, is_uuid, json_resp, ok};
use crate::ocs::OcsError;
use crate::ocs::cursor::{self, Cursor};
use crate::ocs::records::ApiSession;
use crate::ocs::time::{iso_micros, iso_millis, parse_iso};
use crate::store::ocs::{
    KeysetReq, NewOcsMessage, OcsFile, OcsMessage, OcsSession, Page, ParticipantDataOp,
    ParticipantFilter, ParticipantPost, ScheduleOp, SessionFilter,
};
use crate::store::{Bot, Store};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value as Json, json};

pub(crate) const PLATFORMS: &[&str] = &[
    "telegram",
    "web",
    "whatsapp",
    "facebook",
    "sureadhere",
    "api",
    "slack",
    "commcare_connect",
    "evaluations",
    "embedded_widget",
    "email",
];

pub(crate) fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() { "team".into() } else { s }
}

pub(crate) fn team_json(store: &Store, org: &str) -> crate::store::Result<Json> {
    let o = store.get_org(org)?;
    Ok(json!({"name": o.name, "slug": slug(&o.name)}))
}

/// `(working version_number, versions[])` of a bot.
pub(crate) fn versions_of(store: &Store, bot: &Bot) -> crate::store::Result<(i64, Vec<Json>)> {
    let mut v = store.list_versions(&bot.organization_id, &bot.id, 100_000)?;
    v.reverse();
    let next = v.last().map(|x| x.seq).unwrap_or(0) + 1;
    let list = v
        .iter()
        .map(|x| {
            json!({"name": bot.name, "version_number": x.seq,
                   "is_default_version": bot.live_version_id.as_deref() == Some(x.id.as_str()),
                   "version_description": ""})
        })
        .collect();
    Ok((next, list))
}

pub(crate) fn experiment_json(store: &Store, base: &str, bot: &Bot) -> crate::store::Result<Json> {
    let (next, versions) = versions_of(store, bot)?;
    Ok(
        json!({"id": bot.id, "name": bot.name, "url": format!("{base}/api/experiments/{}/", bot.id),
              "version_number": next, "versions": versions}),
    )
}

fn experiment_stub(store: &Store, base: &str, bot: &Bot) -> crate::store::Result<Json> {
    let (next, _) = versions_of(store, bot)?;
    Ok(
        json!({"id": bot.id, "name": bot.name, "description": bot.description.clone().unwrap_or_default(),
              "url": format!("{base}/api/experiments/{}/", bot.id), "version_number": next}),
    )
}

/// A message as the API shows it; `org`: the session's organization (its files are read
/// under it).
pub(crate) fn message_json(
    store: &Store,
    org: &str,
    base: &str,
    m: &OcsMessage,
) -> crate::store::Result<Json> {
    let files = if m.file_ids.is_empty() {
        vec![]
    } else {
        store.ocs_files_of(org, &m.file_ids)?
    };
    Ok(message_json_with(base, m, &files))
}

/// [`message_json`] given the message's files (none: no store read needed).
pub(crate) fn message_json_with(base: &str, m: &OcsMessage, files: &[OcsFile]) -> Json {
    let mut tags: Vec<&str> = m.tags.iter().map(|t| t.name.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    let attachments: Vec<Json> = files
        .iter()
        .map(|f| {
            json!({"name": f.name, "content_type": f.content_type, "size": f.size,
                   "content_url": format!("{base}/api/files/{}/content", f.id)})
        })
        .collect();
    json!({"created_at": iso_micros(m.created_at), "role": m.role, "content": m.content,
          "metadata": m.metadata, "tags": tags, "attachments": attachments})
}

pub(crate) fn session_json(
    store: &Store,
    base: &str,
    s: &OcsSession,
) -> crate::store::Result<Json> {
    let bot = store.get_bot(&s.organization_id, &s.bot_id)?;
    Ok(json!({
        "url": format!("{base}/api/sessions/{}/", s.id),
        "id": s.id,
        "team": team_json(store, &s.organization_id)?,
        "experiment": experiment_stub(store, base, &bot)?,
        "participant": {"identifier": s.participant.identifier, "remote_id": s.participant.remote_id},
        "created_at": iso_millis(s.created_at),
        "updated_at": iso_millis(s.updated_at),
        "status": s.status,
        "platform": s.platform,
        "tags": store.ocs_session_tags(&s.organization_id, &s.id)?,
        "state": s.state,
    }))
}

/// Parse `page_size` (default 100, max 1500, invalid → default) and `cursor`.
fn paging(call: &Call) -> Result<(u32, Option<Cursor>), OcsError> {
    let size = call
        .query("page_size")
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| *n > 0)
        .map(|n| n.min(1500))
        .unwrap_or(100);
    let cur = match call.query("cursor") {
        None => None,
        Some(c) => Some(cursor::decode(&c).ok_or_else(|| OcsError::detail(404, "Invalid cursor"))?),
    };
    Ok((size, cur))
}

/// Build `{next, previous, results, count?}` from a keyset page in the list's order.
/// `ascending`: the list order. `keys` gives each row's `(created_at, id)`.
#[allow(clippy::too_many_arguments)]
fn paginate<T>(
    call: &Call,
    path: &str,
    cur: &Option<Cursor>,
    page: Page<T>,
    keys: impl Fn(&T) -> (i64, String),
    results: Vec<Json>,
    count: Option<i64>,
) -> Json {
    let back = cur.as_ref().is_some_and(|c| c.back);
    // Rows of a backwards page were fetched in reverse: `results` is already in list order.
    let first = if back {
        page.rows.last()
    } else {
        page.rows.first()
    }
    .map(&keys);
    let last = if back {
        page.rows.first()
    } else {
        page.rows.last()
    }
    .map(&keys);
    let has_next = if back { true } else { page.more };
    let has_prev = if back { page.more } else { cur.is_some() };
    let link = |c: Cursor| {
        let mut q: Vec<String> = call
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
            .map(str::to_string)
            .collect();
        q.push(format!("cursor={}", cursor::encode(&c)));
        format!("{}{path}?{}", call.base, q.join("&"))
    };
    let next = match (has_next, last) {
        (true, Some((t, id))) => Json::String(link(Cursor {
            back: false,
            created_at: t,
            id,
        })),
        _ => Json::Null,
    };
    let previous = match (has_prev, first) {
        (true, Some((t, id))) => Json::String(link(Cursor {
            back: true,
            created_at: t,
            id,
        })),
        _ => Json::Null,
    };
    let mut out = Map::new();
    out.insert("next".into(), next);
    out.insert("previous".into(), previous);
    out.insert("results".into(), Json::Array(results));
    if let Some(c) = count {
        out.insert("count".into(), json!(c));
    }
    Json::Object(out)
}

/// Keyset request for a list ordered `ascending` (or newest first).
fn keyset(cur: &Option<Cursor>, ascending: bool, limit: u32) -> KeysetReq {
    match cur {
        None => KeysetReq {
            after: None,
            ascending,
            limit,
        },
        Some(c) => KeysetReq {
            after: Some((c.created_at, c.id.clone())),
            ascending: ascending != c.back,
            limit,
        },
    }
}

/// A list answer from a page whose rows are the `(created_at, id)` keys of `results` (both
/// as the store read them: a backwards page in reverse).
fn keyed_page(
    call: &Call,
    path: &str,
    cur: &Option<Cursor>,
    (page, mut results, count): (Page<(i64, String)>, Vec<Json>, Option<i64>),
) -> Json {
    let page = order_rows(page, cur);
    if cur.as_ref().is_some_and(|c| c.back) {
        results.reverse();
    }
    paginate(call, path, cur, page, |k| k.clone(), results, count)
}

fn order_rows<T>(mut p: Page<T>, cur: &Option<Cursor>) -> Page<T> {
    if cur.as_ref().is_some_and(|c| c.back) {
        p.rows.reverse();
    }
    p
}

// ---- experiments -----------------------------------------------------------------------------

pub(crate) async fn experiment_list(call: &mut Call, caller: &Caller) -> Answer {
    let (size, cur) = paging(call)?;
    let (org, base, k, first) = (
        caller.org().to_string(),
        call.base.clone(),
        keyset(&cur, false, size),
        cur.is_none(),
    );
    let r = call
        .store(move |s| {
            let page = s.ocs_list_bot_ids(&org, &k)?;
            let mut results = Vec::new();
            let mut keys = Vec::new();
            for id in &page.rows {
                let b = s.get_bot(&org, id)?;
                keys.push((b.created_at, b.id.clone()));
                results.push(experiment_json(s, &base, &b)?);
            }
            let count = if first {
                Some(s.ocs_count_bots(&org)?)
            } else {
                None
            };
            Ok((
                Page {
                    rows: keys,
                    more: page.more,
                },
                results,
                count,
            ))
        })
        .await?;
    Ok(ok(&keyed_page(call, "/api/experiments/", &cur, r)))
}

pub(crate) async fn experiment_get(call: &mut Call, caller: &Caller) -> Answer {
    let (org, id, base) = (
        caller.org().to_string(),
        call.params.id.clone(),
        call.base.clone(),
    );
    if !is_uuid(&id) {
        return Err(OcsError::detail(
            404,
            "No Experiment matches the given query.",
        ));
    }
    match call
        .store(move |s| match s.get_bot(&org, &id) {
            Ok(b) => Ok(Some(experiment_json(s, &base, &b)?)),
            Err(crate::store::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await?
    {
        Some(v) => Ok(ok(&v)),
        None => Err(OcsError::bot_not_found()),
    }
}

// ---- sessions ----------------------------------------------------------------------------------

fn csv(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) async fn session_list(call: &mut Call, caller: &Caller) -> Answer {
    let (size, cur) = paging(call)?;
    let mut f = SessionFilter {
        tags: csv(call.query("tags")),
        versions: csv(call.query("versions")),
        ..Default::default()
    };
    if let Some(e) = call.query("experiment") {
        if !is_uuid(&e) {
            return Err(OcsError::field(
                "experiment",
                format!("\"{e}\" is not a valid UUID."),
            ));
        }
        f.bot_id = Some(e.to_ascii_lowercase());
    }
    let ascending = call.query("ordering").as_deref() == Some("created_at");
    let (org, base, k, first) = (
        caller.org().to_string(),
        call.base.clone(),
        keyset(&cur, ascending, size),
        cur.is_none(),
    );
    let r = call
        .store(move |s| {
            let page = s.ocs_list_sessions(&org, &f, &k)?;
            let mut results = Vec::new();
            for x in &page.rows {
                results.push(session_json(s, &base, x)?);
            }
            let count = if first {
                Some(s.ocs_count_sessions(&org, &f)?)
            } else {
                None
            };
            let keys: Vec<(i64, String)> = page
                .rows
                .iter()
                .map(|x| (x.created_at, x.id.clone()))
                .collect();
            Ok((
                Page {
                    rows: keys,
                    more: page.more,
                },
                results,
                count,
            ))
        })
        .await?;
    Ok(ok(&keyed_page(call, "/api/sessions/", &cur, r)))
}

/// Parse `messages` of a create request (roles system/user/assistant).
pub(crate) fn history(v: Option<&Json>, field: &str) -> Result<Vec<NewOcsMessage>, OcsError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(vec![]);
    };
    let Some(items) = v.as_array() else {
        return Err(OcsError::field(field, "Expected a list of items."));
    };
    let mut out = Vec::new();
    for m in items {
        let role = m.get("role").and_then(Json::as_str).unwrap_or_default();
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(OcsError::field(
                field,
                format!("\"{role}\" is not a valid choice."),
            ));
        }
        let content = match m.get("content") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Json::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => return Err(OcsError::field(field, "Each message needs a content.")),
        };
        out.push(NewOcsMessage {
            role: role.into(),
            content,
            metadata: json!({}),
            tags: vec![],
            file_ids: vec![],
        });
    }
    Ok(out)
}

pub(crate) async fn session_create(call: &mut Call, caller: &Caller) -> Answer {
    let body = call.body_json().await?;
    let exp = match body.get("experiment") {
        None | Some(Json::Null) => {
            return Err(OcsError::field("experiment", "This field is required."));
        }
        Some(Json::String(s)) if is_uuid(s) => s.to_ascii_lowercase(),
        Some(_) => return Err(OcsError::field("experiment", "Must be a valid UUID.")),
    };
    let participant = match body.get("participant") {
        None | Some(Json::Null) => caller.identifier(),
        Some(Json::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => {
            return Err(OcsError::field(
                "participant",
                "This field may not be blank.",
            ));
        }
    };
    let messages = history(body.get("messages"), "messages")?;
    let req = ApiSession {
        bot_id: exp,
        participant,
        state: body.get("state").cloned().unwrap_or(json!({})),
        messages,
        key_id: caller.key.id.clone(),
    };
    let ocs = call.ocs.clone();
    let sess = ocs.create_api_session(caller.org(), req).await?;
    let base = call.base.clone();
    let r = call.store(move |s| session_json(s, &base, &sess)).await?;
    let mut resp = json_resp(StatusCode::CREATED, &r);
    if let Some(Ok(u)) = r
        .get("url")
        .and_then(Json::as_str)
        .map(HeaderValue::from_str)
    {
        resp.headers_mut().insert(header::LOCATION, u);
    }
    Ok(resp)
}

pub(crate) async fn session_get(call: &mut Call, caller: &Caller) -> Answer {
    let (org, id, base) = (
        caller.org().to_string(),
        call.params.id.clone(),
        call.base.clone(),
    );
    let r = call
        .store(move |s| {
            let Some(sess) = s.ocs_session(&org, &id)? else {
                return Ok(None);
            };
            let mut v = session_json(s, &base, &sess)?;
            let msgs = s.ocs_messages(&org, &sess.id, None, None)?;
            let mut list = Vec::with_capacity(msgs.len());
            for m in &msgs {
                list.push(message_json(s, &org, &base, m)?);
            }
            v["messages"] = Json::Array(list);
            v["usage"] = json!({"total_cost": "0.00000000", "by_model": []});
            Ok(Some(v))
        })
        .await?;
    match r {
        Some(v) => Ok(ok(&v)),
        None => Err(OcsError::detail(
            404,
            "No ExperimentSession matches the given query.",
        )),
    }
}

pub(crate) async fn session_end(call: &mut Call, caller: &Caller) -> Answer {
    call.ocs.end_session(caller.org(), &call.params.id).await?;
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

pub(crate) async fn tags(call: &mut Call, caller: &Caller, add: bool) -> Answer {
    let body = call.body_json().await?;
    let tags = match body.get("tags") {
        None | Some(Json::Null) | Some(Json::Bool(false)) => {
            return Err(OcsError::error(400, "Missing 'tags' in request"));
        }
        Some(Json::Array(a)) if a.is_empty() => {
            return Err(OcsError::error(400, "Missing 'tags' in request"));
        }
        Some(Json::String(s)) if s.is_empty() => {
            return Err(OcsError::error(400, "Missing 'tags' in request"));
        }
        Some(Json::Array(a)) => {
            let mut out = Vec::new();
            for t in a {
                match t.as_str() {
                    Some(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                    _ => {
                        return Err(OcsError::error(
                            400,
                            "'tags' must be a list of non-empty strings",
                        ));
                    }
                }
            }
            out
        }
        Some(_) => return Err(OcsError::error(400, "'tags' must be a list")),
    };
    let t = call
        .ocs
        .change_tags(caller.org(), &call.params.id, tags, add, &caller.key.id)
        .await?;
    Ok(ok(&json!({"tags": t})))
}

fn falsy(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
    }
}

pub(crate) async fn update_state(call: &mut Call, caller: &Caller) -> Answer {
    let body = call.body_json().await?;
    let Some(state) = body.get("state").filter(|v| !falsy(v)).cloned() else {
        return Err(OcsError::error(400, "Missing 'state' in request"));
    };
    let st = call
        .ocs
        .set_state(caller.org(), &call.params.id, state)
        .await?;
    Ok(ok(&json!({"success": true, "state": st})))
}

// ---- participants ------------------------------------------------------------------------------

fn participant_json(
    store: &Store,
    org: &str,
    p: &crate::store::ocs::OcsParticipant,
    bot: Option<&str>,
) -> crate::store::Result<Json> {
    let entries = store.ocs_participant_data(org, &p.id, bot)?;
    let data: Vec<Json> = entries
        .iter()
        .map(|d| {
            json!({"chatbot": d.bot_name, "chatbot_id": d.bot_id, "data": d.data,
                   "connect_channel_id": d.system_metadata.get("commcare_connect_channel_id").cloned().unwrap_or(Json::Null)})
        })
        .collect();
    Ok(
        json!({"id": p.id, "identifier": p.identifier, "name": p.name, "platform": p.platform,
              "remote_id": p.remote_id, "data": data}),
    )
}

pub(crate) async fn participant_list(call: &mut Call, caller: &Caller) -> Answer {
    let (size, cur) = paging(call)?;
    let mut f = ParticipantFilter {
        identifier: call.query("identifier"),
        platform: call.query("platform"),
        ..Default::default()
    };
    let (name, val) = match (call.query("chatbot"), call.query("experiment")) {
        (Some(c), _) => ("chatbot", Some(c)),
        (None, Some(e)) => ("experiment", Some(e)),
        _ => ("chatbot", None),
    };
    if let Some(v) = val {
        if !is_uuid(&v) {
            return Err(OcsError::body(
                400,
                json!({ name: "Must be a valid UUID." }),
            ));
        }
        f.bot_id = Some(v.to_ascii_lowercase());
    }
    let (org, k, first) = (
        caller.org().to_string(),
        keyset(&cur, false, size),
        cur.is_none(),
    );
    let r = call
        .store(move |s| {
            let page = s.ocs_list_participants(&org, &f, &k)?;
            let mut results = Vec::new();
            for p in &page.rows {
                results.push(participant_json(s, &org, p, f.bot_id.as_deref())?);
            }
            let count = if first {
                Some(s.ocs_count_participants(&org, &f)?)
            } else {
                None
            };
            let keys: Vec<(i64, String)> = page
                .rows
                .iter()
                .map(|p| (p.created_at, p.id.clone()))
                .collect();
            Ok((
                Page {
                    rows: keys,
                    more: page.more,
                },
                results,
                count,
            ))
        })
        .await?;
    Ok(ok(&keyed_page(call, "/api/participants", &cur, r)))
}

fn schedule_ops(v: Option<&Json>) -> Result<Vec<ScheduleOp>, OcsError> {
    let Some(items) = v.and_then(Json::as_array) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for it in items {
        let id = it.get("id").and_then(Json::as_str).map(str::to_string);
        if id.as_ref().is_some_and(|i| i.len() > 32) {
            return Err(OcsError::body(
                400,
                json!({"schedules": [{"id": ["Ensure this field has no more than 32 characters."]}]}),
            ));
        }
        if it.get("delete").and_then(Json::as_bool) == Some(true) {
            let Some(id) = id else {
                return Err(OcsError::body(
                    400,
                    json!({"schedules": [{"id": ["This field is required when deleting."]}]}),
                ));
            };
            out.push(ScheduleOp::Delete { external_id: id });
            continue;
        }
        let get = |k: &str| {
            it.get(k)
                .and_then(Json::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let (Some(name), Some(prompt), Some(date)) = (get("name"), get("prompt"), get("date"))
        else {
            return Err(OcsError::body(
                400,
                json!({"schedules": [{"non_field_errors": ["name, prompt and date are required."]}]}),
            ));
        };
        let Some(us) = parse_iso(&date) else {
            return Err(OcsError::body(
                400,
                json!({"schedules": [{"date": ["Datetime has wrong format."]}]}),
            ));
        };
        out.push(ScheduleOp::Upsert {
            external_id: id,
            name,
            prompt,
            date: us.div_euclid(1000),
        });
    }
    Ok(out)
}

pub(crate) async fn participant_post(call: &mut Call, caller: &Caller) -> Answer {
    let body = call.body_json().await?;
    let Some(identifier) = body
        .get("identifier")
        .and_then(Json::as_str)
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(OcsError::field("identifier", "This field is required."));
    };
    let Some(items) = body.get("data").and_then(Json::as_array) else {
        return Err(OcsError::field("data", "This field is required."));
    };
    let platform = body
        .get("platform")
        .and_then(Json::as_str)
        .unwrap_or("api")
        .to_string();
    if !PLATFORMS.contains(&platform.as_str()) {
        return Err(OcsError::field(
            "platform",
            format!("\"{platform}\" is not a valid choice."),
        ));
    }
    let identifier = if platform == "commcare_connect" {
        identifier.to_lowercase()
    } else {
        identifier.to_string()
    };
    let name = body.get("name").and_then(Json::as_str).map(str::to_string);
    let mut ops = Vec::new();
    for it in items {
        let Some(exp) = it.get("experiment").and_then(Json::as_str) else {
            return Err(OcsError::body(
                400,
                json!({"data": [{"experiment": ["This field is required."]}]}),
            ));
        };
        if !is_uuid(exp) {
            return Err(OcsError::body(
                400,
                json!({"data": [{"experiment": ["Must be a valid UUID."]}]}),
            ));
        }
        let data = match it.get("data") {
            Some(Json::Object(m)) => Some(m.clone()),
            None | Some(Json::Null) => None,
            Some(_) => {
                return Err(OcsError::body(
                    400,
                    json!({"data": [{"data": ["Expected a dictionary of items."]}]}),
                ));
            }
        };
        let schedules = schedule_ops(it.get("schedules"))?;
        ops.push(ParticipantDataOp {
            bot_id: exp.to_ascii_lowercase(),
            data,
            schedules,
        });
    }
    let post = ParticipantPost {
        platform,
        identifier,
        name,
        ops,
    };
    let (ocs, org) = (call.ocs.clone(), caller.org().to_string());
    let p = ocs.post_participant(&org, post).await?;
    let r = call
        .store(move |s| participant_json(s, &org, &p, None))
        .await?;
    Ok(ok(&r))
}

// ---- files -----------------------------------------------------------------------------------

pub(crate) async fn file_content(call: &mut Call, caller: &Caller) -> Answer {
    let Ok(id) = call.params.id.parse::<i64>() else {
        return Err(OcsError::detail(404, "Not found."));
    };
    let (f, bytes) = call.ocs.file_content(caller.org(), id).await?;
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    let ct = crate::ocs::files::by_extension(&f.name);
    let ct = if ct == "application/octet-stream" {
        f.content_type.as_str()
    } else {
        ct
    };
    let base = f
        .name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("file")
        .replace('"', "");
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(ct).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{base}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
