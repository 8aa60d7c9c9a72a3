//! Bot-level operations of the Studio API, as async functions over the store and the
//! interpreter: bot and flows (§2.3–2.8, C1), validate (§2.10), build and get build
//! (§2.11–2.12), usage (§2.9), conversations/open (§2.13).

use super::{ENGINE_VERSION, Engine, EngineError};
use crate::store::{
    Bot, BotPatch, BotVersion, ClientKey, Conversation, Flow, FlowPatch, NewFlow, Snapshot,
    SnapshotFlow, UsageReport,
};
use serde::Deserialize;

/// Body of `POST /bot/validate`: a bot shaped like `GET /bot`. Flow ids, descriptions and
/// unknown keys are tolerated; `default_flow` may be a flow id or name.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValidateRequest {
    #[serde(default)]
    pub default_flow: Option<String>,
    pub flows: Vec<ValidateFlow>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValidateFlow {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub commands: Vec<String>,
}

/// `conversations/open`: the conversation and the id of its current flow.
#[derive(Debug, Clone)]
pub struct OpenConversation {
    pub conversation: Conversation,
    /// Flow id of `conversation.flow` (the name when the flow is gone).
    pub flow_id: String,
}

fn default_flow_error(default: &str) -> csml::Diagnostic {
    csml::Diagnostic {
        flow: default.to_string(),
        step: None,
        line: 0,
        column: 0,
        message: format!("default_flow `{default}` is not a flow of this bot"),
    }
}

/// Lint flows with the interpreter (blocking: parsing is CPU work).
fn lint(flows: &[(String, String, Vec<String>)], default_flow: &str) -> csml::Validation {
    let source = csml::BotSource {
        flows: flows
            .iter()
            .map(|(name, content, commands)| csml::FlowSource {
                name: name.clone(),
                content: content.clone(),
                commands: commands.clone(),
            })
            .collect(),
        default_flow: default_flow.to_string(),
        native_components: true,
        ..Default::default()
    };
    csml::validate(&source, false)
}

