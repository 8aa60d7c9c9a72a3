//! The API-key endpoints' writes (ocs-api §5.2–5.3) behind `http::ocs::api`: a session
//! created for a chatbot of the caller's team ([`Ocs::create_api_session`]) and a
//! participants POST ([`Ocs::post_participant`], one transaction). The reads of those
//! endpoints are plain scoped lookups rendered by the HTTP layer.

use super::{Ocs, OcsError};
use crate::store::ocs::{
    NewOcsMessage, NewSession, OcsParticipant, OcsSession, ParticipantPost, ParticipantPosted,
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
