//! One turn (csml-language §7.2, studio-api §2.1): lock the client, read its state through the
//! store, pick the flow, run the interpreter on a blocking thread (deadline, quotas, the
//! organization's fair share), commit the plain-data write set through the store, report to
//! the sink.
//!
//! The client lock is this node's; several nodes on one PostgreSQL database may run turns of
//! one client at once. The database decides: a commit names the version of the conversation
//! its read saw, and is refused (`store::Error::Stale`) when another turn committed first.
//! The turn then runs again, whole, from a new read ([`MAX_RUNS`] times at most, then a 503
//! busy error). Running again is safe for what the turn stores (a refused commit wrote
//! nothing), but whatever the flow did outside the database happens again: **a turn that runs
//! again repeats its HTTP calls** (and App/SMTP calls), as a client's retry would.

use super::cache::{LiveBot, is_current};
use super::event::{Incoming, parse_payload};
use super::host::{AppContext, TurnHost};
use super::{
    BotCode, ChatRequest, ChatResponse, ClientIds, Engine, EngineError, OutMessage, TurnDone,
    TurnHooks,
};
use crate::store::conversations::TurnRows;
use crate::store::conversations::{
    ConversationWrite, NewMessage, TurnCommit, TurnRead, TurnState, TurnWrite,
};
use crate::store::ids::{iso_millis, new_id, now_millis};
use crate::store::{ClientKey, ConversationStatus, Direction};
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use std::time::Instant;

/// How many times one turn runs at most when its commit keeps finding its conversation moved
/// by other nodes' turns of the same client (see the module doc).
const MAX_RUNS: usize = 5;

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

/// What a turn carries from its request to its commit, shared by its runs (see the module
/// doc): each run reads from it and builds its own context.
struct TurnInput {
    req: ChatRequest,
    incoming: Incoming,
    metadata: Map<String, Json>,
    broadcast: Option<String>,
    /// A connector's inbound event this turn runs (see [`chat_inbound`]).
    inbound: Option<String>,
}

/// Run a chat turn. `broadcast`: the queued broadcast this turn executes (marked done in the
/// same commit) — broadcasts default `close_flows` to true.
///
/// A turn is three steps under its client's lock: read (the conversation, memories and the
/// key of the bot's code, one job of the store's writer, SQL only), run (the interpreter on a
/// blocking thread, under the bot's deadline and the turn quotas, holding a slot of the
/// organization's fair share), commit (the plain-data write set, one job of the writer). The
/// writer never runs a bot: a slow or hostile flow delays only its own organization.
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
    Ok(
        chat_turn(engine, req, broadcast, code, None, TurnHooks::default())
            .await?
            .response,
    )
}

/// [`chat`] running the given code of the bot, with the caller's rows in its commit.
pub(super) async fn chat_code(
    engine: &Engine,
    req: ChatRequest,
    broadcast: Option<String>,
    code: BotCode,
    hooks: TurnHooks,
) -> Result<TurnDone, EngineError> {
    chat_turn(engine, req, broadcast, code, None, hooks).await
}

/// [`chat`] for a connector's stored inbound event: marked done in the turn's commit.
pub(super) async fn chat_inbound(
    engine: &Engine,
    req: ChatRequest,
    event: String,
) -> Result<ChatResponse, EngineError> {
    Ok(chat_turn(
        engine,
        req,
        None,
        BotCode::Live,
        Some(event),
        TurnHooks::default(),
    )
    .await?
    .response)
}

