//! The turn loop (spec §3.11, §7.2 steps 4–5): pick the starting step (falling back to the
//! default flow's `start`), apply a saved hold, run steps and follow gotos under the step
//! limit, and assemble the [`TurnResult`]. A spent budget (see `budget`) closes the turn here
//! whatever the step did with it; when the memory quota was the one hit, the turn's memory writes
//! are not returned.

use super::{Evaluator, Frame, Jump, Locals, Resume, Stop, hash_text};
use crate::api::{Budget, Context, Event, Host, Position, TurnOptions, TurnResult, TurnStatus};
use crate::ast::Pos;
use crate::bot::{BotInner, StepRef};

pub(crate) fn run(
    bot: &BotInner,
    mut ctx: Context,
    event: Event,
    host: &mut dyn Host,
    opts: &TurnOptions,
) -> TurnResult {
    if bot.flows.is_empty() {
        return TurnResult {
            messages: Vec::new(),
            memories: Vec::new(),
            forgets: Vec::new(),
            status: TurnStatus::End,
            flow: ctx.flow,
            step: "end".into(),
            hold: None,
            gotos: 0,
            previous: ctx.previous,
            switch_bot: None,
            budget_hit: None,
        };
    }
    host.set_deadline(opts.deadline);
    let start_flow = bot.flow_loose(&ctx.flow);
    let mut ev = Evaluator::new(bot, host, opts, &mut ctx, event, start_flow.unwrap_or(0));
    let mut hold_in = ctx.hold;
    let mut status = TurnStatus::End;
    let mut hold_out = None;
    let mut switch_bot = None;

    let mut target = match start_flow {
        Some(f) => Some((f, ctx.step.clone())),
        None => {
            let reason = format!(
                "flow: [{}] does not exist in bot: [{}]",
                ctx.flow,
                bot_id(bot)
            );
            let text = ev.located(&reason, Pos::new(0, 0));
            ev.close_with_error(text);
            status = TurnStatus::Error;
            None
        }
    };
    if ctx.step == "end" {
        target = None;
        ev.step = "end".into();
    }

    while let Some((tflow, tstep)) = target.take() {
        if ev.steps_run >= opts.step_limit {
            let reason = format!(
                "[Infinite loop] Step limit reached: 100 steps where executed in a single run, stop at step {tstep}"
            );
            if let Stop::Fatal(text) = ev.exhaust(Budget::Steps, &reason, Pos::new(0, 0)) {
                ev.close_with_error(text);
            }
            status = TurnStatus::Error;
            break;
        }
        if let Err(Stop::Fatal(text)) = ev.checkpoint(Pos::new(0, 0)) {
            ev.close_with_error(text);
            status = TurnStatus::Error;
            break;
        }
        let Some((flow, step, sref)) = resolve_step(bot, tflow, &tstep) else {
            let reason = if tstep == "start" {
                "[start] step does not exist".to_string()
            } else {
                format!("[{tstep}] step does not exist")
            };
            ev.flow = tflow;
            let text = ev.located(&reason, Pos::new(0, 0));
            ev.close_with_error(text);
            status = TurnStatus::Error;
            break;
        };
        let ast = &bot.flows[sref.flow].ast.steps[sref.idx];
        ev.flow = flow;
        ev.step = step;
        ev.step_hash = ast.hash;
        ev.steps_run += 1;
        ev.frame = Frame {
            locals: Locals::default(),
            flow,
            in_fn: false,
        };
        if let Some(h) = hold_in.take()
            && h.hash.as_deref().is_none_or(|x| x == hash_text(ast.hash))
        {
            for (k, v) in &h.step_vars {
                ev.frame.locals.insert(k.clone(), bot.load_memory(v));
            }
            if h.previous.is_some() {
                ev.previous = h.previous;
            }
            if h.secure {
                ev.event.secure = true;
                ev.event_obj = None;
            }
            ev.resume = Some(Resume {
                index: h.command_index,
                loop_index: h.loop_index,
            });
        }

        let outcome = ev.exec_block(&ast.body);
        // A spent budget closes the turn with its own message, whatever the step did next: its
        // error may have been found where it could not be raised, or been followed by another
        // error before the next check.
        let outcome = match ev.spent() {
            Some(stop) => Err(stop),
            None => outcome,
        };
        match outcome {
            Ok(()) | Err(Stop::Break | Stop::Continue | Stop::Return(_)) => {
                ev.step = "end".into();
            }
            Err(Stop::Fatal(text)) => {
                ev.close_with_error(text);
                status = TurnStatus::Error;
            }
            Err(Stop::Hold(h)) => {
                status = TurnStatus::Hold;
                hold_out = Some(*h);
            }
            Err(Stop::Goto(j)) => {
                ev.resume = None;
                let here = Position {
                    flow: ev.flow_name().to_string(),
                    step: ev.step.clone(),
                };
                let next = match j {
                    Jump::End => None,
                    Jump::To { flow, step } => Some((flow, step.unwrap_or_else(|| "start".into()))),
                    Jump::PreviousStep => ev.previous.clone().map(|p| (Some(p.flow), p.step)),
                    Jump::PreviousFlow => ev
                        .previous
                        .clone()
                        .map(|p| (Some(p.flow), "start".to_string())),
                    Jump::Bot(sb) => {
                        switch_bot = Some(sb);
                        None
                    }
                };
                ev.gotos += 1;
                ev.previous = Some(here);
                let Some((flow_name, step)) = next else {
                    ev.step = "end".into();
                    break;
                };
                let f = match flow_name {
                    None => ev.flow,
                    Some(name) => match bot.flow_exact(&name) {
                        Some(f) => f,
                        None => {
                            let reason =
                                format!("flow: [{name}] does not exist in bot: [{}]", bot_id(bot));
                            let text = ev.located(&reason, Pos::new(0, 0));
                            ev.close_with_error(text);
                            status = TurnStatus::Error;
                            break;
                        }
                    },
                };
                target = Some((f, step));
            }
        }
    }

    let budget_hit = ev.budget.as_ref().map(|(b, _)| *b);
    if budget_hit == Some(Budget::MemoryBytes) {
        // Nothing half-written: a turn over its memory quota writes no memory at all.
        ev.memory_writes.clear();
        hold_out = None;
    }
    TurnResult {
        messages: ev.messages,
        memories: ev.memory_writes,
        forgets: ev.forgets,
        status,
        flow: bot.flows[ev.flow].name.clone(),
        step: ev.step,
        hold: hold_out,
        gotos: ev.gotos,
        previous: ev.previous,
        switch_bot,
        budget_hit,
    }
}

/// The step to run for `(flow, step)`: a missing `start` falls back to the default flow's
/// `start` (spec §1); `None` when nothing can run.
fn resolve_step(bot: &BotInner, flow: usize, step: &str) -> Option<(usize, String, StepRef)> {
    if let Some(r) = bot.flows[flow].steps.get(step) {
        return Some((flow, step.to_string(), *r));
    }
    if step != "start" {
        return None;
    }
    let d = bot.default_flow?;
    let r = bot.flows[d].steps.get("start")?;
    Some((d, "start".into(), *r))
}

fn bot_id(bot: &BotInner) -> &str {
    if bot.source.id.is_empty() {
        &bot.source.name
    } else {
        &bot.source.id
    }
}
