//! The standard library called directly on values (spec §4–§5): methods of every kind,
//! builtins, components and the builder objects, through a small test [`Runtime`].

use std::sync::Arc;

use csml::ast::{ClosureDef, Pos};
use csml::json::{from_json, say_message, to_display, to_json};
use csml::stdlib::{
    Args, Fault, Runtime, call_builtin, call_custom_component, call_method, event_value,
    is_write_method,
};
use csml::value::{Closure, Kind, Map, Value};
use csml::{AppCall, Host, HttpRequest, HttpResponse, OfflineHost, SmtpRequest};
use serde_json::{Value as Json, json};

/// A host with the offline clock and generator, and scripted HTTP/App answers.
#[derive(Default)]
struct TestHost {
    offline: OfflineHost,
    http_reply: Option<HttpResponse>,
    requests: Vec<HttpRequest>,
    apps: Vec<AppCall>,
    mails: Vec<SmtpRequest>,
}

impl Host for TestHost {
    fn now_millis(&mut self) -> i64 {
        self.offline.now_millis
    }
    fn random_u64(&mut self) -> u64 {
        self.offline.random_u64()
    }
    fn http(&mut self, req: &HttpRequest) -> Result<HttpResponse, String> {
        self.requests.push(req.clone());
        self.http_reply
            .clone()
            .ok_or_else(|| "connection refused".to_string())
    }
    fn app(&mut self, call: &AppCall) -> Result<Json, String> {
        self.apps.push(call.clone());
        match call.name.as_str() {
            "echo" => Ok(call.args.clone()),
            "greet" => Ok(json!("Hello {{name}}")),
            _ => Err("Apps service: status code 404".into()),
        }
    }
    fn smtp(&mut self, req: &SmtpRequest) -> Result<(), String> {
        self.mails.push(req.clone());
        Ok(())
    }
}

type RustFn = Box<dyn FnMut(Vec<Value>) -> Value>;

struct Rt {
    host: TestHost,
    vars: Vec<&'static str>,
    components: serde_json::Map<String, Json>,
    native: bool,
    /// What a closure call computes (closures in these tests have empty bodies).
    closure: Option<RustFn>,
    /// The last `error_info` handed over.
    error_info: Option<Map>,
    /// The `calls` counter found in the shared closure scope at each scoped call.
    scope_seen: Vec<i64>,
}

impl Rt {
    fn new() -> Self {
        Rt {
            host: TestHost::default(),
            vars: vec!["known"],
            components: Default::default(),
            native: true,
            closure: None,
            error_info: None,
            scope_seen: Vec::new(),
        }
    }
}

impl Runtime for Rt {
    fn host(&mut self) -> &mut dyn Host {
        &mut self.host
    }
    fn call_closure(&mut self, closure: &Closure, args: Vec<Value>) -> Result<Value, Fault> {
        if args.len() < closure.def.params.len() {
            return Err(Fault::Fatal("function arguments are not valid".into()));
        }
        let f = self
            .closure
            .as_mut()
            .ok_or_else(|| Fault::Error("no closure support".into()))?;
        Ok(f(args))
    }
    fn call_closure_scoped(
        &mut self,
        closure: &Closure,
        args: Vec<Value>,
        scope: &mut Map,
    ) -> Result<Value, Fault> {
        let n = scope.get("calls").and_then(Value::as_int).unwrap_or(0);
        self.scope_seen.push(n);
        scope.insert("calls".into(), Value::int(n + 1));
        self.call_closure(closure, args)
    }
    fn exists(&self, name: &str) -> bool {
        self.vars.contains(&name)
    }
    fn custom_component(&self, name: &str) -> Option<&Json> {
        self.components.get(name)
    }
    fn native_components(&self) -> bool {
        self.native
    }
    fn position(&self) -> (&str, &str) {
        ("main", "start")
    }
    fn error_info(&mut self, info: Map) {
        self.error_info = Some(info);
    }
}

fn v(j: Json) -> Value {
    from_json(&j)
}

fn s(x: &str) -> Value {
    Value::string(x)
}

fn closure(params: &[&str]) -> Value {
    let def = ClosureDef {
        params: params.iter().map(|p| p.to_string()).collect(),
        body: vec![],
        pos: Pos::new(1, 1),
    };
    Value::from_kind(Kind::Closure(Arc::new(Closure {
        def: Arc::new(def),
        captured: Map::new(),
        flow: "main".into(),
    })))
}

/// Call a method; the result's string form, or the error text.
fn m(rt: &mut Rt, recv: &Value, name: &str, args: Vec<Value>) -> Result<String, String> {
    let mut r = recv.clone();
    match call_method(rt, &mut r, name, Args::positional(args)) {
        Ok(x) => Ok(to_display(&x)),
        Err(Fault::Error(e)) | Err(Fault::Fatal(e)) => Err(e),
    }
}

