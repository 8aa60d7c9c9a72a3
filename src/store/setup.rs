//! First run: an empty data directory gets the default organization, a demo bot with a working
//! hello flow, a Studio API channel for it and an OCS API key. A directory already set up (it
//! has a default organization) is left unchanged.
//!
//! Several nodes may start together on one empty PostgreSQL database, each running setup: the
//! whole creation is one write job that takes an advisory lock and re-checks for a default
//! organization first (see [`ensure_store`]), so exactly one node creates, the others report
//! what it created.

use super::db::{Db, OptionalExtension, params};
use super::ids::{new_id, now_millis};
use super::{
    BotSettings, Durability, Error, KIND_API, NewBot, NewChannel, NewFlow, Organization, Result,
    Store,
};
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
///
/// Safe when several processes run it at once on one database (nodes starting together on an
/// empty PostgreSQL database): the creation of the organization, bot, channel and OCS key is
/// ONE write job ([`Store::first_run`]) that, on PostgreSQL, first takes a transaction-scoped
/// advisory lock, then re-checks for a default organization. The first job creates everything
/// and commits; the others wait on the lock, then find that organization and report it
/// (`created: false`). On SQLite the single writer runs the job alone anyway. The partial
/// unique index on `organizations(is_default)` backs this up: there is never a second default
/// organization.
pub fn ensure_store(store: &Store) -> Result<SetupOutcome> {
    let data_dir = store.data_dir().display().to_string();
    if let Some(org) = store.default_org()? {
        return existing(store, org, data_dir);
    }
    let created = match store.first_run()? {
        FirstRun::Created(c) => c,
        FirstRun::Exists(org) => return existing(store, org, data_dir),
    };
    let Created {
        org,
        bot,
        creds,
        ocs_key,
    } = *created;
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

/// The report of an installation already set up: its default organization, first bot and
/// that bot's first Studio API channel, no secret.
fn existing(store: &Store, org: Organization, data_dir: String) -> Result<SetupOutcome> {
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
    Ok(SetupOutcome {
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
    })
}

/// Advisory lock key held by the first-run job on PostgreSQL ("setup!" in ASCII).
const SETUP_LOCK: i64 = 0x7365_7475_7021;

/// What the first-run job found or made.
enum FirstRun {
    /// Another process had set the installation up: its default organization.
    Exists(Organization),
    /// Made here (boxed: it is much larger than the other case).
    Created(Box<Created>),
}

struct Created {
    org: Organization,
    bot: super::Bot,
    creds: super::Credentials,
    ocs_key: String,
}

fn default_org_on(c: &Db) -> Result<Option<Organization>> {
    c.query_row(
        "SELECT id, name, is_default, created_at FROM organizations WHERE is_default = 1",
        (),
        super::orgs::org_from_row,
    )
    .optional()
}

/// The demo bot setup creates.
fn demo_bot() -> NewBot {
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
    }
}

impl Store {
    /// First-run creation as one write job: lock (PostgreSQL), re-check, create all or
    /// nothing. See [`ensure_store`].
    fn first_run(&self) -> Result<FirstRun> {
        let secrets = self.secrets().clone();
        self.write(move |c| {
            if c.is_pg() {
                c.execute("SELECT pg_advisory_xact_lock(?1)", [SETUP_LOCK])?;
            }
            if let Some(org) = default_org_on(c)? {
                return Ok(FirstRun::Exists(org));
            }
            let now = now_millis();
            let org = Organization {
                id: new_id(),
                name: DEFAULT_ORG_NAME.into(),
                is_default: true,
                created_at: now,
            };
            c.execute(
                "INSERT INTO organizations(id, name, is_default, created_at, updated_at)
                 VALUES (?1, ?2, 1, ?3, ?3)",
                params![org.id, org.name, now],
            )
            .map_err(|e| match e {
                Error::Conflict(_) => {
                    Error::Conflict(format!("an organization named `{}` exists", org.name))
                }
                e => e,
            })?;
            let (bot, _) = super::bots::insert_bot(c, &org.id, demo_bot(), DEMO_BOT_NAME)?;
            let (_, creds) = super::channels::insert_channel(
                c,
                &secrets,
                &org.id,
                &bot.id,
                NewChannel {
                    kind: KIND_API.into(),
                    name: "Studio API".into(),
                    ..Default::default()
                },
                Vec::new(),
            )?;
            let (_, ocs_key) = super::channels::insert_api_key(c, &org.id, "setup", false)?;
            Ok(FirstRun::Created(Box::new(Created {
                org,
                bot,
                creds,
                ocs_key,
            })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_runs_create_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        let outs: Vec<SetupOutcome> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| sc.spawn(|| ensure_store(&s).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made: Vec<_> = outs.iter().filter(|o| o.created).collect();
        assert_eq!(made.len(), 1, "{outs:?}");
        let made = made[0];
        assert!(made.ocs.is_some() && made.studio.as_ref().unwrap().api_secret.is_some());
        for o in &outs {
            assert_eq!(o.organization, made.organization);
            assert_eq!(o.bot, made.bot);
            assert_eq!(
                o.studio.as_ref().unwrap().channel_id,
                made.studio.as_ref().unwrap().channel_id
            );
        }
        let org = &made.organization.id;
        assert_eq!(s.list_orgs().unwrap().len(), 1);
        assert_eq!(s.list_bots(org).unwrap().len(), 1);
        assert_eq!(s.list_channels(org, None).unwrap().len(), 1);
        assert_eq!(s.list_api_keys(org).unwrap().len(), 1);
        let again = ensure_store(&s).unwrap();
        assert!(!again.created && again.ocs.is_none());
        assert_eq!(again.organization, made.organization);
    }
}
