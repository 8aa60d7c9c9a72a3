//! Secrets at rest. Owns the data-directory key file (`secret.key`, 32 random bytes as hex,
//! mode 0600, created on first open), encryption of the secrets HMAC needs (Studio API channel
//! secrets: ChaCha20-Poly1305, random nonce, bound to the owning row's id as associated data),
//! hashing of keys that are only compared (OCS API keys: SHA-256 — they are high-entropy random
//! strings, so a slow hash would add cost and no safety), and argon2id for human passwords,
//! which the server runs on a bounded [`PasswordPool`] only.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "secret.key";
/// Environment variable that gives the key instead of the file (64 hex digits).
pub const KEY_ENV: &str = "BOTYARD_SECRET_KEY";

/// A 32-byte key of the data directory: the environment variable `env` when it is set (64 hex
/// digits; how a cluster's nodes get the same key without sharing a disk), else `DIR/file`,
/// created with a random key (mode 0600) when absent.
pub fn load_key(data_dir: &Path, file: &str, env: &str) -> std::io::Result<[u8; 32]> {
    let parse = |text: &str, from: &dyn std::fmt::Display| {
        crate::store::ids::unhex(text.trim())
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| std::io::Error::other(format!("{from} is not a 64-digit hex key")))
    };
    if let Ok(text) = std::env::var(env) {
        return parse(&text, &env);
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = crate::store::ids::random_bytes();
            write_private(&path, crate::store::ids::hex(&key).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The data-dir key, ready to encrypt and decrypt.
#[derive(Clone)]
pub struct Secrets {
    cipher: ChaCha20Poly1305,
    fingerprint: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// The data-dir key: from `BOTYARD_SECRET_KEY` when set, else `DIR/secret.key`, created
    /// (mode 0600) when absent. See [`load_key`].
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Secrets> {
        let key = load_key(data_dir, KEY_FILE, KEY_ENV)?;
        let fingerprint = crate::store::ids::hex(&Sha256::digest(key))[..16].to_string();
        let key = Key::from(key);
        Ok(Secrets {
            cipher: ChaCha20Poly1305::new(&key),
            fingerprint,
        })
    }

    /// A short, one-way digest of the key: nodes sharing one database compare it so that a node
    /// started with another key refuses to start (it could not read the others' secrets).
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
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
/// recommendation). Slow on purpose: the server calls it through [`PasswordPool`]; this direct
/// form is for the CLI and tests.
pub fn hash_password(password: &str) -> String {
    hash_with(&mut Vec::new(), password)
}

/// Check a password against a PHC string from [`hash_password`] (tests; the server goes
/// through [`PasswordPool`]).
#[cfg(test)]
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_with(&mut Vec::new(), password, Some(phc))
}

/// Largest argon2 memory cost (KiB, = 1 KiB blocks) a stored hash may ask for: with the pool's
/// thread count, what bounds the memory password checks can take. Our own hashes use 19 MiB;
/// a hash asking for more (a hand-edited row) never verifies.
const MAX_M_COST_KIB: u32 = 64 * 1024;
/// Largest time cost a stored hash may ask for (ours: 2), so one check stays bounded in time.
const MAX_T_COST: u32 = 16;

fn argon2_error(e: impl std::fmt::Display) -> String {
    format!("argon2: {e}")
}

/// Hashes with the default parameters into the caller's reusable block workspace.
fn hash_with(workspace: &mut Vec<argon2::Block>, password: &str) -> String {
    use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
    let salt: [u8; 16] = crate::store::ids::random_bytes();
    let params = argon2::Params::DEFAULT;
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    let blocks = workspace_of(workspace, params.block_count());
    let done = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    )
    .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
    .map_err(argon2_error)
    .and_then(|()| {
        Ok(PasswordHash {
            algorithm: argon2::Algorithm::Argon2id.ident(),
            version: Some(argon2::Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(argon2_error)?,
            salt: Some(Salt::new(&salt).map_err(argon2_error)?),
            hash: Some(Output::new(&out).map_err(argon2_error)?),
        })
    });
    done.expect("argon2 with default parameters and a 16-byte salt cannot fail")
        .to_string()
}

/// Verifies `password` against `phc`; `None` (an unknown account) still costs one default-cost
/// hash, so timing does not reveal which e-mails have accounts, and is never a match.
fn verify_with(workspace: &mut Vec<argon2::Block>, password: &str, phc: Option<&str>) -> bool {
    use argon2::password_hash::phc::PasswordHash;
    let Some(phc) = phc else {
        let _ = hash_with(workspace, password);
        return false;
    };
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST {
        tracing::warn!(
            m_cost = params.m_cost(),
            t_cost = params.t_cost(),
            "a stored password hash asks for more than this server allows; it never verifies"
        );
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let blocks = workspace_of(workspace, params.block_count());
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
        .is_ok_and(|()| ct_eq(&out, expected.as_bytes()))
}

/// The first `n` blocks of a workspace grown on demand and kept: a pool thread allocates its
/// memory once instead of asking the allocator for 19 MiB per check.
fn workspace_of(workspace: &mut Vec<argon2::Block>, n: usize) -> &mut [argon2::Block] {
    if workspace.len() < n {
        workspace.resize(n, argon2::Block::default());
    }
    &mut workspace[..n]
}

/// The server's argon2 work, on a fixed set of threads with a short queue.
///
/// argon2id takes ~19 MiB and tens of milliseconds of a core per check, so unbounded
/// concurrency turns a login flood into gigabytes of memory and starved chat turns. Here at
/// most `threads` checks run at once, each thread reusing its own workspace (memory is bounded
/// by `threads` × the largest allowed cost, whatever the load), at most `queue` more wait, and
/// any request beyond that is refused at once ([`PoolBusy`]: the caller answers 503 with
/// `Retry-After`). A waiting check whose caller went away (client disconnected) is skipped.
/// Dedicated threads rather than tokio's blocking pool, which grows to hundreds of threads and
/// would hand each its own allocator arena.
#[derive(Debug)]
pub struct PasswordPool {
    jobs: std::sync::mpsc::SyncSender<PasswordJob>,
}

/// The pool's threads and queue are full: retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBusy;

impl std::fmt::Display for PoolBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server is busy checking passwords; retry in a moment")
    }
}

enum PasswordWork {
    Hash(String),
    Verify(String, Option<String>),
}

enum PasswordDone {
    Hashed(String),
    Verified(bool),
}

struct PasswordJob {
    work: PasswordWork,
    reply: tokio::sync::oneshot::Sender<PasswordDone>,
}

impl std::fmt::Debug for PasswordJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordJob(..)")
    }
}

