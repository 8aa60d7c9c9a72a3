//! One turn (csml-language §7.2, studio-api §2.1): lock the client, pick the flow, load the
//! context, run the interpreter on a blocking thread, commit the write set through the group
//! writer, report to the sink.

use super::cache::{LiveBot, is_current};
use super::event::{Incoming, parse_payload};
use super::host::{AppContext, TurnHost};
use super::{
    AfterTurn, BotCode, ChatRequest, ChatResponse, ClientIds, Engine, EngineError, OutMessage,
    TurnHooks, TurnMetadata,
};
use crate::store::conversations::{ConversationWrite, NewMessage, TurnState, TurnTx, TurnWrite};
use crate::store::ids::{iso_millis, new_id, now_millis};
use crate::store::{ClientKey, ConversationStatus, Direction};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// Check the request fields the engine owns; the metadata is moved out of `req`.
fn check_request(req: &mut ChatRequest) -> Result<(Incoming, Map<String, Json>), EngineError> {
    if req.user_id.trim().is_empty() {
        return Err(EngineError::BadRequest(
            "missing field: client.user_id".into(),
        ));
    }
    let incoming = parse_payload(&req.payload)?;
    let metadata = match std::mem::take(&mut req.metadata) {
        Json::Null => Map::new(),
        Json::Object(m) => m,
        _ => return Err(EngineError::BadRequest("metadata must be an object".into())),
    };
    Ok((incoming, metadata))
}

/// What a turn carries into its writer job; handed back when the compiled bot turned out to
/// be stale, so the turn can be retried after a reload.
struct TurnInput {
    req: ChatRequest,
    incoming: Incoming,
    metadata: Map<String, Json>,
    broadcast: Option<String>,
    code: BotCode,
    /// A connector's inbound event this turn runs (see [`chat_inbound`]).
    inbound: Option<String>,
    after: Option<AfterTurn>,
    lazy_metadata: Option<TurnMetadata>,
}

impl TurnInput {
    /// Inside the turn's writer job, once its state is read: the caller's lazily read
    /// `_metadata` entries, when this bot's flows can see them.
    fn gather_metadata(&mut self, tx: &TurnTx<'_>, bot: &LiveBot) -> crate::store::Result<()> {
        if let Some(f) = self.lazy_metadata.take()
            && bot.reads_metadata
        {
            self.req.turn_metadata.extend(f(tx)?);
        }
        Ok(())
    }
}

type Done = (ChatResponse, crate::store::Channel);

enum Phase {
    Done(Box<Done>),
    /// The bot's code changed since it was compiled: reload and retry.
    Stale(Box<TurnInput>),
}

/// Run a chat turn. `broadcast`: the queued broadcast this turn executes (marked done in the
/// same commit) — broadcasts default `close_flows` to true.
///
/// A turn of a bot that makes no network calls and whose interpreter runs fast is one job
/// of the store's writer: check that the compiled bot is current, read the conversation and
/// memories, run the interpreter, apply the write set — all inside the group transaction, so
/// no blocking-pool hop, no read connection (whose page cache every commit empties), and one
/// round trip. Other bots read on the writer, run on the blocking pool, then commit.
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
    chat_code(engine, req, broadcast, code, TurnHooks::default()).await
}

/// [`chat`] running the given code of the bot, with the caller's writes in its commit.
pub(super) async fn chat_code(
    engine: &Engine,
    req: ChatRequest,
    broadcast: Option<String>,
    code: BotCode,
    hooks: TurnHooks,
) -> Result<ChatResponse, EngineError> {
    chat_turn(engine, req, broadcast, code, None, hooks).await
}

/// [`chat`] for a connector's stored inbound event: marked done in the turn's commit.
pub(super) async fn chat_inbound(
    engine: &Engine,
    req: ChatRequest,
    event: String,
) -> Result<ChatResponse, EngineError> {
    chat_turn(
        engine,
        req,
        None,
        BotCode::Live,
        Some(event),
        TurnHooks::default(),
    )
    .await
}

