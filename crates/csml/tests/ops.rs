//! Operator tables of spec §3.5–3.7: truthiness, comparison, arithmetic, `match`.

use csml::ast::BinOp;
use csml::json::{from_json, to_display};
use csml::ops::{binary, matches, strict_eq, truthy};
use csml::value::{Map, Value};
use serde_json::json;

fn v(j: serde_json::Value) -> Value {
    from_json(&j)
}

fn s(x: &str) -> Value {
    Value::string(x)
}

fn button(title: &str, accepts: &[&str]) -> Value {
    let mut m = Map::new();
    m.insert("title".into(), s(title));
    m.insert(
        "accepts".into(),
        Value::array(accepts.iter().map(|a| s(a)).collect()),
    );
    Value::object(m).with_tag("button")
}

/// `(op, left, right)` → the string form and type of the result, or the error text.
fn run(op: BinOp, l: &Value, r: &Value) -> Result<(String, &'static str), String> {
    binary(op, l, r).map(|x| (to_display(&x), x.kind_tag()))
}

#[test]
fn truthiness() {
    let cases: &[(Value, bool)] = &[
        (Value::bool(true), true),
        (Value::bool(false), false),
        (Value::int(1), true),
        (Value::int(0), false),
        (Value::int(-1), false),
        (Value::float(-1.5), true),
        (Value::float(0.0), false),
        (Value::float(f64::NAN), false),
        (Value::float(f64::INFINITY), false),
        (Value::float(1e-310), false),
        (s(""), true),
        (v(json!([])), true),
        (v(json!({})), true),
        (Value::null(), false),
    ];
    for (val, want) in cases {
        assert_eq!(truthy(val), *want, "{val:?}");
    }
}

#[test]
fn comparisons() {
    use BinOp::*;
    let t = |op, l: Value, r: Value, want: bool| {
        assert_eq!(
            run(op, &l, &r),
            Ok((want.to_string(), "boolean")),
            "{l:?} {op:?} {r:?}"
        );
    };
    t(Eq, s("1"), s("1.0"), true);
    t(Lt, s("10"), s("9"), true);
    t(Eq, s("01"), s("1"), false);
    t(Eq, s("a"), s("A"), false);
    t(Eq, Value::int(1), s("1"), true);
    t(Eq, Value::int(1000), s("1e3"), true);
    t(Eq, Value::int(1), s(" 1"), false);
    t(Lt, Value::int(1), s("x"), false);
    t(Ge, Value::int(1), s("x"), false);
    t(Eq, Value::int(1), Value::float(1.0), true);
    t(Lt, Value::int(1), Value::float(1.5), true);
    t(Eq, v(json!([1])), v(json!(["1"])), false);
    t(Eq, v(json!([1, [2]])), v(json!([1, [2]])), true);
    t(Lt, v(json!([1, 2])), v(json!([1, 3])), true);
    t(
        Eq,
        v(json!({"a": 1, "b": 2})),
        v(json!({"b": 2, "a": 1})),
        true,
    );
    t(Lt, v(json!({"a": 1})), v(json!({"a": 2})), false);
    t(Eq, Value::null(), Value::null(), true);
    t(Le, Value::null(), Value::null(), true);
    t(Eq, Value::null(), Value::int(0), false);
    t(Ne, Value::null(), Value::int(0), true);
    t(Eq, Value::bool(true), Value::int(1), false);
    t(And, Value::int(1), s(""), true);
    t(And, Value::int(0), s(""), false);
    t(Or, Value::int(0), Value::null(), false);
    t(Or, Value::int(0), Value::float(2.0), true);
}

