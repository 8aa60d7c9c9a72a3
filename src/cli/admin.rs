//! `botyard admin create --email E`: an admin account for the admin UI (argon2id hash).
//! The password comes from `--password-stdin` (first line of stdin) or an interactive prompt
//! with echo off. Without `--org`, the account owns every organization of the data directory;
//! with `--org ORG --role ROLE`, it joins that one organization only.

use super::Cli;
use crate::store::{Durability, Role, Store};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// E-mail address (the login).
    #[arg(long)]
    pub email: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Join only this organization (id or name) instead of owning all of them.
    #[arg(long)]
    pub org: Option<String>,
    /// Role in `--org`: owner, editor or viewer.
    #[arg(long, default_value = "owner", requires = "org")]
    pub role: String,
}

pub fn run(cli: &Cli, cmd: &AdminCommand) -> ExitCode {
    let AdminCommand::Create(args) = cmd;
    match create(cli, args) {
        Ok(v) => {
            if cli.json {
                println!("{v}");
            } else {
                println!(
                    "admin {} created; log in at /_/ with this e-mail",
                    v["email"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn create(cli: &Cli, args: &CreateArgs) -> Result<serde_json::Value, String> {
    let email = crate::admin::check_email(&args.email)?;
    let role = Role::parse(&args.role).ok_or("--role must be owner, editor or viewer")?;
    let password = read_password(args.password_stdin)?;
    crate::admin::check_password(&password)?;
    let store = Store::open_at(&cli.location(), Durability::Normal)
        .map_err(|e| format!("cannot open {}: {e}", cli.store_name()))?;
    if store.list_orgs().map_err(|e| e.to_string())?.is_empty() {
        return Err(format!(
            "{} has no organization yet: run `botyard setup` or `botyard serve` first",
            cli.store_name()
        ));
    }
    let org = match &args.org {
        Some(o) => Some(store.find_org(o).map_err(|e| e.to_string())?),
        None => None,
    };
    let hash = crate::secrets::hash_password(&password);
    let user = match &org {
        None => store.create_owner_of_all(&email, &hash, false),
        Some(o) => store
            .create_user(&email, &hash)
            .and_then(|u| store.set_membership(&o.id, &u.id, role).map(|_| u)),
    }
    .map_err(|e| match e {
        crate::store::Error::Conflict(_) => format!("an account `{email}` exists already"),
        e => e.to_string(),
    })?;
    let orgs = store.user_orgs(&user.id).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "id": user.id,
        "email": user.email,
        "organizations": orgs.iter().map(|(o, r)| serde_json::json!({"id": o.id, "name": o.name, "role": r.as_str()})).collect::<Vec<_>>(),
    }))
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if from_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !stdin.is_terminal() {
        return Err("no terminal to prompt on: pass --password-stdin".into());
    }
    let first = prompt("Password: ")?;
    let again = prompt("Repeat password: ")?;
    if first != again {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// Prompts with terminal echo off (`stty`, so no extra crate for a one-off prompt).
fn prompt(label: &str) -> Result<String, String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let tty = || std::fs::File::open("/dev/tty").map(std::process::Stdio::from);
    let echo = |on: bool| {
        if let Ok(t) = tty() {
            let _ = std::process::Command::new("stty")
                .arg(if on { "echo" } else { "-echo" })
                .stdin(t)
                .status();
        }
    };
    echo(false);
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    echo(true);
    eprintln!();
    r.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
