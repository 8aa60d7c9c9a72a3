//! Secrets at rest. Owns the data-directory key file (`secret.key`, 32 random bytes as hex,
//! mode 0600, created on first open), encryption of the secrets HMAC needs (Studio API channel
//! secrets: ChaCha20-Poly1305, random nonce, bound to the owning row's id as associated data),
//! hashing of keys that are only compared (OCS API keys: SHA-256 — they are high-entropy random
//! strings, so a slow hash would add cost and no safety), and argon2id for human passwords.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "secret.key";

/// The data-dir key, ready to encrypt and decrypt.
#[derive(Clone)]
pub struct Secrets {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// Load `DIR/secret.key`, creating it (mode 0600) when absent.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Secrets> {
        let path = data_dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => crate::store::ids::unhex(&text)
                .filter(|k| k.len() == 32)
                .ok_or_else(|| {
                    std::io::Error::other(format!("{} is not a 64-digit hex key", path.display()))
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = crate::store::ids::random_bytes();
                write_private(&path, crate::store::ids::hex(&key).as_bytes())?;
                key.to_vec()
            }
            Err(e) => return Err(e),
        };
        let key = Key::try_from(key.as_slice()).map_err(std::io::Error::other)?;
        Ok(Secrets {
            cipher: ChaCha20Poly1305::new(&key),
        })
    }

    /// `nonce || ciphertext+tag`, authenticated together with `aad` (the owning row's id, so a
    /// ciphertext cannot be moved to another row).
    pub fn encrypt(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let nonce_bytes: [u8; 12] = crate::store::ids::random_bytes();
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 encryption of a small secret cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    /// Inverse of [`Secrets::encrypt`]; `None` when the key or `aad` does not match.
    pub fn decrypt(&self, blob: &[u8], aad: &str) -> Option<Vec<u8>> {
        if blob.len() < 12 + 16 {
            return None;
        }
        let nonce = Nonce::try_from(&blob[..12]).ok()?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &blob[12..],
                    aad: aad.as_bytes(),
                },
            )
            .ok()
    }
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// SHA-256 of an API key, lowercase hex (what the store keeps and looks up).
pub fn hash_api_key(key: &str) -> String {
    crate::store::ids::hex(&Sha256::digest(key.as_bytes()))
}

/// argon2id PHC string of a human password (19 MiB, t=2, p=1: the crate's defaults, OWASP's
/// recommendation). Slow on purpose: call it off the async runtime.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let salt: [u8; 16] = crate::store::ids::random_bytes();
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("argon2 with default parameters and a 16-byte salt cannot fail")
        .to_string()
}

/// Check a password against a PHC string from [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    let Ok(hash) = argon2::password_hash::phc::PasswordHash::new(phc) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// Constant-time equality of two byte strings (for secrets compared in memory).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_roundtrip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::load_or_create(dir.path()).unwrap();
        let blob = s.encrypt(b"sk_secret", "chan-1");
        let s2 = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(
            s2.decrypt(&blob, "chan-1").as_deref(),
            Some(&b"sk_secret"[..])
        );
        assert_eq!(s2.decrypt(&blob, "chan-2"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            Secrets::load_or_create(other.path())
                .unwrap()
                .decrypt(&blob, "chan-1"),
            None
        );
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert_eq!(hash_api_key("abc").len(), 64);
        assert!(ct_eq(b"ab", b"ab") && !ct_eq(b"ab", b"ac"));
    }
}
