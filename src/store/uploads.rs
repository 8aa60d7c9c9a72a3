//! OCS chat uploads in the store: their bytes (`ocs_file_content`, migration 0063) and the
//! upload quotas, the bytes a chat session and an organization store. The counts live in
//! `ocs_file_usage`, kept by triggers on `ocs_files` (migration 0062), so a check is two
//! primary-key lookups.
//!
//! The check and the insert of rows and bytes are one write job ([`Store::ocs_store_uploads`]),
//! all or nothing. On SQLite jobs run one after the other on the writer, so two parallel
//! uploads cannot both pass a check that only one of them fits; on PostgreSQL jobs run
//! concurrently (on several nodes), so the job first takes a transaction lock on the
//! organization's uploads (see [`Store::ocs_store_uploads`]). [`Store::ocs_upload_usage`] is a
//! read for an early refusal only.
//!
//! The bytes live in the database on both backends: nodes of a cluster share no disk.
//! Installations from before 0063 kept them in files `DATA/ocs-files/<id>`, which
//! [`import_disk_files`] moves in once at open.

use super::db::{Db, OptionalExtension, params};
use super::ids::now_millis;
use super::ocs::{NewOcsFile, OcsFile};
use super::{Result, Store};
use std::path::Path;

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

/// One file of an upload: its row and its bytes. The row's `size` is the bytes' length
/// (whatever `file.size` says), so the quotas count what is stored.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub file: NewOcsFile,
    pub content: Vec<u8>,
}

/// What [`Store::ocs_store_uploads`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredUploads {
    /// The rows, in the order given (their bytes are stored with them).
    Stored(Vec<OcsFile>),
    /// Nothing was written.
    OverQuota(QuotaScope),
}

fn usage(c: &Db, org: &str, session: &str) -> Result<UploadUsage> {
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
        self.read(|c| usage(c, org, session))
    }

    /// Inserts the files of one upload to `session`, rows and bytes (all or none), if they
    /// fit both quotas, in one write job. The rows belong to `session` whatever their
    /// `session_id` says, since that is the session whose quota they use.
    ///
    /// Guard (PostgreSQL): the quota is read, then written by the insert's triggers; a
    /// transaction-scoped advisory lock on the organization's uploads
    /// ([`super::plugins::pg_xact_lock`]) makes concurrent uploads of one organization, on any
    /// node, check and insert one after the other (the session quota is within the
    /// organization's, so one lock covers both). SQLite's single writer already does.
    pub fn ocs_store_uploads(
        &self,
        org: &str,
        session: &str,
        files: Vec<NewUpload>,
        quota: UploadQuota,
    ) -> Result<StoredUploads> {
        let (org, session) = (org.to_string(), session.to_string());
        self.write(move |c| {
            super::plugins::pg_xact_lock(c, &["ocs-upload-quota", &org])?;
            let adding = files.iter().map(|f| f.content.len() as u64).sum::<u64>();
            if let Some(scope) = usage(c, &org, &session)?.exceeded(adding, &quota) {
                return Ok(StoredUploads::OverQuota(scope));
            }
            let mut insert = c.prepare_cached(
                "INSERT INTO ocs_files(organization_id, name, content_type, size, purpose,
                    metadata, session_id, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 RETURNING id",
            )?;
            let mut bytes = c.prepare_cached(
                "INSERT INTO ocs_file_content(organization_id, file_id, content)
                 VALUES (?1, ?2, ?3)",
            )?;
            let now = now_millis();
            let mut out = Vec::with_capacity(files.len());
            for NewUpload { file: f, content } in files {
                let size = content.len() as i64;
                let id: i64 = insert.query_row(
                    params![
                        org,
                        f.name,
                        f.content_type,
                        size,
                        f.purpose,
                        f.metadata.to_string(),
                        session,
                        f.expires_at,
                        now
                    ],
                    |r| r.get(0),
                )?;
                bytes.execute(params![org, id, content])?;
                out.push(OcsFile {
                    id,
                    organization_id: org.clone(),
                    name: f.name,
                    content_type: f.content_type,
                    size,
                    purpose: f.purpose,
                    metadata: f.metadata,
                    session_id: Some(session.clone()),
                    expires_at: f.expires_at,
                });
            }
            Ok(StoredUploads::Stored(out))
        })
    }

    /// The bytes of `org`'s file `id` (`None` for another organization's file, or one gone).
    pub fn ocs_file_bytes(&self, org: &str, id: i64) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.query_row(
                "SELECT content FROM ocs_file_content WHERE organization_id = ?1 AND file_id = ?2",
                params![org, id],
                |r| r.get(0),
            )
            .optional()
        })
    }
}

/// Where installations from before migration 0063 kept the bytes of file `<id>`:
/// `DATA/ocs-files/<id>` (the same folder also holds the upload spool, `incoming/`).
fn legacy_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("ocs-files")
}

