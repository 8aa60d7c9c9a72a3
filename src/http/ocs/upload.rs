//! `POST /api/chat/{sid}/upload/` (ocs-api §5.6.2): access, the session's room
//! ([`crate::ocs::Ocs::upload_room`]), the multipart body received as it streams
//! (`ocs::files::receive`), then its checks and the files stored within the upload quotas
//! ([`crate::ocs::Ocs::store_upload`], which documents the quotas).

use super::chat::session_access;
use super::{Answer, Call, json_resp};
use crate::http::request::body_idle;
use crate::ocs::OcsError;
use crate::ocs::files;
use crate::ocs::uploads::too_large;
use crate::store::uploads::UploadQuota;
use http_body_util::BodyExt;
use hyper::StatusCode;
use serde_json::json;

pub(crate) async fn upload(call: &mut Call, quota: UploadQuota) -> Answer {
    let session = session_access(call).await?;
    let ocs = call.ocs.clone();
    crate::ocs::chat::ensure_open(&session)?;
    let Some(boundary) = call.header("content-type").and_then(files::boundary) else {
        return Err(OcsError::error(400, "No files provided"));
    };
    if !files::boundary_ok(&boundary) {
        return Err(OcsError::error(400, "Malformed multipart body"));
    }
    if call
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > files::MAX_REQUEST)
    {
        return Err(too_large());
    }
    ocs.upload_room(&session, quota).await?;
    let Some(body) = call.body.take() else {
        return Err(OcsError::error(400, "Malformed multipart body"));
    };
    let data_dir = ocs.store.data_dir().to_path_buf();
    let received =
        files::receive(body.into_data_stream(), &boundary, body_idle(), &data_dir).await?;
    let stored = ocs.store_upload(&session, received, quota).await?;
    Ok(json_resp(
        StatusCode::CREATED,
        &json!({"files": stored.iter().map(|f| json!({"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type})).collect::<Vec<_>>()}),
    ))
}
