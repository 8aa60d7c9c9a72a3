//! Table-driven end-to-end tests of the interpreter, through the same case/result path as
//! `botyard csml test` (`csml::eval::protocol::handle_case`).
//!
//! Every `tests/cases/*.json` file is an array of entries. An entry is a protocol case plus
//! what to expect, with shorthands that are expanded into a full protocol case first:
//! * `"csml": "..."` — a bot with one flow named `flow` (default flow `flow`);
//!   `"flows": {"name": "...", ...}` — several flows (default flow: `"default_flow"`, else the
//!   first); `"bot"` — a protocol bot as is.
//! * `context` defaults to `{flow: <default>, step: "start", memories: {}, metadata: {}, hold: null}`
//!   (fields given are merged in); `event` defaults to the text event `"hello"`, and
//!   `"text": "..."` / `"payload": "..."` give a text / payload event.
//! * `"kind": "validate"` entries expect `"valid": bool`.
//! * `expect`: `messages` (compared as the judge does, except that an expected `error` message
//!   matches any actual error text that starts with it), `memories`, `status`, `flow`, `step`,
//!   `hold_index` (the hold's `command_index`), `loop_index`; every key is optional.
//! * `then`: further turns of the same conversation: each has an event (`text`/`payload`/
//!   `event`) and an `expect`; it starts from the previous turn's flow, step and hold, with the
//!   memories written so far.

use serde_json::{Map, Value as Json, json};
use std::path::Path;

fn load_cases() -> Vec<(String, Json)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let entries: Vec<Json> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", f.display()));
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, e) in entries.into_iter().enumerate() {
            let name = e.get("name").and_then(Json::as_str).map(str::to_string);
            out.push((
                format!("{stem}::{}", name.unwrap_or_else(|| i.to_string())),
                e,
            ));
        }
    }
    out
}

fn bot_of(e: &Json) -> Json {
    if let Some(b) = e.get("bot") {
        return b.clone();
    }
    if let Some(src) = e.get("csml").and_then(Json::as_str) {
        return json!({"flows": [{"name": "flow", "content": src}], "default_flow": "flow"});
    }
    let flows = e
        .get("flows")
        .and_then(Json::as_object)
        .expect("csml, flows or bot");
    let list: Vec<Json> = flows
        .iter()
        .map(|(n, c)| json!({"name": n, "content": c}))
        .collect();
    let default = e
        .get("default_flow")
        .and_then(Json::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| flows.keys().next().cloned().unwrap_or_default());
    let mut bot = json!({"flows": list, "default_flow": default});
    if let Some(c) = e.get("custom_components") {
        bot["custom_components"] = c.clone();
    }
    bot
}

fn event_of(e: &Json) -> Json {
    if let Some(ev) = e.get("event") {
        return ev.clone();
    }
    if let Some(p) = e.get("payload") {
        let v = match p {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        return json!({"content_type": "payload", "content_value": v, "content": {"payload": p}});
    }
    let t = e.get("text").and_then(Json::as_str).unwrap_or("hello");
    json!({"content_type": "text", "content_value": t, "content": {"text": t}})
}

fn message_matches(expected: &Json, actual: &Json) -> bool {
    if expected.get("content_type") == Some(&json!("error"))
        && actual.get("content_type") == Some(&json!("error"))
        && let (Some(Json::String(e)), Some(Json::String(a))) = (
            expected.pointer("/content/error"),
            actual.pointer("/content/error"),
        )
    {
        return a.starts_with(e.as_str());
    }
    let cut =
        |m: &Json| json!({"content_type": m.get("content_type"), "content": m.get("content")});
    cut(expected) == cut(actual)
}

fn check(name: &str, expect: &Json, result: &Json) -> Result<(), String> {
    let fail = |what: &str| {
        Err(format!(
            "{name}: {what}\n  expected: {expect}\n  actual:   {result}"
        ))
    };
    if let Some(err) = result.get("error") {
        return fail(&format!("protocol error {err}"));
    }
    if let Some(valid) = expect.get("valid") {
        if result.get("valid") != Some(valid) {
            return fail("valid");
        }
        let errors = result
            .get("errors")
            .and_then(Json::as_array)
            .map_or(0, Vec::len);
        if (errors == 0) != (valid == &json!(true)) {
            return fail("errors disagree with valid");
        }
    }
    if let Some(Json::Array(exp)) = expect.get("messages") {
        let act = result
            .get("messages")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if exp.len() != act.len() || !exp.iter().zip(&act).all(|(e, a)| message_matches(e, a)) {
            return fail("messages");
        }
    }
    if let Some(exp) = expect.get("memories") {
        let act = result.get("memories").cloned().unwrap_or(json!([]));
        let cut: Vec<Json> = act
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({"key": m.get("key"), "value": m.get("value")}))
            .collect();
        if exp != &Json::Array(cut) {
            return fail("memories");
        }
    }
    for k in ["status", "flow", "step"] {
        if let Some(v) = expect.get(k)
            && result.get(k) != Some(v)
        {
            return fail(k);
        }
    }
    if let Some(i) = expect.get("hold_index")
        && result.pointer("/hold/command_index") != Some(i)
    {
        return fail("hold_index");
    }
    if let Some(i) = expect.get("loop_index")
        && result.pointer("/hold/loop_index") != Some(i)
    {
        return fail("loop_index");
    }
    Ok(())
}