async fn chat_turn(
    engine: &Engine,
    mut req: ChatRequest,
    broadcast: Option<String>,
    code: BotCode,
    inbound: Option<String>,
    hooks: TurnHooks,
) -> Result<ChatResponse, EngineError> {
    let (incoming, metadata) = check_request(&mut req)?;
    let inner = &engine.inner;
    let _guard = inner
        .locks
        .lock(&req.channel.bot_id, &req.channel.id, &req.user_id)
        .await;
    let mut live = inner.bots.peek(&req.channel.bot_id, &code);
    let mut input = TurnInput {
        req,
        incoming,
        metadata,
        broadcast,
        code,
        inbound,
        after: hooks.after,
        lazy_metadata: hooks.metadata,
    };
    for _ in 0..3 {
        let bot = match live.take() {
            Some(b) => b,
            None => Box::pin(load_bot(engine, &input.req.channel, &input.code)).await?,
        };
        // Boxed: this future would otherwise hold both phases' states (see http::service).
        let phase = if bot.runs_inline() {
            Box::pin(inline_turn(engine, bot, input)).await?
        } else {
            Box::pin(split_turn(engine, bot, input)).await?
        };
        match phase {
            Phase::Done(done) => {
                let (response, channel) = *done;
                if let Some(sink) = &inner.config.sink {
                    sink.turn_committed(&channel, &response);
                }
                return Ok(response);
            }
            Phase::Stale(back) => input = *back,
        }
    }
    Err(EngineError::Internal(
        "the bot kept changing while the turn was starting".into(),
    ))
}

/// The current compiled bot (blocking pool: it may read and compile).
async fn load_bot(
    engine: &Engine,
    ch: &crate::store::Channel,
    code: &BotCode,
) -> Result<Arc<LiveBot>, EngineError> {
    let (e2, org, bot) = (
        engine.clone(),
        ch.organization_id.clone(),
        ch.bot_id.clone(),
    );
    let code = code.clone();
    tokio::task::spawn_blocking(move || e2.inner.bots.get(&e2.inner.store, &org, &bot, &code))
        .await
        .map_err(|e| EngineError::Internal(format!("loading the bot failed: {e}")))?
        .map_err(|e| match e {
            EngineError::Invalid { message, .. } => EngineError::Conflict(message),
            e => e,
        })
}

fn client_of(req: &ChatRequest) -> ClientKey {
    let ch = &req.channel;
    ClientKey {
        organization_id: ch.organization_id.clone(),
        bot_id: ch.bot_id.clone(),
        channel_id: ch.id.clone(),
        user_id: req.user_id.clone(),
    }
}

/// Inside a writer job: `None` when `bot` is not the code that serves the channel any more.
fn read_state(
    tx: &TurnTx<'_>,
    bot: &LiveBot,
    client: &ClientKey,
    code: &BotCode,
    now: i64,
) -> crate::store::Result<Option<TurnState>> {
    let (version, rev) = tx.bot_code_key(&client.organization_id, &client.bot_id)?;
    if !is_current(bot, code, version, rev) {
        return Ok(None);
    }
    Ok(Some(tx.turn_state(client, now)?))
}

async fn inline_turn(
    engine: &Engine,
    bot: Arc<LiveBot>,
    input: TurnInput,
) -> Result<Phase, EngineError> {
    let e2 = engine.clone();
    engine
        .inner
        .store
        .turn_on_writer(move |tx| {
            let now = now_millis();
            let client = client_of(&input.req);
            let Some(state) = read_state(tx, &bot, &client, &input.code, now)? else {
                return Ok(Ok(Phase::Stale(Box::new(input))));
            };
            let mut input = input;
            input.gather_metadata(tx, &bot)?;
            match run(&e2, &bot, client, state, input, now) {
                Ok((write, done, after)) => {
                    tx.apply(&write)?;
                    if let Some(after) = after {
                        after(tx, &done.0)?;
                    }
                    Ok(Ok(Phase::Done(Box::new(done))))
                }
                // Nothing was written: the job's savepoint is released empty.
                Err(e) => Ok(Err(e)),
            }
        })
        .await?
}

