//! Admin-UI persistence the core schema lacks: admin sessions (migration `0030_admin`), the
//! first-admin creation done atomically, and a few read shapes the UI lists need (bot
//! summaries, organizations with bot counts, one participant). Policy (expiry, CSRF, throttling,
//! roles) lives in `crate::admin`; this file only reads and writes rows.

use super::db::{Db, OptionalExtension, Row, params};
use super::ids::{new_id, now_millis};
use super::{Error, Organization, Participant, Result, Role, Store, User};
use serde::Serialize;

/// One admin session row. `token_hash` is the SHA-256 (hex) of the cookie's token.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSession {
    pub token_hash: String,
    pub user_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A bot as listed by the admin UI.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BotSummary {
    pub id: String,
    pub name: String,
    pub flows: i64,
    /// `seq` of the live build; `None` = the working copy serves.
    pub live_version: Option<i64>,
    pub updated_at: i64,
}

fn user_from_row(r: &Row, o: usize) -> Result<User> {
    Ok(User {
        id: r.get(o)?,
        email: r.get(o + 1)?,
        password_hash: r.get(o + 2)?,
        created_at: r.get(o + 3)?,
    })
}

/// Advisory lock key serializing "create the first admin" on PostgreSQL ("1stowner" in ASCII).
const FIRST_OWNER_LOCK: i64 = 0x3173_746f_776e_6572;

/// Guard of the first-admin check: on PostgreSQL, concurrent jobs (on any node) would each
/// count zero users and each create an owner; this transaction-scoped advisory lock makes them
/// run one after the other, and the second one's count (a new statement, READ COMMITTED) sees
/// the first one's user. SQLite's single writer already runs one job at a time.
fn first_owner_lock(c: &Db) -> Result<()> {
    if c.is_pg() {
        c.execute("SELECT pg_advisory_xact_lock(?1)", [FIRST_OWNER_LOCK])?;
    }
    Ok(())
}

