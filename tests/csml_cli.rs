//! The `botyard csml` commands, run as the real binary: the conformance protocol in batch and
//! `--case` modes, `validate` (human and `--json`), and `chat` over stdin.

use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn botyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_botyard"))
}

/// Run with `input` on stdin; (exit code, stdout, stderr).
fn run(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = botyard()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn botyard");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("botyard-csml-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_case(id: &str, csml: &str) -> Json {
    json!({"id": id, "kind": "run",
           "bot": {"flows": [{"name": "flow", "content": csml}], "default_flow": "flow"},
           "context": {"flow": "flow", "step": "start", "memories": {}, "metadata": {}, "hold": null},
           "event": {"content_type": "text", "content_value": "hi", "content": {"text": "hi"}}})
}

#[test]
fn test_batch_answers_every_line_in_order() {
    let lines = [
        run_case("a", "start:\n  say \"one\"\n").to_string(),
        String::new(),
        "not json".to_string(),
        json!({"id": 7, "kind": "nope"}).to_string(),
        json!({"id": "v", "kind": "validate", "syntax_only": true,
               "bot": {"flows": [{"name": "T", "content": "start:\n    say value as event\n"}],
                       "default_flow": "T"}})
        .to_string(),
        json!({"id": "m", "kind": "run"}).to_string(),
        run_case("b", "start:\n  remember x = event\n  hold\n").to_string(),
    ];
    let (code, out, _) = run(&["csml", "test"], &(lines.join("\n") + "\n"));
    assert_eq!(code, 0);
    let answers: Vec<Json> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 6, "one line per non-empty input line: {out}");
    assert_eq!(answers[0]["id"], "a");
    assert_eq!(
        answers[0]["messages"],
        json!([{"content_type": "text", "content": {"text": "one"}}])
    );
    assert_eq!(answers[0]["status"], "end");
    assert_eq!(answers[1]["id"], Json::Null);
    assert!(answers[1]["error"].is_string());
    assert_eq!(answers[2]["id"], 7);
    assert!(answers[2]["error"].is_string());
    assert_eq!(answers[3]["valid"], false);
    assert_eq!(answers[3]["errors"][0]["line"], 2);
    assert_eq!(answers[4]["id"], "m");
    assert!(answers[4]["error"].as_str().unwrap().contains("bot"));
    assert_eq!(answers[5]["status"], "hold");
    assert_eq!(answers[5]["memories"], json!([{"key": "x", "value": "hi"}]));
    assert_eq!(answers[5]["hold"]["command_index"], 1);
}

#[test]
fn test_batch_is_interactive() {
    // The harness sends the next case only after reading an answer: each must be flushed.
    let mut child = botyard()
        .args(["csml", "test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for i in 0..3 {
        let case = run_case(&format!("c{i}"), &format!("start:\n  say {i}\n"));
        writeln!(stdin, "{case}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let answer: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["id"], format!("c{i}"));
        assert_eq!(answer["messages"][0]["content"]["text"], i.to_string());
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn test_case_file_and_stdin() {
    let dir = temp_dir("case");
    let file = dir.join("case.json");
    let case = run_case("pretty", "start:\n  say 1 + 1\n");
    std::fs::write(&file, serde_json::to_string_pretty(&case).unwrap()).unwrap();
    let (code, out, _) = run(&["csml", "test", "--case", file.to_str().unwrap()], "");
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1);
    let answer: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["messages"][0]["content"]["text"], "2");

    let (code, out, _) = run(&["csml", "test", "--case", "-"], &case.to_string());
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Json>(out.trim()).unwrap()["id"],
        "pretty"
    );

    // A bot that fails at run time is still a printed result and exit 0.
    let fatal = run_case("f", "start:\n  say 1 / 0\n");
    let (code, out, _) = run(&["csml", "test", "--case", "-"], &fatal.to_string());
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Json>(out.trim()).unwrap()["status"],
        "error"
    );

    let (code, _, _) = run(&["csml", "test", "--case", "/nonexistent/case.json"], "");
    assert_ne!(code, 0);
}

#[test]
fn validate_human_and_json() {
    let dir = temp_dir("validate");
    std::fs::write(
        dir.join("main.csml"),
        "start:\n  say \"hi\"\n  goto flow other\n",
    )
    .unwrap();
    std::fs::write(dir.join("other.csml"), "start:\n  say \"x\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let (code, out, _) = run(&["csml", "validate", dir.to_str().unwrap()], "");
    assert_eq!(code, 1, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.ends_with("other.csml:2:7: expecting '\"' to end string"),
        "{out}"
    );
    assert!(out.contains("    say \"x\n"), "{out}");
    assert!(
        out.contains("\n          ^\n"),
        "caret under column 7: {out}"
    );

    let (code, out, _) = run(&["--json", "csml", "validate", dir.to_str().unwrap()], "");
    assert_eq!(code, 1);
    let v: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["flow"], "other");
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][0]["column"], 7);
    assert!(v["warnings"].is_array());

    std::fs::write(dir.join("other.csml"), "start:\n  say \"fixed\"\n").unwrap();
    let (code, out, _) = run(&["--json", "csml", "validate", dir.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Json>(out.trim()).unwrap()["valid"],
        true
    );
}

#[test]
fn chat_keeps_state_between_lines() {
    let dir = temp_dir("chat");
    std::fs::write(
        dir.join("main.csml"),
        "start:\n  say \"name?\"\n  hold\n  remember name = event\n  say Question(\"Hi {{name}}, coffee?\", buttons=[Button(\"Yes\"), Button(\"No\")])\n  hold\n  if (event match \"Yes\") { say Image(\"https://x/c.png\") } else { goto later@other }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("other.csml"),
        "start:\n  say \"o\"\n\nlater:\n  say \"later, {{name}} ({{_metadata.channel}})\"\n  say 1 / 0\n",
    )
    .unwrap();
    let input = "hello\nBob\nYes\nagain\nAnn\n{\"payload\": \"No\"}\n";
    let (code, out, _) = run(
        &[
            "csml",
            "chat",
            dir.to_str().unwrap(),
            "--metadata",
            "{\"channel\": \"cli\"}",
        ],
        input,
    );
    assert_eq!(code, 0);
    let expected = [
        "name?",
        "Hi Bob, coffee?",
        "[Yes] [No]",
        "<image: https://x/c.png>",
        "-- conversation ended --",
        "name?",
        "Hi Ann, coffee?",
        "[Yes] [No]",
        "later, Ann (cli)",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..expected.len()], &expected, "{out}");
    assert!(
        lines[expected.len()].starts_with("! error: [!] Int: Division by zero"),
        "{out}"
    );
    assert_eq!(lines[expected.len() + 1], "-- conversation ended --");
}
