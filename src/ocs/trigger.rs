//! `trigger_bot` (ocs-api §5.5): the decisions and writes behind `POST /api/trigger_bot`.
//! The HTTP layer parses and validates the body into a [`TriggerRequest`]; [`Ocs::trigger`]
//! checks the chatbot and its channel for the platform, makes every write in one
//! transaction ([`Store::ocs_trigger_session`]) and starts the delivery, which runs after the
//! answer as OCS queues it (failures are logged only).
//!
//! [`Store::ocs_trigger_session`]: crate::store::Store::ocs_trigger_session

use super::{Ocs, OcsError, render};
use crate::store::Channel;
use crate::store::ocs::{NewOcsMessage, OcsSession, TriggerSession};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// What to send: a prompt for the bot's `ocs_trigger` flow, or a message sent as is.
#[derive(Debug, Clone)]
pub enum TriggerWhat {
    Prompt(String),
    Message(String),
}

/// A validated `trigger_bot` request of the caller's organization.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub organization_id: String,
    /// The chatbot id, lowercase.
    pub bot_id: String,
    pub platform: String,
    pub identifier: String,
    pub what: TriggerWhat,
    pub start_new_session: bool,
    pub session_data: Option<Json>,
    pub participant_data: Option<Json>,
}

impl Ocs {
    /// Check the chatbot and its channel, write the participant and session (one
    /// transaction), queue the delivery; the session the message goes to.
    pub async fn trigger(self: &Arc<Self>, t: TriggerRequest) -> Result<OcsSession, OcsError> {
        let (org, id) = (t.organization_id.clone(), t.bot_id.clone());
        let bot = self
            .engine
            .blocking(move |s| Ok(s.get_bot(&org, &id).ok()))
            .await?
            .ok_or_else(OcsError::bot_not_found)?;
        // The chatbot's own channel for the platform (api/web/evaluations are team-global
        // in OCS, so a chatbot never has one). `connector`: the channel's plugin delivers
        // what the bot sends (its durable outbox).
        let (org, bid, plat) = (
            t.organization_id.clone(),
            bot.id.clone(),
            t.platform.clone(),
        );
        let channel_state = self
            .engine
            .blocking(move |s| {
                if matches!(plat.as_str(), "api" | "web" | "evaluations") {
                    return Ok(None);
                }
                if plat == "embedded_widget" {
                    return Ok(s
                        .ocs_widgets_of_bot(&org, &bid)?
                        .first()
                        .map(|w| (w.enabled, None)));
                }
                Ok(s.list_channels(&org, Some(&bid))?
                    .into_iter()
                    .find(|c| c.kind == plat)
                    .map(|c| (c.status == "active", Some(c).filter(|c| c.token.is_some()))))
            })
            .await?;
        let platform = &t.platform;
        let connector = match channel_state {
            Some((true, connector)) => connector,
            Some((false, _)) => {
                return Err(OcsError::detail(
                    400,
                    format!("The {platform} channel for this chatbot is disabled."),
                ));
            }
            None => {
                return Err(OcsError::detail(
                    400,
                    format!(
                        "Chatbot cannot send messages on the {platform} channel. Create the channel first."
                    ),
                ));
            }
        };
        let identifier = if t.platform == "commcare_connect" {
            t.identifier.to_lowercase()
        } else {
            t.identifier.clone()
        };
        let write = TriggerSession {
            bot_id: bot.id.clone(),
            platform: t.platform.clone(),
            identifier,
            start_new: t.start_new_session,
            session_data: t.session_data.clone(),
            participant_data: t.participant_data.clone().unwrap_or(json!({})),
        };
        let org = t.organization_id.clone();
        let session = self
            .engine
            .blocking(move |s| s.ocs_trigger_session(&org, write))
            .await?;
        let (this, sess) = (Arc::clone(self), session.clone());
        tokio::spawn(async move { this.deliver_trigger(sess, t.what, connector).await });
        Ok(session)
    }

    /// Send a trigger's message (stored as a direct-to-user assistant message) or run its
    /// prompt; on a connector channel, queue what was sent in the plugins' durable outbox,
    /// to the participant's identifier (the platform's chat id).
    async fn deliver_trigger(
        &self,
        sess: OcsSession,
        what: TriggerWhat,
        connector: Option<Channel>,
    ) {
        let res = match what {
            TriggerWhat::Message(t) => {
                let msg = NewOcsMessage {
                    role: "assistant".into(),
                    content: t.clone(),
                    metadata: json!({"direct_to_user": true}),
                    tags: vec![],
                    file_ids: vec![],
                };
                self.store
                    .ocs_append_messages_async(&sess.organization_id, &sess.id, vec![msg])
                    .await
                    .map(|_| vec![json!({"content_type": "text", "content": {"text": t}})])
                    .map_err(|e| e.to_string())
            }
            TriggerWhat::Prompt(p) => self
                .run_trigger(&sess, json!({"prompt": p, "source": "api"}))
                .await
                .map(|out| out.iter().map(render::Rendered::payload).collect())
                .map_err(|e| e.to_string()),
        };
        let messages = match res {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, session = %sess.id, "trigger_bot delivery failed");
                return;
            }
        };
        let Some(channel) = connector.filter(|_| !messages.is_empty()) else {
            return;
        };
        let Some(rt) = self.plugins.as_ref() else {
            tracing::warn!(session = %sess.id, channel = %channel.id, "trigger_bot: no plugin runtime to deliver on the connector channel");
            return;
        };
        let id = format!("ocs-trigger-{}", crate::store::ids::new_id());
        let to = &sess.participant.identifier;
        if let Err(e) = rt.enqueue_delivery(&channel, to, &id, messages).await {
            tracing::warn!(error = %e, session = %sess.id, "trigger_bot: queueing the delivery failed");
        }
    }
}