fn mv(rt: &mut Rt, recv: &Value, name: &str, args: Vec<Value>) -> Value {
    let mut r = recv.clone();
    call_method(rt, &mut r, name, Args::positional(args))
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn ok(x: &str) -> Result<String, String> {
    Ok(x.to_string())
}

fn err_prefix(r: Result<String, String>, prefix: &str) {
    match r {
        Err(e) => assert!(
            e.starts_with(prefix),
            "error {e:?} does not start with {prefix:?}"
        ),
        Ok(x) => panic!("expected error {prefix:?}, got {x:?}"),
    }
}

fn builtin(
    rt: &mut Rt,
    name: &str,
    pos: Vec<Value>,
    named: Vec<(&str, Value)>,
) -> Result<Value, String> {
    let args = Args {
        positional: pos,
        named: named.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    };
    match call_builtin(rt, name, args) {
        None => Err(format!("Unknown builtin [{name}]")),
        Some(Ok(x)) => Ok(x),
        Some(Err(Fault::Error(e))) | Some(Err(Fault::Fatal(e))) => Err(e),
    }
}

fn builtin_str(
    rt: &mut Rt,
    name: &str,
    pos: Vec<Value>,
    named: Vec<(&str, Value)>,
) -> Result<String, String> {
    builtin(rt, name, pos, named).map(|x| to_display(&x))
}

#[test]
fn generic_methods() {
    let rt = &mut Rt::new();
    assert_eq!(m(rt, &Value::null(), "type_of", vec![]), ok("Null"));
    assert_eq!(m(rt, &s("x"), "type_of", vec![]), ok("string"));
    assert_eq!(m(rt, &Value::float(2.5), "type_of", vec![]), ok("float"));
    assert_eq!(m(rt, &closure(&[]), "type_of", vec![]), ok("closure"));
    assert_eq!(
        m(rt, &s("t").with_tag("text"), "type_of", vec![]),
        ok("string")
    );
    assert_eq!(
        m(rt, &v(json!({})).with_tag("button"), "type_of", vec![]),
        ok("object")
    );
    assert_eq!(
        m(rt, &v(json!({"a": [1]})), "to_string", vec![]),
        ok(r#"{"a":[1]}"#)
    );
    assert_eq!(m(rt, &Value::null(), "to_string", vec![]), ok("Null"));
    assert_eq!(m(rt, &s("1e3"), "is_number", vec![]), ok("true"));
    assert_eq!(m(rt, &s("1e3"), "is_float", vec![]), ok("false"));
    assert_eq!(m(rt, &s("1.5"), "is_float", vec![]), ok("true"));
    assert_eq!(m(rt, &s("12"), "is_int", vec![]), ok("true"));
    assert_eq!(m(rt, &s("a"), "is_number", vec![]), ok("false"));
    assert_eq!(m(rt, &Value::int(1), "is_float", vec![]), ok("false"));
    assert_eq!(m(rt, &Value::int(1), "is_error", vec![]), ok("false"));
    let failed = Value::error_null("boom");
    assert_eq!(m(rt, &failed, "is_error", vec![]), ok("true"));
    assert_eq!(m(rt, &Value::int(1), "get_info", vec![]), ok("Null"));
    assert_eq!(
        m(rt, &failed, "get_info", vec![]),
        ok(r#"{"error":"boom"}"#)
    );
    assert_eq!(m(rt, &failed, "get_info", vec![s("error")]), ok("boom"));
    assert_eq!(
        m(rt, &failed, "get_info", vec![s("status")]),
        ok(r#"{"error":"[status] key does not exist"}"#)
    );
    assert_eq!(
        m(rt, &Value::int(1), "nope", vec![]),
        Err("[nope] is not a method of Int".into())
    );
    assert_eq!(
        m(rt, &Value::null(), "length", vec![]),
        Err("[length] is not a method of Null".into())
    );
    assert_eq!(
        m(rt, &Value::bool(true), "x", vec![]),
        Err("[x] is not a method of Boolean".into())
    );
    err_prefix(m(rt, &s("a"), "type_of", vec![s("x")]), "usage: ");
}

/// `(receiver, method, arguments, expected)`.
type StrCase = (
    &'static str,
    &'static str,
    Vec<Value>,
    Result<String, String>,
);

#[test]
fn string_methods() {
    let rt = &mut Rt::new();
    let cases: Vec<StrCase> = vec![
        ("héllo wörld", "length", vec![], ok("13")),
        ("héllo", "to_uppercase", vec![], ok("HÉLLO")),
        ("HÉLLO", "to_lowercase", vec![], ok("héllo")),
        ("élan vital", "capitalize", vec![], ok("Élan vital")),
        ("  a b \n", "trim", vec![], ok("a b")),
        ("  a ", "trim_left", vec![], ok("a ")),
        ("  a ", "trim_right", vec![], ok("  a")),
        ("Hello", "contains", vec![s("ell")], ok("true")),
        ("Hello", "contains", vec![s("ELL")], ok("false")),
        ("Hello", "starts_with", vec![s("He")], ok("true")),
        ("Hello", "ends_with", vec![s("lo")], ok("true")),
        ("abc123", "contains_regex", vec![s(r"\d+")], ok("true")),
        ("abc123", "starts_with_regex", vec![s(r"\d")], ok("false")),
        ("123abc", "starts_with_regex", vec![s(r"\d")], ok("true")),
        ("abc123", "ends_with_regex", vec![s(r"\d")], ok("true")),
        ("a-b-a", "match", vec![s("a")], ok(r#"["a","a"]"#)),
        ("a-b-a", "match", vec![s("z")], ok("Null")),
        (
            "a1b22c",
            "match_regex",
            vec![s(r"\d+")],
            ok(r#"["1","22"]"#),
        ),
        ("abc", "match_regex", vec![s(r"\d")], ok("Null")),
        ("ab", "match_regex", vec![s("x*")], ok(r#"["","",""]"#)),
        ("aaa", "replace", vec![s("a"), s("b")], ok("baa")),
        ("aaa", "replace_all", vec![s("a"), s("b")], ok("bbb")),
        (
            "john smith",
            "replace_regex",
            vec![s(r"(\w+) (\w+)"), s("$2 $1")],
            ok("smith john"),
        ),
        ("a,b,,c", "split", vec![s(",")], ok(r#"["a","b","","c"]"#)),
        ("abc", "split", vec![s("")], ok(r#"["","a","b","c",""]"#)),
        ("abc", "split", vec![s("x")], ok(r#"["abc"]"#)),
        (
            "héllo",
            "slice",
            vec![Value::int(1), Value::int(3)],
            ok("él"),
        ),
        ("héllo", "slice", vec![Value::int(-2)], ok("lo")),
        ("abc", "slice", vec![Value::int(-1), Value::int(-1)], ok("")),
        ("", "is_empty", vec![], ok("true")),
        ("a", "is_empty", vec![], ok("false")),
        ("a", "append", vec![s("b")], ok("ab")),
        ("me@x.io", "is_email", vec![], ok("true")),
        ("me@x", "is_email", vec![], ok("false")),
        ("42", "to_int", vec![], ok("42")),
        ("4.7", "to_int", vec![], ok("4")),
        ("3", "to_float", vec![], ok("3")),
        ("-4.5", "abs", vec![], ok("4.5")),
        ("4", "sqrt", vec![], ok("2")),
        ("2", "pow", vec![Value::int(10)], ok("1024")),
        ("1.23456", "precision", vec![Value::int(2)], ok("1.23")),
        (r#"{"a":[1,2]}"#, "from_json", vec![], ok(r#"{"a":[1,2]}"#)),
        ("a: 1", "to_json", vec![], ok(r#"{"a":1}"#)),
        (r#"{"b": true}"#, "to_json", vec![], ok(r#"{"b":true}"#)),
        (
            "a b&c/é",
            "encode_uri_component",
            vec![],
            ok("a%20b%26c%2F%C3%A9"),
        ),
        (
            "a%20b%26c%2F%C3%A9",
            "decode_uri_component",
            vec![],
            ok("a b&c/é"),
        ),
        (
            "https://mozilla.org/?x=шеллы",
            "encode_uri",
            vec![],
            ok("https://mozilla.org/?x=%D1%88%D0%B5%D0%BB%D0%BB%D1%8B"),
        ),
        (
            "https://mozilla.org/?x=%D1%88%D0%B5%D0%BB%D0%BB%D1%8B",
            "decode_uri",
            vec![],
            ok("https://mozilla.org/?x=шеллы"),
        ),
        (
            "<a href=\"x\">&",
            "encode_html_entities",
            vec![],
            ok("&lt;a href=\"x\"&gt;&amp;"),
        ),
        (
            "&lt;p&gt; &eacute; &#65;",
            "decode_html_entities",
            vec![],
            ok("<p> é A"),
        ),
    ];
    for (recv, name, args, want) in cases {
        assert_eq!(
            m(rt, &s(recv), name, args.clone()),
            want,
            "{recv:?}.{name}({args:?})"
        );
    }
    let errors: Vec<(&str, &str, Vec<Value>, &str)> = vec![
        (
            "",
            "slice",
            vec![Value::int(0)],
            "args need to be inferior to the string length",
        ),
        (
            "abc",
            "slice",
            vec![Value::int(3)],
            "args need to be inferior to the string length",
        ),
        (
            "abc",
            "slice",
            vec![Value::int(2), Value::int(1)],
            "end need to be superior to start",
        ),
        (
            "abc",
            "slice",
            vec![Value::int(0), Value::int(5)],
            "args need to be inferior to the string length",
        ),
        ("abc", "slice", vec![s("0")], "usage: "),
        (
            "abc",
            "to_int",
            vec![],
            "[to_int] the string must be of numeric type",
        ),
        (
            "abc",
            "abs",
            vec![],
            "[abs] the string must be of numeric type",
        ),
        (
            "{",
            "from_json",
            vec![],
            "[from_json] [!] string to object failed]",
        ),
        (
            "a: [",
            "to_json",
            vec![],
            "Invalid format string is not a valid yaml or xml",
        ),
        (
            "%FF",
            "decode_uri_component",
            vec![],
            "[decode_uri_component]",
        ),
        ("x", "contains_regex", vec![s("(")], "invalid regex"),
        ("x", "contains", vec![Value::int(1)], "usage: "),
        ("x", "append", vec![], "usage: "),
        ("x", "keys", vec![], "[keys] is not a method of String"),
    ];
    for (recv, name, args, want) in errors {
        err_prefix(m(rt, &s(recv), name, args), want);
    }
}

#[test]
fn xml_and_yaml() {
    let rt = &mut Rt::new();
    let x = mv(rt, &s(r#"<a id="1"><b>hi</b></a>"#), "to_json", vec![]);
    assert_eq!(to_json(&x), json!({"a": {"@id": 1, "b": "hi"}}));
    let o = v(json!({"w": null}));
    assert_eq!(m(rt, &o, "to_yaml", vec![]), ok("---\nw: ~\n"));
    let o = v(json!({"a": {"@id": 1, "b": ["x", "y"], "$text": "t"}}));
    assert_eq!(
        m(rt, &o, "to_xml", vec![]),
        ok(r#"<a id="1"><b>x</b><b>y</b>t</a>"#)
    );
}

#[test]
fn number_methods() {
    let rt = &mut Rt::new();
    let i = Value::int;
    let f = Value::float;
    let cases: Vec<(Value, &str, Vec<Value>, &str, &str)> = vec![
        (i(-7), "abs", vec![], "7", "int"),
        (f(-7.5), "abs", vec![], "7.5", "float"),
        (i(3), "floor", vec![], "3", "int"),
        (f(3.7), "floor", vec![], "3", "float"),
        (f(3.2), "ceil", vec![], "4", "float"),
        (f(10.5), "round", vec![], "11", "float"),
        (f(-2.5), "round", vec![], "-3", "float"),
        (i(2), "pow", vec![i(10)], "1024", "int"),
        (i(2), "pow", vec![f(0.5)], "1.4142135623730951", "float"),
        (i(2), "pow", vec![s("3")], "8", "int"),
        (i(2), "pow", vec![i(-1)], "0.5", "float"),
        (f(2.0), "pow", vec![i(2)], "4", "float"),
        (i(4), "sqrt", vec![], "2", "int"),
        (i(2), "sqrt", vec![], "1.4142135623730951", "float"),
        (f(4.0), "sqrt", vec![], "2", "float"),
        (i(0), "sin", vec![], "0", "int"),
        (i(0), "cos", vec![], "1", "int"),
        (i(0), "tan", vec![], "0", "int"),
        (i(5), "precision", vec![i(2)], "5", "int"),
        (f(1.23456), "precision", vec![i(2)], "1.23", "float"),
        (f(-4.7), "to_int", vec![], "-4", "int"),
        (i(3), "to_float", vec![], "3", "float"),
        (f(3.5), "to_float", vec![], "3.5", "float"),
        (i(3), "type_of", vec![], "int", "string"),
    ];
    for (recv, name, args, want, ty) in cases {
        let mut r = recv.clone();
        let out = call_method(rt, &mut r, name, Args::positional(args.clone())).unwrap();
        assert_eq!(
            (to_display(&out).as_str(), out.kind_tag()),
            (want, ty),
            "{recv:?}.{name}({args:?})"
        );
    }
    err_prefix(m(rt, &i(2), "pow", vec![s("x")]), "usage: ");
    err_prefix(
        m(rt, &i(2), "length", vec![]),
        "[length] is not a method of Int",
    );
    err_prefix(m(rt, &f(2.0), "precision", vec![]), "usage: ");
}

#[test]
fn array_methods() {
    let rt = &mut Rt::new();
    let a = v(json!([1, "a", [2], null]));
    assert_eq!(m(rt, &a, "length", vec![]), ok("4"));
    assert_eq!(m(rt, &v(json!([])), "is_empty", vec![]), ok("true"));
    assert_eq!(m(rt, &a, "index_of", vec![s("a")]), ok("1"));
    assert_eq!(m(rt, &a, "index_of", vec![s("1")]), ok("-1"));
    assert_eq!(
        m(rt, &v(json!([1, 2, 1])), "find", vec![Value::int(1)]),
        ok("[1,1]")
    );
    assert_eq!(
        m(rt, &v(json!([1, 2])), "find", vec![Value::int(3)]),
        ok("[]")
    );
    assert_eq!(m(rt, &a, "join", vec![s("-")]), ok("1-a-[2]-Null"));
    err_prefix(m(rt, &a, "join", vec![Value::int(1)]), "usage: ");
    assert_eq!(
        m(rt, &v(json!([1, 2, 3])), "slice", vec![Value::int(1)]),
        ok("[2,3]")
    );
    assert_eq!(
        m(
            rt,
            &v(json!([1, 2, 3])),
            "slice",
            vec![Value::int(-2), Value::int(-1)]
        ),
        ok("[2]")
    );
    err_prefix(
        m(rt, &v(json!([])), "slice", vec![Value::int(0)]),
        "args need to be inferior to the array length",
    );
    assert_eq!(
        m(rt, &v(json!([1, 2, 3])), "reverse", vec![]),
        ok("[3,2,1]")
    );
    assert_eq!(
        m(rt, &v(json!([1])), "append", vec![v(json!([2, 3]))]),
        ok("[1,2,3]")
    );
    assert_eq!(
        m(rt, &v(json!([1, [2, [3]], 4])), "flatten", vec![]),
        ok("[1,2,[3],4]")
    );
    assert_eq!(
        m(rt, &v(json!([])), "init", vec![Value::int(3)]),
        ok("[null,null,null]")
    );
    let shuffled = mv(rt, &v(json!([1, 2, 3, 4, 5])), "shuffle", vec![]);
    let mut got: Vec<i64> = shuffled
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_int().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    let pick = mv(rt, &v(json!([7, 8])), "one_of", vec![])
        .as_int()
        .unwrap();
    assert!(pick == 7 || pick == 8);
    err_prefix(m(rt, &v(json!([])), "one_of", vec![]), "[one_of]");
    err_prefix(m(rt, &a, "keys", vec![]), "[keys] is not a method of Array");
}

#[test]
fn array_write_methods() {
    let rt = &mut Rt::new();
    let mut a = v(json!([1, 2]));
    let call = |rt: &mut Rt, a: &mut Value, name: &str, args: Vec<Value>| {
        call_method(rt, a, name, Args::positional(args))
            .map(|x| to_display(&x))
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(call(rt, &mut a, "push", vec![Value::int(3)]), ok("Null"));
    assert_eq!(to_display(&a), "[1,2,3]");
    assert_eq!(call(rt, &mut a, "pop", vec![]), ok("3"));
    assert_eq!(
        call(rt, &mut a, "insert_at", vec![Value::int(0), s("x")]),
        ok("Null")
    );
    assert_eq!(
        call(rt, &mut a, "insert_at", vec![Value::int(3), s("end")]),
        ok("Null")
    );
    assert_eq!(to_display(&a), r#"["x",1,2,"end"]"#);
    assert_eq!(call(rt, &mut a, "remove_at", vec![Value::int(1)]), ok("1"));
    assert_eq!(to_display(&a), r#"["x",2,"end"]"#);
    let e = |r: Result<String, String>| r.unwrap_err();
    assert!(
        e(call(rt, &mut a, "insert_at", vec![Value::int(-1), s("x")]))
            .contains("index must be positive. Udage: array[1]")
    );
    assert!(
        e(call(rt, &mut a, "insert_at", vec![Value::int(9), s("x")]))
            .contains("index must be lower than or equal to array.length()")
    );
    assert!(
        e(call(rt, &mut a, "remove_at", vec![Value::int(3)]))
            .contains("index must be lower than or equal to array.length()")
    );
    let mut empty = v(json!([]));
    assert!(e(call(rt, &mut empty, "pop", vec![])).contains("[pop] Cannot pop if array is empty"));
    for (name, write) in [
        ("push", true),
        ("pop", true),
        ("insert_at", true),
        ("remove_at", true),
        ("length", false),
        ("map", false),
    ] {
        assert_eq!(is_write_method(&a, name), write, "{name}");
    }
}

#[test]
fn closures_map_filter_reduce() {
    let rt = &mut Rt::new();
    let a = v(json!([1, 2, 3]));
    rt.closure = Some(Box::new(|args: Vec<Value>| {
        let x = args[0].as_int().unwrap();
        Value::int(x * 10 + args.get(1).and_then(Value::as_int).unwrap_or(0))
    }));
    assert_eq!(m(rt, &a, "map", vec![closure(&["x"])]), ok("[10,20,30]"));
    // One map call shares one closure scope across its iterations.
    assert_eq!(std::mem::take(&mut rt.scope_seen), vec![0, 1, 2]);
    assert_eq!(
        m(rt, &a, "map", vec![closure(&["x", "i"])]),
        ok("[10,21,32]")
    );
    err_prefix(m(rt, &a, "map", vec![closure(&["a", "b", "c"])]), "[map]");
    err_prefix(m(rt, &a, "map", vec![Value::int(1)]), "usage: ");
    rt.closure = Some(Box::new(|args: Vec<Value>| {
        Value::bool(args[0].as_int().unwrap() % 2 == 1)
    }));
    assert_eq!(m(rt, &a, "filter", vec![closure(&["x"])]), ok("[1,3]"));
    rt.closure = Some(Box::new(|args: Vec<Value>| {
        Value::int(args[0].as_int().unwrap() + args[1].as_int().unwrap())
    }));
    assert_eq!(
        m(
            rt,
            &a,
            "reduce",
            vec![Value::int(100), closure(&["acc", "x"])]
        ),
        ok("106")
    );
    err_prefix(m(rt, &a, "reduce", vec![closure(&["acc", "x"])]), "usage: ");
}

#[test]
fn object_methods() {
    let rt = &mut Rt::new();
    let o = v(json!({"a": 1, "b": [2]}));
    assert_eq!(m(rt, &o, "keys", vec![]), ok(r#"["a","b"]"#));
    assert_eq!(m(rt, &o, "values", vec![]), ok("[1,[2]]"));
    assert_eq!(m(rt, &o, "length", vec![]), ok("2"));
    assert_eq!(m(rt, &v(json!({})), "is_empty", vec![]), ok("true"));
    assert_eq!(m(rt, &o, "contains", vec![s("a")]), ok("true"));
    assert_eq!(m(rt, &o, "get", vec![s("b")]), ok("[2]"));
    assert_eq!(m(rt, &o, "get", vec![s("z")]), ok("Null"));
    assert_eq!(m(rt, &o, "to_string", vec![]), ok(r#"{"a":1,"b":[2]}"#));
    let mut w = o.clone();
    call_method(
        rt,
        &mut w,
        "insert",
        Args::positional(vec![s("c"), Value::int(3)]),
    )
    .unwrap();
    call_method(
        rt,
        &mut w,
        "assign",
        Args::positional(vec![v(json!({"a": 0, "d": 4}))]),
    )
    .unwrap();
    assert_eq!(to_display(&w), r#"{"a":0,"b":[2],"c":3,"d":4}"#);
    let removed = call_method(rt, &mut w, "remove", Args::positional(vec![s("b")])).unwrap();
    assert_eq!(to_display(&removed), "[2]");
    assert_eq!(to_display(&w), r#"{"a":0,"c":3,"d":4}"#);
    call_method(rt, &mut w, "clear_values", Args::default()).unwrap();
    assert_eq!(to_display(&w), r#"{"a":null,"c":null,"d":null}"#);
    for (name, write) in [
        ("insert", true),
        ("assign", true),
        ("remove", true),
        ("clear_values", true),
        ("keys", false),
    ] {
        assert_eq!(is_write_method(&o, name), write, "{name}");
    }
    assert!(is_write_method(&v(json!({})).with_tag("button"), "insert"));
    err_prefix(
        m(rt, &o, "push", vec![Value::int(1)]),
        "[push] is not a method of Object",
    );
}

#[test]
fn builtins() {
    let rt = &mut Rt::new();
    let pick = builtin(rt, "OneOf", vec![v(json!(["a", "b"]))], vec![]).unwrap();
    assert!(matches!(pick.as_str(), Some("a" | "b")));
    assert!(
        builtin(rt, "OneOf", vec![Value::int(1)], vec![])
            .unwrap_err()
            .starts_with("OneOf builtin expects one value of type Array")
    );
    assert!(builtin(rt, "OneOf", vec![v(json!([]))], vec![]).is_err());
    assert_eq!(
        builtin(rt, "Shuffle", vec![v(json!([1]))], vec![]).map(|x| to_display(&x)),
        Ok("[1]".into())
    );
    assert_eq!(
        builtin_str(rt, "Length", vec![s("héllo wörld")], vec![]),
        ok("13")
    );
    assert_eq!(
        builtin_str(rt, "Length", vec![v(json!([1, 2]))], vec![]),
        ok("2")
    );
    assert!(builtin(rt, "Length", vec![Value::int(1)], vec![]).is_err());
    assert_eq!(
        builtin_str(rt, "Find", vec![s("ÉT")], vec![("in", s("L'été"))]),
        ok("true")
    );
    assert_eq!(
        builtin_str(rt, "Find", vec![s("x"), s("abc")], vec![]),
        ok("false")
    );
    assert_eq!(
        builtin_str(
            rt,
            "Find",
            vec![s("A")],
            vec![("in", s("abc")), ("case_sensitive", Value::bool(true))]
        ),
        ok("true")
    );
    let r = builtin(rt, "Random", vec![], vec![]).unwrap();
    assert!(matches!(r.kind, Kind::Float(f) if (0.0..1.0).contains(&f)));
    let fl = builtin(rt, "Floor", vec![Value::float(3.7)], vec![]).unwrap();
    assert_eq!((to_display(&fl), fl.kind_tag()), ("3".to_string(), "float"));
    assert!(builtin(rt, "Floor", vec![Value::int(3)], vec![]).is_err());
    for arg in [vec![], vec![s("v4")], vec![s("v1")]] {
        let u = builtin(rt, "UUID", arg.clone(), vec![]).unwrap();
        let u = u.as_str().unwrap().to_string();
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(u, u.to_lowercase());
        let version = if arg.first().and_then(Value::as_str) == Some("v1") {
            '1'
        } else {
            '4'
        };
        assert_eq!(u.chars().nth(14), Some(version), "{u}");
    }
    assert!(builtin(rt, "UUID", vec![s("v3")], vec![]).is_err());
    let t = builtin(rt, "Time", vec![], vec![]).unwrap();
    assert_eq!(say_message(&t).content_type, "time");
    assert_eq!(to_json(&t), json!({"milliseconds": 1_700_000_000_000i64}));
    assert_eq!(
        builtin_str(rt, "Exists", vec![s("known")], vec![]),
        ok("true")
    );
    assert_eq!(
        builtin_str(rt, "Exists", vec![s("unknown")], vec![]),
        ok("false")
    );
    assert!(builtin(rt, "Exists", vec![Value::int(1)], vec![]).is_err());
    assert_eq!(
        builtin_str(
            rt,
            "Object",
            vec![],
            vec![("a", Value::int(1)), ("b", s("x"))]
        ),
        ok(r#"{"a":1,"b":"x"}"#)
    );
    assert!(builtin(rt, "Object", vec![Value::int(1)], vec![]).is_err());
    let d = builtin(
        rt,
        "Debug",
        vec![Value::int(1), v(json!({"a": null})), Value::null()],
        vec![],
    )
    .unwrap();
    let msg = say_message(&d);
    assert_eq!(
        (msg.content_type.as_str(), msg.content),
        ("debug", json!({"args": ["1", r#"{"a":null}"#, "Null"]}))
    );
    assert!(call_builtin(rt, "Payload", Args::default()).is_none());
    assert!(call_builtin(rt, "Or", Args::default()).is_none());
}

fn comp(
    rt: &mut Rt,
    name: &str,
    pos: Vec<Value>,
    named: Vec<(&str, Value)>,
) -> Result<(String, Json), String> {
    builtin(rt, name, pos, named).map(|x| {
        let msg = say_message(&x);
        (msg.content_type, msg.content)
    })
}

#[test]
fn native_components() {
    let rt = &mut Rt::new();
    assert_eq!(
        comp(rt, "Text", vec![s("hi")], vec![]),
        Ok(("text".into(), json!({"text": "hi"})))
    );
    assert_eq!(
        builtin(rt, "Text", vec![s("hi")], vec![]).unwrap().tag(),
        "text"
    );
    assert_eq!(
        builtin(rt, "Text", vec![Value::int(42)], vec![]).unwrap_err(),
        "Type Error expecting String type but Number type was found"
    );
    assert_eq!(
        builtin(rt, "Button", vec![Value::int(4)], vec![]).unwrap_err(),
        "Type Error expecting String type but Number type was found"
    );
    assert_eq!(
        comp(rt, "Typing", vec![Value::int(2)], vec![]),
        Ok(("typing".into(), json!({"duration": 2})))
    );
    assert_eq!(
        comp(rt, "Wait", vec![Value::float(1.5)], vec![]),
        Ok(("wait".into(), json!({"duration": 1.5})))
    );
    assert_eq!(
        comp(rt, "Url", vec![s("https://x.io")], vec![]),
        Ok((
            "url".into(),
            json!({"url": "https://x.io", "text": "https://x.io", "title": "https://x.io"})
        ))
    );
    assert_eq!(
        comp(rt, "Url", vec![s("u")], vec![("text", s("t"))]),
        Ok(("url".into(), json!({"url": "u", "text": "t", "title": "u"})))
    );
    for c in ["Image", "Video", "Audio", "File"] {
        assert_eq!(
            comp(rt, c, vec![s("u")], vec![]),
            Ok((c.to_lowercase(), json!({"url": "u"})))
        );
    }
    assert_eq!(
        comp(rt, "Button", vec![s("ok")], vec![]),
        Ok((
            "button".into(),
            json!({"title": "ok", "payload": "ok", "accepts": ["ok", "ok"]})
        ))
    );
    assert_eq!(
        comp(
            rt,
            "Button",
            vec![s("Yes")],
            vec![("payload", s("Y")), ("accepts", v(json!(["y"])))]
        ),
        Ok((
            "button".into(),
            json!({"title": "Yes", "payload": "Y", "accepts": ["y", "Yes", "Y"]})
        ))
    );
    assert_eq!(
        comp(
            rt,
            "Button",
            vec![s("a")],
            vec![("accepts", s("x")), ("button_type", s("quick_reply"))]
        ),
        Ok((
            "button".into(),
            json!({"title": "a", "payload": "a", "accepts": ["x", "a", "a"], "button_type": "quick_reply"})
        ))
    );
    // Once an argument is named only parameter 0 is positional.
    assert_eq!(
        builtin(
            rt,
            "Button",
            vec![s("a"), s("p")],
            vec![("accepts", v(json!([])))]
        )
        .unwrap_err(),
        "to many arguments"
    );
    assert_eq!(
        builtin(rt, "Image", vec![s("a"), s("b")], vec![]).unwrap_err(),
        "to many arguments"
    );
    assert_eq!(
        builtin(rt, "Button", vec![], vec![("payload", s("p"))]).unwrap_err(),
        "title is a required parameter"
    );
    let buttons = v(json!([])).plain();
    let b1 = builtin(rt, "Button", vec![s("a")], vec![]).unwrap();
    let b2 = builtin(rt, "Button", vec![s("b")], vec![("payload", s("B"))]).unwrap();
    let _ = buttons;
    assert_eq!(
        comp(
            rt,
            "Question",
            vec![],
            vec![
                ("title", s("Q?")),
                ("buttons", Value::array(vec![b1.clone(), b2]))
            ]
        ),
        Ok((
            "question".into(),
            json!({"title": "Q?", "buttons": [
            {"content_type": "button", "content": {"title": "a", "payload": "a", "accepts": ["a", "a"]}},
            {"content_type": "button", "content": {"title": "b", "payload": "B", "accepts": ["b", "B"]}}]})
        ))
    );
    assert_eq!(
        comp(
            rt,
            "Question",
            vec![],
            vec![("buttons", Value::array(vec![]))]
        ),
        Ok(("question".into(), json!({"buttons": []})))
    );
    assert_eq!(
        builtin(rt, "Question", vec![s("Q")], vec![]).unwrap_err(),
        "buttons is a required parameter"
    );
    assert_eq!(
        comp(rt, "Card", vec![s("c1")], vec![("subtitle", s("s"))]),
        Ok(("card".into(), json!({"title": "c1", "subtitle": "s"})))
    );
    let card = builtin(rt, "Card", vec![s("c1")], vec![]).unwrap();
    assert_eq!(
        comp(rt, "Carousel", vec![Value::array(vec![card])], vec![]),
        Ok((
            "carousel".into(),
            json!({"cards": [{"content_type": "card", "content": {"title": "c1"}}]})
        ))
    );
    rt.native = false;
    assert!(call_builtin(rt, "Text", Args::positional(vec![s("x")])).is_none());
}

#[test]
fn custom_components_and_add() {
    let rt = &mut Rt::new();
    rt.components.insert(
        "Hero".into(),
        json!({"params": [
            {"name": {"required": true, "type": "String"}},
            {"greeting": {"type": "String", "default_value": [{"$_set": "Hello "}, {"$_get": "name"}]}},
            {"tags": {"type": "Array", "add_value": [{"$_set": ["hero"]}]}},
            {"size": {"type": "Number", "default_value": [{"$_set": 2}], "add_value": [{"$_set": 1}]}},
            {"flags": {"type": "Object"}},
            {"a": {"type": "String", "default_value": [{"$_get": "b"}]}},
            {"b": {"type": "String", "default_value": [{"$_get": "a"}]}}
        ]}),
    );
    rt.components.insert(
        "Simple".into(),
        json!({"params": [{"x": {"type": "Number", "default_value": [{"$_set": 1}]}}]}),
    );
    let call = |rt: &mut Rt, name: &str, pos: Vec<Value>, named: Vec<(&str, Value)>| {
        let args = Args {
            positional: pos,
            named: named.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        call_custom_component(rt, name, args).map_err(|e| match e {
            Fault::Error(e) | Fault::Fatal(e) => e,
        })
    };
    let out = call(rt, "Simple", vec![], vec![]).unwrap();
    assert_eq!(
        (out.tag(), to_json(&out)),
        ("Component.simple", json!({"x": 1}))
    );
    assert_eq!(say_message(&out).content_type, "Component.simple");
    let out = call(
        rt,
        "Simple",
        vec![Value::int(5)],
        vec![("extra", Value::bool(true))],
    )
    .unwrap();
    assert_eq!(to_json(&out), json!({"x": 5, "extra": true}));
    err_prefix(
        call(rt, "Simple", vec![s("5")], vec![]).map(|x| to_display(&x)),
        "Type Error expecting Number type but String type was found",
    );
    err_prefix(
        call(rt, "Hero", vec![], vec![]).map(|x| to_display(&x)),
        "name is a required parameter",
    );
    err_prefix(
        call(rt, "Hero", vec![s("Bob")], vec![]).map(|x| to_display(&x)),
        "circular reference",
    );
    let out = call(
        rt,
        "Hero",
        vec![s("Bob")],
        vec![("a", s("x")), ("tags", s("t"))],
    )
    .unwrap();
    assert_eq!(
        to_json(&out),
        json!({"name": "Bob", "greeting": "Hello Bob", "tags": ["t", "hero"], "size": 3, "a": "x", "b": "x"})
    );
    assert_eq!(
        call(rt, "Nope", vec![], vec![]).unwrap_err(),
        "function does not exist for component"
    );
    err_prefix(
        call(rt, "Simple", vec![Value::int(1), Value::int(2)], vec![]).map(|x| to_display(&x)),
        "to many arguments",
    );

    use csml::stdlib::add_values;
    let add = |l: Json, r: Json| {
        add_values(v(l), v(r))
            .map(|x| to_json(&x))
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(add(json!(null), json!(null)), Ok(json!(null)));
    assert_eq!(add(json!(false), json!(true)), Ok(json!(true)));
    assert_eq!(add(json!(1), json!(2.5)), Ok(json!(3.5)));
    assert_eq!(add(json!("a"), json!("b")), Ok(json!("ab")));
    assert_eq!(add(json!([1]), json!([2])), Ok(json!([1, 2])));
    assert_eq!(
        add(json!({"a": 1}), json!({"b": 2})),
        Ok(json!({"a": 1, "b": 2}))
    );
    assert_eq!(add(json!("s"), json!([1])), Ok(json!(["s", 1])));
    assert_eq!(add(json!([1]), json!("s")), Ok(json!([1, "s"])));
    assert!(
        add(json!(true), json!("s"))
            .unwrap_err()
            .contains("Type Error expecting String type but Bool type was found")
    );
    assert!(add(json!(i64::MAX), json!(1)).is_err());
}

fn ev(ct: &str, value: &str, content: Json, secure: bool) -> Value {
    event_value(ct, value, &content, secure)
}

#[test]
fn event_methods() {
    let rt = &mut Rt::new();
    let e = ev("text", "Hello There", json!({"text": "Hello There"}), false);
    assert_eq!(m(rt, &e, "get_type", vec![]), ok("text"));
    let content = mv(rt, &e, "get_content", vec![]);
    let msg = say_message(&content);
    assert_eq!(
        (msg.content_type.as_str(), msg.content),
        ("text", json!({"text": "Hello There"}))
    );
    assert_eq!(m(rt, &e, "is_secure", vec![]), ok("false"));
    assert_eq!(
        m(
            rt,
            &ev("text", "x", json!({"text": "x"}), true),
            "is_secure",
            vec![]
        ),
        ok("true")
    );
    assert_eq!(
        m(
            rt,
            &ev("text", "a@b.co", json!({"text": "a@b.co"}), false),
            "is_email",
            vec![]
        ),
        ok("true")
    );
    assert_eq!(m(rt, &e, "is_email", vec![]), ok("false"));
    assert_eq!(m(rt, &e, "to_uppercase", vec![]), ok("HELLO THERE"));
    assert_eq!(m(rt, &e, "type_of", vec![]), ok("string"));
    assert_eq!(m(rt, &e, "length", vec![]), ok("11"));
    err_prefix(
        m(rt, &e, "keys", vec![]),
        "[keys] is not a method of String",
    );
    let yes = builtin(
        rt,
        "Button",
        vec![s("Yes")],
        vec![("accepts", v(json!(["hello there"])))],
    )
    .unwrap();
    let no = builtin(rt, "Button", vec![s("No")], vec![]).unwrap();
    assert_eq!(
        m(rt, &e, "match", vec![no.clone(), yes.clone()]),
        ok(&to_display(&yes))
    );
    assert_eq!(m(rt, &e, "match", vec![no.clone()]), ok("Null"));
    assert_eq!(
        m(rt, &e, "match", vec![s("x"), s("Hello There")]),
        ok("Hello There")
    );
    assert_eq!(m(rt, &e, "match", vec![s("hello there")]), ok("Null"));
    assert_eq!(
        m(
            rt,
            &e,
            "match_array",
            vec![Value::array(vec![no, yes.clone()])]
        ),
        ok(&to_display(&yes))
    );
    let p = ev("payload", "YES_P", json!({"payload": "YES_P"}), false);
    assert_eq!(m(rt, &p, "to_lowercase", vec![]), ok("yes_p"));
    assert_eq!(m(rt, &p, "match", vec![s("YES_P")]), ok("YES_P"));
    let empty = ev("flow_trigger", "{}", json!({"flow_id": "x"}), false);
    assert_eq!(m(rt, &empty, "match", vec![s("x")]), ok("Null"));
    assert!(!is_write_method(&e, "push"));
}

#[test]
fn http_builder_and_send() {
    let rt = &mut Rt::new();
    let b = builtin(
        rt,
        "HTTP",
        vec![s("https://api.x.io/v1")],
        vec![("timeout", Value::int(3))],
    )
    .unwrap();
    assert_eq!(b.tag(), "http");
    assert_eq!(
        to_json(&b),
        json!({"url": "https://api.x.io/v1", "method": "get", "header": {"Content-Type": "application/json",
            "Accept": "application/json,text/*", "User-Agent": "csml/v1"}, "timeout": 3})
    );
    assert_eq!(m(rt, &b, "type_of", vec![]), ok("object"));
    assert_eq!(
        m(rt, &b, "keys", vec![]),
        ok(r#"["url","method","header","timeout"]"#)
    );
    let b = mv(rt, &b, "set", vec![v(json!({"X-Num": 1}))]);
    let b = mv(rt, &b, "query", vec![v(json!({"q": "a b", "n": 2}))]);
    let b = mv(rt, &b, "auth", vec![s("user"), s("pass")]);
    let b = mv(rt, &b, "post", vec![v(json!({"k": [1]}))]);
    assert_eq!(
        to_json(&b)["header"]["Authorization"],
        json!("Basic dXNlcjpwYXNz")
    );
    assert_eq!(to_json(&b)["header"]["X-Num"], json!("1"));
    rt.host.http_reply = Some(HttpResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: json!({"ok": true}),
    });
    let mut recv = b.clone();
    let out = call_method(rt, &mut recv, "send", Args::default()).unwrap();
    assert_eq!(to_json(&out), json!({"ok": true}));
    assert_eq!(out.info_get("status").and_then(Value::as_int), Some(200));
    assert_eq!(
        to_json(out.info_get("headers").unwrap()),
        json!({"content-type": "application/json"})
    );
    let req = rt.host.requests.last().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "https://api.x.io/v1?q=a%20b&n=2");
    assert_eq!(req.body, Some(json!({"k": [1]})));
    let g = mv(rt, &b, "get", vec![]);
    assert!(to_json(&g).get("body").is_none());
    for verb in ["put", "patch", "delete"] {
        let r = mv(rt, &b, verb, vec![v(json!([2]))]);
        assert_eq!(
            (to_json(&r)["method"].clone(), to_json(&r)["body"].clone()),
            (json!(verb), json!([2]))
        );
    }
    let d = mv(rt, &b, "delete", vec![]);
    assert_eq!(to_json(&d)["body"], json!({"k": [1]}));
    let insecure = mv(rt, &b, "disable_ssl_verify", vec![]);
    assert_eq!(to_json(&insecure)["disable_ssl_verify"], json!(true));
    // Builder methods return a new builder; the receiver is unchanged.
    assert_eq!(to_json(&b)["method"], json!("post"));
    rt.host.http_reply = Some(HttpResponse {
        status: 404,
        headers: vec![],
        body: json!("missing"),
    });
    let h = builtin(rt, "HTTP", vec![s("https://x.io")], vec![]).unwrap();
    let r = m(rt, &h, "send", vec![]);
    assert_eq!(r, Err("https://x.io: status code 404".into()));
    let info = Value::object(rt.error_info.take().unwrap());
    assert_eq!(
        to_json(&info),
        json!({"status": 404, "headers": {}, "body": "missing"})
    );
    rt.host.http_reply = None;
    assert_eq!(m(rt, &b, "send", vec![]), Err("connection refused".into()));
    assert!(
        builtin(rt, "HTTP", vec![Value::int(1)], vec![])
            .unwrap_err()
            .starts_with("usage: HTTP")
    );
    assert!(is_write_method(&b, "insert"));
    assert!(!is_write_method(&b, "post"));
}

#[test]
fn app_calls() {
    let rt = &mut Rt::new();
    let out = builtin(
        rt,
        "App",
        vec![s("echo")],
        vec![("a", Value::int(1)), ("b", v(json!([true])))],
    )
    .unwrap();
    assert_eq!(to_json(&out), json!({"a": 1, "b": [true]}));
    let call = rt.host.apps.last().unwrap();
    assert_eq!(
        (call.name.as_str(), call.flow.as_str(), call.step.as_str()),
        ("echo", "main", "start")
    );
    let out = builtin(rt, "Fn", vec![], vec![("fn_id", s("echo")), ("x", s("y"))]).unwrap();
    assert_eq!(to_json(&out), json!({"x": "y"}));
    // Decision (§5.8): plugin output is data, not interpolated.
    assert_eq!(
        builtin_str(rt, "App", vec![s("greet")], vec![]),
        ok("Hello {{name}}")
    );
    assert_eq!(
        builtin(rt, "App", vec![s("nope")], vec![]).unwrap_err(),
        "Apps service: status code 404"
    );
    assert_eq!(
        builtin(rt, "App", vec![s("echo"), Value::int(1)], vec![]).unwrap_err(),
        "to many arguments"
    );
    assert!(
        builtin(rt, "App", vec![], vec![])
            .unwrap_err()
            .starts_with("usage: ")
    );
    // Without an App host: the spec's "no endpoint" error.
    let call = AppCall {
        name: "x".into(),
        args: json!({}),
        flow: "f".into(),
        step: "s".into(),
    };
    assert_eq!(
        OfflineHost::default().app(&call),
        Err("App can not be called because apps_endpoint is not set in bot".into())
    );
}

#[test]
fn smtp_builder() {
    let rt = &mut Rt::new();
    let b = builtin(rt, "SMTP", vec![s("smtp.x.io")], vec![]).unwrap();
    assert_eq!(
        to_json(&b),
        json!({"smtp_server": "smtp.x.io", "port": 465, "tls": true})
    );
    err_prefix(
        m(rt, &b, "type_of", vec![]),
        "[type_of] is not a method of Object",
    );
    let email = v(json!({"from": "a@x.io", "to": "b@x.io", "subject": "s", "text": "t"}));
    err_prefix(
        m(rt, &b, "send", vec![email.clone()]),
        "username is missing",
    );
    let b = mv(rt, &b, "auth", vec![s("u"), s("p")]);
    let b = mv(rt, &b, "port", vec![Value::int(587)]);
    let b = mv(rt, &b, "tls", vec![Value::bool(false)]);
    let b = mv(rt, &b, "starttls", vec![Value::bool(true)]);
    let b = mv(rt, &b, "set_auth_mechanism", vec![s("PLAIN")]);
    err_prefix(
        m(
            rt,
            &b,
            "send",
            vec![v(json!({"from": "a@x.io", "to": "b@x.io"}))],
        ),
        "email text/html parameter is mandatory",
    );
    err_prefix(
        m(
            rt,
            &b,
            "send",
            vec![v(json!({"to": "b@x.io", "text": "t"}))],
        ),
        "email from parameter is mandatory",
    );
    assert_eq!(m(rt, &b, "send", vec![email]), ok("true"));
    let mail = rt.host.mails.last().unwrap();
    assert_eq!(mail.config["port"], json!(587));
    assert_eq!(mail.config["starttls"], json!(true));
    // The default host has no SMTP.
    let mut plain = OfflineHost::default();
    let req = SmtpRequest {
        config: json!({}),
        email: json!({}),
    };
    assert_eq!(plain.smtp(&req), Err("SMTP is not available".into()));
}

#[test]
fn time_methods() {
    let rt = &mut Rt::new();
    let t = builtin(rt, "Time", vec![], vec![]).unwrap();
    assert_eq!(m(rt, &t, "unix", vec![]), ok("1700000000000"));
    assert_eq!(m(rt, &t, "unix", vec![s("s")]), ok("1700000000"));
    assert_eq!(m(rt, &t, "format", vec![]), ok("2023-11-14T22:13:20.000Z"));
    let mut t2 = t.clone();
    let r = call_method(rt, &mut t2, "at", Args::positional(vec![Value::int(2021)])).unwrap();
    assert_eq!(m(rt, &r, "format", vec![]), ok("2021-01-01T01:00:00.000Z"));
    assert_eq!(m(rt, &t2, "format", vec![]), ok("2021-01-01T01:00:00.000Z"));
    let at =
        |rt: &mut Rt, args: Vec<i64>| m(rt, &t, "at", args.into_iter().map(Value::int).collect());
    err_prefix(at(rt, vec![2021, 2, 30]), "invalid date");
    assert_eq!(at(rt, vec![2021, 2, 3, 25]), ok("false"));
    let d = mv(
        rt,
        &t,
        "at",
        vec![
            Value::int(2021),
            Value::int(3),
            Value::int(28),
            Value::int(12),
            Value::int(53),
            Value::int(20),
            Value::int(123),
        ],
    );
    assert_eq!(m(rt, &d, "format", vec![]), ok("2021-03-28T12:53:20.123Z"));
    assert_eq!(
        m(rt, &d, "format", vec![s("%Y-%m-%d %H:%M")]),
        ok("2021-03-28 12:53")
    );
    err_prefix(m(rt, &d, "format", vec![s("%Q")]), "invalid time format");
    let later = mv(rt, &d, "add", vec![Value::int(3600)]);
    assert_eq!(
        m(rt, &later, "format", vec![]),
        ok("2021-03-28T13:53:20.123Z")
    );
    let earlier = mv(rt, &d, "sub", vec![Value::int(60)]);
    assert_eq!(
        m(rt, &earlier, "format", vec![]),
        ok("2021-03-28T12:52:20.123Z")
    );
    let paris = mv(rt, &d, "with_timezone", vec![s("Europe/Paris")]);
    assert_eq!(
        m(rt, &paris, "format", vec![]),
        ok("2021-03-28T14:53:20.123+02:00")
    );
    assert_eq!(
        m(rt, &d, "with_timezone", vec![s("Mars/Base")]),
        Err("invalid timezone Mars/Base".into())
    );
    for (text, want) in [
        ("2021", "2021-01-01T00:00:00.000Z"),
        ("2021-03", "2021-03-01T00:00:00.000Z"),
        ("2021-03-28", "2021-03-28T00:00:00.000Z"),
        ("2021-03-28T12", "2021-03-28T12:00:00.000Z"),
        ("2021-03-28T12:53", "2021-03-28T12:53:00.000Z"),
        ("2021-03-28T12:53:20", "2021-03-28T12:53:20.000Z"),
        ("2021-03-28T14:00:00+02:00", "2021-03-28T14:00:00.000+02:00"),
    ] {
        let p = mv(rt, &t, "parse", vec![s(text)]);
        assert_eq!(m(rt, &p, "format", vec![]), ok(want), "{text}");
    }
    let p = mv(rt, &t, "parse", vec![s("2021-03-28T14:00:00+02:00")]);
    assert_eq!(to_json(&p)["offset"], json!(7200));
    let p = mv(
        rt,
        &t,
        "parse",
        vec![s("28/03/2021 10:30"), s("%d/%m/%Y %H:%M")],
    );
    assert_eq!(m(rt, &p, "format", vec![]), ok("2021-03-28T10:30:00.000Z"));
    let p = mv(rt, &t, "parse", vec![s("28/03/2021"), s("%d/%m/%Y")]);
    assert_eq!(m(rt, &p, "format", vec![]), ok("2021-03-28T00:00:00.000Z"));
    err_prefix(m(rt, &t, "parse", vec![s("nope")]), "[parse]");
    err_prefix(
        m(rt, &t, "type_of", vec![]),
        "[type_of] is not a method of Object",
    );
    for (name, write) in [
        ("at", true),
        ("add", true),
        ("sub", true),
        ("with_timezone", true),
        ("unix", true),
        ("format", false),
        ("parse", false),
    ] {
        assert_eq!(is_write_method(&t, name), write, "{name}");
    }
}

#[test]
fn crypto_base64_hex() {
    let rt = &mut Rt::new();
    let c = builtin(rt, "Crypto", vec![s("Hello")], vec![]).unwrap();
    let h = mv(rt, &c, "create_hash", vec![s("sha256")]);
    assert_eq!(h.tag(), "crypto");
    assert_eq!(
        m(rt, &h, "digest", vec![s("hex")]),
        ok("185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969")
    );
    let h = mv(rt, &c, "create_hash", vec![s("MD5")]);
    assert_eq!(
        m(rt, &h, "digest", vec![s("hex")]),
        ok("8b1a9953c4611296a827abf8c47804d7")
    );
    assert_eq!(
        m(rt, &h, "digest", vec![s("base64")]),
        ok("ixqZU8RhEpaoJ6v4xHgE1w==")
    );
    for alg in [
        "sha1",
        "sha384",
        "sha512",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
        "shake_128",
        "shake_256",
        "ripemd160",
        "sm3",
    ] {
        let h = mv(rt, &c, "create_hash", vec![s(alg)]);
        assert!(m(rt, &h, "digest", vec![s("hex")]).is_ok(), "{alg}");
    }
    let h = mv(rt, &c, "create_hash", vec![s("sha1")]);
    assert_eq!(
        m(rt, &h, "digest", vec![s("hex")]),
        ok("f7ff9e8b7bb2e09b70935a5d785e0cc5d9d0abf0")
    );
    err_prefix(
        m(rt, &c, "create_hash", vec![s("Sha256")]),
        "'Sha256' Invalid Algorithm",
    );
    err_prefix(
        m(rt, &c, "create_hash", vec![s("whirlpool")]),
        "'whirlpool' Invalid Algorithm",
    );
    // RFC 4231 test case 2.
    let c = builtin(
        rt,
        "Crypto",
        vec![s("what do ya want for nothing?")],
        vec![],
    )
    .unwrap();
    let mac = mv(rt, &c, "create_hmac", vec![s("sha256"), s("Jefe")]);
    assert_eq!(
        m(rt, &mac, "digest", vec![s("hex")]),
        ok("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    err_prefix(
        m(rt, &c, "create_hmac", vec![s("shake_128"), s("k")]),
        "'shake_128' Invalid Algorithm",
    );
    err_prefix(
        m(rt, &c, "type_of", vec![]),
        "[type_of] is not a method of Object",
    );

    let b = builtin(rt, "Base64", vec![s("héllo")], vec![]).unwrap();
    assert_eq!(m(rt, &b, "encode", vec![]), ok("aMOpbGxv"));
    let d = builtin(rt, "Base64", vec![s("aMOpbGxv")], vec![]).unwrap();
    assert_eq!(m(rt, &d, "decode", vec![]), ok("héllo"));
    let cod = builtin(rt, "Base64", vec![s("%%%")], vec![]).unwrap();
    err_prefix(m(rt, &cod, "decode", vec![]), "Base64 invalid value: ");
    err_prefix(
        builtin(rt, "Base64", vec![Value::int(1)], vec![]).map(|x| to_display(&x)),
        "usage: HTTP",
    );
    let x = builtin(rt, "Hex", vec![s("hi")], vec![]).unwrap();
    assert_eq!(m(rt, &x, "encode", vec![]), ok("6869"));
    let cod = builtin(rt, "Hex", vec![s("6869")], vec![]).unwrap();
    assert_eq!(m(rt, &cod, "decode", vec![]), ok("hi"));
    let cod = builtin(rt, "Hex", vec![s("zz")], vec![]).unwrap();
    err_prefix(m(rt, &cod, "decode", vec![]), "Hex invalid value: ");
}

#[test]
fn jwt_sign_decode_verify() {
    let rt = &mut Rt::new();
    let now_s = 1_700_000_000i64;
    let claims = v(json!({"sub": "1234567890", "name": "John Doe", "iat": 1516239022}));
    let j = builtin(rt, "JWT", vec![claims], vec![]).unwrap();
    // The jwt.io example claims (claims keys sorted, header typ then alg), checked against Python hmac.
    let token = m(rt, &j, "sign", vec![s("HS256"), s("your-256-bit-secret")]).unwrap();
    assert_eq!(
        token,
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.AcEGBRSPsmXJUzuoLfM-z2JTumSEjCNAW4Fzjl0wVgM"
    );
    let t = builtin(rt, "JWT", vec![s(&token)], vec![]).unwrap();
    assert_eq!(
        m(rt, &t, "decode", vec![s("HS256"), s("your-256-bit-secret")]),
        Err("Invalid JWT decode MissingRequiredClaim(\"exp\")".into())
    );
    let live = builtin(
        rt,
        "JWT",
        vec![v(
            json!({"exp": now_s + 600, "iss": "me", "aud": ["a", "b"]}),
        )],
        vec![],
    )
    .unwrap();
    let tok = m(
        rt,
        &live,
        "sign",
        vec![s("HS512"), s("k"), v(json!({"kid": "7"}))],
    )
    .unwrap();
    let t = builtin(rt, "JWT", vec![s(&tok)], vec![]).unwrap();
    let out = mv(rt, &t, "decode", vec![s("HS512"), s("k")]);
    assert_eq!(
        to_json(&out),
        json!({"header": {"typ": "JWT", "alg": "HS512", "kid": "7"},
        "payload": {"aud": ["a", "b"], "exp": now_s + 600, "iss": "me"}})
    );
    assert_eq!(
        m(rt, &t, "decode", vec![s("HS512"), s("wrong")]),
        Err("Invalid JWT decode InvalidSignature".into())
    );
    assert_eq!(
        m(rt, &t, "decode", vec![s("HS256"), s("k")]),
        Err("Invalid JWT decode InvalidAlgorithm".into())
    );
    assert!(
        m(
            rt,
            &t,
            "verify",
            vec![v(json!({"iss": "me", "aud": ["b"]})), s("HS512"), s("k")]
        )
        .is_ok()
    );
    assert_eq!(
        m(
            rt,
            &t,
            "verify",
            vec![v(json!({"iss": "you"})), s("HS512"), s("k")]
        ),
        Err("Invalid JWT verify InvalidIssuer".into())
    );
    assert_eq!(
        m(
            rt,
            &t,
            "verify",
            vec![v(json!({"aud": ["z"]})), s("HS512"), s("k")]
        ),
        Err("Invalid JWT verify InvalidAudience".into())
    );
    let old = builtin(rt, "JWT", vec![v(json!({"exp": now_s - 3600}))], vec![]).unwrap();
    let tok = m(rt, &old, "sign", vec![s("HS384"), s("k")]).unwrap();
    let t = builtin(rt, "JWT", vec![s(&tok)], vec![]).unwrap();
    assert_eq!(
        m(rt, &t, "decode", vec![s("HS384"), s("k")]),
        Err("Invalid JWT decode ExpiredSignature".into())
    );
    assert!(
        m(
            rt,
            &t,
            "verify",
            vec![v(json!({"validate_exp": false})), s("HS384"), s("k")]
        )
        .is_ok()
    );
    assert!(
        m(
            rt,
            &t,
            "verify",
            vec![v(json!({"leeway": 7200})), s("HS384"), s("k")]
        )
        .is_ok()
    );
    assert_eq!(
        m(rt, &j, "sign", vec![s("RS256"), s("k")]),
        Err("Invalid JWT encode InvalidAlgorithm".into())
    );
    let bad = builtin(rt, "JWT", vec![s("not.a.token")], vec![]).unwrap();
    assert_eq!(
        m(rt, &bad, "decode", vec![s("HS256"), s("k")]),
        Err("Invalid JWT decode InvalidToken".into())
    );
}

#[test]
fn deep_nesting_does_not_overflow() {
    let rt = &mut Rt::new();
    for text in [
        "[".repeat(200_000),
        "- ".repeat(100_000),
        "<a>".repeat(100_000),
        "{\"a\":".repeat(100_000),
    ] {
        err_prefix(m(rt, &s(&text), "to_json", vec![]), "Invalid format string");
    }
    // A value nested as deep as a script loop can make it.
    let mut deep = Value::int(1);
    for _ in 0..10_000 {
        deep = Value::array(vec![deep]);
    }
    assert_eq!(to_display(&deep).len(), 20_001);
    let copy = deep.clone();
    assert!(csml::ops::strict_eq(&deep, &copy));
    let mut obj = v(json!({"k": null}));
    obj.as_object_mut().unwrap().insert("k".into(), deep);
    err_prefix(
        m(rt, &obj, "to_yaml", vec![]),
        "[to_yaml] the object is nested too deeply",
    );
    err_prefix(
        m(rt, &obj, "to_xml", vec![]),
        "[to_xml] the object is nested too deeply",
    );
    let mut shallow = Value::int(1);
    for _ in 0..200 {
        shallow = Value::array(vec![shallow]);
    }
    let mut obj = v(json!({}));
    obj.as_object_mut().unwrap().insert("k".into(), shallow);
    assert!(m(rt, &obj, "to_yaml", vec![]).is_ok());
    assert!(m(rt, &obj, "to_xml", vec![]).is_ok());
    // serde_json trees drop recursively: the memory format is exercised at a depth a
    // 2 MiB debug thread can drop.
    let mut mid = Value::int(1);
    for _ in 0..2_000 {
        mid = Value::array(vec![mid]);
    }
    assert_eq!(mid.depth(), 2_000);
    let back = csml::json::from_memory(&csml::json::to_memory(&mid));
    assert!(csml::ops::strict_eq(&back, &mid));
}

#[test]
fn xml_to_json_keeps_the_root_and_round_trips() {
    let rt = &mut Rt::new();
    let doc = "<Order><fruit>Kiwi</fruit><shop>Market</shop></Order>";
    let x = mv(rt, &s(doc), "to_json", vec![]);
    assert_eq!(
        to_json(&x),
        json!({"Order": {"fruit": "Kiwi", "shop": "Market"}})
    );
    assert_eq!(m(rt, &x, "to_xml", vec![]), ok(doc));
    // Attributes, typed scalars, repeated children, mixed text, empty children, entities.
    let doc = r#"<?xml version="1.0"?>
        <!-- stock -->
        <p:list xmlns:p="urn:x" n="2">
          <qty>007</qty><qty>12</qty><ratio>-0.5</ratio><ok>true</ok>
          <note lang="fr">a &amp; b &#65;</note><gap/><raw><![CDATA[<i>]]></raw>
        </p:list>"#;
    let x = mv(rt, &s(doc), "to_json", vec![]);
    assert_eq!(
        to_json(&x),
        json!({"list": {"@n": 2, "qty": ["007", 12], "ratio": -0.5,
            "ok": true, "note": {"@lang": "fr", "$text": "a & b A"}, "raw": "<i>"}})
    );
    let x = mv(rt, &s("<empty/>"), "to_json", vec![]);
    assert_eq!(to_json(&x), json!({"empty": null}));
    assert_eq!(m(rt, &x, "to_xml", vec![]), ok("<empty/>"));
    // Not well-formed XML falls back to YAML, which reads it as a plain string.
    let x = mv(rt, &s("<a><b></a>"), "to_json", vec![]);
    assert_eq!(to_json(&x), json!("<a><b></a>"));
    let x = mv(rt, &s("<a/><b/>"), "to_json", vec![]);
    assert_eq!(to_json(&x), json!("<a/><b/>"));
}

#[test]
fn yaml_leaves_y_and_n_plain() {
    let rt = &mut Rt::new();
    let o = mv(rt, &s("---\nlat: 3.0\ny: 4.5\nn: N"), "to_json", vec![]);
    assert_eq!(to_json(&o), json!({"lat": 3.0, "y": 4.5, "n": "N"}));
    assert_eq!(
        m(rt, &o, "to_yaml", vec![]),
        ok("---\nlat: 3.0\ny: 4.5\nn: N\n")
    );
    // Other YAML 1.1 booleans and Core-schema words stay quoted so they read back as Strings.
    let o = v(json!({"Y": "yes", "off": "true", "k": "null"}));
    let out = m(rt, &o, "to_yaml", vec![]).unwrap();
    assert_eq!(out, "---\nY: \"yes\"\n\"off\": \"true\"\nk: \"null\"\n");
    let back = mv(rt, &s(&out), "to_json", vec![]);
    assert_eq!(to_json(&back), to_json(&o));
}

#[test]
fn custom_component_without_params() {
    let rt = &mut Rt::new();
    rt.components.insert("Chip".into(), json!({}));
    rt.components
        .insert("Broken".into(), json!({"params": "nope"}));
    rt.components.insert("Odd".into(), json!("text"));
    let out = call_custom_component(rt, "Chip", Args::default()).unwrap();
    assert_eq!((out.tag(), to_json(&out)), ("Component.chip", json!({})));
    assert_eq!(say_message(&out).content_type, "Component.chip");
    let named = Args {
        positional: vec![],
        named: vec![("color".into(), s("red"))],
    };
    let out = call_custom_component(rt, "Chip", named).unwrap();
    assert_eq!(to_json(&out), json!({"color": "red"}));
    let fails = |rt: &mut Rt, name: &str, args: Args| match call_custom_component(rt, name, args) {
        Err(Fault::Error(e)) | Err(Fault::Fatal(e)) => e,
        Ok(v) => panic!("{name} gave {}", to_display(&v)),
    };
    assert_eq!(
        fails(rt, "Chip", Args::positional(vec![s("x")])),
        "to many arguments"
    );
    for name in ["Broken", "Odd"] {
        assert!(
            fails(rt, name, Args::default()).starts_with("invalid component template"),
            "{name}"
        );
    }
}

#[test]
fn http_put_and_post_leave_their_body_on_the_receiver() {
    let rt = &mut Rt::new();
    let base = builtin(rt, "HTTP", vec![s("https://h.example")], vec![]).unwrap();
    for verb in ["put", "post"] {
        let mut recv = base.clone();
        let out = call_method(
            rt,
            &mut recv,
            verb,
            Args::positional(vec![v(json!({"n": 1}))]),
        )
        .unwrap();
        assert_eq!(
            (
                to_json(&out)["method"].clone(),
                to_json(&out)["body"].clone()
            ),
            (json!(verb), json!({"n": 1}))
        );
        // The receiver keeps its method but carries the body; not a write method, so a
        // remembered builder is not re-saved.
        assert_eq!(to_json(&recv)["method"], json!("get"));
        assert_eq!(to_json(&recv)["body"], json!({"n": 1}));
        assert_eq!(recv.tag(), "http");
        assert!(!is_write_method(&recv, verb));
        // Without a body nothing changes.
        let mut recv = base.clone();
        call_method(rt, &mut recv, verb, Args::default()).unwrap();
        assert!(to_json(&recv).get("body").is_none());
    }
    for verb in ["patch", "delete"] {
        let mut recv = base.clone();
        let out = call_method(rt, &mut recv, verb, Args::positional(vec![v(json!([1]))])).unwrap();
        assert_eq!(to_json(&out)["body"], json!([1]));
        assert_eq!(to_json(&recv), to_json(&base));
    }
}
