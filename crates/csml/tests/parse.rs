//! Parser tests (spec §2, §6.1): table-driven accept/reject cases with reason and position,
//! tree shapes for the precedence and lexing corner cases, hold numbering, nesting limits.

use csml::ast::{
    Arg, AssignOp, Block, Expr, ExprKind, Flow, Forget, GotoName, ImportSource, LogLevel, PathSeg,
    Previous, Stmt, StmtKind, StrPart,
};
use csml::parser::{ERR_GENERIC, parse_flow};

fn parse(src: &str) -> Flow {
    match parse_flow("f", src) {
        Ok(f) => f,
        Err(d) => panic!("{src:?} failed: {}:{}: {}", d.line, d.column, d.message),
    }
}

/// A compact S-expression form of an expression tree.
fn sx(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Null => "null".into(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Str(parts) => {
            let inner: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    StrPart::Lit(s) => format!("{s:?}"),
                    StrPart::Interp(e) => format!("{{{}}}", sx(e)),
                })
                .collect();
            format!("(str {})", inner.join(" "))
        }
        ExprKind::Array(items) => {
            format!("[{}]", items.iter().map(sx).collect::<Vec<_>>().join(" "))
        }
        ExprKind::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{k}:{}", sx(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ExprKind::Closure(def) => format!("(fn ({}) #{})", def.params.join(" "), def.body.len()),
        ExprKind::Ident(n) => n.clone(),
        ExprKind::Path { base, segs } => {
            let mut s = sx(base);
            for seg in segs {
                match seg {
                    PathSeg::Key { name, .. } => s = format!("(. {s} {name})"),
                    PathSeg::Index { expr, .. } => s = format!("([] {s} {})", sx(expr)),
                    PathSeg::Method { name, args, .. } => {
                        s = format!("(.{name} {s}{})", args_sx(args))
                    }
                }
            }
            s
        }
        ExprKind::Call { name, args } => format!("(call {name}{})", args_sx(args)),
        ExprKind::Not(x) => format!("(! {})", sx(x)),
        ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", op.symbol(), sx(lhs), sx(rhs)),
        ExprKind::As { expr, name, .. } => format!("(as {} {name})", sx(expr)),
    }
}

fn args_sx(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match &a.name {
            Some(n) => format!(" {n}={}", sx(&a.value)),
            None => format!(" {}", sx(&a.value)),
        })
        .collect()
}

/// The expression of `say EXPR` in a one-step flow.
fn expr_of(src_expr: &str) -> String {
    let flow = parse(&format!("start:\n  say {src_expr}\n"));
    let body = &flow.steps[0].body;
    assert_eq!(
        body.len(),
        1,
        "{src_expr:?} parsed as {} statements",
        body.len()
    );
    match &body[0].kind {
        StmtKind::Say(e) => sx(e),
        other => panic!("not a say: {other:?}"),
    }
}