async fn split_turn(
    engine: &Engine,
    bot: Arc<LiveBot>,
    input: TurnInput,
) -> Result<Phase, EngineError> {
    let b2 = Arc::clone(&bot);
    let (state, input, client, now) = match engine
        .inner
        .store
        .turn_on_writer(move |tx| {
            let now = now_millis();
            let client = client_of(&input.req);
            Ok(match read_state(tx, &b2, &client, &input.code, now)? {
                Some(state) => {
                    let mut input = input;
                    input.gather_metadata(tx, &b2)?;
                    Ok((state, input, client, now))
                }
                None => Err(input),
            })
        })
        .await?
    {
        Ok(read) => read,
        Err(input) => return Ok(Phase::Stale(Box::new(input))),
    };
    let e2 = engine.clone();
    let (write, done, after) =
        tokio::task::spawn_blocking(move || run(&e2, &bot, client, state, input, now))
            .await
            .map_err(|e| EngineError::Internal(format!("the turn failed: {e}")))??;
    let done = engine
        .inner
        .store
        .turn_on_writer(move |tx| {
            tx.apply(&write)?;
            if let Some(after) = after {
                after(tx, &done.0)?;
            }
            Ok(done)
        })
        .await?;
    Ok(Phase::Done(Box::new(done)))
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

/// `goto ... in BOT` (csml-language §7.5) is allowed only towards the bots of a request's
/// `multibot` list. Studio API requests have no such list (the key decides the bot), so no
/// switch is ever allowed here: the turn ends with the reference's error message, and the
/// conversation closes (the interpreter already stopped at the goto).
fn refuse_bot_switch(result: &mut csml::TurnResult) {
    if let Some(sb) = result.switch_bot.take() {
        result.messages.push(csml::Message {
            content_type: "error".into(),
            content: serde_json::json!({
                "error": format!("Switching to Bot: ({}) is not allowed", sb.bot)
            }),
        });
        result.status = csml::TurnStatus::Error;
    }
}

/// Select the flow, run the interpreter, build the write set and the response (and hand back
/// the caller's [`AfterTurn`]). Blocking only when the bot's host calls block (see
/// [`LiveBot::may_block`]).
fn run(
    engine: &Engine,
    live: &LiveBot,
    client: ClientKey,
    state: TurnState,
    input: TurnInput,
    now: i64,
) -> Result<(TurnWrite, Done, Option<AfterTurn>), EngineError> {
    let inner = &engine.inner;
    let TurnInput {
        req,
        incoming,
        mut metadata,
        broadcast,
        code: _,
        inbound,
        after,
        lazy_metadata: _,
    } = input;
    let is_broadcast = broadcast.is_some();
    let ch = req.channel;
    let start = select(live, &state, &incoming, is_broadcast);
    let participant_id = state.participant_id;

    // _metadata: the request's, plus the channel (studio-api §2.1; `_channel` is ours).
    metadata.insert(
        "_channel".into(),
        serde_json::json!({"type": ch.kind, "name": ch.name, "id": ch.id}),
    );
    // Stored with a new conversation only, without the request's turn-only entries.
    // Serialized at once: only its text is stored (no copy of the whole map).
    let create_metadata = start
        .create
        .then(|| serde_json::to_string(&metadata).expect("a JSON map always serializes"));
    metadata.extend(req.turn_metadata);
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
    let started = std::time::Instant::now();
    let mut result = csml::run_turn(&live.bot, ctx, incoming.to_event(), &mut host, &opts);
    live.record_run(started.elapsed().as_nanos() as u64);
    refuse_bot_switch(&mut result);

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
        participant_id,
        now,
        turn_id: new_id(),
        close_all_first: start.close_all_first,
        conversation: if start.create {
            ConversationWrite::Create {
                id: start.conversation_id.clone(),
                flow: result.flow.clone(),
                step: result.step.clone(),
                metadata: create_metadata.unwrap_or_default(),
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
        broadcast_done: broadcast,
        inbound_done: inbound,
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
    Ok((write, (response, ch), after))
}
