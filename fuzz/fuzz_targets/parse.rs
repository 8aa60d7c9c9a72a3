//! Any text as a flow: parsing and whole-bot validation must return, never panic or overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let _ = csml::parser::parse_flow("fuzz", src);
    let source = csml::BotSource {
        flows: vec![csml::FlowSource {
            name: "fuzz".into(),
            content: src.into(),
            commands: vec![],
        }],
        default_flow: "fuzz".into(),
        native_components: true,
        ..Default::default()
    };
    let _ = csml::validate(&source, false);
});