#[test]
fn expression_shapes() {
    let table: &[(&str, &str)] = &[
        ("!a + b", "(! (+ a b))"),
        ("!a == b", "(== (! a) b)"),
        ("!!a", "(! (! a))"),
        ("1 + 2 as p", "(+ 1 (as 2 p))"),
        ("a-b", "a-b"),
        ("a - b", "(- a b)"),
        ("a -b", "(- a b)"),
        ("5-3", "(- 5 3)"),
        ("-3", "-3"),
        ("+7", "7"),
        ("-y", "-y"),
        ("-(x)", "(- 0 x)"),
        ("+(x)", "(+ 0 x)"),
        ("1 + -2", "(+ 1 -2)"),
        ("o .a .c", "(. (. o a) c)"),
        ("o\n  .a\n  .b()", "(.b (. o a))"),
        ("x[0]", "([] x 0)"),
        ("x.y[1].z(2, k = 3)", "(.z ([] (. x y) 1) 2 k=3)"),
        ("a || b && c", "(|| a (&& b c))"),
        ("a && b || c", "(|| (&& a b) c)"),
        ("a || b || c", "(|| (|| a b) c)"),
        ("1 + 2 * 3", "(+ 1 (* 2 3))"),
        ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
        ("10 % 3 / 2", "(/ (% 10 3) 2)"),
        ("a < b && c >= d", "(&& (< a b) (>= c d))"),
        ("a != b", "(!= a b)"),
        ("a <= b", "(<= a b)"),
        ("a > b", "(> a b)"),
        ("event match btn", "(match event btn)"),
        ("event !match btn", "(!match event btn)"),
        ("1_000", "0"),
        ("99999999999999999999", "0"),
        (".5", "0.5"),
        ("1.25", "1.25"),
        ("-1.5", "-1.5"),
        ("true", "true"),
        ("false", "false"),
        ("NULL", "null"),
        ("nullable", "nullable"),
        ("éà", "éà"),
        ("a\\b", "a\\b"),
        ("[1, 2,]", "[1 2]"),
        ("[]", "[]"),
        ("{\"a\": 1, \"b\": [2],}", "{a:1 b:[2]}"),
        ("{}", "{}"),
        ("(a, b) { return a }", "(fn (a b) #1)"),
        ("() { return 1 }", "(fn () #1)"),
        (
            "Button(\"a\", payload = \"b\")",
            "(call Button (str \"a\") payload=(str \"b\"))",
        ),
        ("Foo (1, 2,)", "(call Foo 1 2)"),
        ("Component.Name(1)", "(.Name Component 1)"),
        ("x as y", "(as x y)"),
        ("x.a as y", "(as (. x a) y)"),
        ("_metadata.user", "(. _metadata user)"),
        ("event", "event"),
        ("\"\"", "(str )"),
        ("\"a\\nb\\t\\\"c\\\\\"", "(str \"a\\nb\\t\\\"c\\\\\")"),
        ("\"\\x\\u0041\"", "(str \"xu0041\")"),
        ("\"hi {{name}}!\"", "(str \"hi \" {name} \"!\")"),
        ("\"{{}}\"", "(str )"),
        ("\"\\{{x\\}}\"", "(str \"{{x}}\")"),
        ("\"\\{{x}}\"", "(str \"{{x}}\")"),
        ("\"\\{{a}} {{b}}\"", "(str \"{{a}} \" {b})"),
        ("\"a\\\\{{b}}\"", "(str \"a\\\\\" {b})"),
        ("\"{{ \\\"}}\\\" }}\"", "(str {(str \"}}\")})"),
        ("\"a\\}}\"", "(str \"a}}\")"),
        ("\"{{ {\\\"q\\\": 1} }}\"", "(str {{q:1}})"),
        ("\"{{ \\\"raw {{x}}\\\" }}\"", "(str {(str \"raw {{x}}\")})"),
        ("\"{{ a.b(1) + 2 }}\"", "(str {(+ (.b a 1) 2)})"),
        ("\"line1\nline2\"", "(str \"line1\\nline2\")"),
        (
            "\"x\" /* c */ + // c\n \"y\"",
            "(+ (str \"x\") (str \"y\"))",
        ),
    ];
    for (src, want) in table {
        assert_eq!(&expr_of(src), want, "source: {src}");
    }
}

