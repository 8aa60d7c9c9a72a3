//! The interpreter's public contract: what a caller hands in (bot source, conversation context,
//! event, host) and what it gets back (diagnostics, turn results). Everything here is plain data
//! that serializes to the shapes of the `botyard csml test` protocol.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A bot as stored by the platform: flows and settings, not yet parsed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BotSource {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub flows: Vec<FlowSource>,
    pub default_flow: String,
    /// Built-in components (Text, Button, ...) are available. Default true.
    #[serde(default = "yes")]
    pub native_components: bool,
    /// Component name → template (spec §4.4), called as `Component.Name(...)`.
    #[serde(default)]
    pub custom_components: serde_json::Map<String, Json>,
    /// `_env` of the bot.
    #[serde(default)]
    pub env: serde_json::Map<String, Json>,
    /// Extra flows importable as `import f from modules/NAME` (spec §2.9).
    #[serde(default)]
    pub modules: Vec<FlowSource>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowSource {
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A parse or lint finding. `line`/`column` from 1 (0/0 for findings with no position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub flow: String,
    pub step: Option<String>,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Validation {
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Parse every flow and, unless `syntax_only`, lint the whole bot (spec §6).
pub fn validate(source: &BotSource, syntax_only: bool) -> Validation {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut flows = Vec::with_capacity(source.flows.len());
    for f in &source.flows {
        match crate::parser::parse_flow(&f.name, &f.content) {
            Ok(flow) => flows.push(flow),
            Err(d) => errors.push(d),
        }
    }
    if errors.is_empty() && !syntax_only {
        let report = crate::lint::lint(source, &flows);
        errors = report.errors;
        warnings = report.warnings;
    }
    Validation {
        valid: errors.is_empty(),
        errors,
        warnings,
    }
}

/// Where a conversation stands when a turn starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Context {
    pub flow: String,
    pub step: String,
    /// Long-term memories, name → value in the memory format (see [`MemoryWrite`]).
    #[serde(default)]
    pub memories: serde_json::Map<String, Json>,
    /// `_metadata` of the conversation (plain JSON object).
    #[serde(default)]
    pub metadata: Json,
    /// Resume after a hold instead of starting the step.
    #[serde(default)]
    pub hold: Option<Hold>,
    /// The position before the last jump (`previous step|flow`, `_context.previous_*`).
    #[serde(default)]
    pub previous: Option<Position>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub flow: String,
    pub step: String,
}

/// The saved state of a `hold` (test protocol "Hold numbering"; spec §3.11).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hold {
    pub command_index: u32,
    #[serde(default)]
    pub loop_index: Vec<u64>,
    /// The step's locals at the hold, in the memory format.
    #[serde(default)]
    pub step_vars: serde_json::Map<String, Json>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub step: String,
    #[serde(default)]
    pub flow: String,
    /// Hash of the step's source at the hold; a mismatch on resume restarts the step.
    /// Absent (e.g. from the test protocol) means "trust the index".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Position>,
}

/// The incoming event of a turn (spec §3.9).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    pub content_type: String,
    /// The event as a plain value (`say event`).
    #[serde(default)]
    pub content_value: String,
    #[serde(default)]
    pub content: Json,
    #[serde(default)]
    pub secure: bool,
}

