//! Statements (spec §2.6, §3.3–3.4, §3.11, §4.1): actions, `if`/`foreach`/`while` with
//! `break`/`continue`, `goto`/`previous`/`hold`, and resuming a step after a hold by
//! instruction index (test protocol "Hold numbering").

use serde_json::Value as Json;

use super::scope::ERR_SECURE_ASSIGN;
use super::{Evaluator, Jump, R, Stop, hash_text};
use crate::api::{ForgetOp, Hold, SwitchBot};
use crate::ast::{Block, Expr, ExprKind, Forget, Goto, GotoName, Previous, Stmt, StmtKind};
use crate::value::{Kind, Value};

/// `say` payloads whose string form reaches this many bytes are fatal (spec §4.1).
const MAX_PAYLOAD: usize = 16_000;

const ERR_SECURE_DISPLAY: &str = "Secure variable can not be displayed";

impl Evaluator<'_> {
    /// Run a block, honouring a pending resume (skip every instruction up to the hold's).
    pub fn exec_block(&mut self, block: &[Stmt]) -> R<()> {
        for s in block {
            if let Some(n) = self.resume.as_ref().map(|r| r.index) {
                if is_compound(s) {
                    match (stmt_first(s), stmt_last(s)) {
                        (Some(first), Some(last)) if first <= n && n <= last => {
                            self.resume_into(s)?;
                            continue;
                        }
                        (_, Some(last)) if last < n => continue,
                        (None, None) if s.index <= n => continue,
                        _ => self.resume = None,
                    }
                } else if s.index <= n {
                    if s.index == n {
                        self.resume = None;
                    }
                    continue;
                } else {
                    self.resume = None;
                }
            }
            self.exec_stmt(s)?;
        }
        Ok(())
    }

    /// Enter the `if`/`foreach`/`while` that holds the resume point.
    fn resume_into(&mut self, s: &Stmt) -> R<()> {
        let n = self.resume.as_ref().map_or(0, |r| r.index);
        match &s.kind {
            StmtKind::If {
                branches,
                otherwise,
            } => {
                // The branch that holds the hold is taken without re-evaluating conditions.
                let blocks = branches.iter().map(|(_, b)| b).chain(otherwise.iter());
                for b in blocks {
                    if let (Some(f), Some(l)) = (block_first(b), block_last(b))
                        && f <= n
                        && n <= l
                    {
                        return self.exec_block(b);
                    }
                }
                Ok(())
            }
            StmtKind::Foreach {
                var,
                index_var,
                iter,
                body,
            } => {
                let depth = self.loop_stack.len();
                let start = self
                    .resume
                    .as_ref()
                    .and_then(|r| r.loop_index.get(depth).copied());
                self.foreach(
                    s,
                    var,
                    index_var.as_deref(),
                    iter,
                    body,
                    start.unwrap_or(0),
                    true,
                )
            }
            StmtKind::While { cond, body } => self.while_loop(s, cond, body, true),
            _ => self.exec_stmt(s),
        }
    }

    pub fn exec_stmt(&mut self, s: &Stmt) -> R<()> {
        self.tick_instruction(s.pos)?;
        match &s.kind {
            StmtKind::Do { assign: None, expr } => {
                self.eval(expr, false)?;
            }
            StmtKind::Do {
                assign: Some((target, op)),
                expr,
            } => {
                let v = self.eval(expr, false)?;
                let path = if target.path.is_empty() {
                    Vec::new()
                } else {
                    self.target_path(&target.path)?
                };
                self.assign(&target.name, target.pos, path, *op, v, expr.pos)?;
            }
            StmtKind::Remember { name, expr, .. } => {
                let v = self.eval(expr, false)?;
                if v.contains_secure() {
                    self.error(ERR_SECURE_ASSIGN, expr.pos);
                } else {
                    self.write_memory(name, v, s.pos)?;
                }
            }
            StmtKind::Forget(f) => self.forget(f),
            StmtKind::Say(e) => self.say(s, e)?,
            StmtKind::Debug(e) => {
                let v = self.eval(e, false)?;
                if v.contains_secure() {
                    self.error(ERR_SECURE_DISPLAY, e.pos);
                } else {
                    let text = crate::json::to_display(&v);
                    let mut m = serde_json::Map::with_capacity(1);
                    m.insert("args".into(), Json::Array(vec![Json::String(text)]));
                    self.emit("debug", Json::Object(m), s.pos);
                }
            }
            StmtKind::Log { level, expr } => {
                let v = self.eval(expr, false)?;
                let text = if v.contains_secure() {
                    "secure variables can not be logged".to_string()
                } else {
                    crate::json::to_display(&v)
                };
                self.host.log(*level, &text);
            }
            StmtKind::Use(e) => {
                self.eval(e, false)?;
            }
            StmtKind::Goto(g) => {
                if !self.frame.in_fn {
                    let j = self.jump(g)?;
                    return Err(Stop::Goto(j));
                }
            }
            StmtKind::Previous(p) => {
                if !self.frame.in_fn {
                    return Err(Stop::Goto(match p {
                        Previous::Step => Jump::PreviousStep,
                        Previous::Flow => Jump::PreviousFlow,
                    }));
                }
            }
            StmtKind::Hold { secure } => {
                if !self.frame.in_fn {
                    let hold = self.make_hold(s.index, *secure);
                    // The saved locals are written by the platform: they count as memory.
                    let bytes = hold
                        .step_vars
                        .iter()
                        .map(|(k, v)| k.len() as u64 + super::budget::json_len(v))
                        .sum();
                    self.charge_memory(bytes, s.pos)?;
                    return Err(Stop::Hold(Box::new(hold)));
                }
            }
            StmtKind::Break => return Err(Stop::Break),
            StmtKind::Continue => return Err(Stop::Continue),
            StmtKind::Return(e) => {
                let v = self.eval(e, false)?;
                return Err(Stop::Return(v));
            }
            StmtKind::If { .. } | StmtKind::Foreach { .. } | StmtKind::While { .. } => {
                return super::grow(|| self.exec_compound(s));
            }
        }
        Ok(())
    }

    fn exec_compound(&mut self, s: &Stmt) -> R<()> {
        match &s.kind {
            StmtKind::If {
                branches,
                otherwise,
            } => {
                for (c, b) in branches {
                    if self.cond(c)? {
                        return self.exec_block(b);
                    }
                }
                if let Some(b) = otherwise {
                    return self.exec_block(b);
                }
            }
            StmtKind::Foreach {
                var,
                index_var,
                iter,
                body,
            } => {
                self.foreach(s, var, index_var.as_deref(), iter, body, 0, false)?;
            }
            StmtKind::While { cond, body } => self.while_loop(s, cond, body, false)?,
            _ => return self.exec_stmt(s),
        }
        Ok(())
    }

    /// An `if`/`while` condition: silent, and any error makes it false (spec §3.5), except a
    /// spent budget, which ends the turn.
    pub fn cond(&mut self, e: &Expr) -> R<bool> {
        match self.eval(e, true) {
            Ok(v) => Ok(crate::ops::truthy(&v)),
            Err(Stop::Fatal(_)) if self.budget.is_none() => Ok(false),
            Err(other) => Err(other),
        }
    }

    fn target_path(&mut self, segs: &[crate::ast::PathSeg]) -> R<Vec<super::scope::Access>> {
        use super::scope::Access;
        use crate::ast::PathSeg;
        let mut out = Vec::with_capacity(segs.len());
        for s in segs {
            match s {
                PathSeg::Key { name, pos } => out.push(Access::Key(name.clone(), *pos)),
                PathSeg::Index { expr, pos } => {
                    let v = self.eval(expr, false)?;
                    out.push(Access::Index(v, *pos));
                }
                PathSeg::Method { name, pos, .. } => {
                    out.push(Access::Key(name.clone(), *pos));
                }
            }
        }
        Ok(out)
    }

    fn say(&mut self, s: &Stmt, e: &Expr) -> R<()> {
        let v = self.eval(e, false)?;
        if v.contains_secure() {
            self.error(ERR_SECURE_DISPLAY, e.pos);
            return Ok(());
        }
        let size = match &v.kind {
            Kind::String(t) => t.len(),
            Kind::Array(_) | Kind::Object(_) => crate::json::to_display(&v).len(),
            _ => 0,
        };
        if size >= MAX_PAYLOAD {
            return Err(self.fatal("payload exceeds max payload size (16kb)", s.pos));
        }
        let msg = crate::json::say_message(&v);
        if !self.push_message(msg, s.pos)
            && let Some(stop) = self.spent()
        {
            return Err(stop);
        }
        Ok(())
    }

    fn forget(&mut self, f: &Forget) {
        match f {
            Forget::All => {
                self.frame.locals.clear();
                if !self.frame.in_fn {
                    self.memories.clear();
                }
                // The platform applies forgets before writes: an earlier write must not come
                // back (see `TurnResult::memories`).
                self.memory_writes.clear();
                self.forgets.push(ForgetOp::All);
            }
            Forget::Names(names) => {
                for n in names {
                    self.frame.locals.shift_remove(n.as_str());
                    if !self.frame.in_fn {
                        self.memories.shift_remove(n.as_str());
                    }
                }
                self.memory_writes.retain(|w| !names.contains(&w.key));
                self.forgets.push(ForgetOp::Keys(names.clone()));
            }
        }
    }

    fn make_hold(&self, index: u32, secure: bool) -> Hold {
        let step_vars = self
            .frame
            .locals
            .iter()
            .map(|(k, v)| (k.clone(), crate::json::to_memory(v)))
            .collect();
        Hold {
            command_index: index,
            loop_index: self.loop_stack.clone(),
            step_vars,
            secure,
            step: self.step.clone(),
            flow: self.flow_name().to_string(),
            hash: Some(hash_text(self.step_hash)),
            previous: self.previous.clone(),
        }
    }

    fn jump(&mut self, g: &Goto) -> R<Jump> {
        let step = match &g.step {
            Some(n) => Some(self.goto_name(n)?),
            None => None,
        };
        let flow = match &g.flow {
            Some(n) => Some(self.goto_name(n)?),
            None => None,
        };
        if let Some(b) = &g.bot {
            let bot = self.goto_name(b)?;
            return Ok(Jump::Bot(SwitchBot { bot, flow, step }));
        }
        if step.as_deref() == Some("end") {
            return Ok(Jump::End);
        }
        Ok(Jump::To { flow, step })
    }

    fn goto_name(&mut self, n: &GotoName) -> R<String> {
        match n {
            GotoName::Literal(s) => Ok(s.clone()),
            GotoName::Var { name, path, pos } => {
                let base = Expr {
                    pos: *pos,
                    kind: ExprKind::Ident(name.clone()),
                };
                let v = if path.is_empty() {
                    self.eval(&base, false)?
                } else {
                    let e = Expr {
                        pos: *pos,
                        kind: ExprKind::Path {
                            base: Box::new(base),
                            segs: path.clone(),
                        },
                    };
                    self.eval(&e, false)?
                };
                match v.kind {
                    Kind::String(s) => Ok(s),
                    _ => Err(self.fatal("variables in goto need to resolve as strings", *pos)),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn foreach(
        &mut self,
        s: &Stmt,
        var: &str,
        index_var: Option<&str>,
        iter: &Expr,
        body: &Block,
        start: u64,
        resuming: bool,
    ) -> R<()> {
        let it = self.eval(iter, false)?;
        let items: Vec<Value> = match it.kind {
            Kind::Array(a) => a,
            Kind::String(t) => t.chars().map(Value::string).collect(),
            _ => {
                return Err(self.fatal(
                    "foreach only accepts iterable elements like arrays and strings. Example: foreach(elem) in [1, 2, 3]",
                    iter.pos,
                ));
            }
        };
        let mut first = resuming;
        for (i, item) in items.into_iter().enumerate().skip(start as usize) {
            self.tick_loop(s.pos)?;
            // On resume the loop variables come back from the saved locals.
            let keep = first && self.frame.locals.contains_key(var);
            if !keep {
                set_local(&mut self.frame.locals, var, item);
                if let Some(iv) = index_var {
                    set_local(&mut self.frame.locals, iv, Value::int(i as i64));
                }
            }
            first = false;
            self.loop_stack.push(i as u64);
            let r = self.exec_block(body);
            self.loop_stack.pop();
            match r {
                Ok(()) | Err(Stop::Continue) => {}
                Err(Stop::Break) => break,
                Err(e) => return Err(e),
            }
        }
        self.frame.locals.shift_remove(var);
        if let Some(iv) = index_var {
            self.frame.locals.shift_remove(iv);
        }
        Ok(())
    }

    fn while_loop(&mut self, s: &Stmt, cond: &Expr, body: &Block, resuming: bool) -> R<()> {
        let mut first = resuming;
        loop {
            if !self.cond(cond)? {
                if first {
                    // Decision (spec §3.11): a loop left while resuming clears the resume state.
                    self.resume = None;
                }
                break;
            }
            first = false;
            self.tick_loop(s.pos)?;
            match self.exec_block(body) {
                Ok(()) | Err(Stop::Continue) => {}
                Err(Stop::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn set_local(locals: &mut super::Locals, name: &str, v: Value) {
    if let Some(slot) = locals.get_mut(name) {
        *slot = v;
    } else {
        locals.insert(name.to_string(), v);
    }
}

fn is_compound(s: &Stmt) -> bool {
    matches!(
        s.kind,
        StmtKind::If { .. } | StmtKind::Foreach { .. } | StmtKind::While { .. }
    )
}

/// The number of the first instruction in `s` (None for a compound with no instruction).
fn stmt_first(s: &Stmt) -> Option<u32> {
    match &s.kind {
        StmtKind::If {
            branches,
            otherwise,
        } => branches
            .iter()
            .map(|(_, b)| b)
            .chain(otherwise.iter())
            .find_map(|b| block_first(b)),
        StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => block_first(body),
        _ => Some(s.index),
    }
}

fn stmt_last(s: &Stmt) -> Option<u32> {
    match &s.kind {
        StmtKind::If {
            branches,
            otherwise,
        } => branches
            .iter()
            .map(|(_, b)| b)
            .chain(otherwise.iter())
            .filter_map(|b| block_last(b))
            .max(),
        StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => block_last(body),
        _ => Some(s.index),
    }
}

fn block_first(b: &[Stmt]) -> Option<u32> {
    b.iter().find_map(stmt_first)
}

fn block_last(b: &[Stmt]) -> Option<u32> {
    b.iter().rev().find_map(stmt_last)
}
