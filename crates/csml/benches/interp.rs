//! Interpreter benchmarks (plain `harness = false`, std::time): `cargo bench -p csml`.
//!
//! Targets from issue 2: parse+validate a 1,000-line bot ≤ 5 ms; a hello-world turn on a
//! parsed bot ≤ 5 µs; a turn whose step loops 10,000 times ≤ 5 ms; plus a hold/resume round
//! trip. Each line shows the median and the best of nine batches.

use csml::{Bot, BotSource, Context, Event, FlowSource, OfflineHost, TurnOptions, run_turn};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median time per iteration of `f`, over `batches` batches of `iters` iterations.
fn measure(name: &str, target: Option<Duration>, iters: u32, mut f: impl FnMut()) {
    // `BENCH=while cargo bench -p csml` runs only the benchmarks whose name contains "while".
    if std::env::var("BENCH").is_ok_and(|b| !name.contains(b.as_str())) {
        return;
    }
    for _ in 0..iters.min(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let best = samples[0];
    // On a shared machine the best batch is the closest to the unloaded cost.
    let verdict = match target {
        Some(t) if best <= t => format!("(target ≤ {t:?}: ok)"),
        Some(t) => format!("(target ≤ {t:?}: MISSED)"),
        None => String::new(),
    };
    println!("{name:<44} median {median:>10.3?}  best {best:>10.3?} {verdict}");
}

fn source(flows: Vec<(&str, String)>) -> BotSource {
    BotSource {
        id: "bench".into(),
        name: "bench".into(),
        default_flow: flows[0].0.to_string(),
        flows: flows
            .into_iter()
            .map(|(n, c)| FlowSource {
                name: n.into(),
                content: c,
                commands: vec![],
            })
            .collect(),
        native_components: true,
        ..Default::default()
    }
}

/// A realistic 1,000-line flow: steps with say/if/foreach/remember/components/functions.
fn thousand_lines() -> String {
    let mut s = String::from("const GREETING = \"Hello\"\n\nfn double(x) {\n  return x * 2\n}\n\n");
    s.push_str("start:\n  say \"{{GREETING}}\"\n  goto step_0\n\n");
    let mut i = 0;
    while s.lines().count() < 1000 {
        s.push_str(&format!(
            "step_{i}:\n  say Question(\"Pick {i}\", buttons=[Button(\"a\"), Button(\"b\", payload=\"B\")])\n  hold\n  if (event match \"a\") {{\n    remember choice_{i} = event\n    say \"You chose {{{{event}}}} at {i}\"\n  }} else if (event.payload == \"B\") {{\n    foreach (x, k) in [1, 2, 3] {{ do total = Or(total, 0) + double(x) }}\n  }} else {{\n    say Text(\"no\")\n  }}\n  goto step_{}\n\n",
            i + 1
        ));
        i += 1;
    }
    s.push_str(&format!("step_{i}:\n  goto end\n"));
    s
}

fn text(t: &str) -> Event {
    Event {
        content_type: "text".into(),
        content_value: t.into(),
        content: serde_json::json!({"text": t}),
        secure: false,
    }
}

fn ctx(flow: &str) -> Context {
    Context {
        flow: flow.into(),
        step: "start".into(),
        metadata: serde_json::json!({}),
        ..Default::default()
    }
}

fn main() {
    let big = thousand_lines();
    let lines = big.lines().count();
    let big_src = source(vec![("main", big)]);
    measure(
        &format!("parse+validate ({lines} lines)"),
        Some(Duration::from_millis(5)),
        20,
        || {
            black_box(csml::validate(black_box(&big_src), false));
        },
    );
    measure(
        &format!("compile (parse+lint+prepare, {lines} lines)"),
        Some(Duration::from_millis(5)),
        20,
        || {
            black_box(Bot::compile(black_box(big_src.clone())).unwrap());
        },
    );

    let hello = Bot::compile(source(vec![(
        "main",
        "start:\n  say \"Hello world\"\n".into(),
    )]))
    .unwrap();
    let mut host = OfflineHost::default();
    let opts = TurnOptions::default();
    let c = ctx("main");
    let ev = text("hi");
    measure(
        "hello-world turn",
        Some(Duration::from_micros(5)),
        20_000,
        || {
            black_box(run_turn(&hello, c.clone(), ev.clone(), &mut host, &opts));
        },
    );

    let looping = Bot::compile(source(vec![(
        "main",
        "start:\n  do i = 0\n  do sum = 0\n  while (i < 10000) {\n    do sum = sum + i\n    do i = i + 1\n  }\n  say sum\n".into(),
    )]))
    .unwrap();
    let big_opts = TurnOptions {
        loop_limit: 1_000_000,
        ..TurnOptions::default()
    };
    let r = run_turn(&looping, c.clone(), ev.clone(), &mut host, &big_opts);
    assert_eq!(
        r.messages[0].content["text"], "49995000",
        "{:?}",
        r.messages
    );
    measure(
        "turn looping 10,000 times (while)",
        Some(Duration::from_millis(5)),
        20,
        || {
            black_box(run_turn(
                &looping,
                c.clone(),
                ev.clone(),
                &mut host,
                &big_opts,
            ));
        },
    );

    // The same loop with a deadline (never reached): the clock is read every 1024 units of
    // work, so this should cost the same as the line above.
    let timed_opts = TurnOptions {
        deadline: Some(Instant::now() + Duration::from_secs(3600)),
        ..big_opts
    };
    measure(
        "turn looping 10,000 times (while, deadline)",
        Some(Duration::from_millis(5)),
        20,
        || {
            black_box(run_turn(
                &looping,
                c.clone(),
                ev.clone(),
                &mut host,
                &timed_opts,
            ));
        },
    );

    let foreach = Bot::compile(source(vec![(
        "main",
        "start:\n  do n = 0\n  foreach (x) in [].init(10000) {\n    do n += 1\n  }\n  say n\n"
            .into(),
    )]))
    .unwrap();
    measure(
        "turn looping 10,000 times (foreach)",
        Some(Duration::from_millis(5)),
        20,
        || {
            black_box(run_turn(
                &foreach,
                c.clone(),
                ev.clone(),
                &mut host,
                &big_opts,
            ));
        },
    );

    let holding = Bot::compile(source(vec![(
        "main",
        "start:\n  do x = {\"a\": [1, 2, 3]}\n  say \"name?\"\n  hold\n  remember name = event\n  say \"hi {{name}} {{x.a[1]}}\"\n".into(),
    )]))
    .unwrap();
    measure("hold/resume round trip (2 turns)", None, 10_000, || {
        let r1 = run_turn(&holding, c.clone(), ev.clone(), &mut host, &opts);
        let mut c2 = ctx("main");
        c2.step = r1.step;
        c2.hold = r1.hold;
        let r2 = run_turn(&holding, c2, text("Ann"), &mut host, &opts);
        black_box(r2);
    });
}
