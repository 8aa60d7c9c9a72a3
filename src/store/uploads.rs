//! Upload quotas of OCS chat files: the bytes a chat session and an organization store, and
//! the decision to store new files within them. The counts live in `ocs_file_usage`, kept by
//! triggers on `ocs_files` (migration 0062), so a check is two primary-key lookups.
//!
//! The check and the insert are one writer job ([`Store::ocs_store_uploads`]): jobs run one
//! after the other on the writer, so two parallel uploads cannot both pass a check that only
//! one of them fits. [`Store::ocs_upload_usage`] is a read for an early refusal only.

use super::ids::now_millis;
use super::ocs::{NewOcsFile, OcsFile};
use super::{Result, Store};
use rusqlite::{Connection, OptionalExtension, params};

/// Largest bytes of stored files, per chat session and per organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadQuota {
    pub per_session: u64,
    pub per_org: u64,
}

impl Default for UploadQuota {
    fn default() -> Self {
        UploadQuota {
            per_session: 100 * 1024 * 1024,
            per_org: 1024 * 1024 * 1024,
        }
    }
}

/// Which quota an upload would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    Session,
    Organization,
}

/// Bytes stored now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadUsage {
    pub session: u64,
    pub org: u64,
}

impl UploadUsage {
    /// The first quota that `adding` more bytes would pass (the session's first).
    pub fn exceeded(&self, adding: u64, q: &UploadQuota) -> Option<QuotaScope> {
        if self.session.saturating_add(adding) > q.per_session {
            Some(QuotaScope::Session)
        } else if self.org.saturating_add(adding) > q.per_org {
            Some(QuotaScope::Organization)
        } else {
            None
        }
    }

    /// Is a quota already used up (no byte more fits)?
    pub fn full(&self, q: &UploadQuota) -> Option<QuotaScope> {
        if self.session >= q.per_session {
            Some(QuotaScope::Session)
        } else if self.org >= q.per_org {
            Some(QuotaScope::Organization)
        } else {
            None
        }
    }
}

/// What [`Store::ocs_store_uploads`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredUploads {
    /// The rows, in the order given; the caller puts the bytes under their ids.
    Stored(Vec<OcsFile>),
    /// Nothing was written.
    OverQuota(QuotaScope),
}

fn usage(c: &Connection, org: &str, session: &str) -> Result<UploadUsage> {
    let mut st = c.prepare_cached(
        "SELECT bytes FROM ocs_file_usage WHERE organization_id = ?1 AND session_id = ?2",
    )?;
    let mut get = |scope: &str| -> Result<u64> {
        let b: Option<i64> = st.query_row(params![org, scope], |r| r.get(0)).optional()?;
        Ok(b.unwrap_or(0).max(0) as u64)
    };
    Ok(UploadUsage {
        org: get("")?,
        session: get(session)?,
    })
}

impl Store {
    /// Bytes stored by `session` and by `org` (read pool).
    pub fn ocs_upload_usage(&self, org: &str, session: &str) -> Result<UploadUsage> {
        self.read_lite(|c| usage(c, org, session))
    }

    /// Inserts the file rows of one upload to `session` (all or none) if they fit both
    /// quotas, in one writer job. The rows belong to `session` whatever their `session_id`
    /// says, since that is the session whose quota they use.
    pub fn ocs_store_uploads(
        &self,
        org: &str,
        session: &str,
        files: Vec<NewOcsFile>,
        quota: UploadQuota,
    ) -> Result<StoredUploads> {
        let (org, session) = (org.to_string(), session.to_string());
        self.write_lite(move |c| {
            let adding = files.iter().map(|f| f.size.max(0) as u64).sum::<u64>();
            if let Some(scope) = usage(c, &org, &session)?.exceeded(adding, &quota) {
                return Ok(StoredUploads::OverQuota(scope));
            }
            let mut insert = c.prepare_cached(
                "INSERT INTO ocs_files(organization_id, name, content_type, size, purpose,
                    metadata, session_id, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let now = now_millis();
            let mut out = Vec::with_capacity(files.len());
            for f in files {
                insert.execute(params![
                    org,
                    f.name,
                    f.content_type,
                    f.size,
                    f.purpose,
                    f.metadata.to_string(),
                    session,
                    f.expires_at,
                    now
                ])?;
                out.push(OcsFile {
                    id: c.last_insert_rowid(),
                    organization_id: org.clone(),
                    name: f.name,
                    content_type: f.content_type,
                    size: f.size,
                    purpose: f.purpose,
                    metadata: f.metadata,
                    session_id: Some(session.clone()),
                    expires_at: f.expires_at,
                });
            }
            Ok(StoredUploads::Stored(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_decisions() {
        let q = UploadQuota {
            per_session: 100,
            per_org: 1000,
        };
        let u = UploadUsage {
            session: 60,
            org: 960,
        };
        assert_eq!(u.exceeded(40, &q), None);
        assert_eq!(u.exceeded(41, &q), Some(QuotaScope::Session));
        assert_eq!(
            UploadUsage {
                session: 0,
                org: 960
            }
            .exceeded(41, &q),
            Some(QuotaScope::Organization)
        );
        assert_eq!(u.full(&q), None);
        assert_eq!(
            UploadUsage {
                session: 100,
                org: 0
            }
            .full(&q),
            Some(QuotaScope::Session)
        );
    }
}
