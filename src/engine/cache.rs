//! Compiled bots, cached per bot and keyed by what serves traffic: the live build (or the
//! working copy when never built) and the bot's `rev` (env and settings are read live, and a
//! working copy changes with every edit). A turn costs one tiny read to check the key; the
//! source is fetched and compiled only when it changed.
//!
//! A specific build ([`BotCode::Build`], OCS sessions pinned to a version) is cached under
//! `(bot, version)` in its own map and checked against the bot's `rev` only: it is never
//! re-parsed per request, whatever serves the bot's other traffic.

use super::{BotCode, EngineError};
use crate::store::{BotSettings, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Flow facts the engine needs for selection, in flow order.
#[derive(Debug, Clone)]
pub struct FlowMeta {
    pub id: String,
    pub name: String,
    pub commands: Vec<String>,
}

/// A bot ready to run.
#[derive(Debug)]
pub struct LiveBot {
    pub version_id: Option<String>,
    pub rev: i64,
    pub bot: csml::Bot,
    pub flows: Vec<FlowMeta>,
    /// Name of the default flow.
    pub default_flow: String,
    pub settings: BotSettings,
    /// The source contains `_metadata` somewhere (a conservative text scan: in a string or a
    /// comment counts too). A bot without it can never see its turns' `_metadata`, so what
    /// only `_metadata` shows need not be gathered (see `engine::TurnMetadata`).
    pub reads_metadata: bool,
    /// The source names `HTTP`, `App` or `SMTP` somewhere (a conservative word scan): its
    /// turns may wait on the network, so they always run on a blocking thread.
    pub may_block: bool,
    /// A turn of this compiled bot outran the inline try (see `turn::run_prepared`): its
    /// turns run on a blocking thread from now on.
    slow: AtomicBool,
    /// Inline tries of this compiled bot cut by their short deadline.
    cuts: std::sync::atomic::AtomicU32,
}

/// Cut inline tries after which a bot's turns go to the slow-turn threads even when each
/// rerun was quick (see `turn::run_prepared`).
const MAX_CUTS: u32 = 16;

impl LiveBot {
    /// Whether a turn may first be tried on the async worker (see `turn::run_prepared`).
    pub fn may_try_inline(&self) -> bool {
        !self.may_block && !self.slow.load(Ordering::Relaxed)
    }

    pub fn mark_slow(&self) {
        self.slow.store(true, Ordering::Relaxed);
    }

    /// Count one cut inline try; `true` once there were [`MAX_CUTS`].
    pub fn note_cut(&self) -> bool {
        self.cuts.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_CUTS
    }

    /// A flow by id or name, case-insensitive (the engine's lookup, csml-language §1).
    pub fn find_flow(&self, id_or_name: &str) -> Option<&FlowMeta> {
        self.flows.iter().find(|f| f.id == id_or_name).or_else(|| {
            self.flows
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(id_or_name))
        })
    }

    /// First flow (in flow order) with a command equal to `value`, ignoring case.
    pub fn command_flow(&self, value: &str) -> Option<&FlowMeta> {
        let v = value.trim();
        self.flows
            .iter()
            .find(|f| f.commands.iter().any(|c| c.eq_ignore_ascii_case(v)))
    }
}

/// Compiled bots by bot id: `live` serves traffic, `working` the admin UI's try-it.
#[derive(Default)]
pub struct BotCache {
    map: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    live: HashMap<String, Arc<LiveBot>>,
    working: HashMap<String, Arc<LiveBot>>,
    /// Pinned builds by `(bot id, version id)`.
    builds: HashMap<(String, String), Arc<LiveBot>>,
}

impl Maps {
    fn peek(&self, bot_id: &str, code: &BotCode) -> Option<Arc<LiveBot>> {
        match code {
            BotCode::Live => self.live.get(bot_id),
            BotCode::Working => self.working.get(bot_id),
            BotCode::Build(v) => self.builds.get(&(bot_id.to_string(), v.clone())),
        }
        .cloned()
    }

    fn insert(&mut self, bot_id: &str, code: &BotCode, bot: Arc<LiveBot>) {
        match code {
            BotCode::Live => self.live.insert(bot_id.to_string(), bot),
            BotCode::Working => self.working.insert(bot_id.to_string(), bot),
            BotCode::Build(v) => self.builds.insert((bot_id.to_string(), v.clone()), bot),
        };
    }
}

/// Whether `bot` is still the `code` of a bot whose live build and rev are `(live, rev)`.
pub fn is_current(bot: &LiveBot, code: &BotCode, live: Option<String>, rev: i64) -> bool {
    let version = match code {
        BotCode::Live => live,
        BotCode::Working => None,
        BotCode::Build(v) => Some(v.clone()),
    };
    bot.version_id == version && bot.rev == rev
}

impl BotCache {
    pub fn len(&self) -> usize {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.live.len() + m.working.len() + m.builds.len()
    }

    /// The cached compiled bot, without checking that it is current (the caller checks its
    /// `(version_id, rev)` against the store, e.g. inside the turn's writer job).
    pub fn peek(&self, bot_id: &str, code: &BotCode) -> Option<Arc<LiveBot>> {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.peek(bot_id, code)
    }

