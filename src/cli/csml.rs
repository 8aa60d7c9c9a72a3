//! `botyard csml test|validate|chat`: the interpreter driven from a terminal.

use super::{Cli, CsmlCommand};
use std::process::ExitCode;

pub fn run(cli: &Cli, cmd: &CsmlCommand) -> ExitCode {
    let _ = (cli, cmd);
    todo!("csml commands")
}