/// Moves upload bytes kept on disk by installations from before migration 0063 into
/// `ocs_file_content`, once, at open after the migrations (SQLite; a PostgreSQL database
/// never had them). Each file is one statement, committed before the file is removed, so a
/// crash midway leaves nothing lost and the next open goes on: a file whose bytes are in the
/// database already, or whose row is gone (expired while the bytes stayed), is only removed.
/// Other names (the spool folder `incoming/`) are left alone. A file that cannot be read is
/// logged and left for the next open. Returns how many files were moved.
///
/// `c` must not be in a transaction (each insert commits on its own; a big installation's
/// files are never all held in one transaction or in memory: one file at a time).
pub(super) fn import_disk_files(c: &Db, data_dir: &Path) -> Result<usize> {
    let dir = legacy_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut moved = 0;
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        let content = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "OCS upload left on disk: cannot be read");
                continue;
            }
        };
        // The row says which organization the bytes belong to; no row, nothing inserted.
        moved += c.execute(
            "INSERT INTO ocs_file_content(organization_id, file_id, content)
             SELECT organization_id, id, ?2 FROM ocs_files WHERE id = ?1
             ON CONFLICT DO NOTHING",
            params![id, content],
        )?;
        std::fs::remove_file(&path)?;
    }
    if moved > 0 {
        tracing::info!(
            moved,
            "moved OCS uploads from the data dir into the database"
        );
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;
    use serde_json::json;

    fn upload(name: &str, content: &[u8]) -> NewUpload {
        NewUpload {
            file: NewOcsFile {
                name: name.into(),
                content_type: "text/plain".into(),
                size: 0,
                purpose: "message_media".into(),
                metadata: json!({}),
                expires_at: Some(1),
            },
            content: content.to_vec(),
        }
    }

    fn stored(s: &Store, org: &str, files: Vec<NewUpload>, quota: UploadQuota) -> Vec<OcsFile> {
        match s.ocs_store_uploads(org, "s1", files, quota).unwrap() {
            StoredUploads::Stored(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn content_rows(s: &Store) -> i64 {
        s.read(|c| c.query_row("SELECT COUNT(*) FROM ocs_file_content", (), |r| r.get(0)))
            .unwrap()
    }

    /// Rows and bytes go in together, within the quota, all or nothing; the bytes are read
    /// back by their organization only, and go with their row (delete, expiry sweep).
    #[test]
    fn uploads_store_bytes_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        let org = s.create_org("a", false).unwrap().id;
        let other = s.create_org("b", false).unwrap().id;
        let q = UploadQuota {
            per_session: 10,
            per_org: 100,
        };
        let f = stored(
            &s,
            &org,
            vec![upload("a.txt", b"hello"), upload("e.txt", b"")],
            q,
        );
        assert_eq!((f[0].size, f[1].size), (5, 0), "sizes are the bytes'");
        assert_eq!(s.ocs_file_bytes(&org, f[0].id).unwrap().unwrap(), b"hello");
        assert_eq!(s.ocs_file_bytes(&org, f[1].id).unwrap().unwrap(), b"");
        assert_eq!(s.ocs_file_bytes(&other, f[0].id).unwrap(), None);
        assert_eq!(s.ocs_upload_usage(&org, "s1").unwrap().session, 5);
        // Past the session's quota: nothing of the upload is written.
        assert_eq!(
            s.ocs_store_uploads(
                &org,
                "s1",
                vec![upload("b.txt", b"1"), upload("c.txt", b"23456")],
                q
            )
            .unwrap(),
            StoredUploads::OverQuota(QuotaScope::Session)
        );
        assert_eq!(content_rows(&s), 2);
        s.ocs_delete_files(&org, vec![f[0].id]).unwrap();
        assert_eq!(s.ocs_file_bytes(&org, f[0].id).unwrap(), None);
        assert_eq!(content_rows(&s), 1);
        assert_eq!(s.ocs_sweep_files(10, 100).unwrap(), vec![f[1].id]);
        assert_eq!(content_rows(&s), 0, "the expiry sweep takes the bytes too");
    }

    /// An installation from before 0063 kept the bytes in `DATA/ocs-files/<id>`: the next
    /// open moves them into the database and removes the files, once; bytes whose row is
    /// gone are removed; the spool folder and other names stay.
    #[test]
    fn files_on_disk_move_into_the_database_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        let org = s.create_org("a", false).unwrap().id;
        let q = UploadQuota::default();
        let f = stored(
            &s,
            &org,
            vec![upload("a.txt", b"old"), upload("b.txt", b"kept")],
            q,
        );
        // As an old installation left it: a's bytes on disk only; b's in both places (a
        // crash after its insert, before the file was removed).
        let gone = f[0].id;
        s.write(move |c| c.execute("DELETE FROM ocs_file_content WHERE file_id = ?1", [gone]))
            .unwrap();
        drop(s);
        let legacy = dir.path().join("ocs-files");
        std::fs::create_dir_all(legacy.join("incoming")).unwrap();
        std::fs::write(legacy.join(f[0].id.to_string()), b"from disk").unwrap();
        std::fs::write(legacy.join(f[1].id.to_string()), b"stale copy").unwrap();
        std::fs::write(legacy.join("987654"), b"orphan").unwrap();
        std::fs::write(legacy.join("incoming").join("x.part"), b"spool").unwrap();
        std::fs::write(legacy.join("notes"), b"not ours").unwrap();

        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(
            s.ocs_file_bytes(&org, f[0].id).unwrap().unwrap(),
            b"from disk"
        );
        assert_eq!(s.ocs_file_bytes(&org, f[1].id).unwrap().unwrap(), b"kept");
        assert_eq!(content_rows(&s), 2, "the orphan is not imported");
        let mut left: Vec<String> = std::fs::read_dir(&legacy)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["incoming", "notes"]);
        assert!(legacy.join("incoming").join("x.part").exists());
        drop(s);
        // Idempotent: nothing left to move, nothing changes.
        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(
            s.ocs_file_bytes(&org, f[0].id).unwrap().unwrap(),
            b"from disk"
        );
        assert_eq!(content_rows(&s), 2);
    }

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