/// (source, reason prefix, line, column)
const ERRORS: &[(&str, &str, u32, u32)] = &[
    // identifiers
    (
        "start:\n    say value as event\n",
        "reserved keyword",
        2,
        18,
    ),
    ("start:\n  do if = 1\n", "reserved keyword", 2, 6),
    ("start:\n  do Event = 1\n", ERR_GENERIC, 2, 12),
    ("start:\n  do True = 1\n", ERR_GENERIC, 2, 11),
    ("start:\n  say goto\n", "reserved keyword", 2, 7),
    (
        "start:\n  say x as 12\n",
        "Int/Float can't be used as identifier",
        2,
        12,
    ),
    (
        "start:\n  say x as inf\n",
        "Int/Float can't be used as identifier",
        2,
        12,
    ),
    (
        "start:\n  say x as 1e5\n",
        "Int/Float can't be used as identifier",
        2,
        12,
    ),
    ("start:\n  say trueval\n", ERR_GENERIC, 2, 11),
    // `true`/`false` are matched as prefixes, so such names can never be read: rejected where
    // variables and functions are defined (spec §2.2 Decision).
    ("start:\n  do trueval = 4\n", "reserved keyword", 2, 6),
    ("start:\n  do falsey.a[0] += 4\n", "reserved keyword", 2, 6),
    (
        "start:\n  remember trueval = 4\n",
        "reserved keyword",
        2,
        12,
    ),
    ("start:\n  say 1 as false_\n", "reserved keyword", 2, 12),
    (
        "start:\n  foreach (x, truei) in [] { }\n",
        "reserved keyword",
        2,
        15,
    ),
    ("start:\n  goto $truestep\n", "reserved keyword", 2, 9),
    ("fn truef() {\n  return 1\n}\n", "reserved keyword", 1, 4),
    ("const falseX = 1\n", "reserved keyword", 1, 7),
    ("import {a, b as trueb} from f\n", "reserved keyword", 1, 17),
    ("start:\n  log error\n", "expecting valid argument", 3, 1),
    ("start:\n  log info.x\n", "expecting valid argument", 2, 11),
    ("start:\n  forget const\n", "reserved keyword", 2, 10),
    ("start:\n  goto $event\n", "reserved keyword", 2, 9),
    (
        "12:\n  say 1\n",
        "Int/Float can't be used as identifier",
        1,
        1,
    ),
    ("if:\n  say 1\n", "reserved keyword", 1, 1),
    // literals
    ("start:\n  say 1e3\n", ERR_GENERIC, 2, 8),
    ("start:\n  say 5.\n", ERR_GENERIC, 2, 8),
    ("start:\n  say {a: 1}\n", ERR_GENERIC, 2, 8),
    ("start:\n  say {\"a\\n\": 1}\n", ERR_GENERIC, 2, 8),
    ("start:\n  say [1 2]\n", "expecting ']'", 2, 10),
    (
        "start:\n  say {\"a\": 1 \"b\": 2}\n",
        "expecting '}'",
        2,
        15,
    ),
    (
        "start:\n  say \"abc\n",
        "expecting '\"' to end string",
        2,
        7,
    ),
    (
        "start:\n  say \"a }} b\"\n",
        "expecting '}}' to end expandable string",
        2,
        10,
    ),
    (
        "start:\n  say \"a {{ b \"\n",
        "expecting '}}' to end expandable string",
        2,
        10,
    ),
    (
        "start:\n  say \"{{ + }}\"\n",
        "wrong argument(s) given to expandable string",
        2,
        11,
    ),
    (
        "start:\n  say f(1 2)\n",
        "Invalid argument. Expecting one ','",
        2,
        11,
    ),
    (
        "start:\n  say f(1,\n",
        "Invalid argument. Expecting one ','",
        3,
        1,
    ),
    // expression structure
    ("start:\n  say a < b < c\n", ERR_GENERIC, 2, 13),
    ("start:\n  say x [0]\n", ERR_GENERIC, 2, 9),
    ("start:\n  say (1 + 2\n", "expecting ')'", 3, 1),
    ("start:\n  say a &\n", ERR_GENERIC, 2, 9),
    ("start:\n  say a matchbox\n", ERR_GENERIC, 2, 9),
    ("start:\n  say a + !b\n", ERR_GENERIC, 2, 11),
    // statements
    (
        "start:\n  say\n",
        "expecting valid argument after action keywords",
        3,
        1,
    ),
    (
        "start:\n  remember x\n",
        "'remember' must be assigning",
        2,
        12,
    ),
    ("start:\n  remember event = 1\n", "reserved keyword", 2, 12),
    (
        "start:\n  use x\n",
        "'use' must be assigning a variable with keyword 'as'",
        2,
        3,
    ),
    (
        "start:\n  return\n",
        "return expects a value to return",
        3,
        1,
    ),
    ("start:\n  goto\n", "missing step name after goto", 3, 1),
    ("start:\n  goto event\n", "reserved keyword", 2, 8),
    ("start:\n  goto step event\n", "reserved keyword", 2, 13),
    ("start:\n  goto flow event\n", "reserved keyword", 2, 13),
    ("start:\n  goto key as tmp\n", ERR_GENERIC, 2, 12),
    ("start:\n  goto key = value\n", ERR_GENERIC, 2, 12),
    ("start:\n  goto lol key\n", ERR_GENERIC, 2, 12),
    ("start:\n  goto obj.key\n", ERR_GENERIC, 2, 11),
    ("start:\n  goto a @ b\n", ERR_GENERIC, 2, 10),
    (
        "start:\n  goto step\n",
        "missing step name after goto",
        3,
        1,
    ),
    ("start:\n  previous\n", ERR_GENERIC, 3, 1),
    ("start:\n  do x.f() = 1\n", ERR_GENERIC, 2, 12),
    ("start:\n  if (a) { say 1\n", "expecting '}'", 3, 1),
    ("start:\n  if (a) { blah }\n", ERR_GENERIC, 2, 12),
    ("start:\n  if a { say 1 }\n", ERR_GENERIC, 2, 6),
    ("start:\n  while (a) say 1\n", ERR_GENERIC, 2, 13),
    ("start:\n  foreach (x) [1] { }\n", ERR_GENERIC, 2, 15),
    (
        "start:\n  foreach (if) in [1] { }\n",
        "reserved keyword",
        2,
        12,
    ),
    ("start:\n  blah\n", ERR_GENERIC, 2, 3),
    ("start:\n  Say \"x\"\n", ERR_GENERIC, 2, 3),
    ("start :\n  say 1\n", ERR_GENERIC, 1, 1),
    ("say 1\n", ERR_GENERIC, 1, 1),
    // top level
    (
        "const X = y\nstart:\n  say 1\n",
        "Constant invalid expression type",
        1,
        11,
    ),
    (
        "const X = [1, {\"a\": \"{{x}}\"}]\n",
        "Constant invalid expression type",
        1,
        11,
    ),
    (
        "const X = 1 match 2\n",
        "Constant invalid expression type",
        1,
        11,
    ),
    ("const X = f()\n", "Constant invalid expression type", 1, 11),
    ("const event = 1\n", "reserved keyword", 1, 7),
    (
        "import \"f\" from x\n",
        "'import' expecting valid function name",
        1,
        8,
    ),
    (
        "import {} from x\n",
        "'import' expecting valid function name",
        1,
        10,
    ),
    (
        "import f from\n",
        "'import' expecting valid function name",
        2,
        1,
    ),
    ("insert s\nstart:\n  say 1\n", ERR_GENERIC, 2, 1),
    (
        "fn f(a b) { return 1 }\n",
        "Invalid argument. Expecting one ','",
        1,
        8,
    ),
    (
        "fn f(12) { return 1 }\n",
        "Int/Float can't be used as identifier",
        1,
        6,
    ),
    ("fn f() return 1\n", ERR_GENERIC, 1, 8),
    ("fn if() { return 1 }\n", "reserved keyword", 1, 4),
];

