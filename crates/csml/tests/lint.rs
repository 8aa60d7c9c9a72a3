//! Linter tests (spec §6.3): each rule with a bot that breaks it and, where it matters, the
//! nearest bot that does not; run through `csml::validate` as the protocol does.

use csml::{BotSource, Diagnostic, FlowSource, Validation, validate};

fn bot(flows: &[(&str, &str)]) -> BotSource {
    BotSource {
        flows: flows
            .iter()
            .map(|(name, content)| FlowSource {
                name: name.to_string(),
                content: content.to_string(),
                commands: Vec::new(),
            })
            .collect(),
        default_flow: flows[0].0.to_string(),
        native_components: true,
        ..BotSource::default()
    }
}

fn check(flows: &[(&str, &str)]) -> Validation {
    let v = validate(&bot(flows), false);
    assert_eq!(v.valid, v.errors.is_empty());
    v
}

fn show(list: &[Diagnostic]) -> String {
    list.iter()
        .map(|d| {
            format!(
                "{}/{:?} {}:{} {}",
                d.flow, d.step, d.line, d.column, d.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One flow named `main` (the default flow).
fn one(content: &str) -> Validation {
    check(&[("main", content)])
}

/// (source of the default flow `main`, error message, line, column)
const ERRORS: &[(&str, &str, u32, u32)] = &[
    (
        "start:\n  say 1\nstart:\n  say 2\n",
        "duplicate step start",
        3,
        1,
    ),
    (
        "fn f():\n  return 1\nfn f():\n  return 2\nstart:\n  say f()\n",
        "duplicate function f",
        3,
        4,
    ),
    (
        "start:\n  return 1\n",
        "'return' action is not allowed outside function scope",
        2,
        10,
    ),
    (
        "fn f():\n  goto end\nstart:\n  say 1\n",
        "'goto' action is not allowed in function scope",
        2,
        3,
    ),
    (
        "fn f():\n  say 1\nstart:\n  say 1\n",
        "'say' action is not allowed in function scope",
        2,
        7,
    ),
    (
        "fn f():\n  remember x = 1\nstart:\n  say 1\n",
        "'remember' action is not allowed in function scope",
        2,
        12,
    ),
    (
        "fn f():\n  hold\nstart:\n  say 1\n",
        "'hold' action is not allowed in function scope",
        2,
        3,
    ),
    (
        "fn f():\n  hold_secure\nstart:\n  say 1\n",
        "'hold' action is not allowed in function scope",
        2,
        3,
    ),
    (
        "fn f():\n  forget x\nstart:\n  say 1\n",
        "'forget' action is not allowed in function scope",
        2,
        3,
    ),
    (
        "start:\n  do f = () { say 1 }\n",
        "'say' action is not allowed in function scope",
        2,
        19,
    ),
    (
        "start:\n  do f = () { goto end }\n",
        "'goto' action is not allowed in function scope",
        2,
        15,
    ),
    (
        "start:\n  break\n",
        "'break' action is not allowed outside loop",
        2,
        3,
    ),
    (
        "start:\n  if (a) { continue }\n",
        "'continue' action is not allowed outside loop",
        2,
        12,
    ),
    (
        "fn f():\n  break\nstart:\n  say 1\n",
        "'break' action is not allowed outside loop",
        2,
        3,
    ),
    (
        "start:\n  say Foo(1)\n",
        "function [Foo] does not exist",
        2,
        7,
    ),
    (
        "start:\n  do x = [1].map(Foo)\n  do y = Bar(1)\n",
        "function [Bar] does not exist",
        3,
        10,
    ),
    (
        "start:\n  say \"{{ Foo() }}\"\n",
        "function [Foo] does not exist",
        2,
        11,
    ),
    (
        "start:\n  do f = (x) { return x }\n  goto b\nb:\n  say f(1)\n",
        "function [f] does not exist",
        5,
        7,
    ),
    (
        "start:\n  do f = 3\n  say f(1)\n",
        "function [f] does not exist",
        3,
        7,
    ),
    (
        "start:\n  say Payload(\"x\")\n",
        "function [Payload] does not exist",
        2,
        7,
    ),
    (
        "fn g(f):\n  do r = f(1)\n  return r\nstart:\n  say g(1)\n",
        "function [f] does not exist",
        2,
        10,
    ),
    (
        "const A = 1\nstart:\n  do A = 2\n",
        "constant 'A' is immutable and can not be changed",
        3,
        6,
    ),
    (
        "const A = {\"x\": 1}\nstart:\n  do A.x += 2\n",
        "constant 'A' is immutable and can not be changed",
        3,
        6,
    ),
    (
        "const A = 1\nfn f():\n  do A = 2\n  return A\nstart:\n  say f()\n",
        "constant 'A' is immutable",
        3,
        6,
    ),
    (
        "import f from other\nstart:\n  say f()\n",
        "import failed function 'f' not found in flow 'other'",
        1,
        1,
    ),
    (
        "import f\nstart:\n  say f()\n",
        "function 'f' not found in bot",
        1,
        1,
    ),
    (
        "import f from modules/lib\nstart:\n  say f()\n",
        "import failed function 'f' not found in flow 'lib'",
        1,
        1,
    ),
    (
        "import f from main\nfn f():\n  return 1\nstart:\n  say f()\n",
        "import failed a function named 'f' already exist in current flow 'main'",
        1,
        1,
    ),
    (
        "insert s from main\ns:\n  say 1\nstart:\n  say 2\n",
        "insert failed, a step named 's' already exist in current flow 'main'",
        1,
        1,
    ),
    (
        "insert s from nowhere\nstart:\n  say 2\n",
        "insert failed, step 's' not found in flow 'nowhere'",
        1,
        1,
    ),
    (
        "import {f, f} from main\nfn f():\n  return 1\nstart:\n  say 1\n",
        "duplicate import f",
        1,
        12,
    ),
];

#[test]
fn each_error_rule() {
    let mut failures = Vec::new();
    for (src, message, line, column) in ERRORS {
        let v = one(src);
        let hit = v
            .errors
            .iter()
            .any(|d| d.message.starts_with(message) && (d.line, d.column) == (*line, *column));
        if !hit {
            failures.push(format!(
                "{src:?}\n  want {line}:{column} {message}\n  got: {}",
                show(&v.errors)
            ));
        }
        for d in &v.errors {
            assert_eq!(d.flow, "main");
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Bots that each rule must let through.
const VALID: &[&str] = &[
    "",
    "fn only(x):\n  return x\n",
    "start:\n  foreach (x) in [1] { if (x) { break } continue }\n  while (true) { break }\n",
    "fn f(x):\n  while (x) { break }\n  do x = x - 1\n  return x\nstart:\n  say f(1)\n",
    "start:\n  say OneOf([1]) say Length(\"ab\") say Or(a, 1) say Component(\"x\")\n  say Text(\"a\")\n",
    "start:\n  do f = (x) { return x }\n  say f(1)\n",
    "start:\n  say f(1)\n  do (x) { return x } as f\n",
    "start:\n  remember f = (x) { return x }\n  goto b\nb:\n  say f(1)\n",
    "fn g(x):\n  return x\nstart:\n  say g(1)\n",
    "start:\n  if (Foo()) { say 1 }\n",
    "start:\n  do x = 1\n  do x += 2\n  say x\n",
    "const A = 1\nstart:\n  do b = A + 1\n  say b\n",
    "start:\n  goto $x\n  goto $s@$f\n  goto end@whatever\n  goto s in other_bot\n",
];

#[test]
fn valid_bots_pass() {
    for src in VALID {
        let v = one(src);
        assert!(v.valid, "{src:?}:\n{}", show(&v.errors));
        assert!(
            v.warnings.is_empty(),
            "{src:?}: unexpected warnings:\n{}",
            show(&v.warnings)
        );
    }
}

#[test]
fn missing_start() {
    // in a non-default flow, and (deviation) in the default flow too
    for flows in [
        vec![("main", "start:\n  say 1\n"), ("other", "s:\n  say 1\n")],
        vec![("main", "s:\n  say 1\n")],
    ] {
        let v = check(&flows);
        let d = &v.errors[0];
        let flow = flows
            .iter()
            .find(|(_, c)| !c.starts_with("start"))
            .unwrap()
            .0;
        assert_eq!(d.message, format!("missing step 'start' in flow [{flow}]"));
        assert_eq!((d.line, d.column, d.step.as_deref()), (0, 0, None));
    }
    // a flow with no steps at all needs no start
    assert!(
        check(&[
            ("main", "start:\n  say 1\n"),
            ("lib", "fn f():\n  return 1\n")
        ])
        .valid
    );
}

#[test]
fn imports_across_flows() {
    let lib = ("lib", "fn f():\n  return 1\nfn g(a):\n  return a\n");
    for src in [
        "import f from lib\nstart:\n  say f()\n",
        "import f as h from lib\nstart:\n  say h()\n",
        "import {f, g as k} from lib\nstart:\n  say k(f())\n",
        "import g\nstart:\n  say g(1)\n",
    ] {
        let v = check(&[("main", src), lib]);
        assert!(v.valid, "{src:?}:\n{}", show(&v.errors));
    }
    let v = check(&[("main", "import h from lib\nstart:\n  say h()\n"), lib]);
    assert_eq!(
        v.errors[0].message,
        "import failed function 'h' not found in flow 'lib'"
    );
    // an alias does not make the original name callable
    let v = check(&[("main", "import f as h from lib\nstart:\n  say f()\n"), lib]);
    assert_eq!(v.errors[0].message, "function [f] does not exist");
    // modules are extra flows supplied with the bot
    let mut b = bot(&[("main", "import f from modules/m\nstart:\n  say f()\n")]);
    b.modules.push(FlowSource {
        name: "m".into(),
        content: "fn f():\n  return 2\n".into(),
        commands: Vec::new(),
    });
    let v = validate(&b, false);
    assert!(v.valid, "{}", show(&v.errors));
}

#[test]
fn inserts_across_flows() {
    let other = ("other", "start:\n  say 0\ns:\n  say 1\n");
    let v = check(&[("main", "insert s from other\nstart:\n  goto s\n"), other]);
    assert!(
        v.valid && v.warnings.is_empty(),
        "{}\n{}",
        show(&v.errors),
        show(&v.warnings)
    );
    let v = check(&[
        ("main", "insert s as t from other\nstart:\n  goto t\n"),
        other,
    ]);
    assert!(
        v.valid && v.warnings.is_empty(),
        "{}\n{}",
        show(&v.errors),
        show(&v.warnings)
    );
    let v = check(&[
        ("main", "insert {s, s} from other\nstart:\n  goto s\n"),
        other,
    ]);
    assert_eq!(v.errors[0].message, "duplicate insert s");
}

#[test]
fn native_components_follow_the_bot_setting() {
    let mut b = bot(&[("main", "start:\n  say Button(\"a\")\n")]);
    assert!(validate(&b, false).valid);
    b.native_components = false;
    let v = validate(&b, false);
    assert_eq!(v.errors[0].message, "function [Button] does not exist");
}

fn warnings_of(flows: &[(&str, &str)]) -> Vec<String> {
    let v = check(flows);
    assert!(v.valid, "{}", show(&v.errors));
    v.warnings.iter().map(|w| w.message.clone()).collect()
}

#[test]
fn deprecation_warnings() {
    let w = warnings_of(&[(
        "main",
        "start:\n  say Object(a = 1)\n  do App(\"x\")\n  do Fn(\"x\")\n  use 1 as x\n",
    )]);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].contains("'Object(...)' is deprecated"));
    assert!(w[1].contains("'Fn()' is deprecated"));
    assert!(w[2].contains("'use' is deprecated"));
}

#[test]
fn goto_to_unknown_targets_is_a_warning() {
    let flows = [
        (
            "main",
            "start:\n  goto nowhere\n  goto x@other\n  goto flow ghost\n  goto s@other\n  goto @other\n",
        ),
        ("other", "start:\n  hold\n  goto end\ns:\n  say 1\n"),
    ];
    let v = check(&flows);
    assert!(v.valid);
    let msgs: Vec<&str> = v.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "goto: step [nowhere] does not exist in flow [main]",
            "goto: step [x] does not exist in flow [other]",
            "goto: flow [ghost] does not exist",
        ]
    );
    let w = &v.warnings[0];
    assert_eq!(
        (w.flow.as_str(), w.step.as_deref(), w.line, w.column),
        ("main", Some("start"), 2, 3)
    );
}

#[test]
fn infinite_loop_detection() {
    let w = warnings_of(&[(
        "main",
        "start:\n  goto a\na:\n  if (x) { goto b }\n  goto end\nb:\n  goto a\n",
    )]);
    assert_eq!(
        w,
        [
            "infinite loop detected between:\n [flow] main, [step] a\n [flow] main, [step] b\n [flow] main, [step] a"
        ]
    );
    // a hold anywhere on the cycle breaks it
    let w = warnings_of(&[(
        "main",
        "start:\n  goto a\na:\n  goto b\nb:\n  hold\n  goto a\n",
    )]);
    assert!(w.is_empty(), "{w:?}");
    // across flows, and a self loop
    let w = warnings_of(&[
        ("main", "start:\n  goto @other\n"),
        ("other", "start:\n  goto start\n"),
    ]);
    assert_eq!(
        w,
        [
            "infinite loop detected between:\n [flow] other, [step] start\n [flow] other, [step] start"
        ]
    );
    // cycles not reachable from the default flow's start are not reported
    let w = warnings_of(&[("main", "start:\n  say 1\nx:\n  goto y\ny:\n  goto x\n")]);
    assert!(w.is_empty(), "{w:?}");
    // start itself may hold and still lead into a loop
    let w = warnings_of(&[("main", "start:\n  hold\n  goto a\na:\n  goto a\n")]);
    assert_eq!(w.len(), 1);
}

#[test]
fn underscore_int_literal_warning() {
    let v = check(&[(
        "main",
        "start:\n  say 1_000\n  say \"{{ 2_0 }}\"\n  say a_1\n",
    )]);
    assert!(v.valid);
    let pos: Vec<(u32, u32, Option<String>)> = v
        .warnings
        .iter()
        .map(|w| (w.line, w.column, w.step.clone()))
        .collect();
    let start = Some("start".to_string());
    assert_eq!(pos, [(2, 7, start.clone()), (3, 11, start)]);
    assert!(v.warnings[0].message.contains("read as 0"));
}

#[test]
fn sample_bot_is_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lint/");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
    let (main, helpers) = (read("main.csml"), read("helpers.csml"));
    let v = check(&[("main", &main), ("helpers", &helpers)]);
    assert!(v.valid, "{}", show(&v.errors));
    assert!(v.warnings.is_empty(), "{}", show(&v.warnings));
}

#[test]
fn parse_errors_skip_the_linter() {
    let v = check(&[("main", "start:\n  say (\n"), ("b", "x:\n  say 1\n")]);
    assert_eq!(v.errors.len(), 1);
    assert_eq!(v.errors[0].flow, "main");
    // syntax_only never lints
    let v = validate(&bot(&[("main", "x:\n  say Foo()\n")]), true);
    assert!(v.valid);
}
