//! Organizations, admin users and memberships.

use super::db::{OptionalExtension, Row, params};
use super::ids::{new_id, now_millis};
use super::{Error, Membership, Organization, Result, Role, Store, User};

pub(super) fn org_from_row(r: &Row) -> Result<Organization> {
    Ok(Organization {
        id: r.get(0)?,
        name: r.get(1)?,
        is_default: r.get(2)?,
        created_at: r.get(3)?,
    })
}

const ORG_COLS: &str = "id, name, is_default, created_at";

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(Error::Invalid(
            "a name must have 1 to 200 characters".into(),
        ));
    }
    Ok(name.to_string())
}

impl Store {
    /// Create an organization. `is_default` marks the installation's default organization
    /// (at most one). A name already taken (case-insensitive) is a conflict.
    pub fn create_org(&self, name: &str, is_default: bool) -> Result<Organization> {
        let name = check_name(name)?;
        self.write(move |c| {
            let now = now_millis();
            let org = Organization {
                id: new_id(),
                name,
                is_default,
                created_at: now,
            };
            c.execute(
                "INSERT INTO organizations(id, name, is_default, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![org.id, org.name, org.is_default, now],
            )
            .map_err(|e| match e {
                Error::Conflict(_) => {
                    Error::Conflict(format!("an organization named `{}` exists", org.name))
                }
                e => e,
            })?;
            Ok(org)
        })
    }

    pub fn list_orgs(&self) -> Result<Vec<Organization>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ORG_COLS} FROM organizations ORDER BY created_at"
            ))?;
            let rows = st.query_map((), org_from_row)?;
            Ok(rows)
        })
    }

    pub fn default_org(&self) -> Result<Option<Organization>> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {ORG_COLS} FROM organizations WHERE is_default = 1"),
                (),
                org_from_row,
            )
            .optional()
        })
    }

    pub fn get_org(&self, org: &str) -> Result<Organization> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {ORG_COLS} FROM organizations WHERE id = ?1"),
                [org],
                org_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("organization `{org}` not found")))
        })
    }

    /// An organization by id or name (case-insensitive).
    pub fn find_org(&self, id_or_name: &str) -> Result<Organization> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {ORG_COLS} FROM organizations WHERE id = ?1 OR lower(name) = lower(?1)
                     ORDER BY id = ?1 DESC LIMIT 1"
                ),
                [id_or_name],
                org_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("organization `{id_or_name}` not found")))
        })
    }

    /// Create an admin user with an argon2id hash (see `crate::secrets::hash_password`).
    pub fn create_user(&self, email: &str, password_hash: &str) -> Result<User> {
        let email = email.trim().to_string();
        if !email.contains('@') {
            return Err(Error::Invalid(format!(
                "`{email}` is not an e-mail address"
            )));
        }
        let password_hash = password_hash.to_string();
        self.write(move |c| {
            let now = now_millis();
            let u = User {
                id: new_id(),
                email,
                password_hash,
                created_at: now,
            };
            c.execute(
                "INSERT INTO users(id, email, password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![u.id, u.email, u.password_hash, now],
            )?;
            Ok(u)
        })
    }

    pub fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.read(|c| {
            c.query_row(
                "SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower(?1)",
                [email.trim()],
                |r| {
                    Ok(User {
                        id: r.get(0)?,
                        email: r.get(1)?,
                        password_hash: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    pub fn set_user_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let (u, h) = (user_id.to_string(), password_hash.to_string());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
                params![u, h, now_millis()],
            )?;
            if n == 0 {
                return Err(Error::NotFound("user not found".into()));
            }
            Ok(())
        })
    }

    /// Add (or change the role of) a member of `org`.
    pub fn set_membership(&self, org: &str, user_id: &str, role: Role) -> Result<()> {
        let (o, u) = (org.to_string(), user_id.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT INTO memberships(organization_id, user_id, role, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(organization_id, user_id) DO UPDATE SET role = excluded.role",
                params![o, u, role.as_str(), now_millis()],
            )?;
            Ok(())
        })
    }

    pub fn remove_membership(&self, org: &str, user_id: &str) -> Result<()> {
        let (o, u) = (org.to_string(), user_id.to_string());
        self.write(move |c| {
            c.execute(
                "DELETE FROM memberships WHERE organization_id = ?1 AND user_id = ?2",
                params![o, u],
            )?;
            Ok(())
        })
    }

    pub fn list_members(&self, org: &str) -> Result<Vec<Membership>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT m.organization_id, m.user_id, u.email, m.role FROM memberships m
                 JOIN users u ON u.id = m.user_id WHERE m.organization_id = ?1 ORDER BY u.email",
            )?;
            let rows = st.query_map([org], |r| {
                let role: String = r.get(3)?;
                Ok(Membership {
                    organization_id: r.get(0)?,
                    user_id: r.get(1)?,
                    email: r.get(2)?,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                })
            })?;
            Ok(rows)
        })
    }

    /// The organizations a user belongs to, with the role in each.
    pub fn user_orgs(&self, user_id: &str) -> Result<Vec<(Organization, Role)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.name, o.is_default, o.created_at, m.role FROM memberships m
                 JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = ?1
                 ORDER BY o.created_at",
            )?;
            let rows = st.query_map([user_id], |r| {
                let role: String = r.get(4)?;
                Ok((org_from_row(r)?, Role::parse(&role).unwrap_or(Role::Viewer)))
            })?;
            Ok(rows)
        })
    }
}
