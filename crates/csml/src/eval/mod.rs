//! The evaluator: statements, expressions, steps, gotos, hold/resume and the turn loop
//! (spec §3, §4.1, §3.10–3.11).
//!
//! Layout: this module holds the per-turn [`Evaluator`] state and its [`Runtime`] face for the
//! standard library; `scope` resolves and writes variables; `expr` evaluates expressions;
//! `stmt` runs statements, loops and resumes; `turn` drives steps and gotos and builds the
//! [`TurnResult`].
//!
//! Errors travel as [`Stop::Fatal`] carrying the finished message text; they are emitted only
//! when they reach statement level, because an `if`/`while` condition swallows them (spec
//! §3.5). Non-fatal errors are emitted on the spot.
//!
//! Choices where the spec leaves room:
//! * Error messages name the conversation's current flow, also inside imported functions and
//!   inserted steps.
//! * `goto`, `hold` and `previous` inside a function or closure (rejected by the linter, but
//!   reachable through unchecked bots) do nothing; `say` and `remember` there act normally.
//! * Besides the loop budget, a turn has an instruction budget (100 × the loop budget, at
//!   least 1 000 000 statements) and a call budget (10 × the loop budget, at least 100 000
//!   function/closure calls) so that exponential recursion ends quickly too; all fail with an
//!   `[Infinite loop]` fatal error. Values are bounded too (see [`Evaluator::charge`]). The
//!   deadline and the output and memory quotas of [`TurnOptions`] are in `budget`, which also
//!   says how any budget ends a turn.
//! * `!e` where `e` fails is `true` (the failing operand counts as false).

mod budget;
pub use budget::json_len;
mod expr;
pub mod fxhash;
pub mod protocol;
mod scope;
mod stmt;
mod turn;

use serde_json::Value as Json;

use crate::api::{Budget, SwitchBot, TurnResult};
use crate::api::{Context, Event, ForgetOp, Host, MemoryWrite, Message, Position, TurnOptions};
use crate::ast::Pos;
use crate::bot::{Bot, BotInner};
use crate::stdlib::regexes::RegexCache;
use crate::stdlib::{Fault, Runtime};
use crate::value::{Closure, Value};
use fxhash::FxIndexMap;

pub(crate) type Locals = FxIndexMap<String, Value>;

/// Run one turn of `bot` from `ctx` on `event`.
pub fn run_turn(
    bot: &Bot,
    ctx: Context,
    event: Event,
    host: &mut dyn Host,
    opts: &TurnOptions,
) -> TurnResult {
    turn::run(&bot.inner, ctx, event, host, opts)
}

/// Why evaluation stopped early. Everything except `Fatal` is control flow.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A fatal error; the text is the finished message (`... at line L, column C at flow [F]`).
    Fatal(String),
    Goto(Jump),
    Hold(Box<crate::api::Hold>),
    Break,
    Continue,
    Return(Value),
}

/// Where a `goto`/`previous` goes, names already resolved.
#[derive(Debug)]
pub(crate) enum Jump {
    End,
    /// `flow: None` = the current flow; `step: None` = `start`.
    To {
        flow: Option<String>,
        step: Option<String>,
    },
    PreviousStep,
    PreviousFlow,
    Bot(SwitchBot),
}

pub(crate) type R<T> = Result<T, Stop>;

/// The scope a statement runs in.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub locals: Locals,
    /// Flow whose constants and functions are visible.
    pub flow: usize,
    /// A function or closure body: no memories, no step-level actions.
    pub in_fn: bool,
}

/// The resume state after a hold (spec §3.11): skip up to `index`, loops restart at
/// `loop_index`.
#[derive(Debug)]
pub(crate) struct Resume {
    pub index: u32,
    pub loop_index: Vec<u64>,
}

