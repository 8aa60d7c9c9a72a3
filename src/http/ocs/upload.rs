//! `POST /api/chat/{sid}/upload/` (ocs-api §5.6.2): access, the session's state, then the
//! multipart body received as it streams (`ocs::files::receive`), OCS's checks in order, and
//! the files stored within the upload quotas.
//!
//! Quotas (ours): a chat session and an organization may store at most so many bytes of files
//! (`--upload-quota-session`, `--upload-quota-org`). Over quota is **413** with OCS's
//! `{"error": …}` body rather than 429: waiting does not help (attached files never expire),
//! the request is too large for what is left. A session or organization already at its quota
//! is refused before its body is read; otherwise the check is made again together with the
//! insert, in one writer job, so that parallel uploads cannot both pass it.

use super::chat::access;
use super::{Call, detail, error, internal, json_resp};
use crate::http::request::body_idle;
use crate::http::response::Body;
use crate::ocs::files::{self, ReceiveError};
use crate::store::ocs::NewOcsFile;
use crate::store::uploads::{QuotaScope, StoredUploads, UploadQuota};
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use serde_json::json;

pub(crate) async fn upload(call: &mut Call, quota: UploadQuota) -> Response<Body> {
    let (session, _) = match access(call).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if session.status == "complete" {
        return error(StatusCode::BAD_REQUEST, "Session has ended");
    }
    let Some(boundary) = call.header("content-type").and_then(files::boundary) else {
        return error(StatusCode::BAD_REQUEST, "No files provided");
    };
    if !files::boundary_ok(&boundary) {
        return error(StatusCode::BAD_REQUEST, "Malformed multipart body");
    }
    if call
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > files::MAX_REQUEST)
    {
        return too_large();
    }
    let (org, sid) = (session.organization_id.clone(), session.id.clone());
    let (o, s2) = (org.clone(), sid.clone());
    let usage = match call.blocking(move |s| s.ocs_upload_usage(&o, &s2)).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Some(scope) = usage.full(&quota) {
        return over_quota(scope, &quota);
    }

    let Some(body) = call.body.take() else {
        return error(StatusCode::BAD_REQUEST, "Malformed multipart body");
    };
    let data_dir = call.ocs.store.data_dir().to_path_buf();
    let received = files::receive(body.into_data_stream(), &boundary, body_idle(), &data_dir).await;
    let mut received = match received {
        Ok(r) => r,
        Err(ReceiveError::Malformed) => {
            return error(StatusCode::BAD_REQUEST, "Malformed multipart body");
        }
        Err(ReceiveError::TooLarge) => return too_large(),
        Err(ReceiveError::Stalled(idle)) => {
            return detail(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "Request body timed out: no bytes for {} s.",
                    idle.as_secs().max(1)
                ),
            );
        }
        Err(ReceiveError::Read(e)) => {
            return detail(
                StatusCode::BAD_REQUEST,
                &format!("Could not read the request body: {e}"),
            );
        }
        Err(ReceiveError::Io(e)) => return internal(format!("upload spool: {e}")),
    };
    let types = match files::check_upload(&received) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };

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
            session_id: Some(sid.clone()),
            expires_at: Some(expires_at),
        })
        .collect();
    let r = call
        .blocking(move |s| {
            let outcome = s.ocs_store_uploads(&org, &sid, rows, quota)?;
            let StoredUploads::Stored(stored) = &outcome else {
                return Ok(outcome);
            };
            let moved = std::fs::create_dir_all(s.data_dir().join("ocs-files")).and_then(|()| {
                stored
                    .iter()
                    .zip(received.files.iter_mut())
                    .try_for_each(|(row, f)| f.persist(&files::path_of(s.data_dir(), row.id)))
            });
            if let Err(e) = moved {
                let ids: Vec<i64> = stored.iter().map(|f| f.id).collect();
                for id in &ids {
                    let _ = std::fs::remove_file(files::path_of(s.data_dir(), *id));
                }
                s.ocs_delete_files(&org, ids)?;
                return Err(e.into());
            }
            Ok(outcome)
        })
        .await;
    match r {
        Ok(StoredUploads::Stored(stored)) => json_resp(
            StatusCode::CREATED,
            &json!({"files": stored.iter().map(|f| json!({"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type})).collect::<Vec<_>>()}),
        ),
        Ok(StoredUploads::OverQuota(scope)) => over_quota(scope, &quota),
        Err(r) => r,
    }
}

fn too_large() -> Response<Body> {
    detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
}

fn over_quota(scope: QuotaScope, q: &UploadQuota) -> Response<Body> {
    let (who, limit) = match scope {
        QuotaScope::Session => ("this chat session", q.per_session),
        QuotaScope::Organization => ("this chatbot's team", q.per_org),
    };
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_ocs_writes_them() {
        assert_eq!(size_text(100 * 1024 * 1024), "100 MB");
        assert_eq!(size_text(1000), "1000 bytes");
    }
}