fn run_entry(name: &str, e: &Json) -> Result<usize, String> {
    let kind = e.get("kind").and_then(Json::as_str).unwrap_or("run");
    let bot = bot_of(e);
    let expect = e.get("expect").cloned().unwrap_or(json!({}));
    if kind == "validate" {
        let mut case = json!({"id": name, "kind": "validate", "bot": bot});
        if let Some(s) = e.get("syntax_only") {
            case["syntax_only"] = s.clone();
        }
        let r = csml::eval::protocol::handle_case(&case, &mut csml::OfflineHost::default());
        check(name, &expect, &r)?;
        return Ok(1);
    }
    let default_flow = bot["default_flow"].clone();
    let mut context = json!({"flow": default_flow, "step": "start", "memories": {},
                             "metadata": {}, "hold": null});
    if let Some(Json::Object(c)) = e.get("context") {
        for (k, v) in c {
            context[k] = v.clone();
        }
    }
    let mut turns = vec![(event_of(e), expect)];
    for t in e.get("then").and_then(Json::as_array).into_iter().flatten() {
        turns.push((event_of(t), t.get("expect").cloned().unwrap_or(json!({}))));
    }
    let mut memories: Map<String, Json> =
        context["memories"].as_object().cloned().unwrap_or_default();
    for (i, (event, expect)) in turns.into_iter().enumerate() {
        context["memories"] = Json::Object(memories.clone());
        let case = json!({"id": name, "kind": "run", "bot": bot, "context": context,
                          "event": event});
        let mut host = csml::OfflineHost::default();
        let r = csml::eval::protocol::handle_case(&case, &mut host);
        check(&format!("{name} (turn {})", i + 1), &expect, &r)?;
        for m in r["memories"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (m["key"].as_str(), m.get("value")) {
                memories.insert(k.to_string(), v.clone());
            }
        }
        let ended = r["status"] != json!("hold");
        context["flow"] = if ended {
            default_flow.clone()
        } else {
            r["flow"].clone()
        };
        context["step"] = if ended {
            json!("start")
        } else {
            r["step"].clone()
        };
        context["hold"] = r["hold"].clone();
    }
    Ok(1)
}