impl Engine {
    /// The bot and its working flows (`GET /bot`).
    pub async fn get_bot(&self, org: &str, bot: &str) -> Result<(Bot, Vec<Flow>), EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        self.blocking(move |s| s.bot_with_flows(&o, &b)).await
    }

    /// `PUT /bot`: partial update, returns the bot and its flows.
    pub async fn update_bot(
        &self,
        org: &str,
        bot: &str,
        patch: BotPatch,
    ) -> Result<(Bot, Vec<Flow>), EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        self.blocking(move |s| {
            s.update_bot(&o, &b, patch)?;
            s.bot_with_flows(&o, &b)
        })
        .await
    }

    pub async fn list_flows(&self, org: &str, bot: &str) -> Result<Vec<Flow>, EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        self.blocking(move |s| s.list_flows(&o, &b)).await
    }

    /// A flow by id or name.
    pub async fn get_flow(&self, org: &str, bot: &str, flow: &str) -> Result<Flow, EngineError> {
        let (o, b, f) = (org.to_string(), bot.to_string(), flow.to_string());
        self.blocking(move |s| s.get_flow(&o, &b, &f)).await
    }

    /// Saved without linting (drafts; validation happens at build). Duplicate name → 409.
    pub async fn create_flow(
        &self,
        org: &str,
        bot: &str,
        new: NewFlow,
    ) -> Result<Flow, EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        self.blocking(move |s| s.create_flow(&o, &b, new)).await
    }

    pub async fn update_flow(
        &self,
        org: &str,
        bot: &str,
        flow: &str,
        patch: FlowPatch,
    ) -> Result<Flow, EngineError> {
        let (o, b, f) = (org.to_string(), bot.to_string(), flow.to_string());
        self.blocking(move |s| s.update_flow(&o, &b, &f, patch))
            .await
    }

    /// Deleting the default flow → 409.
    pub async fn delete_flow(&self, org: &str, bot: &str, flow: &str) -> Result<(), EngineError> {
        let (o, b, f) = (org.to_string(), bot.to_string(), flow.to_string());
        self.blocking(move |s| s.delete_flow(&o, &b, &f)).await
    }

    /// `POST /bot/validate`: lint without saving. An unresolvable `default_flow` is reported
    /// as an error whose `flow` is the given value.
    pub async fn validate(&self, req: ValidateRequest) -> Result<csml::Validation, EngineError> {
        tokio::task::spawn_blocking(move || {
            let flows: Vec<(String, String, Vec<String>)> = req
                .flows
                .iter()
                .map(|f| (f.name.clone(), f.content.clone(), f.commands.clone()))
                .collect();
            let given = req.default_flow.clone().unwrap_or_default();
            let resolved = req
                .flows
                .iter()
                .find(|f| {
                    f.name.eq_ignore_ascii_case(&given) || f.id.as_deref() == Some(given.as_str())
                })
                .map(|f| f.name.clone());
            let default_name = resolved.clone().or_else(|| {
                if req.default_flow.is_none() {
                    req.flows.first().map(|f| f.name.clone())
                } else {
                    None
                }
            });
            let mut v = lint(&flows, default_name.as_deref().unwrap_or(&given));
            if default_name.is_none() && !v.errors.iter().any(|e| e.message.contains("default")) {
                v.errors.push(default_flow_error(&given));
                v.valid = false;
            }
            v
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))
    }

    /// `POST /bot/build`: lint the working flows; when valid, freeze them into a new version
    /// that becomes live. Invalid → [`EngineError::Invalid`] with the diagnostics.
    pub async fn build(&self, org: &str, bot: &str) -> Result<BotVersion, EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || {
            let (bot, flows) = store.bot_with_flows(&o, &b)?;
            let default = bot
                .default_flow_id
                .as_deref()
                .and_then(|d| flows.iter().find(|f| f.id == d))
                .ok_or_else(|| EngineError::Invalid {
                    message: "the bot has no default flow".into(),
                    errors: vec![default_flow_error(
                        bot.default_flow_id.as_deref().unwrap_or(""),
                    )],
                })?
                .clone();
            let triples: Vec<_> = flows
                .iter()
                .map(|f| (f.name.clone(), f.content.clone(), f.commands.clone()))
                .collect();
            let v = lint(&triples, &default.name);
            if !v.valid {
                let n = v.errors.len();
                return Err(EngineError::Invalid {
                    message: format!(
                        "the bot does not validate ({n} error{})",
                        if n == 1 { "" } else { "s" }
                    ),
                    errors: v.errors,
                });
            }
            let snapshot = Snapshot {
                name: bot.name.clone(),
                default_flow: default.id.clone(),
                flows: flows
                    .into_iter()
                    .map(|f| SnapshotFlow {
                        id: f.id,
                        name: f.name,
                        commands: f.commands,
                        content: f.content,
                    })
                    .collect(),
                custom_components: bot.custom_components.clone(),
            };
            Ok(store.create_version(&o, &b, snapshot, ENGINE_VERSION)?)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// `GET /bot/build[?version_id=]`: a version, the latest when `None`/`"latest"`.
    pub async fn get_build(
        &self,
        org: &str,
        bot: &str,
        version: Option<&str>,
    ) -> Result<BotVersion, EngineError> {
        let (o, b, v) = (
            org.to_string(),
            bot.to_string(),
            version.map(str::to_string),
        );
        self.blocking(move |s| s.get_version(&o, &b, v.as_deref()))
            .await
    }

    /// `GET /bot/usage` at the current time.
    pub async fn usage(&self, org: &str, bot: &str) -> Result<UsageReport, EngineError> {
        let (o, b) = (org.to_string(), bot.to_string());
        self.blocking(move |s| {
            s.get_bot(&o, &b)?;
            s.usage(&o, &b, crate::store::ids::now_millis())
        })
        .await
    }

    /// `POST /conversations/open` for a user of a channel.
    pub async fn conversations_open(
        &self,
        org: &str,
        bot: &str,
        channel: &str,
        user_id: &str,
    ) -> Result<Option<OpenConversation>, EngineError> {
        let key = ClientKey {
            organization_id: org.to_string(),
            bot_id: bot.to_string(),
            channel_id: channel.to_string(),
            user_id: user_id.to_string(),
        };
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = engine.store();
            let Some(conv) = store.open_conversation(&key, crate::store::ids::now_millis())? else {
                return Ok(None);
            };
            let flow_id = engine
                .inner
                .bots
                .get(
                    store,
                    &key.organization_id,
                    &key.bot_id,
                    &super::BotCode::Live,
                )
                .ok()
                .and_then(|live| live.find_flow(&conv.flow).map(|f| f.id.clone()))
                .unwrap_or_else(|| conv.flow.clone());
            Ok(Some(OpenConversation {
                conversation: conv,
                flow_id,
            }))
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }
}
