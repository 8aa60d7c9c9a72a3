//! `botyard csml test|validate|chat`: the interpreter driven from a terminal.
//!
//! * `test` speaks the JSON-lines conformance protocol (`csml-test-protocol.md`); each case
//!   runs on its own worker thread with a fresh host, a large stack and a 9 s deadline, so a
//!   misbehaving case still gets an answer line. The host is a seam: [`run_protocol`] takes a
//!   host factory; the command uses `csml::OfflineHost` until the platform supplies an
//!   outbound-HTTP host.
//! * `validate` and `chat` load `.csml` files (a directory means every `.csml` file in it; the
//!   flow name is the file stem).

use super::{Cli, CsmlChatArgs, CsmlCommand, CsmlFilesArgs, CsmlTestArgs};
use csml::{BotSource, Context, Event, FlowSource, ForgetOp, Host, Message, TurnStatus};
use serde_json::{Value as Json, json};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// How long a case may run before it is answered with an error.
const CASE_DEADLINE: Duration = Duration::from_secs(9);
/// Stack of the worker thread running one case.
const CASE_STACK: usize = 256 * 1024 * 1024;

/// Makes the host for one case (every case stands alone).
pub type HostFactory = dyn Fn() -> Box<dyn Host + Send> + Sync;

pub fn run(cli: &Cli, cmd: &CsmlCommand) -> ExitCode {
    match cmd {
        CsmlCommand::Test(args) => test(args),
        CsmlCommand::Validate(args) => validate(cli, args),
        CsmlCommand::Chat(args) => chat(cli, args),
    }
}

fn offline_host() -> Box<dyn Host + Send> {
    Box::new(csml::OfflineHost::default())
}

// ---------------------------------------------------------------------------------------------
// test