/// Limits of one turn. Every budget, when hit, ends the turn the same way: a fatal error
/// message is the last output message, the status is [`TurnStatus::Error`], and
/// [`TurnResult::budget_hit`] says which budget it was. The messages said before it are kept
/// (within the output quotas), and so are memory writes, except when the memory quota itself
/// was hit (then none are returned, see [`TurnOptions::max_memory_bytes`]).
///
/// The defaults are generous for real bots; a platform tightens them per bot.
#[derive(Debug, Clone, Copy)]
pub struct TurnOptions {
    /// Step executions per turn (spec §3.11), default 100.
    pub step_limit: u32,
    /// Loop iterations per turn (`while`/`foreach`), default 10 000; beyond it the turn fails
    /// with an `[Infinite loop]` error instead of hanging.
    pub loop_limit: u64,
    /// Nested user-function/closure calls, default 100.
    pub call_depth_limit: u32,
    /// Wall-clock deadline of the turn, default none. Checked at step entries, before every
    /// host call (HTTP, `App()`, SMTP: a call is never started past it), before every regex
    /// compilation and search, and every 1024 units of work (statements, loop iterations, calls,
    /// units of data copied: about 0.1 ms of interpretation in a release build, for a clock
    /// read of about 25 ns), so a turn ends within about one library call of it.
    /// Past it the turn ends with `[Timeout] the turn ran longer than N ms`. The host learns
    /// it through [`Host::set_deadline`] to cap its own timeouts.
    pub deadline: Option<std::time::Instant>,
    /// Output messages per turn (`say`, `debug` and error messages alike), default 500.
    pub max_messages: u32,
    /// Bytes of output per turn, default 2 MiB: the sum of the serialized JSON `content` of
    /// every output message.
    pub max_output_bytes: u64,
    /// Bytes of memory writes per turn, default 2 MiB: the sum, over every memory write of the
    /// turn (each `remember`, each in-place change of a memory, repeats included, as each is a
    /// write for the platform), of the key's length plus its value's serialized JSON length,
    /// plus the serialized locals a `hold` saves. When it is hit, none of the turn's memory
    /// writes are returned and no hold is kept; `forget`s made before stay (they apply at once,
    /// spec §3.3).
    pub max_memory_bytes: u64,
}

impl Default for TurnOptions {
    fn default() -> Self {
        TurnOptions {
            step_limit: 100,
            loop_limit: 10_000,
            call_depth_limit: 100,
            deadline: None,
            max_messages: 500,
            max_output_bytes: 2 << 20,
            max_memory_bytes: 2 << 20,
        }
    }
}

/// Which budget of [`TurnOptions`] (or of the interpreter's own fixed ones) ended a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// [`TurnOptions::step_limit`].
    Steps,
    /// [`TurnOptions::loop_limit`].
    Loop,
    /// The instruction budget (100 × the loop limit, at least 1 000 000 statements).
    Instructions,
    /// The call budget (10 × the loop limit, at least 100 000 function/closure calls).
    Calls,
    /// [`TurnOptions::call_depth_limit`].
    Depth,
    /// The data a turn may copy ([`crate::eval::MAX_TURN_UNITS`]).
    DataCopied,
    /// [`TurnOptions::deadline`].
    Deadline,
    /// [`TurnOptions::max_messages`].
    Messages,
    /// [`TurnOptions::max_output_bytes`].
    OutputBytes,
    /// [`TurnOptions::max_memory_bytes`].
    MemoryBytes,
}

impl Budget {
    /// A stable lowercase name for logs and metrics (`deadline`, `output_bytes`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Steps => "steps",
            Budget::Loop => "loop",
            Budget::Instructions => "instructions",
            Budget::Calls => "calls",
            Budget::Depth => "depth",
            Budget::DataCopied => "data_copied",
            Budget::Deadline => "deadline",
            Budget::Messages => "messages",
            Budget::OutputBytes => "output_bytes",
            Budget::MemoryBytes => "memory_bytes",
        }
    }
}

/// One output message, `{content_type, content}` as the reference builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub content_type: String,
    pub content: Json,
}

/// A `remember` (or a `do` on a memory) made during the turn. `value` is plain JSON for plain
/// values, or `{"_content": ..., "_content_type": "<tag>"}` for values with a non-plain tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryWrite {
    pub key: String,
    pub value: Json,
}

