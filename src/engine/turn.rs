//! One turn (csml-language §7.2, studio-api §2.1): lock the client, pick the flow, load the
//! context, run the interpreter on a blocking thread, commit the write set through the group
//! writer, report to the sink.

use super::cache::LiveBot;
use super::event::{Incoming, parse_payload};
use super::host::{AppContext, TurnHost};
use super::{BotCode, ChatRequest, ChatResponse, ClientIds, Engine, EngineError, OutMessage};
use crate::store::conversations::{ConversationWrite, NewMessage, TurnState, TurnWrite};
use crate::store::ids::{iso_millis, new_id, now_millis};
use crate::store::{ClientKey, ConversationStatus, Direction};
use serde_json::{Map, Value as Json};

/// Check the request fields the engine owns.
fn check_request(req: &ChatRequest) -> Result<(Incoming, Map<String, Json>), EngineError> {
    if req.user_id.trim().is_empty() {
        return Err(EngineError::BadRequest(
            "missing field: client.user_id".into(),
        ));
    }
    let incoming = parse_payload(&req.payload)?;
    let metadata = match &req.metadata {
        Json::Null => Map::new(),
        Json::Object(m) => m.clone(),
        _ => return Err(EngineError::BadRequest("metadata must be an object".into())),
    };
    Ok((incoming, metadata))
}

/// Run a chat turn. `broadcast`: the queued broadcast this turn executes (marked done in the
/// same commit) — broadcasts default `close_flows` to true.
pub(super) async fn chat(
    engine: &Engine,
    req: ChatRequest,
    broadcast: Option<String>,
) -> Result<ChatResponse, EngineError> {
    let code = if req.channel.kind == super::TRY_IT_KIND {
        BotCode::Working
    } else {
        BotCode::Live
    };
    chat_code(engine, req, broadcast, code).await
}

/// [`chat`] running the given code of the bot.
pub(super) async fn chat_code(
    engine: &Engine,
    req: ChatRequest,
    broadcast: Option<String>,
    code: BotCode,
) -> Result<ChatResponse, EngineError> {
    let (incoming, metadata) = check_request(&req)?;
    let inner = &engine.inner;
    let ch = &req.channel;
    let _guard = inner.locks.lock(&ch.bot_id, &ch.id, &req.user_id).await;

    let e2 = engine.clone();
    let is_broadcast = broadcast.is_some();
    let (write, response) = tokio::task::spawn_blocking(move || {
        prepare(&e2, req, incoming, metadata, is_broadcast, &code).map(|(mut w, r)| {
            w.broadcast_done = broadcast;
            (w, r)
        })
    })
    .await
    .map_err(|e| EngineError::Internal(format!("the turn failed: {e}")))??;

    inner.store.commit_turn(write).await?;
    if let Some(sink) = &inner.config.sink {
        sink.turn_committed(&response.1, &response.0);
    }
    Ok(response.0)
}

/// Where the turn starts.
struct Start {
    conversation_id: String,
    create: bool,
    flow: String,
    step: String,
    hold: Option<csml::Hold>,
    previous: Option<csml::Position>,
    close_all_first: bool,
}

fn select(live: &LiveBot, state: &TurnState, ev: &Incoming, broadcast: bool) -> Start {
    let mut close_all_first = false;
    // A flow chosen by the event itself: flow_trigger or a command.
    let target: Option<(String, String)> =
        if let Some((flow_id, step_id, close)) = ev.flow_trigger() {
            close_all_first = close.unwrap_or(broadcast);
            Some(match live.find_flow(flow_id) {
                Some(f) => (f.name.clone(), step_id.unwrap_or("start").to_string()),
                None => (live.default_flow.clone(), "start".to_string()),
            })
        } else {
            ev.match_value()
                .and_then(|v| live.command_flow(v))
                .map(|f| (f.name.clone(), "start".to_string()))
        };
    let open = state
        .conversation
        .as_ref()
        .filter(|_| !state.expired && !close_all_first);
    match (target, open) {
        (Some((flow, step)), Some(conv)) => Start {
            conversation_id: conv.id.clone(),
            create: false,
            flow,
            step,
            hold: None,
            previous: None,
            close_all_first,
        },
        (None, Some(conv)) if live.flows.iter().any(|f| f.name == conv.flow) => {
            let hold: Option<csml::Hold> = conv
                .hold
                .clone()
                .and_then(|h| serde_json::from_value(h).ok());
            let previous = hold.as_ref().and_then(|h| h.previous.clone()).or_else(|| {
                conv.previous
                    .clone()
                    .and_then(|p| serde_json::from_value(p).ok())
            });
            Start {
                conversation_id: conv.id.clone(),
                create: false,
                flow: conv.flow.clone(),
                step: conv.step.clone(),
                hold,
                previous,
                close_all_first,
            }
        }
        (target, _) => {
            let (flow, step) =
                target.unwrap_or_else(|| (live.default_flow.clone(), "start".into()));
            Start {
                conversation_id: new_id(),
                create: true,
                flow,
                step,
                hold: None,
                previous: None,
                close_all_first,
            }
        }
    }
}

