//! Whole-bot validation over parsed flows (spec §6.3): errors make a bot invalid, warnings
//! do not.

use crate::api::{BotSource, Diagnostic};
use crate::ast::Flow;

#[derive(Debug, Default)]
pub struct LintReport {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Lint the bot; `flows` are the parsed `source.flows`, in the same order.
pub fn lint(source: &BotSource, flows: &[Flow]) -> LintReport {
    let _ = (source, flows);
    todo!("lint")
}
