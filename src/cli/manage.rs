//! `botyard setup|org|bot|channel|apikey|backup`: management commands over the store.

use super::Cli;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    Create { name: String },
    List,
}

#[derive(Debug, Subcommand)]
pub enum BotCommand {
    Create { name: String },
    List,
    Export { bot: String, dir: PathBuf },
    Import { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    Create,
    List,
    Rotate { channel: String },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    Create,
    List,
    Revoke { key: String },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    pub file: PathBuf,
}

pub fn setup(cli: &Cli) -> ExitCode {
    let _ = cli;
    todo!("setup")
}
pub fn org(cli: &Cli, cmd: &OrgCommand) -> ExitCode {
    let _ = (cli, cmd);
    todo!("org")
}
pub fn bot(cli: &Cli, cmd: &BotCommand) -> ExitCode {
    let _ = (cli, cmd);
    todo!("bot")
}
pub fn channel(cli: &Cli, cmd: &ChannelCommand) -> ExitCode {
    let _ = (cli, cmd);
    todo!("channel")
}
pub fn apikey(cli: &Cli, cmd: &ApikeyCommand) -> ExitCode {
    let _ = (cli, cmd);
    todo!("apikey")
}
pub fn backup(cli: &Cli, args: &BackupArgs) -> ExitCode {
    let _ = (cli, args);
    todo!("backup")
}
