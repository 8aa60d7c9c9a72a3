//! First run: an empty data directory gets the default organization, a demo bot with a working
//! hello flow, a Studio API channel for it and an OCS API key. A directory already set up (it
//! has a default organization) is left unchanged.

use super::{BotSettings, Durability, KIND_API, NewBot, NewChannel, NewFlow, Result, Store};
use serde::Serialize;

/// Name of the default organization created by setup.
pub const DEFAULT_ORG_NAME: &str = "Default";
/// Name of the demo bot.
pub const DEMO_BOT_NAME: &str = "Demo bot";

/// The demo bot's flow: greet, ask the name with a hold, remember it, then a menu of buttons.
pub const DEMO_FLOW: &str = r#"start:
  say "Hello! I am the botyard demo bot."
  if (name) {
    say "Welcome back, {{name}}!"
    goto menu
  }
  say "What is your name?"
  hold
  remember name = event
  say "Nice to meet you, {{name}}!"
  goto menu

menu:
  do joke = Button("Tell me a joke", payload = "JOKE")
  do forget_me = Button("Forget my name", payload = "FORGET")
  do bye = Button("Bye", payload = "BYE")
  say Question("What would you like to do?", buttons = [joke, forget_me, bye])
  hold
  if (event.match(joke)) {
    say "Why do programmers prefer dark mode? Because light attracts bugs."
    goto menu
  }
  if (event.match(forget_me)) {
    forget name
    say "Done: I forgot your name."
    goto end
  }
  say "Goodbye, {{name}}!"
  goto end
"#;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StudioCredentials {
    pub channel_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OcsCredentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// What setup did. Serializes to the setup contract:
/// `{"organization":{"id","name"},"bot":{"id","name"},"studio":{"channel_id","api_key",
/// "api_secret"},"ocs":{"api_key"},"created":true}`; when already set up, `created` is false
/// and no secret is present (`bot`/`studio` are those of the first bot and its first API
/// channel, when they still exist).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetupOutcome {
    pub created: bool,
    pub organization: IdName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot: Option<IdName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub studio: Option<StudioCredentials>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocs: Option<OcsCredentials>,
    pub data_dir: String,
}

/// Open `data_dir` and set it up when it is empty (see [`ensure_store`]).
pub fn ensure(at: &super::Location, durability: Durability) -> Result<(Store, SetupOutcome)> {
    let store = Store::open_at(at, durability)?;
    let outcome = ensure_store(&store)?;
    Ok((store, outcome))
}

/// Set up an opened store when it has no default organization yet; otherwise report what is
/// there without changing anything.
pub fn ensure_store(store: &Store) -> Result<SetupOutcome> {
    let data_dir = store.data_dir().display().to_string();
    if let Some(org) = store.default_org()? {
        let bot = store.list_bots(&org.id)?.into_iter().next();
        let studio = match &bot {
            Some(b) => store
                .list_channels(&org.id, Some(&b.id))?
                .into_iter()
                .find(|c| c.kind == KIND_API)
                .map(|c| StudioCredentials {
                    channel_id: c.id,
                    api_key: None,
                    api_secret: None,
                }),
            None => None,
        };
        return Ok(SetupOutcome {
            created: false,
            organization: IdName {
                id: org.id,
                name: org.name,
            },
            bot: bot.map(|b| IdName {
                id: b.id,
                name: b.name,
            }),
            studio,
            ocs: None,
            data_dir,
        });
    }
    let org = store.create_org(DEFAULT_ORG_NAME, true)?;
    let (bot, _) = store.create_bot(
        &org.id,
        NewBot {
            name: DEMO_BOT_NAME.into(),
            description: Some("A small demo: greets, asks your name, remembers it.".into()),
            flows: vec![NewFlow {
                name: "Default".into(),
                content: DEMO_FLOW.into(),
                description: Some("Hello flow".into()),
                commands: vec!["hello".into(), "hi".into()],
            }],
            default_flow: Some("Default".into()),
            settings: BotSettings {
                web_chat_public: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )?;
    let (_, creds) = store.create_channel(
        &org.id,
        &bot.id,
        NewChannel {
            kind: KIND_API.into(),
            name: "Studio API".into(),
            ..Default::default()
        },
    )?;
    let (_, ocs_key) = store.create_api_key(&org.id, "setup", false)?;
    Ok(SetupOutcome {
        created: true,
        organization: IdName {
            id: org.id,
            name: org.name,
        },
        bot: Some(IdName {
            id: bot.id,
            name: bot.name,
        }),
        studio: Some(StudioCredentials {
            channel_id: creds.channel_id,
            api_key: Some(creds.api_key),
            api_secret: Some(creds.api_secret),
        }),
        ocs: Some(OcsCredentials {
            api_key: Some(ocs_key),
        }),
        data_dir,
    })
}