#[test]
fn parse_errors() {
    let mut failures = Vec::new();
    for (src, reason, line, column) in ERRORS {
        match parse_flow("flow", src) {
            Ok(_) => failures.push(format!("{src:?}: parsed, expected {reason:?}")),
            Err(d) => {
                if !d.message.starts_with(reason) || (d.line, d.column) != (*line, *column) {
                    failures.push(format!(
                        "{src:?}: got {}:{} {:?}, expected {line}:{column} {reason:?}",
                        d.line, d.column, d.message
                    ));
                }
                assert_eq!(d.flow, "flow");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const VALID: &[&str] = &[
    "",
    "// only a comment",
    "/* unclosed comment\nstart:\n  say 1\n",
    "start:\n  say \"a\" say \"b\" goto end\n",
    "start: say 1 goto end",
    "start:\n  do x = 1\n  do x += 1\n  do x -= 1\n  do x *= 2\n  do x /= 2\n  do x %= 2\n",
    "start:\n  do x.y[0].z = 3\n  do x.push(1)\n  do 1 + 2 as p\n",
    "start:\n  do a==b\n  do a=b\n  do a-=b\n",
    "start:\n  remember x = 1\n  remember (1 + 1) as y\n",
    "start:\n  forget *\n  forget x\n  forget [a, b,]\n  forget []\n",
    "start:\n  debug x\n  log \"a\"\n  log ERROR \"b\"\n  log warn x.y\n  log Trace(1)\n  log error-x\n",
    "start:\n  use 1 as x\n",
    "start:\n  goto end\n  goto step end\n  goto end@x\n  goto flow f\n  goto @\n  goto x@\n  goto @f\n",
    "start:\n  goto s@f\n  goto $s@$f\n  goto $a.b[0]\n  goto step $x\n  goto s in bot\n  goto @f in $b\n",
    "start:\n  previous step\n  previous flow\n  hold\n  hold_secure\n",
    "start:\n  if (a) say 1 else if (b) say 2 else say 3\n",
    "start:\n  if(a){say 1}else{say 2}\n",
    "start:\n  if (a) { } else if (b) { say 1 } else { }\n",
    "start:\n  foreach (v) in [1] { break }\n  foreach (v, i) in x.y { continue }\n",
    "start:\n  while (i < 3) { do i = i + 1 }\n",
    "start:\n  foreach (x) in (items) { say x }\n  foreach (x) in [1].map((v) { return v }) { say x }\n",
    "start:\n  do f = (a, b,) { return a + b }\n  say f(1, 2)\n",
    "const A = 1\nconst B = -(1 + 2) * 3 / 2 == !true\nconst C = [1, \"x\", {\"k\": null}]\nstart:\n  say A\n",
    "import f from other\nimport f as g from other\nimport {a, b as c,} from other\nimport h\nimport m from modules/lib\n",
    "insert s from other\ninsert {s1, s2 as t} from other\n",
    "fn f(a, b) {\n  return a\n}\nfn g():\n  return 1\nfn h(a,):\n  do x = 1\n  return x\nstart:\n  say f(1, 2)\n",
    "start:\n  say 1\nother:\n  say 2\nend:\n  say 3\n",
    "start:\n  say 1\nlog:\n  say 2\ndebug:\n  say 3\nprevious:\n  goto log\n",
    "start:\r\n\tsay 1\r\n",
    "début:\n  say \"é\"\n",
    "start:\n  say x .a\n  .b\n",
    "start:\n  say \"{{ x }}\" say \"y\"\n",
    "start:\n  say Question(\"q\", buttons = [Button(\"a\"), Button(\"b\", payload = \"B\")])\n",
    "start:\n  do nullable = 1\n  do Null2 = 2\n  do const = 3\n  do TrueVal = 4\n  do is_true = 5\n  forget event\n",
    "true_step:\n  goto false_step\nfalse_step:\n  do a.trueval = 1\n  say f(a.falsey, truearg=1)\n",
    "start:\n  say event.get_type() == \"text\" && !(x > 3)\n",
    "start:\n  say \"{{\\\"a\\\"}}\"\n",
];

#[test]
fn valid_sources_parse() {
    for src in VALID {
        parse(src);
    }
}

#[test]
fn statements_have_the_right_shape() {
    let flow = parse(
        "start:\n  do x = 1\n  do x += y\n  do a.b[0] = 2\n  do e as z\n  do f(1)\n  remember m = 1\n  remember 2 as n\n  forget [a, b]\n  forget *\n  log WARN \"w\"\n  log x\n  previous flow\n  hold_secure\n",
    );
    let b = &flow.steps[0].body;
    let assign = |s: &Stmt| match &s.kind {
        StmtKind::Do {
            assign: Some((t, op)),
            expr,
        } => (t.name.clone(), t.path.len(), *op, sx(expr)),
        other => panic!("{other:?}"),
    };
    assert_eq!(assign(&b[0]), ("x".into(), 0, AssignOp::Set, "1".into()));
    assert_eq!(assign(&b[1]), ("x".into(), 0, AssignOp::Add, "y".into()));
    assert_eq!(assign(&b[2]), ("a".into(), 2, AssignOp::Set, "2".into()));
    assert_eq!(assign(&b[3]), ("z".into(), 0, AssignOp::Set, "e".into()));
    assert!(matches!(&b[4].kind, StmtKind::Do { assign: None, .. }));
    assert!(matches!(&b[5].kind, StmtKind::Remember { name, .. } if name == "m"));
    assert!(
        matches!(&b[6].kind, StmtKind::Remember { name, expr, .. } if name == "n" && sx(expr) == "2")
    );
    assert_eq!(
        match &b[7].kind {
            StmtKind::Forget(f) => f.clone(),
            _ => panic!(),
        },
        Forget::Names(vec!["a".into(), "b".into()])
    );
    assert!(matches!(&b[8].kind, StmtKind::Forget(Forget::All)));
    assert!(matches!(
        &b[9].kind,
        StmtKind::Log {
            level: LogLevel::Warn,
            ..
        }
    ));
    assert!(
        matches!(&b[10].kind, StmtKind::Log { level: LogLevel::Info, expr } if sx(expr) == "x")
    );
    assert!(matches!(&b[11].kind, StmtKind::Previous(Previous::Flow)));
    assert!(matches!(&b[12].kind, StmtKind::Hold { secure: true }));
    assert_eq!(b[1].pos, csml::ast::Pos::new(3, 3));
}

fn goto_of(src: &str) -> (Option<String>, Option<String>, Option<String>) {
    let flow = parse(&format!("start:\n  goto {src}\n"));
    let name = |n: &Option<GotoName>| {
        n.as_ref().map(|n| match n {
            GotoName::Literal(s) => s.clone(),
            GotoName::Var { name, path, .. } => format!("${name}/{}", path.len()),
        })
    };
    match &flow.steps[0].body[0].kind {
        StmtKind::Goto(g) => (name(&g.step), name(&g.flow), name(&g.bot)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn goto_forms() {
    let s = |x: &str| Some(x.to_string());
    assert_eq!(goto_of("end"), (s("end"), None, None));
    assert_eq!(goto_of("step x"), (s("x"), None, None));
    assert_eq!(goto_of("flow f"), (None, s("f"), None));
    assert_eq!(goto_of("@"), (None, None, None));
    assert_eq!(goto_of("x@"), (s("x"), None, None));
    assert_eq!(goto_of("@f"), (None, s("f"), None));
    assert_eq!(goto_of("x@f"), (s("x"), s("f"), None));
    assert_eq!(goto_of("$s@$f"), (s("$s/0"), s("$f/0"), None));
    assert_eq!(goto_of("$o.a[1]"), (s("$o/2"), None, None));
    assert_eq!(goto_of("x in b"), (s("x"), None, s("b")));
    assert_eq!(goto_of("x@f in b"), (s("x"), s("f"), s("b")));
    assert_eq!(goto_of("end@x"), (s("end"), s("x"), None));
    // `in` not followed by a bot name is the next (invalid) statement, not part of the goto
    assert!(parse_flow("f", "start:\n  goto x in\n").is_err());
}

#[test]
fn top_level_items() {
    let flow = parse(
        "import {a, b as c} from other\nimport m from modules/lib\nimport h\ninsert s as t from other\nconst K = 1\nfn f(x, y):\n  return x\nstart:\n  say 1\n",
    );
    let imports: Vec<(String, Option<String>, Option<ImportSource>)> = flow
        .imports
        .iter()
        .map(|i| (i.item.name.clone(), i.item.alias.clone(), i.from.clone()))
        .collect();
    let fl = |s: &str| Some(ImportSource::Flow(s.into()));
    assert_eq!(
        imports,
        vec![
            ("a".into(), None, fl("other")),
            ("b".into(), Some("c".into()), fl("other")),
            ("m".into(), None, Some(ImportSource::Module("lib".into()))),
            ("h".into(), None, None),
        ]
    );
    assert_eq!(flow.inserts[0].item.local_name(), "t");
    assert_eq!(flow.inserts[0].from, "other");
    assert_eq!(flow.constants[0].name, "K");
    assert_eq!(flow.functions[0].params, vec!["x", "y"]);
    assert_eq!(flow.functions[0].body.len(), 1);
    assert_eq!(flow.steps[0].name, "start");
}

/// Hold numbers of every statement, depth first, as `kind:index`.
fn numbering(block: &Block, out: &mut Vec<String>) {
    for s in block {
        let tag = match &s.kind {
            StmtKind::If { .. } => "if",
            StmtKind::Foreach { .. } => "foreach",
            StmtKind::While { .. } => "while",
            StmtKind::Hold { .. } => "hold",
            StmtKind::Say(_) => "say",
            StmtKind::Do { .. } => "do",
            StmtKind::Goto(_) => "goto",
            _ => "other",
        };
        out.push(format!("{tag}:{}", s.index));
        match &s.kind {
            StmtKind::If {
                branches,
                otherwise,
            } => {
                for (_, b) in branches {
                    numbering(b, out);
                }
                if let Some(b) = otherwise {
                    numbering(b, out);
                }
            }
            StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => numbering(body, out),
            _ => {}
        }
    }
}

#[test]
fn hold_numbering() {
    let flow = parse(
        "start:
  say 1
  if (a) {
    say 2
    hold
  } else if (b) say 3
  else {
    foreach (x) in [1] {
      do f = (y) { do z = 1 return z }
      while (c) { hold }
    }
  }
  goto end
fn g():
  do a = 1
  if (x) { return 1 }
other:
  if (a) { }
  hold
",
    );
    let mut out = Vec::new();
    numbering(&flow.steps[0].body, &mut out);
    assert_eq!(
        out,
        [
            "say:0",
            "if:1",
            "say:1",
            "hold:2",
            "say:3",
            "foreach:4",
            "do:4",
            "while:5",
            "hold:5",
            "goto:6"
        ]
    );
    let mut out = Vec::new();
    numbering(&flow.functions[0].body, &mut out);
    assert_eq!(out, ["do:0", "if:1", "other:1"]);
    let mut out = Vec::new();
    numbering(&flow.steps[1].body, &mut out);
    assert_eq!(out, ["if:0", "hold:0"]);
    // closure bodies are numbered on their own
    let StmtKind::If {
        otherwise: Some(els),
        ..
    } = &flow.steps[0].body[1].kind
    else {
        panic!()
    };
    let StmtKind::Foreach { body, .. } = &els[0].kind else {
        panic!()
    };
    let StmtKind::Do { expr, .. } = &body[0].kind else {
        panic!()
    };
    let ExprKind::Closure(def) = &expr.kind else {
        panic!()
    };
    assert_eq!(def.body.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
    assert!(flow.steps[0].has_hold && flow.steps[1].has_hold);
}

#[test]
fn step_hash_is_stable_and_tracks_the_step_text() {
    let a = parse("start:\n  say 1\n\nnext:\n  say 2\n");
    let b = parse("// header\nstart:\n  say 1\n\nnext:\n  say 3\n");
    assert_eq!(a.steps[0].hash, b.steps[0].hash);
    assert_ne!(a.steps[1].hash, b.steps[1].hash);
    assert_ne!(a.steps[0].hash, 0);
    assert!(!a.steps[0].has_hold);
}

#[test]
fn positions() {
    let flow = parse("start:\n  say \"ab\" + x\n\n  do y.z(1)\n");
    let StmtKind::Say(e) = &flow.steps[0].body[0].kind else {
        panic!()
    };
    let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
        panic!()
    };
    // a string's position is just after its opening quote
    assert_eq!((lhs.pos.line, lhs.pos.column), (2, 8));
    assert_eq!((rhs.pos.line, rhs.pos.column), (2, 14));
    let StmtKind::Do { expr, .. } = &flow.steps[0].body[1].kind else {
        panic!()
    };
    let ExprKind::Path { segs, .. } = &expr.kind else {
        panic!()
    };
    let PathSeg::Method { pos, .. } = &segs[0] else {
        panic!()
    };
    assert_eq!((pos.line, pos.column), (4, 8));
    assert_eq!((flow.steps[0].pos.line, flow.steps[0].pos.column), (1, 1));
}

#[test]
fn error_reports_the_step() {
    let d = parse_flow("main", "start:\n  say 1\nsecond:\n  say (\n").unwrap_err();
    assert_eq!(d.step.as_deref(), Some("second"));
    assert_eq!(d.flow, "main");
    let d = parse_flow("main", "const X = y\n").unwrap_err();
    assert_eq!(d.step, None);
}

#[test]
fn identifier_limits() {
    let long = "x".repeat(256);
    let d = parse_flow("f", &format!("start:\n  do {long} = 1\n")).unwrap_err();
    assert!(
        d.message
            .starts_with("key can't be longer than 255 character"),
        "{}",
        d.message
    );
    parse(&format!("start:\n  do {} = 1\n", "x".repeat(255)));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let cases = [
        format!("start:\n  say {}1", "(".repeat(100_000)),
        format!("start:\n  say {}", "[".repeat(100_000)),
        format!("start:\n  say {}", "{\"a\":".repeat(100_000)),
        format!("start:\n  say {}x", "!".repeat(100_000)),
        format!("start:\n  say 1{}", " + 1".repeat(100_000)),
        format!("start:\n  say f{}", "(".repeat(100_000)),
        format!("start:\n  say x{}", "[0".repeat(100_000)),
        format!("start:\n  {}", "if (a) ".repeat(100_000)),
        format!("start:\n  {}", "while (a) {".repeat(100_000)),
        format!("start:\n  say {}", "() {return ".repeat(100_000)),
        format!("start:\n  say \"{}\"", "{{ \\\"a\\\" + ".repeat(1000)),
    ];
    for src in &cases {
        let d = parse_flow("f", src).unwrap_err();
        assert!(d.line >= 1 && d.column >= 1);
    }
    // moderate nesting is fine
    parse(&format!(
        "start:\n  say {}1{}",
        "(".repeat(40),
        ")".repeat(40)
    ));
    parse(&format!("start:\n  say 1{}", " + 1".repeat(100)));
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic fuzz: every prefix of a rich source, and byte soups.
    let rich = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/parse/rich.csml"
    ))
    .unwrap();
    parse(&rich);
    let mut cut = 0;
    while cut <= rich.len() {
        if rich.is_char_boundary(cut) {
            let _ = parse_flow("f", &rich[..cut]);
            let _ = parse_flow("f", &rich[cut..]);
        }
        cut += 1;
    }
    let alphabet: Vec<char> = "ab1 .,:;()[]{}\"\\@$!=<>+-*/%&|_\n\té{}".chars().collect();
    let mut seed: u64 = 0x1234_5678;
    for _ in 0..3000 {
        let mut s = String::from("start:\n say ");
        for _ in 0..40 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let _ = parse_flow("f", &s);
    }
}

#[test]
fn validate_reports_the_protocol_example() {
    let bot: csml::BotSource = serde_json::from_value(serde_json::json!({
        "flows": [{"name": "Test", "content": "start:\n    say value as event\n"}],
        "default_flow": "Test"
    }))
    .unwrap();
    let v = csml::validate(&bot, true);
    assert!(!v.valid);
    let e = &v.errors[0];
    assert_eq!(
        (
            e.flow.as_str(),
            e.step.as_deref(),
            e.line,
            e.column,
            e.message.as_str()
        ),
        (
            "Test",
            Some("start"),
            2,
            18,
            "reserved keyword can't be used as identifier"
        )
    );
}