async fn chat_turn(
    engine: &Engine,
    mut req: ChatRequest,
    broadcast: Option<String>,
    code: BotCode,
    inbound: Option<String>,
    hooks: TurnHooks,
) -> Result<TurnDone, EngineError> {
    let (incoming, metadata) = check_request(&mut req)?;
    let inner = &engine.inner;
    let _guard = inner
        .locks
        .lock(&req.channel.bot_id, &req.channel.id, &req.user_id)
        .await;
    let TurnHooks { mut after, history } = hooks;
    let (history_of, mut history_meta) = match history {
        Some((session, f)) => (Some(session), Some(f)),
        None => (None, None),
    };
    let client = client_of(&req);
    let mut live = inner.bots.peek(&req.channel.bot_id, &code);
    let input = Arc::new(TurnInput {
        req,
        incoming,
        metadata,
        broadcast,
        inbound,
    });
    for run in 1..=MAX_RUNS {
        let (bot, read, now) = read_current(
            engine,
            &input.req.channel,
            &client,
            &code,
            live.take(),
            history_of.as_ref(),
        )
        .await?;
        let history = match &mut history_meta {
            Some(f) if bot.reads_metadata => f(read.ocs_history),
            _ => Map::new(),
        };
        let prep = prepare(engine, &bot, read.state, Arc::clone(&input), history);
        let slot = inner.fair.acquire(&client.organization_id).await?;
        let (write, response) = run_prepared(engine, &bot, client.clone(), prep, now).await?;
        drop(slot);
        let said: u64 = response
            .messages
            .iter()
            .map(|m| csml::eval::json_len(&m.payload.content))
            .sum();
        inner.fair.charge_output(&client.organization_id, said);
        let ocs = after.as_mut().map(|f| f(&response));
        match inner.store.commit_turn(TurnCommit { write, ocs }).await {
            Ok(ocs_stored) => {
                if let Some(sink) = &inner.config.sink {
                    sink.turn_committed(&input.req.channel, &response);
                }
                return Ok(TurnDone {
                    response,
                    ocs_stored,
                });
            }
            Err(crate::store::Error::Stale(why)) => {
                tracing::debug!(org = %client.organization_id, bot = %client.bot_id, run,
                    reason = %why, "a turn's conversation moved meanwhile: running it again");
                live = Some(bot);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Busy {
        message: "this conversation is busy with other turns: retry shortly".into(),
        retry_after_secs: 1,
    })
}

/// A turn's reads with the compiled bot they go with: the bot must be the code that serves
/// the channel at the time of the read; a change in between (rare) means a reload and a new
/// read.
async fn read_current(
    engine: &Engine,
    channel: &crate::store::Channel,
    client: &ClientKey,
    code: &BotCode,
    mut live: Option<Arc<LiveBot>>,
    history_of: Option<&String>,
) -> Result<(Arc<LiveBot>, TurnRows, i64), EngineError> {
    for _ in 0..3 {
        let bot = match live.take() {
            Some(b) => b,
            None => Box::pin(load_bot(engine, channel, code)).await?,
        };
        let now = now_millis();
        let read = engine
            .inner
            .store
            .read_turn(TurnRead {
                client: client.clone(),
                now,
                ocs_history_of: history_of.filter(|_| bot.reads_metadata).cloned(),
            })
            .await?;
        let (version, rev) = read.code_key.clone();
        if is_current(&bot, code, version, rev) {
            return Ok((bot, read, now));
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

/// Where the turn starts.
struct Start {
    conversation_id: String,
    create: bool,
    flow: String,
    step: String,
    hold: Option<csml::Hold>,
    previous: Option<csml::Position>,
    /// The read's version of the conversation this turn continues (with `create` false).
    rev: i64,
    /// The read's open conversation (`id`, version) a created one replaces.
    replaces: Option<(String, i64)>,
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
            rev: state.rev,
            replaces: None,
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
                rev: state.rev,
                replaces: None,
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
                rev: 0,
                // Expired, closed by `close_flows`, or its flow is gone: this one replaces it.
                replaces: state
                    .conversation
                    .as_ref()
                    .map(|c| (c.id.clone(), state.rev)),
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

/// A turn ready to run: the interpreter's context and options, and what its commit needs
/// besides the interpreter's result.
struct Prepared {
    ctx: csml::Context,
    opts: csml::TurnOptions,
    /// The turn's real deadline (an inline try runs under a shorter one).
    deadline: Instant,
    start: Start,
    input: Arc<TurnInput>,
    participant_id: Option<String>,
    create_metadata: Option<String>,
}

/// Select the flow and build the interpreter's context under the bot's deadline and the turn
/// quotas. `history`: this run's `_metadata` entries from the OCS history ([`TurnHooks`]).
fn prepare(
    engine: &Engine,
    live: &LiveBot,
    state: TurnState,
    input: Arc<TurnInput>,
    history: Map<String, Json>,
) -> Prepared {
    let ch = &input.req.channel;
    let mut metadata = input.metadata.clone();
    let mut start = select(live, &state, &input.incoming, input.broadcast.is_some());

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
    metadata.extend(input.req.turn_metadata.clone());
    metadata.extend(history);
    let ctx = csml::Context {
        flow: start.flow.clone(),
        step: start.step.clone(),
        memories: state.memories,
        metadata: Json::Object(metadata),
        hold: start.hold.take(),
        previous: start.previous.take(),
    };
    let limits = &engine.inner.config.limits;
    let deadline = Instant::now() + limits.deadline_of(live.settings.turn_timeout_ms);
    let opts = csml::TurnOptions {
        step_limit: live.settings.step_limit.unwrap_or(100),
        deadline: Some(deadline),
        max_messages: limits.max_messages,
        max_output_bytes: limits.max_output_bytes,
        max_memory_bytes: limits.max_memory_bytes,
        ..Default::default()
    };
    Prepared {
        ctx,
        opts,
        deadline,
        start,
        input,
        participant_id: state.participant_id,
        create_metadata,
    }
}

/// Run the interpreter on `ctx` under `opts` (blocking when the bot's host calls block).
fn interpret(
    engine: &Engine,
    live: &LiveBot,
    client: &ClientKey,
    ctx: csml::Context,
    opts: &csml::TurnOptions,
    incoming: &Incoming,
) -> csml::TurnResult {
    let inner = &engine.inner;
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
    csml::run_turn(&live.bot, ctx, incoming.to_event(), &mut host, opts)
}

/// Run a prepared turn's interpreter and build its commit ([`finish`]).
///
/// A bot whose flows name no builtin that waits (HTTP, App, SMTP) and that has never run long
/// is first tried right here, on the async worker, under a short deadline ([`INLINE_TRY`]):
/// nearly every turn of a real bot ends well inside it, and then the turn costs no thread hop.
/// A try that runs out of that short deadline is thrown away (nothing of it is written or
/// returned; the interpreter has no other effects) and the turn runs again on a slow-turn
/// thread (lower CPU priority, see `slow`) under its real deadline, as every turn of a slow
/// or waiting bot does. The bot is marked slow (all its turns go there) when that run takes
/// as long too, or after a few cut tries ([`LiveBot::note_cut`]): a fast turn whose try was
/// merely preempted on a loaded machine keeps its bot fast, and a flow that is slow only
/// now and then costs an async worker [`INLINE_TRY`] a few times per compiled bot at most.
async fn run_prepared(
    engine: &Engine,
    live: &Arc<LiveBot>,
    client: ClientKey,
    prep: Prepared,
    now: i64,
) -> Result<(TurnWrite, ChatResponse), EngineError> {
    if live.may_try_inline() {
        let try_deadline = prep.deadline.min(Instant::now() + INLINE_TRY);
        let opts = csml::TurnOptions {
            deadline: Some(try_deadline),
            ..prep.opts
        };
        let result = interpret(
            engine,
            live,
            &client,
            prep.ctx.clone(),
            &opts,
            &prep.input.incoming,
        );
        let cut_short =
            result.budget_hit == Some(csml::Budget::Deadline) && try_deadline < prep.deadline;
        if !cut_short {
            if result.budget_hit.is_some() {
                // A turn that spent a budget (its output, messages, loops...) is heavy: the
                // bot's next turns run at the slow threads' priority.
                live.mark_slow();
            }
            return Ok(finish(live, client, prep, result, now));
        }
        // Run again below. The bot is marked slow only when that run takes as long too (a
        // fast turn whose try was merely preempted keeps its bot fast), or after a few cuts.
        return on_slow_thread(engine, live, client, prep, now, true).await;
    }
    on_slow_thread(engine, live, client, prep, now, false).await
}

/// Run a prepared turn on a slow-turn thread. `after_cut`: its inline try was cut (see
/// [`run_prepared`]).
async fn on_slow_thread(
    engine: &Engine,
    live: &Arc<LiveBot>,
    client: ClientKey,
    mut prep: Prepared,
    now: i64,
    after_cut: bool,
) -> Result<(TurnWrite, ChatResponse), EngineError> {
    let (e2, live2) = (engine.clone(), Arc::clone(live));
    engine
        .inner
        .slow
        .run(move || {
            let started = Instant::now();
            let ctx = std::mem::take(&mut prep.ctx);
            let result = interpret(&e2, &live2, &client, ctx, &prep.opts, &prep.input.incoming);
            if after_cut && (started.elapsed() >= INLINE_TRY || live2.note_cut()) {
                live2.mark_slow();
                tracing::info!(org = %client.organization_id, bot = %client.bot_id,
                    "a turn outran the inline try: this bot's turns run on the slow-turn threads");
            }
            finish(&live2, client, prep, result, now)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("the turn failed: {e}")))
}

/// How long a turn may run on an async worker before it is moved to a blocking thread (see
/// [`run_prepared`]).
const INLINE_TRY: std::time::Duration = std::time::Duration::from_millis(2);

/// Build the write set and the response from the interpreter's result: everything the commit
/// needs but the caller's rows ([`super::AfterTurn`], built from the response), as plain data.
fn finish(
    live: &LiveBot,
    client: ClientKey,
    prep: Prepared,
    mut result: csml::TurnResult,
    now: i64,
) -> (TurnWrite, ChatResponse) {
    let Prepared {
        start,
        input,
        participant_id,
        create_metadata,
        ..
    } = prep;
    let incoming = &input.incoming;
    if let Some(b) = result.budget_hit {
        tracing::warn!(target: "botyard::budget", org = %client.organization_id,
            bot = %client.bot_id, budget = b.as_str(), "a turn was ended by its budget");
    }
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
        conversation: if start.create {
            ConversationWrite::Create {
                id: start.conversation_id.clone(),
                flow: result.flow.clone(),
                step: result.step.clone(),
                metadata: create_metadata.unwrap_or_default(),
                version_id: live.version_id.clone(),
                platform: input.req.channel.kind.clone(),
                replaces: start.replaces,
            }
        } else {
            ConversationWrite::Update {
                id: start.conversation_id.clone(),
                flow: result.flow.clone(),
                step: result.step.clone(),
                rev: start.rev,
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
        broadcast_done: input.broadcast.clone(),
        inbound_done: input.inbound.clone(),
    };
    let response = ChatResponse {
        request_id: input.req.request_id.clone().unwrap_or_else(new_id),
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
        received_at: iso_millis(input.req.received_at),
        conversation_id: start.conversation_id,
        organization_id: client.organization_id,
    };
    (write, response)
}
