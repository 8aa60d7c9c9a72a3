//! Admin-side policy that is not SQL and not HTTP: admin sessions and their cookies
//! ([`session`]), CSRF checks, login throttling ([`throttle`]), organization roles
//! ([`roles`]), the one-time first-run setup link ([`setup`]) and password rules.
//!
//! The HTTP surface is `crate::http::admin`; the rows live in `crate::store::admin`.
//! Process-wide state (the throttle and the setup token) is one [`Admin`] per process,
//! reached through [`global`]: one process serves one data directory.

pub mod roles;
pub mod session;
pub mod setup;
pub mod throttle;

use std::sync::OnceLock;

/// In-memory admin state of this process.
#[derive(Debug, Default)]
pub struct Admin {
    pub throttle: throttle::LoginThrottle,
    pub setup: setup::SetupToken,
}

/// The process's admin state.
pub fn global() -> &'static Admin {
    static ADMIN: OnceLock<Admin> = OnceLock::new();
    ADMIN.get_or_init(Admin::default)
}

/// Shortest accepted admin password (NIST SP 800-63B asks for at least 8; we ask 10).
pub const MIN_PASSWORD: usize = 10;
/// Longest accepted password: argon2 hashes anything, but a huge body must not cost CPU.
pub const MAX_PASSWORD: usize = 1024;

/// Checks a new password against the length rules; the error is for humans.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD} bytes"
        ));
    }
    Ok(())
}

/// Normalized e-mail (trimmed); an error when it does not look like one.
pub fn check_email(email: &str) -> Result<String, String> {
    let e = email.trim();
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !e.chars().any(char::is_whitespace);
    if ok {
        Ok(e.to_string())
    } else {
        Err(format!("`{e}` is not an e-mail address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_email_rules() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pw").is_ok());
        assert!(check_password(&"x".repeat(2000)).is_err());
        assert_eq!(check_email(" a@b.c ").unwrap(), "a@b.c");
        assert!(check_email("nope").is_err());
        assert!(check_email("a b@c").is_err());
        assert!(check_email("@c").is_err());
    }
}
