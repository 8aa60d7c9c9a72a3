//! `botyard store copy --from SRC --to DST`: the whole database of one store copied into
//! another, empty one (each a SQLite data directory or a `postgres://` URL), verified,
//! all-or-nothing; the SQL is `store::copy`. This command's own part is the keys, which live
//! outside the database:
//!
//! * the keys come from the source data directory when the source is one, else from `--data`
//!   (or `BOTYARD_SECRET_KEY` / `BOTYARD_OCS_TOKEN_KEY`, which win over files as everywhere);
//!   a PostgreSQL source must find its key there (it is not created: a new random key could
//!   not read the source's secrets, and the database would refuse it anyway);
//! * a directory destination gets the key files `secret.key` and `ocs-token.key` written when
//!   absent; one already holding another key is refused (the copied secrets would not decrypt);
//! * a PostgreSQL destination is opened with the same key, so it records that key's
//!   fingerprint (or refuses when it was set up with another).
//!
//! Both stores are opened as every command opens them, so both are migrated to this binary's
//! schema first (the copy then checks they are at one version).
//!
//! Should the copy fail, a destination directory created for it stays behind with its key
//! files and an empty database (the rows are all-or-nothing, not the directory).

use super::Cli;
use super::manage::{Out, finish};
use crate::store::{self, Durability, Location, Store};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every row of one store into another, empty one (a SQLite data directory or a
    /// PostgreSQL URL, either way), verified by row counts and checksums, all-or-nothing.
    /// Neither store may be served meanwhile.
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The source: a data directory (SQLite) or a postgres:// URL.
    #[arg(long, value_name = "DIR|URL")]
    pub from: String,
    /// The destination: a data directory (created when missing) or a postgres:// URL; it
    /// must hold no data.
    #[arg(long, value_name = "DIR|URL")]
    pub to: String,
}

pub fn run(cli: &Cli, cmd: &StoreCommand) -> ExitCode {
    match cmd {
        StoreCommand::Copy(args) => finish(cli, copy(cli, args)),
    }
}

/// One end of a copy.
enum End {
    Dir(PathBuf),
    Url(String),
}

impl End {
    fn parse(s: &str) -> End {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            End::Url(s.to_string())
        } else {
            End::Dir(PathBuf::from(s))
        }
    }

    /// For messages and the report (a URL without its password).
    fn name(&self) -> String {
        match self {
            End::Dir(d) => d.display().to_string(),
            End::Url(u) => store::redact_url(u),
        }
    }

    /// Where the store lives; `keys` is the key directory for a PostgreSQL end.
    fn location(&self, keys: &Path) -> Location {
        match self {
            End::Dir(d) => Location::sqlite(d),
            End::Url(u) => Location {
                data_dir: keys.to_path_buf(),
                database: Some(u.clone()),
            },
        }
    }
}

/// The data-directory keys: (file name, environment variable).
const KEYS: [(&str, &str); 2] = [
    (crate::secrets::KEY_FILE, crate::secrets::KEY_ENV),
    (crate::ocs::token::KEY_FILE, crate::ocs::token::KEY_ENV),
];

/// Key `file` of `dir` (or its environment variable), without creating it.
fn existing_key(dir: &Path, file: &str, env: &str) -> Result<Option<[u8; 32]>, String> {
    if std::env::var_os(env).is_none() && !dir.join(file).exists() {
        return Ok(None);
    }
    crate::secrets::load_key(dir, file, env)
        .map(Some)
        .map_err(|e| format!("cannot read the key {file}: {e}"))
}

/// Give a destination directory the source's keys (see the module doc).
fn install_keys(dir: &Path, keys: &[(&str, Option<[u8; 32]>)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, key) in keys {
        let Some(key) = key else { continue };
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if store::ids::unhex(text.trim()).as_deref() != Some(&key[..]) {
                    return Err(format!(
                        "{} holds another key than the source's: copy into a directory without \
                         key files, or with the source's",
                        path.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::secrets::write_private(&path, store::ids::hex(key).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(())
}

fn same_place(a: &End, b: &End) -> bool {
    match (a, b) {
        (End::Dir(x), End::Dir(y)) => match (x.canonicalize(), y.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        (End::Url(x), End::Url(y)) => x == y,
        _ => false,
    }
}

fn copy(cli: &Cli, args: &CopyArgs) -> Out {
    let (from, to) = (End::parse(&args.from), End::parse(&args.to));
    if same_place(&from, &to) {
        return Err("--from and --to are the same store".into());
    }
    let key_dir = match &from {
        End::Dir(d) => {
            if !d.join(store::DB_FILE).is_file() {
                return Err(format!(
                    "{} is not a botyard data directory (no {})",
                    d.display(),
                    store::DB_FILE
                ));
            }
            d.clone()
        }
        End::Url(_) => {
            let (file, env) = KEYS[0];
            if existing_key(&cli.data, file, env)?.is_none() {
                return Err(format!(
                    "no key for the source database: give --data DIR holding its {file}, or {env}"
                ));
            }
            cli.data.clone()
        }
    };
    let src = Store::open_at(&from.location(&key_dir), Durability::Normal)
        .map_err(|e| format!("cannot open the source {}: {e}", from.name()))?;
    // After opening: a SQLite source without secret.key has just been given one.
    let keys = KEYS
        .iter()
        .map(|&(file, env)| existing_key(&key_dir, file, env).map(|k| (file, k)))
        .collect::<Result<Vec<_>, _>>()?;
    if let End::Dir(d) = &to {
        install_keys(d, &keys)?;
    }
    // The destination's single commit is the whole copy: make it survive a power cut too.
    let dst = Store::open_at(&to.location(&key_dir), Durability::Full)
        .map_err(|e| format!("cannot open the destination {}: {e}", to.name()))?;
    let tables = src.copy_to(&dst).map_err(|e| format!("copy failed: {e}"))?;
    let rows: u64 = tables.iter().map(|t| t.rows).sum();
    let mut text = format!(
        "copied {rows} rows in {} tables from {} to {} (counts and checksums verified)",
        tables.len(),
        from.name(),
        to.name()
    );
    for t in &tables {
        text.push_str(&format!(
            "\n  {:<24} {:>10}  {}",
            t.name, t.rows, t.checksum
        ));
    }
    Ok((
        json!({"from": from.name(), "to": to.name(), "tables": tables, "rows": rows}),
        text,
    ))
}
