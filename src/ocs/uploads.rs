//! Chat uploads' decisions (ocs-api §5.6.2) behind `POST /api/chat/{sid}/upload/`: the
//! quotas, the received body's checks ([`files::check_upload`]) and the files stored.
//!
//! Quotas (ours): a chat session and an organization may store at most so many bytes of files
//! (`--upload-quota-session`, `--upload-quota-org`). Over quota is **413** with OCS's
//! `{"error": …}` body rather than 429: waiting does not help (attached files never expire),
//! the request is too large for what is left. A session or organization already at its quota
//! is refused before its body is read ([`Ocs::upload_room`]); otherwise the check is made
//! again together with the insert of the rows and the bytes, in one write job
//! ([`Ocs::store_upload`]), so that parallel uploads cannot both pass it.

use super::files::{self, ReceiveError, Received};
use super::{Ocs, OcsError};
use crate::store::ocs::{NewOcsFile, OcsFile, OcsSession};
use crate::store::uploads::{NewUpload, QuotaScope, StoredUploads, UploadQuota};
use serde_json::json;

/// 413 of a body past [`files::MAX_REQUEST`].
pub fn too_large() -> OcsError {
    OcsError::detail(413, "Request body too large.")
}

/// A body that could not be received, as this family says it.
impl From<ReceiveError> for OcsError {
    fn from(e: ReceiveError) -> OcsError {
        match e {
            ReceiveError::Malformed => OcsError::error(400, "Malformed multipart body"),
            ReceiveError::TooLarge => too_large(),
            ReceiveError::Stalled(idle) => OcsError::detail(
                408,
                format!(
                    "Request body timed out: no bytes for {} s.",
                    idle.as_secs().max(1)
                ),
            ),
            ReceiveError::Read(e) => {
                OcsError::detail(400, format!("Could not read the request body: {e}"))
            }
            ReceiveError::Io(e) => OcsError::Internal(format!("upload spool: {e}")),
        }
    }
}

fn over_quota(scope: QuotaScope, q: &UploadQuota) -> OcsError {
    let (who, limit) = match scope {
        QuotaScope::Session => ("this chat session", q.per_session),
        QuotaScope::Organization => ("this chatbot's team", q.per_org),
    };
    OcsError::error(
        413,
        format!(
            "Upload quota exceeded: {who} may store at most {} of files",
            size_text(limit)
        ),
    )
}

/// `100 MB` for whole mebibytes (OCS writes its 50 MB limit so), else bytes.
fn size_text(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("{} MB", bytes / MB)
    } else {
        format!("{bytes} bytes")
    }
}

impl Ocs {
    /// Is there room for an upload to `session`? Refused when it or its organization is
    /// already at its quota (before the body is read).
    pub async fn upload_room(
        &self,
        session: &OcsSession,
        quota: UploadQuota,
    ) -> Result<(), OcsError> {
        let (o, s2) = (session.organization_id.clone(), session.id.clone());
        let usage = self
            .engine
            .blocking(move |s| s.ocs_upload_usage(&o, &s2))
            .await?;
        match usage.full(&quota) {
            Some(scope) => Err(over_quota(scope, &quota)),
            None => Ok(()),
        }
    }

    /// Check a received upload (OCS's checks, in order) and store its files within the
    /// quotas: the bytes are read back from their spool files (within the memory bound of
    /// [`files::hold_content`]) and stored with their rows in one write job, all or nothing.
    pub async fn store_upload(
        &self,
        session: &OcsSession,
        mut received: Received,
        quota: UploadQuota,
    ) -> Result<Vec<OcsFile>, OcsError> {
        let types = files::check_upload(&received).map_err(|e| OcsError::error(400, e))?;
        let expires_at = crate::store::ids::now_millis() + files::EXPIRY_MS;
        let metadata = json!({
            "session_id": session.id,
            "uploaded_by": session.participant.identifier,
            "participant_name": received.participant_name,
            "participant_remote_id": received.participant_remote_id,
        });
        let rows: Vec<NewOcsFile> = received
            .files
            .iter()
            .zip(types)
            .map(|(f, content_type)| NewOcsFile {
                name: f.name.clone(),
                content_type,
                size: f.size as i64,
                purpose: "message_media".into(),
                metadata: metadata.clone(),
                expires_at: Some(expires_at),
            })
            .collect();
        let total: u64 = received.files.iter().map(|f| f.size).sum();
        let _held = files::hold_content(total).await;
        let (org, sid) = (session.organization_id.clone(), session.id.clone());
        let outcome = self
            .engine
            .blocking(move |s| {
                let mut uploads = Vec::with_capacity(rows.len());
                for (file, f) in rows.into_iter().zip(received.files.iter_mut()) {
                    uploads.push(NewUpload {
                        file,
                        content: f.content()?,
                    });
                }
                s.ocs_store_uploads(&org, &sid, uploads, quota)
            })
            .await?;
        match outcome {
            StoredUploads::Stored(stored) => Ok(stored),
            StoredUploads::OverQuota(scope) => Err(over_quota(scope, &quota)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_ocs_writes_them() {
        assert_eq!(size_text(100 * 1024 * 1024), "100 MB");
        assert_eq!(size_text(1000), "1000 bytes");
    }
}
