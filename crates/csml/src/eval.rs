//! The evaluator: statements, expressions, steps, gotos, hold/resume and the turn loop
//! (spec §3, §4.1, §3.10–3.11).

use crate::api::{Context, Event, Host, TurnOptions, TurnResult};
use crate::bot::Bot;

/// Run one turn of `bot` from `ctx` on `event`.
pub fn run_turn(
    bot: &Bot,
    ctx: Context,
    event: Event,
    host: &mut dyn Host,
    opts: &TurnOptions,
) -> TurnResult {
    let _ = (bot, ctx, event, host, opts);
    todo!("run_turn")
}
