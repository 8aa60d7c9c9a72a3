//! `botyard`: one binary that hosts CSML chatbots for many organizations. This file only
//! parses the command line and hands over to `cli`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
