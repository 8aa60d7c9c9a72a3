//! Organization roles: what each may do, and the rule that an organization always keeps an
//! owner.
//!
//! * viewer: read everything of the organization (bots, flows, builds, conversations, usage);
//!   validate flows.
//! * editor: viewer + change bots and flows, build, publish/roll back, manage channels, use
//!   the try-it chat, end conversations.
//! * owner: editor + members and roles, OCS API keys, plugins, deleting bots.

use crate::store::{Membership, Role};

fn rank(r: Role) -> u8 {
    match r {
        Role::Viewer => 1,
        Role::Editor => 2,
        Role::Owner => 3,
    }
}

/// Does `have` include the rights of `need`?
pub fn allows(have: Role, need: Role) -> bool {
    rank(have) >= rank(need)
}

/// Refuses a change that would leave the organization without an owner. `new_role` = None
/// means removal of `user_id`.
pub fn check_owner_kept(
    members: &[Membership],
    user_id: &str,
    new_role: Option<Role>,
) -> Result<(), String> {
    let is_owner = members
        .iter()
        .any(|m| m.user_id == user_id && m.role == Role::Owner);
    let owners = members.iter().filter(|m| m.role == Role::Owner).count();
    if is_owner && owners == 1 && new_role != Some(Role::Owner) {
        return Err("an organization must keep at least one owner".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, role: Role) -> Membership {
        Membership {
            organization_id: "o".into(),
            user_id: id.into(),
            email: format!("{id}@x"),
            role,
        }
    }

    #[test]
    fn ranks() {
        assert!(allows(Role::Owner, Role::Editor));
        assert!(allows(Role::Editor, Role::Editor));
        assert!(!allows(Role::Viewer, Role::Editor));
        assert!(!allows(Role::Editor, Role::Owner));
    }

    #[test]
    fn last_owner_is_kept() {
        let one = [m("a", Role::Owner), m("b", Role::Editor)];
        assert!(check_owner_kept(&one, "a", None).is_err());
        assert!(check_owner_kept(&one, "a", Some(Role::Viewer)).is_err());
        assert!(check_owner_kept(&one, "a", Some(Role::Owner)).is_ok());
        assert!(check_owner_kept(&one, "b", None).is_ok());
        let two = [m("a", Role::Owner), m("b", Role::Owner)];
        assert!(check_owner_kept(&two, "a", None).is_ok());
    }
}
