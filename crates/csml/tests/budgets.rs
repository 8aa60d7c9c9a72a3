//! The turn's budgets (issue 14 item 2) through `run_turn`: the wall-clock deadline, the output
//! and memory-write quotas, the regex caps, and budgets that a condition must not swallow.
//! Time bounds are generous (debug builds on a loaded machine): they tell "stops" from
//! "runs for minutes", nothing finer.

use std::time::{Duration, Instant};

use csml::{
    Bot, BotSource, Budget, Context, Event, FlowSource, Host, HttpRequest, HttpResponse,
    OfflineHost, TurnOptions, TurnResult, TurnStatus, run_turn,
};
use serde_json::json;

fn bot(src: &str) -> Bot {
    Bot::compile_unchecked(BotSource {
        flows: vec![FlowSource {
            name: "flow".into(),
            content: src.into(),
            commands: vec![],
        }],
        default_flow: "flow".into(),
        native_components: true,
        ..Default::default()
    })
    .unwrap_or_else(|v| panic!("{:?}", v.errors))
}

fn hello() -> Event {
    Event {
        content_type: "text".into(),
        content_value: "hello".into(),
        content: json!({"text": "hello"}),
        secure: false,
    }
}

fn start() -> Context {
    Context {
        flow: "flow".into(),
        step: "start".into(),
        metadata: json!({}),
        ..Default::default()
    }
}

fn run_with(src: &str, host: &mut dyn Host, opts: &TurnOptions) -> (TurnResult, Duration) {
    let bot = bot(src);
    let t = Instant::now();
    let r = run_turn(&bot, start(), hello(), host, opts);
    (r, t.elapsed())
}

fn run(src: &str, opts: &TurnOptions) -> (TurnResult, Duration) {
    run_with(src, &mut OfflineHost::default(), opts)
}

fn last_error(r: &TurnResult) -> &str {
    let last = r.messages.last().expect("a message");
    assert_eq!(last.content_type, "error", "{:?}", r.messages);
    last.content["error"].as_str().unwrap()
}

fn content_bytes(r: &TurnResult) -> usize {
    r.messages
        .iter()
        .map(|m| serde_json::to_string(&m.content).unwrap().len())
        .sum()
}

/// Options whose counting budgets are out of the way, so that only the deadline can stop a
/// turn that runs forever.
fn deadline_in(ms: u64) -> TurnOptions {
    TurnOptions {
        loop_limit: u64::MAX,
        deadline: Some(Instant::now() + Duration::from_millis(ms)),
        ..Default::default()
    }
}

#[test]
fn a_deadline_stops_loops_recursion_and_string_building() {
    let cases = [
        ("infinite loop", "start:\n  while (true) { do x = 1 }\n"),
        (
            "deep recursion",
            "fn f(n) {\n  if (n > 60) { return 0 }\n  return f(n + 1) + f(n + 1)\n}\nstart:\n  say f(0)\n",
        ),
        (
            "string building",
            "start:\n  while (true) {\n    do s = \"\"\n    foreach (i) in [].init(50) { do s = s + \"{{i}}-\" }\n  }\n",
        ),
        (
            "a condition that never ends",
            "fn g() {\n  while (true) { do x = 1 }\n  return 1\n}\nstart:\n  if (g()) { say \"no\" }\n  say \"after\"\n",
        ),
        (
            "closures over map",
            "start:\n  do a = [].init(100)\n  while (true) { do b = a.map((x) { return x }) }\n",
        ),
    ];
    for (name, src) in cases {
        let opts = deadline_in(200);
        let (r, took) = run(src, &opts);
        let late = Instant::now().saturating_duration_since(opts.deadline.unwrap());
        assert_eq!(r.status, TurnStatus::Error, "{name}");
        assert_eq!(
            r.budget_hit,
            Some(Budget::Deadline),
            "{name}: {:?}",
            r.messages
        );
        let e = last_error(&r);
        assert!(
            e.starts_with("[Timeout] the turn ran longer than 200 ms at line "),
            "{name}: {e}"
        );
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
        eprintln!("{name}: stopped {late:?} after the deadline");
        assert!(!r.messages.iter().any(|m| m.content["text"] == "after"));
    }
}