pub(crate) struct Evaluator<'a> {
    pub bot: &'a BotInner,
    pub host: &'a mut dyn Host,
    pub opts: &'a TurnOptions,
    /// Conversation position.
    pub flow: usize,
    pub step: String,
    /// Hash of the running step's source (saved with a hold).
    pub step_hash: u64,
    /// Steps entered this turn (spec §3.11 step limit).
    pub steps_run: u32,
    pub previous: Option<Position>,
    pub frame: Frame,
    pub memories: Locals,
    pub event: Event,
    pub event_obj: Option<Value>,
    pub metadata: Json,
    pub messages: Vec<Message>,
    pub memory_writes: Vec<MemoryWrite>,
    pub forgets: Vec<ForgetOp>,
    pub gotos: u32,
    pub loop_iters: u64,
    pub instructions: u64,
    pub instruction_limit: u64,
    pub calls: u64,
    pub call_limit: u64,
    /// Units of data copied this turn (see [`Evaluator::charge`]).
    pub copied: u64,
    pub depth: u32,
    /// Indexes of the enclosing `foreach` loops, outermost first.
    pub loop_stack: Vec<u64>,
    pub resume: Option<Resume>,
    /// A fatal error raised inside a closure called by the standard library, kept with its own
    /// position while the library unwinds.
    pub pending_fatal: Option<String>,
    /// Scopes of closures being called repeatedly by one `map`/`filter`/`reduce` (the scope is
    /// shared by the iterations of one call, spec §5.4).
    pub closure_scopes: Vec<(usize, Locals)>,
    /// Work left before the next budget and clock check (see `budget`).
    pub fuel: i64,
    /// The budget that ends the turn, with its finished message, once one is spent.
    pub budget: Option<(Budget, String)>,
    /// The time the turn had when it started, in milliseconds (for the timeout message).
    pub deadline_ms: u128,
    /// Serialized bytes of the output messages so far.
    pub out_bytes: u64,
    /// Serialized bytes of the memory writes (and held locals) so far.
    pub mem_bytes: u64,
    /// Position of the statement running (where a budget found by the library is reported).
    pub stmt_pos: Pos,
    /// The turn's cache of larger compiled regexes.
    pub regexes: RegexCache,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        bot: &'a BotInner,
        host: &'a mut dyn Host,
        opts: &'a TurnOptions,
        ctx: &mut Context,
        event: Event,
        flow: usize,
    ) -> Self {
        // The context's memories and metadata are moved in, not cloned: a channel's metadata
        // can be large (an OCS turn's history), and this runs on the store's writer thread.
        let mut memories = Locals::default();
        for (k, v) in std::mem::take(&mut ctx.memories) {
            let v = bot.load_memory(&v);
            memories.insert(k, v);
        }
        Evaluator {
            bot,
            host,
            opts,
            flow,
            step: ctx.step.clone(),
            step_hash: 0,
            steps_run: 0,
            previous: ctx.previous.clone(),
            frame: Frame {
                locals: Locals::default(),
                flow,
                in_fn: false,
            },
            memories,
            event,
            event_obj: None,
            metadata: std::mem::take(&mut ctx.metadata),
            messages: Vec::new(),
            memory_writes: Vec::new(),
            forgets: Vec::new(),
            gotos: 0,
            loop_iters: 0,
            instructions: 0,
            instruction_limit: opts.loop_limit.max(10_000).saturating_mul(100),
            copied: 0,
            calls: 0,
            call_limit: opts.loop_limit.max(10_000).saturating_mul(10),
            depth: 0,
            loop_stack: Vec::new(),
            resume: None,
            pending_fatal: None,
            closure_scopes: Vec::new(),
            fuel: budget::CLOCK_CHECK_EVERY,
            budget: None,
            // Rounded up: a deadline set to "now + 5 s" just before the turn reads 5000 ms.
            deadline_ms: opts.deadline.map_or(0, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_micros()
                    .div_ceil(1000)
            }),
            out_bytes: 0,
            mem_bytes: 0,
            stmt_pos: Pos::new(0, 0),
            regexes: RegexCache::default(),
        }
    }

    pub fn flow_name(&self) -> &str {
        &self.bot.flows[self.flow].name
    }

    /// `<reason> at line L, column C at flow [F]`.
    pub fn located(&self, reason: &str, pos: Pos) -> String {
        format!(
            "{reason} at line {}, column {} at flow [{}]",
            pos.line,
            pos.column,
            self.flow_name()
        )
    }

    pub fn fatal(&self, reason: &str, pos: Pos) -> Stop {
        Stop::Fatal(self.located(reason, pos))
    }

    /// Output a message (within the output quotas, see [`Evaluator::push_message`]).
    pub fn emit(&mut self, content_type: &str, content: Json, pos: Pos) {
        let msg = Message {
            content_type: content_type.to_string(),
            content,
        };
        self.push_message(msg, pos);
    }

    /// Emit a non-fatal error and return the Null that carries it.
    pub fn error(&mut self, reason: &str, pos: Pos) -> Value {
        let text = self.located(reason, pos);
        self.push_message(budget::error_message(text), pos);
        Value::error_null(reason)
    }

    /// Map a library failure: non-fatal ones are emitted and give an error Null.
    pub fn fault(&mut self, f: Fault, pos: Pos) -> R<Value> {
        match f {
            Fault::Error(m) => Ok(self.error(&m, pos)),
            Fault::Fatal(m) => match self.pending_fatal.take() {
                Some(text) => Err(Stop::Fatal(text)),
                None => Err(self.fatal(&m, pos)),
            },
        }
    }

    /// Count one loop iteration against the turn's budget.
    #[inline]
    pub fn tick_loop(&mut self, pos: Pos) -> R<()> {
        self.loop_iters += 1;
        if self.loop_iters > self.opts.loop_limit {
            let reason = format!(
                "[Infinite loop] loop limit reached: more than {} loop iterations in a single turn",
                self.opts.loop_limit
            );
            return Err(self.exhaust(Budget::Loop, &reason, pos));
        }
        self.spend(1, pos)
    }

    /// Count one statement against the turn's instruction budget.
    #[inline]
    pub fn tick_instruction(&mut self, pos: Pos) -> R<()> {
        self.instructions += 1;
        self.stmt_pos = pos;
        if self.instructions > self.instruction_limit {
            let reason = format!(
                "[Infinite loop] instruction limit reached: more than {} instructions in a single turn",
                self.instruction_limit
            );
            return Err(self.exhaust(Budget::Instructions, &reason, pos));
        }
        self.spend(1, pos)
    }

    /// Account for a value just copied out of a variable (or built by the library): one unit
    /// per node plus one per 16 bytes of text. A value larger than [`MAX_VALUE_UNITS`] or
    /// deeper than [`MAX_VALUE_DEPTH`], or a turn copying more than [`MAX_TURN_UNITS`] in
    /// total, is fatal: this bounds memory and time for scripts that double values in loops.
    pub fn charge(&mut self, v: &Value, pos: Pos) -> R<()> {
        let units = match weigh(v) {
            Ok(u) => u,
            Err(reason) => return Err(self.fatal(reason, pos)),
        };
        self.charge_units(units, pos)
    }

    #[inline]
    pub fn charge_units(&mut self, units: u64, pos: Pos) -> R<()> {
        self.copied += units;
        if self.copied > MAX_TURN_UNITS {
            return Err(self.exhaust(
                Budget::DataCopied,
                "[Infinite loop] memory limit reached: too much data copied in a single turn",
                pos,
            ));
        }
        self.spend(units, pos)
    }

    /// Run `f` in a fresh function scope (depth-checked), restoring the caller's scope and
    /// resume state afterwards.
    pub fn in_scope<T>(
        &mut self,
        frame: Frame,
        pos: Pos,
        f: impl FnOnce(&mut Self) -> R<T>,
    ) -> R<(T, Locals)> {
        self.calls += 1;
        if self.calls > self.call_limit {
            let reason = format!(
                "[Infinite loop] call limit reached: more than {} function calls in a single turn",
                self.call_limit
            );
            return Err(self.exhaust(Budget::Calls, &reason, pos));
        }
        if self.depth >= self.opts.call_depth_limit {
            let reason = format!(
                "[Infinite loop] function call depth limit reached: {} nested calls",
                self.opts.call_depth_limit
            );
            return Err(self.exhaust(Budget::Depth, &reason, pos));
        }
        self.spend(1, pos)?;
        self.depth += 1;
        let r = grow(|| self.in_scope_inner(frame, f));
        self.depth -= 1;
        r
    }

    fn in_scope_inner<T>(
        &mut self,
        frame: Frame,
        f: impl FnOnce(&mut Self) -> R<T>,
    ) -> R<(T, Locals)> {
        let saved_frame = std::mem::replace(&mut self.frame, frame);
        let saved_resume = self.resume.take();
        let saved_loops = std::mem::take(&mut self.loop_stack);
        let r = f(self);
        self.loop_stack = saved_loops;
        self.resume = saved_resume;
        let frame = std::mem::replace(&mut self.frame, saved_frame);
        r.map(|t| (t, frame.locals))
    }
}

