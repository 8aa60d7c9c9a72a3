//! `botyard serve` and `botyard bench`.

use super::Cli;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BOTYARD_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn serve(cli: &Cli, args: &ServeArgs) -> ExitCode {
    let _ = (cli, args);
    todo!("serve")
}

pub fn bench(cli: &Cli, args: &BenchArgs) -> ExitCode {
    let _ = (cli, args);
    todo!("bench")
}