impl Store {
    pub fn count_users(&self) -> Result<i64> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM users", (), |r| r.get(0)))
    }

    pub fn get_user(&self, id: &str) -> Result<Option<User>> {
        self.read(|c| {
            c.query_row(
                "SELECT id, email, password_hash, created_at FROM users WHERE id = ?1",
                [id],
                |r| user_from_row(r, 0),
            )
            .optional()
        })
    }

    /// Create a user who owns every existing organization, in one transaction. With
    /// `first_only`, fails with `Conflict` when any user exists (the one-time setup link must
    /// not work twice, even under concurrent requests).
    pub fn create_owner_of_all(
        &self,
        email: &str,
        password_hash: &str,
        first_only: bool,
    ) -> Result<User> {
        let email = email.trim().to_string();
        if !email.contains('@') {
            return Err(Error::Invalid(format!(
                "`{email}` is not an e-mail address"
            )));
        }
        let hash = password_hash.to_string();
        self.write(move |c| {
            if first_only {
                first_owner_lock(c)?;
                let n: i64 = c.query_row("SELECT COUNT(*) FROM users", (), |r| r.get(0))?;
                if n > 0 {
                    return Err(Error::Conflict("an admin account exists already".into()));
                }
            }
            let now = now_millis();
            let u = User {
                id: new_id(),
                email,
                password_hash: hash,
                created_at: now,
            };
            c.execute(
                "INSERT INTO users(id, email, password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![u.id, u.email, u.password_hash, now],
            )
            .map_err(|e| match e {
                Error::Conflict(_) => Error::Conflict(format!("a user `{}` exists", u.email)),
                e => e,
            })?;
            c.execute(
                "INSERT INTO memberships(organization_id, user_id, role, created_at)
                 SELECT id, ?1, 'owner', ?2 FROM organizations WHERE true
                 ON CONFLICT(organization_id, user_id) DO UPDATE SET role = 'owner'",
                params![u.id, now],
            )?;
            Ok(u)
        })
    }

    /// Store a new session; expired sessions are purged on the way.
    pub fn create_admin_session(
        &self,
        s: AdminSession,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM admin_sessions WHERE expires_at <= ?1",
                [s.created_at],
            )?;
            c.execute(
                "INSERT INTO admin_sessions(token_hash, user_id, csrf, created_at, last_seen_at,
                                            expires_at, ip, user_agent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.token_hash,
                    s.user_id,
                    s.csrf,
                    s.created_at,
                    s.last_seen_at,
                    s.expires_at,
                    ip,
                    user_agent
                ],
            )?;
            Ok(())
        })
    }

    /// An unexpired session and its user.
    pub fn admin_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(AdminSession, User)>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT s.token_hash, s.user_id, s.csrf, s.created_at, s.last_seen_at, s.expires_at,
                        u.id, u.email, u.password_hash, u.created_at
                 FROM admin_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )?
            .query_row(params![token_hash, now], |r| {
                Ok((
                    AdminSession {
                        token_hash: r.get(0)?,
                        user_id: r.get(1)?,
                        csrf: r.get(2)?,
                        created_at: r.get(3)?,
                        last_seen_at: r.get(4)?,
                        expires_at: r.get(5)?,
                    },
                    user_from_row(r, 6)?,
                ))
            })
            .optional()
        })
    }

    /// Slide a session's idle expiry.
    pub fn touch_admin_session(&self, token_hash: &str, now: i64, expires_at: i64) -> Result<()> {
        let t = token_hash.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE admin_sessions SET last_seen_at = ?2, expires_at = ?3 WHERE token_hash = ?1",
                params![t, now, expires_at],
            )?;
            Ok(())
        })
    }

    pub fn delete_admin_session(&self, token_hash: &str) -> Result<()> {
        let t = token_hash.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM admin_sessions WHERE token_hash = ?1", [t])?;
            Ok(())
        })
    }

    /// Ends every session of a user (password change, removal); returns how many.
    pub fn delete_user_sessions(&self, user_id: &str) -> Result<usize> {
        let u = user_id.to_string();
        self.write(move |c| c.execute("DELETE FROM admin_sessions WHERE user_id = ?1", [u]))
    }

    /// The bots of an organization with their flow count and live build number.
    pub fn bot_summaries(&self, org: &str) -> Result<Vec<BotSummary>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT b.id, b.name,
                        (SELECT COUNT(*) FROM flows f WHERE f.bot_id = b.id),
                        (SELECT v.seq FROM bot_versions v WHERE v.id = b.live_version_id),
                        b.updated_at
                 FROM bots b WHERE b.organization_id = ?1 ORDER BY lower(b.name)",
            )?;
            st.query_map([org], |r| {
                Ok(BotSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    flows: r.get(2)?,
                    live_version: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
        })
    }

    /// The organizations of a user with their role and number of bots.
    pub fn user_orgs_with_counts(&self, user_id: &str) -> Result<Vec<(Organization, Role, i64)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.name, o.is_default, o.created_at, m.role,
                        (SELECT COUNT(*) FROM bots b WHERE b.organization_id = o.id)
                 FROM memberships m JOIN organizations o ON o.id = m.organization_id
                 WHERE m.user_id = ?1 ORDER BY o.created_at",
            )?;
            st.query_map([user_id], |r| {
                let role: String = r.get(4)?;
                Ok((
                    super::orgs::org_from_row(r)?,
                    Role::parse(&role).unwrap_or(Role::Viewer),
                    r.get(5)?,
                ))
            })
        })
    }

    pub fn get_participant(&self, org: &str, id: &str) -> Result<Option<Participant>> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {} FROM participants WHERE id = ?1 AND organization_id = ?2",
                    super::conversations::PARTICIPANT_COLS
                ),
                [id, org],
                super::conversations::participant_from_row,
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), super::super::Durability::Normal).unwrap();
        (dir, s)
    }

    #[test]
    fn first_owner_only_once_and_owns_every_org() {
        let (_d, s) = store();
        let a = s.create_org("A", true).unwrap();
        let b = s.create_org("B", false).unwrap();
        let u = s
            .create_owner_of_all("root@example.com", "x", true)
            .unwrap();
        let orgs = s.user_orgs(&u.id).unwrap();
        assert_eq!(orgs.len(), 2);
        assert!(orgs.iter().all(|(_, r)| *r == Role::Owner));
        assert!(orgs.iter().any(|(o, _)| o.id == a.id) && orgs.iter().any(|(o, _)| o.id == b.id));
        assert!(matches!(
            s.create_owner_of_all("two@example.com", "x", true),
            Err(Error::Conflict(_))
        ));
        assert_eq!(s.count_users().unwrap(), 1);
    }

    #[test]
    fn sessions_expire_and_are_deleted() {
        let (_d, s) = store();
        let u = s.create_owner_of_all("a@example.com", "x", false).unwrap();
        let now = now_millis();
        let sess = AdminSession {
            token_hash: "h1".into(),
            user_id: u.id.clone(),
            csrf: "c".into(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + 1000,
        };
        s.create_admin_session(sess.clone(), None, None).unwrap();
        let (got, user) = s.admin_session("h1", now).unwrap().unwrap();
        assert_eq!(got, sess);
        assert_eq!(user.email, "a@example.com");
        assert!(
            s.admin_session("h1", now + 1000).unwrap().is_none(),
            "expired"
        );
        s.touch_admin_session("h1", now + 10, now + 5000).unwrap();
        assert!(s.admin_session("h1", now + 2000).unwrap().is_some());
        assert_eq!(s.delete_user_sessions(&u.id).unwrap(), 1);
        assert!(s.admin_session("h1", now).unwrap().is_none());
    }
}