impl Runtime for Evaluator<'_> {
    fn host(&mut self) -> &mut dyn Host {
        &mut *self.host
    }

    fn call_closure(&mut self, closure: &Closure, args: Vec<Value>) -> Result<Value, Fault> {
        match self.call_closure_args(closure, args, Vec::new(), None) {
            Ok(v) => Ok(v),
            Err(Stop::Fatal(text)) => {
                let reason = text.clone();
                self.pending_fatal = Some(text);
                Err(Fault::Fatal(reason))
            }
            // Control flow cannot leave a closure; anything else ends the call with Null.
            Err(_) => Ok(Value::null()),
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.bot.flows[self.frame.flow].constants.contains_key(name)
            || self.frame.locals.contains_key(name)
            || (!self.frame.in_fn && self.memories.contains_key(name))
    }

    fn custom_component(&self, name: &str) -> Option<&Json> {
        self.bot.source.custom_components.get(name)
    }

    fn native_components(&self) -> bool {
        self.bot.source.native_components
    }

    fn position(&self) -> (&str, &str) {
        (self.flow_name(), &self.step)
    }

    fn check_budget(&mut self) -> Result<(), Fault> {
        match self.checkpoint(self.stmt_pos) {
            Ok(()) => Ok(()),
            Err(Stop::Fatal(text)) => {
                let reason = text.clone();
                self.pending_fatal = Some(text);
                Err(Fault::Fatal(reason))
            }
            Err(_) => Ok(()),
        }
    }

    fn regex(&mut self, pattern: &str) -> Result<std::sync::Arc<regex::Regex>, Fault> {
        crate::stdlib::regexes::compile(Some(&mut self.regexes), pattern).map_err(Fault::Error)
    }
}