fn test(args: &CsmlTestArgs) -> ExitCode {
    let stdout = std::io::stdout();
    match &args.case {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            } else {
                std::fs::read_to_string(path)
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("botyard csml test: cannot read {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            let answer = answer_line(text.trim().to_string(), &offline_host);
            let mut out = stdout.lock();
            if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        None => match run_protocol(std::io::stdin().lock(), stdout.lock(), &offline_host) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("botyard csml test: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The batch loop: one answer line per non-empty input line, flushed after each.
pub fn run_protocol(
    input: impl BufRead,
    mut out: impl Write,
    hosts: &HostFactory,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = answer_line(line, hosts);
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// Answer one case on a worker thread, within the deadline, whatever happens inside.
fn answer_line(line: String, hosts: &HostFactory) -> String {
    let id = serde_json::from_str::<Json>(&line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Json::Null);
    let (tx, rx) = mpsc::channel();
    let mut host = hosts();
    let spawned = std::thread::Builder::new()
        .stack_size(CASE_STACK)
        .spawn(move || {
            let answer = csml::eval::protocol::handle_line(&line, host.as_mut());
            let _ = tx.send(answer.to_string());
        });
    if let Err(e) = spawned {
        return csml::eval::protocol::bad(id, &format!("cannot start a worker: {e}")).to_string();
    }
    match rx.recv_timeout(CASE_DEADLINE) {
        Ok(answer) => answer,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("botyard csml test: case {id} timed out");
            csml::eval::protocol::bad(id, "the case did not finish in time").to_string()
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            csml::eval::protocol::bad(id, "internal error while running the case").to_string()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// loading .csml files

/// One flow loaded from disk.
struct FlowFile {
    path: PathBuf,
    name: String,
    content: String,
}

fn load_flows(paths: &[PathBuf]) -> Result<Vec<FlowFile>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "csml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut flows = Vec::with_capacity(files.len());
    for path in files {
        let content =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        flows.push(FlowFile {
            path,
            name,
            content,
        });
    }
    if flows.is_empty() {
        return Err("no .csml file found".into());
    }
    Ok(flows)
}

/// `--default-flow`, else a flow named `Default`/`default`/`main`, else the first by name.
fn pick_default(flows: &[FlowFile], wanted: Option<&str>) -> String {
    if let Some(w) = wanted {
        return w.to_string();
    }
    for candidate in ["Default", "default", "main"] {
        if flows.iter().any(|f| f.name == candidate) {
            return candidate.to_string();
        }
    }
    flows
        .iter()
        .map(|f| f.name.clone())
        .min()
        .unwrap_or_default()
}

fn bot_source(flows: &[FlowFile], args: &CsmlFilesArgs) -> BotSource {
    BotSource {
        id: "botyard-cli".into(),
        name: "botyard-cli".into(),
        flows: flows
            .iter()
            .map(|f| FlowSource {
                name: f.name.clone(),
                content: f.content.clone(),
                commands: vec![],
            })
            .collect(),
        default_flow: pick_default(flows, args.default_flow.as_deref()),
        native_components: true,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// validate

fn validate(cli: &Cli, args: &CsmlFilesArgs) -> ExitCode {
    let flows = match load_flows(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botyard csml validate: {e}");
            return ExitCode::from(2);
        }
    };
    let source = bot_source(&flows, args);
    let report = csml::validate(&source, false);
    if cli.json {
        let out =
            json!({"valid": report.valid, "errors": report.errors, "warnings": report.warnings});
        println!("{out}");
    } else {
        for (kind, list) in [("error", &report.errors), ("warning", &report.warnings)] {
            for d in list {
                print!("{}", render_diagnostic(&flows, d, kind));
            }
        }
        if report.valid {
            println!(
                "{} flow(s) valid, {} warning(s)",
                flows.len(),
                report.warnings.len()
            );
        } else {
            println!(
                "{} error(s), {} warning(s)",
                report.errors.len(),
                report.warnings.len()
            );
        }
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `file:line:column: message`, then the source line and a caret under the column.
fn render_diagnostic(flows: &[FlowFile], d: &csml::Diagnostic, kind: &str) -> String {
    let file = flows.iter().find(|f| f.name == d.flow);
    let path = file.map_or_else(|| d.flow.clone(), |f| f.path.display().to_string());
    let label = if kind == "warning" { "warning: " } else { "" };
    let mut out = format!("{path}:{}:{}: {label}{}\n", d.line, d.column, d.message);
    if let Some(f) = file
        && d.line > 0
        && let Some(src) = f.content.lines().nth(d.line as usize - 1)
    {
        let src = src.trim_end();
        out.push_str(&format!("    {src}\n"));
        // The column counts bytes; tabs are kept so the caret lines up under them.
        let pad: String = src
            .bytes()
            .take((d.column as usize).saturating_sub(1))
            .map(|b| if b == b'\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("    {pad}^\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// chat

fn chat(cli: &Cli, args: &CsmlChatArgs) -> ExitCode {
    let _ = cli;
    let flows = match load_flows(&args.files.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botyard csml chat: {e}");
            return ExitCode::from(2);
        }
    };
    let source = bot_source(&flows, &args.files);
    let bot = match csml::Bot::compile(source) {
        Ok(b) => b,
        Err(report) => {
            for d in &report.errors {
                eprint!("{}", render_diagnostic(&flows, d, "error"));
            }
            return ExitCode::from(1);
        }
    };
    let metadata = match args.metadata.as_deref().map(serde_json::from_str::<Json>) {
        None => json!({}),
        Some(Ok(m)) if m.is_object() => m,
        Some(_) => {
            eprintln!("botyard csml chat: --metadata must be a JSON object");
            return ExitCode::from(2);
        }
    };
    let mut host = csml::OfflineHost {
        now_millis: csml::OfflineHost::default().now_millis,
        seed: std::process::id() as u64 | 1,
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut session = ChatSession::new(bot, metadata);
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let event = chat_event(&line);
        let lines = session.send(event, &mut host);
        let mut out = stdout.lock();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

/// A line typed by the user: text, or `{"payload": ...}` (or a full `{content_type, content}`).
fn chat_event(line: &str) -> Event {
    if line.trim_start().starts_with('{')
        && let Ok(Json::Object(m)) = serde_json::from_str::<Json>(line)
    {
        if let Some(ct) = m.get("content_type").and_then(Json::as_str) {
            let content = m.get("content").cloned().unwrap_or_else(|| json!({}));
            let value = ["text", "payload", "url"]
                .iter()
                .find_map(|k| content.get(k).map(display_json))
                .unwrap_or_else(|| content.to_string());
            return Event {
                content_type: ct.into(),
                content_value: value,
                content,
                secure: false,
            };
        }
        if let Some(p) = m.get("payload") {
            let value = display_json(p);
            return Event {
                content_type: "payload".into(),
                content_value: value,
                content: json!({"payload": p}),
                secure: false,
            };
        }
    }
    Event {
        content_type: "text".into(),
        content_value: line.to_string(),
        content: json!({"text": line}),
        secure: false,
    }
}

fn display_json(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The conversation state the engine would keep between turns (spec §7.4).
struct ChatSession {
    bot: csml::Bot,
    metadata: Json,
    ctx: Option<Context>,
    memories: serde_json::Map<String, Json>,
}

impl ChatSession {
    fn new(bot: csml::Bot, metadata: Json) -> Self {
        ChatSession {
            bot,
            metadata,
            ctx: None,
            memories: serde_json::Map::new(),
        }
    }

    /// Run one turn and return the lines to print.
    fn send(&mut self, event: Event, host: &mut dyn Host) -> Vec<String> {
        // A closed (or new) conversation starts at the default flow's `start`.
        let mut ctx = self.ctx.take().unwrap_or_else(|| Context {
            flow: self.bot.source().default_flow.clone(),
            step: "start".into(),
            ..Default::default()
        });
        ctx.memories = self.memories.clone();
        ctx.metadata = self.metadata.clone();
        let r = csml::run_turn(&self.bot, ctx.clone(), event, host, &Default::default());
        for f in &r.forgets {
            match f {
                ForgetOp::All => self.memories.clear(),
                ForgetOp::Keys(keys) => {
                    for k in keys {
                        self.memories.remove(k);
                    }
                }
            }
        }
        for m in &r.memories {
            self.memories.insert(m.key.clone(), m.value.clone());
        }
        if r.status == TurnStatus::Hold {
            self.ctx = Some(Context {
                flow: r.flow.clone(),
                step: r.step.clone(),
                hold: r.hold.clone(),
                previous: r.previous.clone(),
                ..Default::default()
            });
        }
        let mut lines: Vec<String> = r.messages.iter().flat_map(render_message).collect();
        if r.status != TurnStatus::Hold {
            lines.push("-- conversation ended --".into());
        }
        lines
    }
}

/// A message as readable terminal lines.
fn render_message(m: &Message) -> Vec<String> {
    let c = &m.content;
    let s = |k: &str| c.get(k).map(display_json).unwrap_or_default();
    let buttons = |v: Option<&Json>| -> String {
        v.and_then(Json::as_array)
            .map(|bs| {
                bs.iter()
                    .map(|b| {
                        let inner = b.get("content").unwrap_or(b);
                        format!(
                            "[{}]",
                            inner.get("title").map(display_json).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    match m.content_type.as_str() {
        "text" => vec![match c.get("text") {
            Some(Json::Null) | None => "Null".into(),
            Some(t) => display_json(t),
        }],
        "error" => vec![format!("! error: {}", s("error"))],
        "button" => vec![format!("[{}]", s("title"))],
        "question" | "card" => {
            let mut out = Vec::new();
            if c.get("title").is_some() {
                out.push(s("title"));
            }
            if c.get("subtitle").is_some() {
                out.push(s("subtitle"));
            }
            let b = buttons(c.get("buttons"));
            if !b.is_empty() {
                out.push(b);
            }
            out
        }
        "carousel" => {
            let mut out = Vec::new();
            for (i, card) in c
                .get("cards")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let card = card.get("content").unwrap_or(card);
                let title = card.get("title").map(display_json).unwrap_or_default();
                out.push(format!("card {}: {title}", i + 1));
                let b = buttons(card.get("buttons"));
                if !b.is_empty() {
                    out.push(format!("  {b}"));
                }
            }
            out
        }
        "image" | "video" | "audio" | "file" => vec![format!("<{}: {}>", m.content_type, s("url"))],
        "url" => vec![format!("<url: {} ({})>", s("url"), s("title"))],
        "typing" | "wait" => vec![format!("<{} {}>", m.content_type, s("duration"))],
        "debug" => vec![format!(
            "debug: {}",
            c.get("args").map(Json::to_string).unwrap_or_default()
        )],
        other => vec![format!("<{other}> {c}")],
    }
}
