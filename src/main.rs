//! `botyard`: one binary that hosts CSML chatbots for many organizations. This file only
//! parses the command line and hands over to `botyard::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = botyard::cli::Cli::parse();
    botyard::cli::run(args)
}