/// Largest value (in units: nodes, plus one per 16 bytes of text) a script may handle.
pub const MAX_VALUE_UNITS: u64 = 1 << 20;
/// Deepest nesting of arrays/objects a script may build.
pub const MAX_VALUE_DEPTH: usize = 256;
/// Units a turn may copy in total.
pub const MAX_TURN_UNITS: u64 = 8 << 20;

/// The size of a value in units, or why it is too large (iterative: values may be deep).
#[inline]
pub(crate) fn weigh(v: &Value) -> Result<u64, &'static str> {
    use crate::value::Kind;
    const TOO_BIG: &str =
        "value too large: a value may hold at most 1048576 elements or 16 MB of text";
    const TOO_DEEP: &str = "value nested too deeply: at most 256 levels of arrays and objects";
    let scalar = |v: &Value| match &v.kind {
        Kind::String(s) => 1 + (s.len() as u64 >> 4),
        _ => 1,
    };
    match &v.kind {
        Kind::Array(_) | Kind::Object(_) => {}
        _ => {
            let u = scalar(v);
            return if u > MAX_VALUE_UNITS {
                Err(TOO_BIG)
            } else {
                Ok(u)
            };
        }
    }
    let mut units = 0u64;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, depth)) = stack.pop() {
        units += scalar(v);
        if units > MAX_VALUE_UNITS {
            return Err(TOO_BIG);
        }
        match &v.kind {
            Kind::Array(a) if !a.is_empty() => {
                if depth > MAX_VALUE_DEPTH {
                    return Err(TOO_DEEP);
                }
                stack.extend(a.iter().map(|x| (x, depth + 1)));
            }
            Kind::Object(m) if !m.is_empty() => {
                if depth > MAX_VALUE_DEPTH {
                    return Err(TOO_DEEP);
                }
                units += m.len() as u64;
                stack.extend(m.values().map(|x| (x, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(units)
}

/// Run `f` on a fresh heap-allocated stack segment when little stack is left, so deep (but
/// bounded) nesting and recursion never overflow whatever thread the caller runs turns on.
#[inline]
pub(crate) fn grow<T>(f: impl FnOnce() -> T) -> T {
    const RED_ZONE: usize = 192 * 1024;
    const SEGMENT: usize = 4 * 1024 * 1024;
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}

/// The hold position hash as stored in [`crate::api::Hold::hash`].
pub(crate) fn hash_text(hash: u64) -> String {
    format!("{hash:016x}")
}