impl PasswordPool {
    /// The default thread count: half the cores (at least one), so a login flood leaves the
    /// other half to chat turns.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1)
    }

    /// Starts `threads` (at least one) worker threads; `queue` checks may wait for one. The
    /// threads end when the pool is dropped.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<PasswordPool> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<PasswordJob>(queue);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("botyard-argon2-{i}"))
                .spawn(move || password_worker(&rx))?;
        }
        Ok(PasswordPool { jobs })
    }

    /// [`hash_password`] on the pool.
    pub async fn hash(&self, password: String) -> Result<String, PoolBusy> {
        match self.run(PasswordWork::Hash(password)).await? {
            PasswordDone::Hashed(h) => Ok(h),
            PasswordDone::Verified(_) => Err(PoolBusy),
        }
    }

    /// Checks `password` against `phc` on the pool; `None` (no such account) costs the same
    /// and is `false`.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, PoolBusy> {
        match self.run(PasswordWork::Verify(password, phc)).await? {
            PasswordDone::Verified(ok) => Ok(ok),
            PasswordDone::Hashed(_) => Err(PoolBusy),
        }
    }

    async fn run(&self, work: PasswordWork) -> Result<PasswordDone, PoolBusy> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(PasswordJob { work, reply })
            .map_err(|_| PoolBusy)?;
        // A dropped reply means the worker panicked on this job: as good as busy.
        done.await.map_err(|_| PoolBusy)
    }
}

fn password_worker(rx: &std::sync::Mutex<std::sync::mpsc::Receiver<PasswordJob>>) {
    let mut workspace = Vec::new();
    loop {
        // One idle worker waits in `recv` holding the lock; the others wait for the lock.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue;
        }
        let ws = &mut workspace;
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match job.work {
            PasswordWork::Hash(p) => PasswordDone::Hashed(hash_with(ws, &p)),
            PasswordWork::Verify(p, phc) => {
                PasswordDone::Verified(verify_with(ws, &p, phc.as_deref()))
            }
        }));
        if let Ok(done) = done {
            let _ = job.reply.send(done);
        }
    }
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
        // A stored hash asking for more memory than the server allows never verifies.
        let greedy = h.replace("m=19456", "m=1048576");
        assert!(!verify_password("correct horse", &greedy));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[tokio::test]
    async fn pool_hashes_verifies_and_refuses_beyond_its_queue() {
        let pool = PasswordPool::new(1, 1).unwrap();
        let h = pool.hash("correct horse".into()).await.unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(
            pool.verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong".into(), Some(h.clone())).await.unwrap());
        assert!(!pool.verify("correct horse".into(), None).await.unwrap());
        // One running and one queued at most: of four submitted at once, some are refused.
        let (a, b, c, d) = tokio::join!(
            pool.verify("a".into(), Some(h.clone())),
            pool.verify("b".into(), Some(h.clone())),
            pool.verify("c".into(), Some(h.clone())),
            pool.verify("d".into(), Some(h.clone())),
        );
        let busy = [a, b, c, d].iter().filter(|r| r.is_err()).count();
        assert!(busy >= 2, "{busy} refused");
    }
}