type Prepared = (TurnWrite, (ChatResponse, crate::store::Channel));

/// The blocking part: read state, select, run the interpreter, build the write set.
fn prepare(
    engine: &Engine,
    req: ChatRequest,
    incoming: Incoming,
    mut metadata: Map<String, Json>,
    broadcast: bool,
    code: &BotCode,
) -> Result<Prepared, EngineError> {
    let inner = &engine.inner;
    let store = &inner.store;
    let ch = req.channel;
    let client = ClientKey {
        organization_id: ch.organization_id.clone(),
        bot_id: ch.bot_id.clone(),
        channel_id: ch.id.clone(),
        user_id: req.user_id.clone(),
    };
    let live = inner
        .bots
        .get(store, &client.organization_id, &client.bot_id, code)
        .map_err(|e| match e {
            EngineError::Invalid { message, .. } => EngineError::Conflict(message),
            e => e,
        })?;
    let now = now_millis();
    let state = store.load_turn_state(&client, now)?;
    let start = select(&live, &state, &incoming, broadcast);

    // _metadata: the request's, plus the channel (studio-api §2.1; `_channel` is ours).
    metadata.insert(
        "_channel".into(),
        serde_json::json!({"type": ch.kind, "name": ch.name, "id": ch.id}),
    );
    let create_metadata = Json::Object(metadata.clone());
    let ctx = csml::Context {
        flow: start.flow.clone(),
        step: start.step.clone(),
        memories: state.memories,
        metadata: Json::Object(metadata),
        hold: start.hold,
        previous: start.previous,
    };
    let opts = csml::TurnOptions {
        step_limit: live.settings.step_limit.unwrap_or(100),
        ..Default::default()
    };
    let mut host = TurnHost::new(
        inner.config.outbound.as_ref(),
        inner.config.apps.as_deref(),
        AppContext {
            organization_id: client.organization_id.clone(),
            bot_id: client.bot_id.clone(),
            channel_id: client.channel_id.clone(),
            user_id: client.user_id.clone(),
        },
    );
    let result = csml::run_turn(&live.bot, ctx, incoming.to_event(), &mut host, &opts);

    let interaction = result.gotos;
    let closed = result.status != csml::TurnStatus::Hold;
    let mut messages = Vec::with_capacity(result.messages.len() + 1);
    messages.push(NewMessage {
        direction: Direction::Receive,
        flow: start.flow.clone(),
        step: start.step.clone(),
        content_type: if incoming.secure {
            "secure".into()
        } else {
            incoming.content_type.clone()
        },
        payload: incoming.transcript_payload(),
        interaction_order: 0,
    });
    for m in &result.messages {
        messages.push(NewMessage {
            direction: Direction::Send,
            flow: result.flow.clone(),
            step: result.step.clone(),
            content_type: m.content_type.clone(),
            payload: serde_json::json!({"content_type": m.content_type, "content": m.content}),
            interaction_order: interaction as i64,
        });
    }
    let expires_at = live.settings.ttl_days.map(|d| now + d as i64 * 86_400_000);
    let write = TurnWrite {
        client: client.clone(),
        now,
        turn_id: new_id(),
        close_all_first: start.close_all_first,
        conversation: if start.create {
            ConversationWrite::Create {
                id: start.conversation_id.clone(),
                flow: result.flow.clone(),
                step: result.step.clone(),
                metadata: create_metadata,
                version_id: live.version_id.clone(),
                platform: ch.kind.clone(),
            }
        } else {
            ConversationWrite::Update {
                id: start.conversation_id.clone(),
                flow: result.flow.clone(),
                step: result.step.clone(),
            }
        },
        status: if closed {
            ConversationStatus::Closed
        } else {
            ConversationStatus::Open
        },
        hold: if closed {
            None
        } else {
            result
                .hold
                .as_ref()
                .and_then(|h| serde_json::to_value(h).ok())
        },
        previous: result
            .previous
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok()),
        forgets: result
            .forgets
            .iter()
            .map(|f| match f {
                csml::ForgetOp::All => None,
                csml::ForgetOp::Keys(k) => Some(k.clone()),
            })
            .collect(),
        memories: result
            .memories
            .iter()
            .map(|m| (m.key.clone(), m.value.clone()))
            .collect(),
        messages,
        low_data: live.settings.low_data_mode,
        expires_at,
        broadcast_done: None,
    };
    let response = ChatResponse {
        request_id: req.request_id.unwrap_or_else(new_id),
        messages: result
            .messages
            .into_iter()
            .map(|payload| OutMessage {
                conversation_id: start.conversation_id.clone(),
                direction: "SEND",
                interaction_order: interaction,
                payload,
            })
            .collect(),
        conversation_end: closed,
        client: ClientIds {
            bot_id: client.bot_id,
            channel_id: client.channel_id,
            user_id: client.user_id,
        },
        received_at: iso_millis(req.received_at),
        conversation_id: start.conversation_id,
        organization_id: client.organization_id,
    };
    Ok((write, (response, ch)))
}