#[test]
fn cases() {
    let cases = load_cases();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    let filter = std::env::var("CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, e) in &cases {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| run_entry(name, e));
        if started.elapsed() > std::time::Duration::from_millis(500) {
            eprintln!("slow case: {name} took {:?}", started.elapsed());
        }
        match outcome {
            Ok(Ok(n)) => ran += n,
            Ok(Err(msg)) => failures.push(msg),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    for f in &failures {
        eprintln!("{f}\n");
    }
    eprintln!("{ran} case(s) passed, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed",
        failures.len(),
        cases.len()
    );
}

/// A `forget` drops the earlier writes of its keys from `memories` but is still reported in
/// `forgets` (the platform deletes the stored value, then applies the later writes).
#[test]
fn forget_is_reported_and_drops_earlier_writes() {
    let source = csml::BotSource {
        flows: vec![csml::FlowSource {
            name: "flow".into(),
            content: "start:\n  remember a = 1\n  remember b = 2\n  forget a\n  forget *\n  remember a = 3\n".into(),
            commands: vec![],
        }],
        default_flow: "flow".into(),
        native_components: true,
        ..Default::default()
    };
    let bot = csml::Bot::compile(source).unwrap();
    let ctx = csml::Context {
        flow: "flow".into(),
        step: "start".into(),
        metadata: json!({}),
        ..Default::default()
    };
    let event = csml::Event {
        content_type: "text".into(),
        content_value: "hi".into(),
        content: json!({"text": "hi"}),
        secure: false,
    };
    let mut host = csml::OfflineHost::default();
    let r = csml::run_turn(&bot, ctx, event, &mut host, &csml::TurnOptions::default());
    assert_eq!(
        r.forgets,
        vec![csml::ForgetOp::Keys(vec!["a".into()]), csml::ForgetOp::All]
    );
    assert_eq!(
        r.memories,
        vec![csml::MemoryWrite {
            key: "a".into(),
            value: json!(3)
        }]
    );
}

/// Deterministic mutation fuzzing of every case's source: parsing, compiling and running a
/// few turns of a mutated bot must never panic, and results must serialize.
#[test]
fn mutated_sources_never_panic() {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "\"",
        "{{",
        "}}",
        "hold",
        "goto start",
        "goto end",
        "while (true) { ",
        "foreach (x) in ",
        "do x = ",
        ".push(x)",
        "remember r = ",
        "say ",
        "fn f(a) { return f(a) }",
        "(a) { return a }",
        "break",
        "@",
        "$",
        "event",
        "_memory",
        " + ",
        " / 0",
        "Or(",
        "\\",
        "\n",
        "start:\n",
        "1e9",
        "-",
        ".",
        ",",
        "as ",
        "import f",
    ];
    let sources: Vec<String> = load_cases()
        .into_iter()
        .filter_map(|(_, e)| e.get("csml").and_then(Json::as_str).map(str::to_string))
        .collect();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let opts = csml::TurnOptions {
        loop_limit: 200,
        call_depth_limit: 40,
        step_limit: 100,
        max_messages: 50,
        max_output_bytes: 64 << 10,
        max_memory_bytes: 64 << 10,
        ..Default::default()
    };
    for round in 0..2000 {
        let base = &sources[next(sources.len())];
        let mut src: Vec<char> = base.chars().collect();
        for _ in 0..1 + next(3) {
            let at = next(src.len() + 1);
            match next(3) {
                0 => {
                    let end = (at + next(8)).min(src.len());
                    src.drain(at..end);
                }
                1 => {
                    let end = (at + next(12)).min(src.len());
                    let piece: Vec<char> = src[at..end].to_vec();
                    src.splice(at..at, piece);
                }
                _ => {
                    let t = TOKENS[next(TOKENS.len())];
                    src.splice(at..at, t.chars());
                }
            }
        }
        let src: String = src.into_iter().collect();
        let outcome = std::panic::catch_unwind(|| {
            let source = csml::BotSource {
                flows: vec![csml::FlowSource {
                    name: "flow".into(),
                    content: src.clone(),
                    commands: vec![],
                }],
                default_flow: "flow".into(),
                native_components: true,
                ..Default::default()
            };
            let _ = csml::validate(&source, false);
            let Ok(bot) = csml::Bot::compile_unchecked(source) else {
                return;
            };
            let mut ctx = csml::Context {
                flow: "flow".into(),
                step: "start".into(),
                metadata: json!({}),
                ..Default::default()
            };
            let mut host = csml::OfflineHost::default();
            for text in ["hi", "2", ""] {
                let event = csml::Event {
                    content_type: "text".into(),
                    content_value: text.into(),
                    content: json!({ "text": text }),
                    secure: false,
                };
                let r = csml::run_turn(&bot, ctx.clone(), event, &mut host, &opts);
                serde_json::to_string(&r).unwrap();
                // The output quotas hold whatever the bot does.
                assert!(r.messages.len() <= opts.max_messages as usize);
                if r.budget_hit.is_some() {
                    assert_eq!(r.status, csml::TurnStatus::Error);
                    assert_eq!(r.messages.last().unwrap().content_type, "error");
                }
                if r.status != csml::TurnStatus::Hold {
                    break;
                }
                ctx.step = r.step;
                ctx.flow = r.flow;
                ctx.hold = r.hold;
            }
        });
        assert!(outcome.is_ok(), "round {round}: panicked on source:\n{src}");
    }
}
