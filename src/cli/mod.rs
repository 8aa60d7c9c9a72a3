//! The command line: argument definitions and dispatch to one function per command. Commands
//! print human text by default and JSON with `--json`; logs go to stderr.

pub mod admin;
pub mod csml;
pub mod manage;
pub mod plugin;
pub mod serve;
pub mod store_cmd;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "botyard",
    version,
    about = "Host CSML chatbots for many organizations"
)]
pub struct Cli {
    /// Data directory (SQLite database, keys, plugins). With --database it still holds the
    /// key files (secret.key, ocs-token.key), unless they come from the environment.
    #[arg(long, global = true, env = "BOTYARD_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// A PostgreSQL database to use instead of SQLite in --data, as a URL:
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require] (or
    /// postgresql://USER@/DB?host=/socket/dir). Every node of a cluster gets the same URL and
    /// the same keys.
    #[arg(long, global = true, env = "BOTYARD_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Where the store lives, from --data and --database.
    pub fn location(&self) -> crate::store::Location {
        crate::store::Location {
            data_dir: self.data.clone(),
            database: self.database.clone(),
        }
    }

    /// The store's location for messages (the URL without its password).
    pub fn store_name(&self) -> String {
        match &self.database {
            Some(url) => crate::store::redact_url(url),
            None => self.data.display().to_string(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, validate, test and chat with CSML bots.
    #[command(subcommand)]
    Csml(CsmlCommand),
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Load benchmark against a running or self-started server.
    Bench(serve::BenchArgs),
    /// First-run setup of an empty data directory.
    Setup,
    /// Organizations.
    #[command(subcommand)]
    Org(manage::OrgCommand),
    /// Bots.
    #[command(subcommand)]
    Bot(manage::BotCommand),
    /// Channels (Studio API channels and connector channels).
    #[command(subcommand)]
    Channel(manage::ChannelCommand),
    /// Open Chat Studio API keys.
    #[command(subcommand)]
    Apikey(manage::ApikeyCommand),
    /// WASM plugins: install, list, inspect, remove, test on a sample webhook.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// A consistent online copy of the database.
    Backup(manage::BackupArgs),
    /// Admin UI accounts.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The database as a whole: copy it between SQLite and PostgreSQL.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum CsmlCommand {
    /// Run the JSON-lines conformance protocol (stdin batch, or one --case FILE).
    Test(CsmlTestArgs),
    /// Validate flows: `file:line:column: message`; exit 1 when invalid.
    Validate(CsmlFilesArgs),
    /// Chat with a bot in the terminal.
    Chat(CsmlChatArgs),
}

#[derive(Debug, Args)]
pub struct CsmlTestArgs {
    /// One case from FILE (`-` for stdin) instead of the batch loop.
    #[arg(long)]
    pub case: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CsmlFilesArgs {
    /// `.csml` files, or directories holding them (one flow per file, named after the file).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The default flow (defaults to `Default`/`main`/the first flow).
    #[arg(long)]
    pub default_flow: Option<String>,
}

#[derive(Debug, Args)]
pub struct CsmlChatArgs {
    #[command(flatten)]
    pub files: CsmlFilesArgs,
    /// `_metadata` for the conversation, as a JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
}

pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Csml(cmd) => csml::run(&cli, cmd),
        Command::Serve(args) => serve::serve(&cli, args),
        Command::Bench(args) => serve::bench(&cli, args),
        Command::Setup => manage::setup(&cli),
        Command::Org(cmd) => manage::org(&cli, cmd),
        Command::Bot(cmd) => manage::bot(&cli, cmd),
        Command::Channel(cmd) => manage::channel(&cli, cmd),
        Command::Apikey(cmd) => manage::apikey(&cli, cmd),
        Command::Backup(args) => manage::backup(&cli, args),
        Command::Plugin(cmd) => plugin::run(&cli, cmd),
        Command::Admin(cmd) => admin::run(&cli, cmd),
        Command::Store(cmd) => store_cmd::run(&cli, cmd),
    }
}
