//! The lints that follow `goto`s between steps: targets that do not exist (a warning, spec
//! §6.3 Decision) and cycles of steps with no `hold` reachable from the default flow's `start`.

use std::collections::HashMap;

use super::{LintReport, diag};
use crate::api::BotSource;
use crate::ast::{Block, Flow, Goto, GotoName, Pos, StmtKind};

/// Every `goto` of a step body (not inside closures, where `goto` is an error anyway).
fn gotos<'b>(block: &'b Block, out: &mut Vec<(&'b Goto, Pos)>) {
    for s in block {
        match &s.kind {
            StmtKind::Goto(g) => out.push((g, s.pos)),
            StmtKind::If {
                branches,
                otherwise,
            } => {
                for (_, b) in branches {
                    gotos(b, out);
                }
                if let Some(b) = otherwise {
                    gotos(b, out);
                }
            }
            StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => gotos(body, out),
            _ => {}
        }
    }
}

fn literal(n: &Option<GotoName>) -> Option<Option<&str>> {
    match n {
        None => Some(None),
        Some(GotoName::Literal(s)) => Some(Some(s.as_str())),
        Some(GotoName::Var { .. }) => None,
    }
}

/// Where a literal goto lands: `(flow index, step name)`; `None` for `end`, other bots,
/// `$variable` names, and flows that do not exist.
fn target<'f>(flows: &'f [Flow], here: usize, g: &'f Goto) -> Option<(usize, &'f str)> {
    if g.bot.is_some() {
        return None;
    }
    let step = literal(&g.step)?;
    let flow = literal(&g.flow)?;
    if step == Some("end") {
        return None;
    }
    let fi = match flow {
        None => here,
        Some(name) => flows.iter().position(|f| f.name == name)?,
    };
    Some((fi, step.unwrap_or("start")))
}

fn step_exists(flow: &Flow, step: &str) -> bool {
    flow.steps.iter().any(|s| s.name == step)
        || flow.inserts.iter().any(|i| i.item.local_name() == step)
}

/// Warn about literal gotos to steps or flows that do not exist.
pub(super) fn check_gotos(report: &mut LintReport, _source: &BotSource, flows: &[Flow]) {
    for (fi, flow) in flows.iter().enumerate() {
        for step in &flow.steps {
            let mut list = Vec::new();
            gotos(&step.body, &mut list);
            for (g, pos) in list {
                if g.bot.is_some() || matches!(&g.step, Some(GotoName::Literal(s)) if s == "end") {
                    continue;
                }
                if let Some(GotoName::Literal(f)) = &g.flow
                    && !flows.iter().any(|x| &x.name == f)
                {
                    let msg = format!("goto: flow [{f}] does not exist");
                    report
                        .warnings
                        .push(diag(&flow.name, Some(&step.name), pos, msg));
                    continue;
                }
                let Some((ti, name)) = target(flows, fi, g) else {
                    continue;
                };
                // A jump to a missing `start` falls back to the default flow at run time.
                if g.step.is_some() && !step_exists(&flows[ti], name) {
                    let msg = format!(
                        "goto: step [{name}] does not exist in flow [{}]",
                        flows[ti].name
                    );
                    report
                        .warnings
                        .push(diag(&flow.name, Some(&step.name), pos, msg));
                }
            }
        }
    }
}

/// Warn about a cycle of literal gotos through steps without `hold`, reachable from the
/// default flow's `start` (one warning at most, like the reference).
pub(super) fn infinite_loops(report: &mut LintReport, source: &BotSource, flows: &[Flow]) {
    // Nodes: every step (first definition of a name wins).
    let mut ids: HashMap<(usize, &str), usize> = HashMap::new();
    let mut nodes: Vec<(usize, usize)> = Vec::new();
    for (fi, flow) in flows.iter().enumerate() {
        for (si, step) in flow.steps.iter().enumerate() {
            ids.entry((fi, step.name.as_str())).or_insert_with(|| {
                nodes.push((fi, si));
                nodes.len() - 1
            });
        }
    }
    let resolve = |fi: usize, name: &str| -> Option<usize> {
        if let Some(&id) = ids.get(&(fi, name)) {
            return Some(id);
        }
        let ins = flows[fi]
            .inserts
            .iter()
            .find(|i| i.item.local_name() == name)?;
        let from = flows.iter().position(|f| f.name == ins.from)?;
        ids.get(&(from, ins.item.name.as_str())).copied()
    };
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&(fi, si)| {
            let mut list = Vec::new();
            gotos(&flows[fi].steps[si].body, &mut list);
            list.iter()
                .filter_map(|(g, _)| target(flows, fi, g))
                .filter_map(|(ti, name)| resolve(ti, name))
                .collect()
        })
        .collect();
    let default = flows
        .iter()
        .position(|f| f.name == source.default_flow)
        .or_else(|| {
            flows
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(&source.default_flow))
        });
    let Some(start) = default.and_then(|d| ids.get(&(d, "start")).copied()) else {
        return;
    };
    let has_hold = |id: usize| {
        let (fi, si) = nodes[id];
        flows[fi].steps[si].has_hold
    };

    // Reachable from start over every edge.
    let mut reach = vec![false; nodes.len()];
    let mut todo = vec![start];
    reach[start] = true;
    while let Some(n) = todo.pop() {
        for &m in &edges[n] {
            if !reach[m] {
                reach[m] = true;
                todo.push(m);
            }
        }
    }

    // A cycle among reachable steps without hold: iterative DFS, 0 new / 1 on stack / 2 done.
    let mut color = vec![0u8; nodes.len()];
    for root in 0..nodes.len() {
        if !reach[root] || has_hold(root) || color[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        color[root] = 1;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if let Some(&m) = edges[n].get(*next) {
                *next += 1;
                if has_hold(m) {
                    continue;
                }
                match color[m] {
                    0 => {
                        color[m] = 1;
                        stack.push((m, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(x, _)| x == m).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|&(x, _)| x).collect();
                        report_cycle(report, flows, &nodes, &cycle);
                        return;
                    }
                    _ => {}
                }
            } else {
                color[n] = 2;
                stack.pop();
            }
        }
    }
}

fn report_cycle(
    report: &mut LintReport,
    flows: &[Flow],
    nodes: &[(usize, usize)],
    cycle: &[usize],
) {
    let mut msg = String::from("infinite loop detected between:");
    for &id in cycle.iter().chain(cycle.first()) {
        let (fi, si) = nodes[id];
        msg.push_str(&format!(
            "\n [flow] {}, [step] {}",
            flows[fi].name, flows[fi].steps[si].name
        ));
    }
    let (fi, si) = nodes[cycle[0]];
    let step = &flows[fi].steps[si];
    report
        .warnings
        .push(diag(&flows[fi].name, Some(&step.name), step.pos, msg));
}
