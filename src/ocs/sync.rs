//! The synchronous endpoints' decisions (ocs-api §5.7 `incoming_message`, the OpenAI chat
//! completions endpoint) behind `http::ocs::channels`: the chatbot and its `/v{N}/` route
//! version ([`Ocs::route_bot`]), the session to run the turn in (one transaction each:
//! [`Store::ocs_incoming_session`], [`Store::ocs_start_session`]), then the turn itself
//! ([`Ocs::run_sync_text`]). The HTTP layer parses the bodies and renders the replies.
//!
//! [`Store::ocs_incoming_session`]: crate::store::Store::ocs_incoming_session
//! [`Store::ocs_start_session`]: crate::store::Store::ocs_start_session

use super::render::Rendered;
use super::{Ocs, OcsError};
use crate::store::Bot;
use crate::store::ocs::{
    IncomingSession, IncomingSessionOutcome, NewOcsMessage, NewSession, OcsSession,
};

/// A validated `incoming_message` request of the caller's organization.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The chatbot id, lowercase.
    pub bot_id: String,
    pub text: String,
    /// The API caller's participant identifier.
    pub identifier: String,
    pub key_id: String,
    /// The session the request names.
    pub session: Option<String>,
    /// `/v{N}/`: this turn (and a session it creates) runs version N.
    pub version: Option<i64>,
}

/// What `incoming_message` did.
#[derive(Debug, Clone)]
pub enum IncomingReply {
    /// `/reset`: a new session, no turn.
    Reset,
    /// The bot's rendered replies.
    Replied(Vec<Rendered>),
}

/// A validated OpenAI chat completion request of the caller's organization.
#[derive(Debug, Clone)]
pub struct OpenAiRequest {
    pub bot_id: String,
    /// The messages before the last user message.
    pub history: Vec<NewOcsMessage>,
    /// The last user message.
    pub text: String,
    pub identifier: String,
    pub key_id: String,
    /// `/v{N}/` (N ≠ 0): the session runs version N.
    pub version: Option<i64>,
}

impl Ocs {
    /// The chatbot of `org` named by a channel route (404 when not the organization's), and
    /// its `/v{N}/` version checked: N must be the working number or a build's (0 means the
    /// default when `zero_is_default`, the OpenAI endpoint's reading).
    pub async fn route_bot(
        &self,
        org: &str,
        bot: &str,
        version: Option<i64>,
        zero_is_default: bool,
    ) -> Result<Bot, OcsError> {
        let (o, b) = (org.to_string(), bot.to_string());
        let bot = self
            .engine
            .blocking(move |s| Ok(s.get_bot(&o, &b).ok()))
            .await?
            .ok_or_else(OcsError::bot_not_found)?;
        let Some(n) = version.filter(|n| *n != 0 || !zero_is_default) else {
            return Ok(bot);
        };
        let b = bot.clone();
        let (next, versions) = self
            .engine
            .blocking(move |s| super::chat::version_numbers(s, &b))
            .await?;
        if n == next || versions.contains(&n) {
            Ok(bot)
        } else {
            Err(OcsError::detail(
                404,
                format!("Experiment with version {n} not found"),
            ))
        }
    }

    /// An `incoming_message` turn (§5.7): the chatbot (404 first), the session (see
    /// [`crate::store::Store::ocs_incoming_session`]), then the turn.
    pub async fn incoming(
        &self,
        org: &str,
        req: IncomingRequest,
    ) -> Result<IncomingReply, OcsError> {
        let ask = IncomingSession {
            bot_id: req.bot_id,
            identifier: req.identifier,
            key_id: req.key_id,
            wanted: req.session,
            reset: req.text.trim().eq_ignore_ascii_case("/reset"),
            version_number: req.version,
        };
        let org = org.to_string();
        let outcome = self
            .engine
            .blocking(move |s| s.ocs_incoming_session(&org, ask))
            .await?;
        let (mut session, inputs) = match outcome {
            IncomingSessionOutcome::Ready(ready) => *ready,
            IncomingSessionOutcome::Reset => return Ok(IncomingReply::Reset),
            IncomingSessionOutcome::NoSession => return Err(OcsError::detail(404, "Not found.")),
            IncomingSessionOutcome::NoBot => return Err(OcsError::bot_not_found()),
        };
        if req.version.is_some() {
            session.version_number = req.version;
        }
        let rendered = self
            .run_sync_text(&session, &req.text, Some(inputs))
            .await?;
        Ok(IncomingReply::Replied(rendered))
    }

    /// An OpenAI chat completion: a new API session with the request's history (one
    /// transaction), then the turn on its last user message.
    pub async fn openai_turn(
        &self,
        org: &str,
        req: OpenAiRequest,
    ) -> Result<(OcsSession, Vec<Rendered>), OcsError> {
        let new = NewSession {
            bot_id: req.bot_id,
            participant_platform: "api".into(),
            participant_identifier: req.identifier,
            platform: "api".into(),
            channel_kind: "api".into(),
            owner_key_id: Some(req.key_id),
            status: "active".into(),
            session_token_required: true,
            messages: req.history,
            version_number: req.version,
            ..Default::default()
        };
        let org = org.to_string();
        let (session, inputs) = self
            .engine
            .blocking(move |s| s.ocs_start_session(&org, new))
            .await?;
        let rendered = self
            .run_sync_text(&session, &req.text, Some(inputs))
            .await?;
        Ok((session, rendered))
    }
}