#[test]
fn arithmetic() {
    use BinOp::*;
    let ok = |op, l: Value, r: Value, want: &str, ty: &'static str| {
        assert_eq!(
            run(op, &l, &r),
            Ok((want.to_string(), ty)),
            "{l:?} {op:?} {r:?}"
        );
    };
    let err = |op, l: Value, r: Value, want: &str| {
        assert_eq!(run(op, &l, &r), Err(want.to_string()), "{l:?} {op:?} {r:?}");
    };
    ok(Add, Value::int(1), Value::int(2), "3", "int");
    ok(Div, Value::int(7), Value::int(2), "3.5", "float");
    ok(Div, Value::int(10), Value::int(5), "2", "int");
    ok(Rem, Value::int(-7), Value::int(3), "-1", "int");
    err(
        Div,
        Value::int(1),
        Value::int(0),
        "[!] Int: Division by zero",
    );
    err(
        Rem,
        Value::int(1),
        Value::int(0),
        "overflowing operation: PrimitiveInt % PrimitiveInt",
    );
    err(
        Mul,
        Value::int(i64::MAX),
        Value::int(2),
        "overflowing operation: PrimitiveInt * PrimitiveInt",
    );
    err(
        Add,
        Value::int(i64::MAX),
        Value::int(1),
        "overflowing operation: PrimitiveInt + PrimitiveInt",
    );
    // Decision: plain IEEE float arithmetic (the reference errs on these).
    ok(Div, Value::float(1.0), Value::float(0.5), "2", "float");
    ok(Rem, Value::float(5.5), Value::float(0.5), "0", "float");
    ok(Add, Value::int(1), Value::float(0.5), "1.5", "float");
    err(
        Div,
        Value::float(1.0),
        Value::float(0.0),
        "[!] Float: Division by zero",
    );
    err(
        Div,
        Value::int(1),
        Value::float(0.0),
        "[!] Float: Division by zero",
    );
    ok(Add, s("1"), Value::int(2), "3", "int");
    ok(Mul, Value::int(2), s("1.5"), "3", "float");
    err(
        Add,
        s("a"),
        Value::int(1),
        "illegal operation: PrimitiveString + PrimitiveInt",
    );
    err(
        Sub,
        Value::int(1),
        s("a"),
        "illegal operation: PrimitiveInt - PrimitiveString",
    );
    ok(Add, s("1"), s("2"), "3", "int");
    ok(Add, s("a"), s("1"), "a1", "string");
    ok(Add, s(""), s(""), "", "string");
    err(
        Add,
        s("1"),
        s("a"),
        "illegal operation: PrimitiveString + PrimitiveString",
    );
    ok(Div, s("7"), s("2"), "3", "int");
    ok(Rem, s("7.5"), s("2"), "1.5", "float");
    ok(Sub, s("7.5"), s("2"), "5.5", "float");
    err(
        Mul,
        s("a"),
        s("b"),
        "illegal operation: PrimitiveString * PrimitiveString",
    );
    err(
        Add,
        v(json!([1])),
        v(json!([2])),
        "illegal operation: PrimitiveArray + PrimitiveArray",
    );
    err(
        Add,
        v(json!({})),
        v(json!({})),
        "illegal operation: PrimitiveObject + PrimitiveObject",
    );
    err(
        Add,
        Value::null(),
        Value::int(1),
        "illegal operation: PrimitiveNull + PrimitiveInt",
    );
    err(
        Add,
        Value::bool(true),
        Value::int(1),
        "illegal operation: PrimitiveBoolean + PrimitiveInt",
    );
}

#[test]
fn secure_flag_survives_arithmetic() {
    let secret = s("abc").with_secure(true);
    let r = binary(BinOp::Add, &s("x"), &secret).unwrap();
    assert!(r.secure);
    assert_eq!(r.tag(), "string");
    let c = binary(BinOp::Eq, &secret, &s("abc")).unwrap();
    assert!(!c.secure);
    let tagged = s("t").with_tag("text");
    assert_eq!(
        binary(BinOp::Add, &tagged, &s("u")).unwrap().tag(),
        "string"
    );
}

#[test]
fn match_rules() {
    let yes = button("Yes", &["y", "Yes", "Y"]);
    assert!(matches(&s("YES"), &yes));
    assert!(matches(&s("y"), &yes));
    assert!(!matches(&s("no"), &yes));
    assert!(matches(&yes, &s("Y")));
    assert!(matches(&yes, &button("Yes", &["y", "Yes", "Y"])));
    assert!(!matches(&yes, &button("No", &["n"])));
    let no_accepts = v(json!({"title": "x"}));
    assert!(!matches(&s("x"), &no_accepts));
    assert!(matches(&v(json!(["a", "B"])), &s("b")));
    assert!(matches(&v(json!([1, 2])), &Value::int(2)));
    assert!(!matches(&v(json!([1, 2])), &s("1")));
    assert!(matches(&v(json!([1, 2])), &v(json!([1, 2]))));
    assert!(matches(&s("1"), &Value::int(1)));
    assert!(!matches(&s("a"), &s("A")));
    assert_eq!(
        to_display(&binary(BinOp::NotMatch, &s("n"), &yes).unwrap()),
        "true"
    );
}

#[test]
fn strict_equality() {
    assert!(!strict_eq(&Value::int(1), &s("1")));
    assert!(!strict_eq(&Value::int(1), &Value::float(1.0)));
    assert!(strict_eq(
        &v(json!({"a": [1, "x"]})),
        &v(json!({"a": [1, "x"]}))
    ));
    assert!(!strict_eq(&v(json!({"a": 1})), &v(json!({"a": 1, "b": 2}))));
}