    /// The current compiled `code` of a bot (blocking: may read and compile). `Working`: the
    /// working flows even when a build is live (the admin UI's try-it); `Build`: that build.
    pub fn get(
        &self,
        store: &Store,
        org: &str,
        bot_id: &str,
        code: &BotCode,
    ) -> Result<Arc<LiveBot>, EngineError> {
        let (version, rev) = store.bot_code_key(org, bot_id)?;
        if let Some(hit) = self.peek(bot_id, code)
            && is_current(&hit, code, version, rev)
        {
            return Ok(hit);
        }
        let live = Arc::new(compile(store, org, bot_id, code)?);
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bot_id, code, live.clone());
        Ok(live)
    }
}

fn compile(store: &Store, org: &str, bot_id: &str, code: &BotCode) -> Result<LiveBot, EngineError> {
    let (bot, version) = store.live_code(org, bot_id)?;
    let version = match code {
        BotCode::Live => version,
        BotCode::Working => None,
        BotCode::Build(id) if version.as_ref().is_some_and(|v| &v.id == id) => version,
        BotCode::Build(id) => Some(store.get_version(org, bot_id, Some(id))?),
    };
    let (flows, default_id, custom_components) = match &version {
        Some(v) => (
            v.snapshot
                .flows
                .iter()
                .map(|f| {
                    (
                        FlowMeta {
                            id: f.id.clone(),
                            name: f.name.clone(),
                            commands: f.commands.clone(),
                        },
                        f.content.clone(),
                    )
                })
                .collect::<Vec<_>>(),
            Some(v.snapshot.default_flow.clone()),
            v.snapshot.custom_components.clone(),
        ),
        None => {
            let (_, flows) = store.bot_with_flows(org, bot_id)?;
            (
                flows
                    .into_iter()
                    .map(|f| {
                        (
                            FlowMeta {
                                id: f.id,
                                name: f.name,
                                commands: f.commands,
                            },
                            f.content,
                        )
                    })
                    .collect(),
                bot.default_flow_id.clone(),
                bot.custom_components.clone(),
            )
        }
    };
    if flows.is_empty() {
        return Err(EngineError::Conflict("the bot has no flows".into()));
    }
    let default_flow = default_id
        .as_deref()
        .and_then(|d| {
            flows
                .iter()
                .find(|(f, _)| f.id == d || f.name.eq_ignore_ascii_case(d))
        })
        .map(|(f, _)| f.name.clone())
        .ok_or_else(|| EngineError::Conflict("the bot's default_flow does not exist".into()))?;
    let source = csml::BotSource {
        id: bot.id.clone(),
        name: bot.name.clone(),
        flows: flows
            .iter()
            .map(|(f, content)| csml::FlowSource {
                name: f.name.clone(),
                content: content.clone(),
                commands: f.commands.clone(),
            })
            .collect(),
        default_flow: default_flow.clone(),
        native_components: true,
        custom_components,
        env: bot.env.clone(),
        modules: Vec::new(),
    };
    let compiled = csml::Bot::compile(source).map_err(|v| {
        let first = v
            .errors
            .first()
            .map(|d| format!("{}:{}:{}: {}", d.flow, d.line, d.column, d.message));
        EngineError::Invalid {
            message: format!(
                "the bot's flows do not compile{}",
                first.map(|f| format!(" ({f})")).unwrap_or_default()
            ),
            errors: v.errors,
        }
    })?;
    let may_block = flows
        .iter()
        .any(|(_, content)| names_blocking_builtin(content));
    let reads_metadata = flows
        .iter()
        .any(|(_, content)| content.contains("_metadata"));
    Ok(LiveBot {
        version_id: version.map(|v| v.id),
        rev: bot.rev,
        bot: compiled,
        flows: flows.into_iter().map(|(f, _)| f).collect(),
        default_flow,
        settings: bot.settings,
        reads_metadata,
        may_block,
        slow: AtomicBool::new(false),
        cuts: std::sync::atomic::AtomicU32::new(0),
    })
}

/// Whether a flow's text contains the word `HTTP`, `App` or `SMTP` (any case) — the builtins
/// whose calls wait on the network. Over-approximates (a word in a string counts too), which
/// only costs the bot the inline try.
fn names_blocking_builtin(src: &str) -> bool {
    src.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| {
            w.eq_ignore_ascii_case("http")
                || w.eq_ignore_ascii_case("app")
                || w.eq_ignore_ascii_case("smtp")
        })
}

#[cfg(test)]
mod tests {
    use super::names_blocking_builtin;

    #[test]
    fn blocking_builtins_are_spotted() {
        assert!(names_blocking_builtin(
            "start:\n do r = HTTP(\"x\").get().send()"
        ));
        assert!(names_blocking_builtin("do x = App(\"fn\", a=1)"));
        assert!(names_blocking_builtin("do SMTP(\"h\")"));
        assert!(!names_blocking_builtin(
            "start:\n say \"happy apples\"\n goto end"
        ));
    }
}
