//! Any text as a bot, run for a few turns (following holds): turns must end (budgets), never
//! panic, and their results must serialize.
#![no_main]

use csml::{Bot, BotSource, Context, Event, FlowSource, OfflineHost, TurnOptions, TurnStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let source = BotSource {
        flows: vec![FlowSource {
            name: "flow".into(),
            content: src.into(),
            commands: vec![],
        }],
        default_flow: "flow".into(),
        native_components: true,
        ..Default::default()
    };
    let Ok(bot) = Bot::compile_unchecked(source) else {
        return;
    };
    let opts = TurnOptions {
        loop_limit: 500,
        ..TurnOptions::default()
    };
    let mut host = OfflineHost::default();
    let mut ctx = Context {
        flow: "flow".into(),
        step: "start".into(),
        metadata: serde_json::json!({"k": [1, "v"]}),
        ..Default::default()
    };
    for text in ["hello", "", "{\"a\":1}", "1"] {
        let event = Event {
            content_type: "text".into(),
            content_value: text.into(),
            content: serde_json::json!({ "text": text }),
            secure: false,
        };
        let r = csml::run_turn(&bot, ctx.clone(), event, &mut host, &opts);
        serde_json::to_string(&r).expect("a turn result serializes");
        for m in &r.memories {
            ctx.memories.insert(m.key.clone(), m.value.clone());
        }
        if r.status != TurnStatus::Hold {
            break;
        }
        ctx.step = r.step;
        ctx.flow = r.flow;
        ctx.hold = r.hold;
    }
});