/// A `forget` made during the turn; the platform applies it at once (spec §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgetOp {
    All,
    Keys(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// `goto end`, or the step ran out of statements: the conversation closes.
    End,
    /// Waiting for the next event; `TurnResult::hold` is set.
    Hold,
    /// A fatal error stopped the turn: the conversation closes.
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnResult {
    pub messages: Vec<Message>,
    /// Memory writes of the turn, in order (several per key possible; the last one wins).
    ///
    /// A `forget` removes the earlier writes of the keys it forgets (all of them for
    /// `forget *`) from this list, as the reference does; a write made after the forget is
    /// listed again. The forget itself is still reported in [`TurnResult::forgets`] so the
    /// platform deletes the stored values. A platform therefore applies `forgets` first, then
    /// `memories`.
    pub memories: Vec<MemoryWrite>,
    /// `forget` statements of the turn, in order; applied by the platform before
    /// [`TurnResult::memories`].
    #[serde(default)]
    pub forgets: Vec<ForgetOp>,
    pub status: TurnStatus,
    pub flow: String,
    pub step: String,
    pub hold: Option<Hold>,
    /// Gotos made during the turn (the engine's `interaction_order`).
    #[serde(default)]
    pub gotos: u32,
    #[serde(default)]
    pub previous: Option<Position>,
    /// A `goto ... in BOT` asked to switch bots (spec §7.5): the engine decides whether it is
    /// allowed and runs the other bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_bot: Option<SwitchBot>,
    /// The budget that ended the turn, if one did (the status is then [`TurnStatus::Error`]
    /// and the last message is the budget's error message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_hit: Option<Budget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchBot {
    pub bot: String,
    pub flow: Option<String>,
    pub step: Option<String>,
}

/// An outbound HTTP request built by `HTTP(url)...send()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    /// Query parameters already appended to `url` by the interpreter.
    pub headers: Vec<(String, String)>,
    pub body: Option<Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON when it is JSON, else a JSON string of the text.
    pub body: Json,
}

/// `App("name", k=v, ...)` (or deprecated `Fn`), routed by the platform to a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCall {
    pub name: String,
    /// The named arguments as a JSON object (positional extras under `"args"`).
    pub args: Json,
    pub flow: String,
    pub step: String,
}

/// An e-mail built by `SMTP(host)...send(email)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmtpRequest {
    pub config: Json,
    pub email: Json,
}

/// Everything the interpreter may ask of the outside world. Every method has a default so a
/// host only supplies what it offers; the defaults fail in-band exactly as the spec says for a
/// missing capability.
pub trait Host {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&mut self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    /// Told once by [`crate::run_turn`], before anything runs, the turn's
    /// [`TurnOptions::deadline`]. A host whose calls block (HTTP, `App()`, SMTP) keeps it and
    /// caps each call's timeout to the time left; the interpreter itself never starts a host
    /// call past the deadline. The default ignores it.
    fn set_deadline(&mut self, _deadline: Option<std::time::Instant>) {}
    /// 64 random bits (`Random()`, `OneOf`, `Shuffle`, `UUID()`).
    fn random_u64(&mut self) -> u64;
    fn http(&mut self, _req: &HttpRequest) -> Result<HttpResponse, String> {
        Err("HTTP is not available in this context".into())
    }
    fn app(&mut self, _call: &AppCall) -> Result<Json, String> {
        Err("App can not be called because apps_endpoint is not set in bot".into())
    }
    fn smtp(&mut self, _req: &SmtpRequest) -> Result<(), String> {
        Err("SMTP is not available".into())
    }
    fn log(&mut self, _level: crate::ast::LogLevel, _message: &str) {}
}

/// A deterministic host for tests and the conformance protocol: a fixed clock, a seeded
/// xorshift generator, and no network.
#[derive(Debug, Clone)]
pub struct OfflineHost {
    pub now_millis: i64,
    pub seed: u64,
}

impl Default for OfflineHost {
    fn default() -> Self {
        OfflineHost {
            now_millis: 1_700_000_000_000,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Host for OfflineHost {
    fn now_millis(&mut self) -> i64 {
        self.now_millis
    }
    fn random_u64(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough for OneOf/Shuffle in tests.
        let mut x = self.seed;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
