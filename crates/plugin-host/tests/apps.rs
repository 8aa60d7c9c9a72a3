//! The first-party apps, run from their built components: `echo` and `llm` (against a fake
//! OpenAI-compatible server on 127.0.0.1).

mod common;

use botyard_plugins::{AppContext, GuestError, PluginError};
use common::*;
use serde_json::json;

fn ctx() -> AppContext {
    AppContext {
        bot: "bot1".into(),
        participant: "user9".into(),
        channel: "ch1".into(),
        flow: "Default".into(),
        step: "start".into(),
    }
}

#[tokio::test]
async fn echo_returns_args_context_and_counts_per_org() {
    let host = host();
    let echo = load_first_party(&host, "echo").await;
    assert_eq!(echo.manifest().name, "echo");
    let a = install("org-a", &[("greeting", "hello")], &[]);
    let out = host
        .call_app(&echo, &a, &ctx(), &json!({"x": 1, "s": "é"}))
        .await
        .unwrap();
    assert_eq!(out["args"], json!({"x": 1, "s": "é"}));
    assert_eq!(out["context"]["org"], "org-a");
    assert_eq!(out["context"]["participant"], "user9");
    assert_eq!(out["context"]["step"], "start");
    assert_eq!(out["greeting"], "hello");
    assert_eq!(out["calls"], 1);
    let out = host.call_app(&echo, &a, &ctx(), &json!({})).await.unwrap();
    assert_eq!(out["calls"], 2);
    // Another organization has its own store.
    let b = install("org-b", &[], &[]);
    let out = host.call_app(&echo, &b, &ctx(), &json!({})).await.unwrap();
    assert_eq!(out["calls"], 1);
    assert_eq!(out["greeting"], json!(null));
}

#[tokio::test]
async fn llm_calls_an_openai_compatible_server() {
    let server = FakeServer::start(|r| {
        assert_eq!(r.path, "/v1/chat/completions");
        (200, json!({
            "id": "c1", "model": "tiny-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour !"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        }).to_string())
    })
    .await;
    let host = host();
    let llm = load_first_party(&host, "llm").await;
    let inst = install(
        "org-a",
        &[
            ("base_url", &format!("{}/v1", server.url())),
            ("model", "tiny-1"),
            ("system", "Be brief."),
        ],
        &[("api_key", "sk-test")],
    );
    let out = host
        .call_app(
            &llm,
            &inst,
            &ctx(),
            &json!({"prompt": "Say hi in French", "temperature": 0.2}),
        )
        .await
        .unwrap();
    assert_eq!(out["text"], "Bonjour !");
    assert_eq!(out["finish_reason"], "stop");
    assert_eq!(out["usage"]["total_tokens"], 7);
    let reqs = server.taken();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-test"));
    let body = reqs[0].json();
    assert_eq!(body["model"], "tiny-1");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi in French"}
        ])
    );

    // messages= and an explicit system override the configured one.
    let msgs = json!({"system": "S", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]});
    host.call_app(&llm, &inst, &ctx(), &msgs).await.unwrap();
    assert_eq!(
        server.taken()[0].json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Missing arguments are a clean plugin error.
    let err = host
        .call_app(&llm, &inst, &ctx(), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Guest(GuestError::InvalidInput(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn llm_server_errors_are_plugin_errors() {
    let server = FakeServer::start(|_| (429, r#"{"error": "slow down"}"#.into())).await;
    let host = host();
    let llm = load_first_party(&host, "llm").await;
    let inst = install("org-a", &[("base_url", &server.url())], &[]);
    let err = host
        .call_app(&llm, &inst, &ctx(), &json!({"prompt": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err, PluginError::Guest(GuestError::RateLimited(1)));
    // Without the installation's allow-host the fake server is out of reach.
    let mut closed = inst.clone();
    closed.allowed_hosts.clear();
    let err = host
        .call_app(&llm, &closed, &ctx(), &json!({"prompt": "x"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert_eq!(server.taken().len(), 1);
}