#[test]
fn a_passed_deadline_runs_nothing_and_no_deadline_reads_no_clock() {
    let opts = TurnOptions {
        deadline: Some(Instant::now()),
        ..Default::default()
    };
    let (r, _) = run("start:\n  say \"hi\"\n", &opts);
    assert_eq!(r.budget_hit, Some(Budget::Deadline));
    assert_eq!(r.messages.len(), 1);
    assert!(last_error(&r).starts_with("[Timeout] the turn ran longer than 0 ms"));

    let (r, _) = run("start:\n  say \"hi\"\n", &TurnOptions::default());
    assert_eq!(r.status, TurnStatus::End);
    assert_eq!(r.budget_hit, None);
}

/// A host whose HTTP calls take 50 ms, counting them and recording the deadline it was told.
#[derive(Default)]
struct SlowHost {
    offline: OfflineHost,
    deadline: Option<Instant>,
    calls: u32,
    late_calls: u32,
}

impl Host for SlowHost {
    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }
    fn random_u64(&mut self) -> u64 {
        self.offline.random_u64()
    }
    fn http(&mut self, _req: &HttpRequest) -> Result<HttpResponse, String> {
        self.calls += 1;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.late_calls += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: json!({"ok": true}),
        })
    }
}

#[test]
fn host_calls_learn_the_deadline_and_never_start_past_it() {
    let mut host = SlowHost::default();
    let opts = deadline_in(300);
    let src = "start:\n  while (true) { do r = HTTP(\"http://example.test/\").send() }\n";
    let (r, took) = run_with(src, &mut host, &opts);
    assert_eq!(host.deadline, opts.deadline);
    assert_eq!(r.budget_hit, Some(Budget::Deadline), "{:?}", r.messages);
    assert!(host.calls >= 1 && host.calls <= 7, "{} calls", host.calls);
    assert_eq!(host.late_calls, 0);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn the_output_byte_quota_stops_a_say_loop() {
    let text = "x".repeat(15_000);
    let src = format!("start:\n  while (true) {{ say \"{text}\" }}\n");
    let opts = TurnOptions::default();
    let (r, _) = run(&src, &opts);
    assert_eq!(r.status, TurnStatus::Error);
    assert_eq!(r.budget_hit, Some(Budget::OutputBytes));
    assert!(last_error(&r).starts_with(
        "[Budget] output limit reached: more than 2097152 bytes of messages in a single turn at line 2"
    ));
    assert!(content_bytes(&r) as u64 <= opts.max_output_bytes);
    // Everything said before the quota is kept.
    assert!(r.messages.len() > 130, "{}", r.messages.len());
    assert!(
        r.messages[..r.messages.len() - 1]
            .iter()
            .all(|m| m.content["text"] == text.as_str())
    );
}

#[test]
fn the_message_quota_counts_every_message_and_leaves_room_for_the_error() {
    // Plain says, then non-fatal errors, then debug output.
    for body in ["say \"x\"", "do y = nothing", "debug \"d\""] {
        let src = format!("start:\n  while (true) {{ {body} }}\n");
        let opts = TurnOptions {
            max_messages: 40,
            ..Default::default()
        };
        let (r, _) = run(&src, &opts);
        assert_eq!(r.budget_hit, Some(Budget::Messages), "{body}");
        assert_eq!(r.messages.len(), 40, "{body}");
        assert!(
            last_error(&r).starts_with(
                "[Budget] output limit reached: more than 40 messages in a single turn"
            ),
            "{body}"
        );
    }
    // An error message that does not fit, then a fatal error in the same statement: the
    // quota, spent first, closes the turn.
    let src = "start:\n  foreach (i) in [].init(5) { say \"x\" }\n  say [nothing, 1 / 0]\n";
    let opts = TurnOptions {
        max_messages: 5,
        ..Default::default()
    };
    let (r, _) = run(src, &opts);
    assert_eq!(r.budget_hit, Some(Budget::Messages));
    assert_eq!(r.messages.len(), 5);
    assert!(last_error(&r).starts_with("[Budget] output limit reached: more than 5 messages"));
    // A fatal error at a full quota still closes the output, within the quota.
    let src = "start:\n  foreach (i) in [].init(5) { say \"x\" }\n  say 1 / 0\n";
    let opts = TurnOptions {
        max_messages: 5,
        ..Default::default()
    };
    let (r, _) = run(src, &opts);
    assert_eq!(r.status, TurnStatus::Error);
    assert_eq!(r.budget_hit, None);
    assert_eq!(r.messages.len(), 5);
    assert!(!last_error(&r).starts_with("[Budget]"));
}

#[test]
fn the_memory_quota_writes_nothing_of_the_turn() {
    // Remembered values, repeats included.
    let big = "y".repeat(100_000);
    let src = format!(
        "start:\n  remember small = 1\n  say \"before\"\n  while (true) {{ remember big = \"{big}\" }}\n"
    );
    let (r, _) = run(&src, &TurnOptions::default());
    assert_eq!(r.status, TurnStatus::Error);
    assert_eq!(r.budget_hit, Some(Budget::MemoryBytes));
    assert!(r.memories.is_empty(), "{} writes", r.memories.len());
    assert_eq!(r.messages[0].content["text"], "before");
    assert!(last_error(&r).starts_with(
        "[Budget] memory limit reached: more than 2097152 bytes of memory writes in a single turn at line 4"
    ));

    // In-place changes of a memory write the whole value each time.
    let src =
        "start:\n  remember l = []\n  foreach (i) in [].init(5000) { do l.push(\"item {{i}}\") }\n";
    let (r, _) = run(src, &TurnOptions::default());
    assert_eq!(r.budget_hit, Some(Budget::MemoryBytes));
    assert!(r.memories.is_empty());

    // The locals a hold saves count too, and no hold is kept.
    let src = "start:\n  do s = \"ab\"\n  foreach (i) in [].init(12) { do s = s + s }\n  hold\n  say \"resumed\"\n";
    let opts = TurnOptions {
        max_memory_bytes: 4096,
        ..Default::default()
    };
    let (r, _) = run(src, &opts);
    assert_eq!(r.budget_hit, Some(Budget::MemoryBytes));
    assert_eq!(r.status, TurnStatus::Error);
    assert!(r.hold.is_none());

    // Below the quota, nothing changes.
    let (r, _) = run(src, &TurnOptions::default());
    assert_eq!(r.status, TurnStatus::Hold);
    assert_eq!(r.budget_hit, None);
    let src = "start:\n  remember a = 1\n  remember a = 2\n  remember b = \"x\"\n";
    let (r, _) = run(src, &TurnOptions::default());
    assert_eq!(r.memories.len(), 3);
    assert_eq!(r.budget_hit, None);
}

#[test]
fn a_spent_budget_is_not_swallowed_by_a_condition() {
    let cases = [
        (
            "loop in an if",
            "fn g() {\n  while (true) { do x = 1 }\n  return 1\n}\nstart:\n  if (g()) { say \"a\" }\n  say \"after\"\n",
            Budget::Loop,
        ),
        (
            "recursion under !",
            "fn f(n) {\n  return f(n + 1)\n}\nstart:\n  do b = !f(0)\n  say \"after\"\n",
            Budget::Depth,
        ),
        (
            "loop in a while condition",
            "fn g() {\n  while (true) { do x = 1 }\n  return 1\n}\nstart:\n  while (g()) { say \"a\" }\n  say \"after\"\n",
            Budget::Loop,
        ),
    ];
    for (name, src, budget) in cases {
        let (r, _) = run(src, &TurnOptions::default());
        assert_eq!(r.status, TurnStatus::Error, "{name}");
        assert_eq!(r.budget_hit, Some(budget), "{name}");
        assert!(last_error(&r).starts_with("[Infinite loop]"), "{name}");
        assert!(
            !r.messages.iter().any(|m| m.content["text"] == "after"),
            "{name}"
        );
    }
    // An ordinary fatal error in a condition is still swallowed (spec §3.5).
    let (r, _) = run(
        "start:\n  if (1 / 0) { say \"no\" }\n  say \"after\"\n",
        &TurnOptions::default(),
    );
    assert_eq!(r.status, TurnStatus::End);
    assert_eq!(r.messages[0].content["text"], "after");
}

#[test]
fn a_loop_over_a_failing_huge_regex_is_quick() {
    // The attack: a step looping 700 times over a pattern whose program is ~15 MB.
    let src = "start:\n  foreach (i) in [].init(700) { do m = \"abc\".match_regex(\"\\\\w{300}\") }\n  say \"done\"\n";
    let opts = TurnOptions {
        max_messages: 1000,
        ..Default::default()
    };
    let (r, took) = run(src, &opts);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(r.status, TurnStatus::End);
    assert_eq!(r.messages.len(), 701);
    let e = r.messages[0].content["error"].as_str().unwrap();
    assert!(
        e.starts_with("invalid regex: the compiled pattern would exceed 512 KiB at line 2"),
        "{e}"
    );
    assert_eq!(r.messages[700].content["text"], "done");

    // With the default quotas the 700 error messages end the turn at 500.
    let (r, took) = run(src, &TurnOptions::default());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(r.budget_hit, Some(Budget::Messages));
    assert_eq!(r.messages.len(), 500);
}

#[test]
fn regex_caps_are_ordinary_errors_and_ordinary_patterns_work() {
    let long = "a".repeat(5000);
    let src = format!(
        "start:\n  say \"abc\".contains_regex(\"{long}\")\n  say \"a1b22\".match_regex(\"\\\\d+\")\n  say \"x@y.z\".replace_regex(\"(\\\\w+)@\", \"$1 at \")\n  say \"abcdefghij\".contains_regex(\"\\\\w{{10}}\")\n"
    );
    let (r, _) = run(&src, &TurnOptions::default());
    assert_eq!(r.status, TurnStatus::End, "{:?}", r.messages);
    assert!(
        r.messages[0].content["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid regex: a pattern may be at most 4096 bytes long")
    );
    // The failed call is Null.
    assert_eq!(r.messages[1].content, json!({"text": null}));
    assert_eq!(r.messages[2].content, json!(["1", "22"]));
    assert_eq!(r.messages[3].content["text"], "x at y.z");
    assert_eq!(r.messages[4].content["text"], "true");
}

/// How far past the deadline the slowest statements we could build stop. Each loops over one
/// statement on large values; the overshoot is at most about one such statement. The bound is
/// generous for a debug build; the closing report quotes the release figures.
#[test]
fn deadline_overshoot_of_slow_statements() {
    let prelude = "  do s = \"ab,\"\n  foreach (i) in [].init(18) { do s = s + s }\n";
    let slow = [
        (
            "regex over 768 KB",
            "do m = s.contains_regex(\"[a-z],\\\\d\")",
        ),
        ("regex match list", "do m = s.match_regex(\"b,\").length()"),
        ("split 262k items", "do n = s.split(\",\").length()"),
        (
            "replace_regex",
            "do t = s.replace_regex(\"a\", \"c\").length()",
        ),
        ("uppercase", "do t = s.to_uppercase().length()"),
        (
            "hash",
            "do h = Crypto(s).create_hash(\"sha256\").digest(\"hex\")",
        ),
    ];
    let mut worst = Duration::ZERO;
    for (name, stmt) in slow {
        let src = format!("start:\n{prelude}  while (true) {{ {stmt} }}\n");
        let opts = TurnOptions {
            loop_limit: u64::MAX,
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            ..Default::default()
        };
        let (r, _) = run(&src, &opts);
        let late = Instant::now().saturating_duration_since(opts.deadline.unwrap());
        eprintln!("{name}: {late:?} past the deadline ({:?})", r.budget_hit);
        assert!(
            matches!(r.budget_hit, Some(Budget::Deadline | Budget::DataCopied)),
            "{name}: {:?}",
            r.messages.last()
        );
        worst = worst.max(late);
    }
    assert!(worst < Duration::from_secs(2), "worst overshoot {worst:?}");
}
