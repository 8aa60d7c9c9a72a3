//! The API-key endpoints' decisions (ocs-api §5.2–5.4) behind `http::ocs::api`: a session
//! created for a chatbot of the caller's team ([`Ocs::create_api_session`]), a session ended,
//! tagged or given a state ([`Ocs::end_session`], [`Ocs::change_tags`], [`Ocs::set_state`]),
//! a participants POST ([`Ocs::post_participant`], one transaction) and a file's content
//! ([`Ocs::file_content`]). The list and get reads are plain scoped lookups rendered by the
//! HTTP layer.

use super::{Ocs, OcsError};
use crate::store::ocs::{
    NewOcsMessage, NewSession, OcsFile, OcsParticipant, OcsSession, ParticipantPost,
    ParticipantPosted,
};
use serde_json::{Value as Json, json};

/// A `POST /api/sessions/` request, validated.
#[derive(Debug, Clone)]
pub struct ApiSession {
    /// The chatbot id, lowercase.
    pub bot_id: String,
    pub participant: String,
    pub state: Json,
    pub messages: Vec<NewOcsMessage>,
    /// The API key that creates it (the session's owner).
    pub key_id: String,
}

impl Ocs {
    /// Create an API session of `org` (status `setup`, session token required). A chatbot
    /// of another team is a 404 and one that does not exist a 400, as OCS tells them apart.
    pub async fn create_api_session(
        &self,
        org: &str,
        req: ApiSession,
    ) -> Result<OcsSession, OcsError> {
        let org = org.to_string();
        self.engine
            .blocking(move |s| {
                if s.get_bot(&org, &req.bot_id).is_err() {
                    let exp = req.bot_id;
                    return Ok(Err(if s.ocs_bot_exists_anywhere(&exp)? {
                        OcsError::detail(404, "Experiment not found")
                    } else {
                        OcsError::field(
                            "experiment",
                            format!("Object with public_id={exp} does not exist."),
                        )
                    }));
                }
                s.ocs_create_session(
                    &org,
                    NewSession {
                        bot_id: req.bot_id,
                        participant_platform: "api".into(),
                        participant_identifier: req.participant,
                        platform: "api".into(),
                        channel_kind: "api".into(),
                        owner_key_id: Some(req.key_id),
                        status: "setup".into(),
                        state: req.state,
                        session_token_required: true,
                        messages: req.messages,
                        ..Default::default()
                    },
                )
                .map(Ok)
            })
            .await?
    }

    /// Apply a participants POST in one transaction; a chatbot not of `org` is a 404
    /// listing each such chatbot (the participant is written all the same, as OCS does).
    pub async fn post_participant(
        &self,
        org: &str,
        post: ParticipantPost,
    ) -> Result<OcsParticipant, OcsError> {
        let org = org.to_string();
        match self
            .engine
            .blocking(move |s| s.ocs_post_participant(&org, post))
            .await?
        {
            ParticipantPosted::Applied(p) => Ok(p),
            ParticipantPosted::MissingBots(ids) => {
                let errors: Vec<Json> = ids
                    .iter()
                    .map(|id| json!({"message": format!("Experiment {id} not found")}))
                    .collect();
                Err(OcsError::body(404, json!({"errors": errors})))
            }
        }
    }
}

fn session_not_found(id: &str) -> OcsError {
    OcsError::error(404, format!("Session not found: {id}"))
}

impl Ocs {
    /// End an API session: it moves to `pending-review`, as OCS's `end_experiment_session`.
    pub async fn end_session(&self, org: &str, id: &str) -> Result<(), OcsError> {
        let (o, i) = (org.to_string(), id.to_string());
        let found = self
            .engine
            .blocking(move |s| s.ocs_set_session_status(&o, &i, "pending-review"))
            .await?;
        found.then_some(()).ok_or_else(|| session_not_found(id))
    }

    /// Add or remove a session's user tags (system tags stay); the tags after.
    pub async fn change_tags(
        &self,
        org: &str,
        id: &str,
        tags: Vec<String>,
        add: bool,
        by_key: &str,
    ) -> Result<Vec<String>, OcsError> {
        let (o, i, by) = (org.to_string(), id.to_string(), by_key.to_string());
        self.engine
            .blocking(move |s| s.ocs_change_tags(&o, &i, tags, add, Some(by)))
            .await?
            .ok_or_else(|| session_not_found(id))
    }

    /// Replace a session's state; the state after.
    pub async fn set_state(&self, org: &str, id: &str, state: Json) -> Result<Json, OcsError> {
        let (o, i) = (org.to_string(), id.to_string());
        self.engine
            .blocking(move |s| s.ocs_set_session_state(&o, &i, state, false))
            .await?
            .ok_or_else(|| session_not_found(id))
    }

    /// A file of `org` with its bytes, both from the database (404 for another
    /// organization's, and for one deleted meanwhile).
    pub async fn file_content(&self, org: &str, id: i64) -> Result<(OcsFile, Vec<u8>), OcsError> {
        let org = org.to_string();
        self.engine
            .blocking(move |s| {
                let Some(f) = s.ocs_file(&org, id)? else {
                    return Ok(None);
                };
                Ok(s.ocs_file_bytes(&org, id)?.map(|bytes| (f, bytes)))
            })
            .await?
            .ok_or_else(|| OcsError::detail(404, "Not found."))
    }
}
