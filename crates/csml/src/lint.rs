//! Whole-bot validation over parsed flows (spec §6.3): errors make a bot invalid, warnings
//! do not.
//!
//! Choices where the spec leaves room (each mirrors what the reference accepts, so that a bot
//! it calls valid stays valid here, unless a Decision of the spec says otherwise):
//! * Unknown functions are looked for in the expressions of `say`, `do`, `remember` and `use`
//!   (and in closures written there), which is where the reference looks; a call in an `if`
//!   condition or a `return` that names nothing fails at run time instead.
//! * A closure assigned with `do X = (...) {...}` or `... as X` makes `X(...)` callable in every
//!   step or function *of that name*; `remember X = (...) {...}` makes it callable everywhere.
//! * A `break`/`continue` in a closure written inside a loop is accepted, like the reference.
//! * Deviations decided by the spec: `start` is required in the default flow too;
//!   `hold_secure` and `forget` are errors in functions and closures; a `goto` to a step or flow
//!   that does not exist is a warning; int literals written with `_` get a warning.

mod graph;

use std::collections::{HashMap, HashSet};

use crate::api::{BotSource, Diagnostic};
use crate::ast::{
    Arg, Block, Expr, ExprKind, Flow, GotoName, ImportSource, PathSeg, Pos, Stmt, StmtKind, StrPart,
};
use crate::stdlib;

#[derive(Debug, Default)]
pub struct LintReport {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

pub const WARN_OBJECT: &str =
    "'Object(...)' is deprecated: write an object literal {\"key\": value} instead";
pub const WARN_FN: &str = "'Fn()' is deprecated: call 'App()' instead";
pub const WARN_USE: &str = "'use' is deprecated: write 'do value as key' instead";
pub const WARN_UNDERSCORE_INT: &str =
    "'_' is not allowed in an int literal: this number is read as 0";

/// Lint the bot; `flows` are the parsed `source.flows`, in the same order.
pub fn lint(source: &BotSource, flows: &[Flow]) -> LintReport {
    let modules: Vec<Flow> = source
        .modules
        .iter()
        .filter_map(|m| crate::parser::parse_flow(&m.name, &m.content).ok())
        .collect();
    let mut l = Linter {
        source,
        flows,
        modules: &modules,
        report: LintReport::default(),
        closures: HashMap::new(),
        remembered: HashSet::new(),
    };
    for flow in flows {
        l.collect_closures(flow);
    }
    for flow in flows {
        l.flow(flow);
    }
    graph::check_gotos(&mut l.report, source, flows);
    graph::infinite_loops(&mut l.report, source, flows);
    for (src, flow) in source.flows.iter().zip(flows) {
        underscore_ints(&mut l.report, &src.content, flow);
    }
    l.report
}

/// Where a closure was assigned: a step or a function, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Step(String),
    Function(String),
}

struct Linter<'a> {
    source: &'a BotSource,
    flows: &'a [Flow],
    modules: &'a [Flow],
    report: LintReport,
    /// Closure names assigned per step/function name (across flows, like the reference).
    closures: HashMap<Scope, HashSet<String>>,
    /// Closure names stored with `remember`: callable everywhere.
    remembered: HashSet<String>,
}

/// Where the walker stands.
struct Ctx<'f> {
    flow: &'f Flow,
    step: Option<&'f str>,
    scope: Scope,
    /// Inside a function or closure body (nesting count).
    in_fn: u32,
    loops: u32,
}

fn diag(flow: &str, step: Option<&str>, pos: Pos, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        flow: flow.to_string(),
        step: step.map(str::to_string),
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

fn is_closure(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Closure(_))
}

impl<'a> Linter<'a> {
    fn error(&mut self, ctx: &Ctx, pos: Pos, msg: impl Into<String>) {
        self.report
            .errors
            .push(diag(&ctx.flow.name, ctx.step, pos, msg));
    }

    fn warn(&mut self, ctx: &Ctx, pos: Pos, msg: impl Into<String>) {
        self.report
            .warnings
            .push(diag(&ctx.flow.name, ctx.step, pos, msg));
    }

    // ---- closure registration (before checking calls) ----

    fn collect_closures(&mut self, flow: &Flow) {
        for step in &flow.steps {
            let mut names = HashSet::new();
            self.closures_in_block(&step.body, &mut names);
            self.closures
                .entry(Scope::Step(step.name.clone()))
                .or_default()
                .extend(names);
        }
        for f in &flow.functions {
            let mut names = HashSet::new();
            self.closures_in_block(&f.body, &mut names);
            self.closures
                .entry(Scope::Function(f.name.clone()))
                .or_default()
                .extend(names);
        }
    }

    fn closures_in_block(&mut self, block: &Block, names: &mut HashSet<String>) {
        for s in block {
            match &s.kind {
                StmtKind::Do { assign, expr } => {
                    if let Some((t, _)) = assign
                        && t.path.is_empty()
                        && is_closure(expr)
                    {
                        names.insert(t.name.clone());
                    }
                    self.closures_in_expr(expr, names);
                }
                StmtKind::Remember { name, expr, .. } => {
                    if is_closure(expr) {
                        self.remembered.insert(name.clone());
                    }
                    self.closures_in_expr(expr, names);
                }
                StmtKind::Say(e) | StmtKind::Use(e) => self.closures_in_expr(e, names),
                StmtKind::If {
                    branches,
                    otherwise,
                } => {
                    for (_, b) in branches {
                        self.closures_in_block(b, names);
                    }
                    if let Some(b) = otherwise {
                        self.closures_in_block(b, names);
                    }
                }
                StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => {
                    self.closures_in_block(body, names)
                }
                _ => {}
            }
        }
    }

    fn closures_in_expr(&mut self, e: &Expr, names: &mut HashSet<String>) {
        visit_expr(e, &mut |e| match &e.kind {
            ExprKind::As { expr, name, .. } if is_closure(expr) => {
                names.insert(name.clone());
            }
            ExprKind::Closure(def) => {
                let mut inner = HashSet::new();
                // Statements of a closure body register into the enclosing scope.
                self.closures_in_block(&def.body, &mut inner);
                names.extend(inner);
            }
            _ => {}
        });
    }

    // ---- per flow ----

    fn flow(&mut self, flow: &'a Flow) {
        let base = Ctx {
            flow,
            step: None,
            scope: Scope::Step(String::new()),
            in_fn: 0,
            loops: 0,
        };

        let mut seen = HashSet::new();
        for step in &flow.steps {
            let ctx = Ctx {
                step: Some(&step.name),
                scope: Scope::Step(step.name.clone()),
                ..base
            };
            if !seen.insert(step.name.as_str()) {
                self.error(&ctx, step.pos, format!("duplicate step {}", step.name));
                continue;
            }
            let mut ctx = ctx;
            self.block(&mut ctx, &step.body);
        }
        if !flow.steps.is_empty() && !flow.steps.iter().any(|s| s.name == "start") {
            self.report.errors.push(diag(
                &flow.name,
                None,
                Pos::new(0, 0),
                format!("missing step 'start' in flow [{}]", flow.name),
            ));
        }

        let mut seen = HashSet::new();
        for f in &flow.functions {
            let ctx = Ctx {
                scope: Scope::Function(f.name.clone()),
                in_fn: 1,
                ..base_of(flow)
            };
            if !seen.insert(f.name.as_str()) {
                self.error(&ctx, f.pos, format!("duplicate function {}", f.name));
                continue;
            }
            let mut ctx = ctx;
            self.block(&mut ctx, &f.body);
        }

        self.imports(flow);
        self.inserts(flow);
    }

    fn imports(&mut self, flow: &Flow) {
        let ctx = base_of(flow);
        let mut seen = HashSet::new();
        for imp in &flow.imports {
            let local = imp.item.local_name();
            if !seen.insert(local) {
                self.error(&ctx, imp.item.pos, format!("duplicate import {local}"));
                continue;
            }
            if flow.functions.iter().any(|f| f.name == local) {
                self.error(
                    &ctx,
                    imp.pos,
                    format!(
                        "import failed a function named '{local}' already exist in current flow '{}'",
                        flow.name
                    ),
                );
            }
            let original = &imp.item.name;
            let has = |f: &Flow| f.functions.iter().any(|func| &func.name == original);
            match &imp.from {
                Some(ImportSource::Flow(from)) | Some(ImportSource::Module(from)) => {
                    let pool = match imp.from {
                        Some(ImportSource::Module(_)) => self.modules,
                        _ => self.flows,
                    };
                    if !pool.iter().any(|f| &f.name == from && has(f)) {
                        self.error(
                            &ctx,
                            imp.pos,
                            format!(
                                "import failed function '{original}' not found in flow '{from}'"
                            ),
                        );
                    }
                }
                None => {
                    if !self.flows.iter().chain(self.modules).any(has) {
                        self.error(
                            &ctx,
                            imp.pos,
                            format!("function '{original}' not found in bot"),
                        );
                    }
                }
            }
        }
    }

    fn inserts(&mut self, flow: &Flow) {
        let ctx = base_of(flow);
        let mut seen = HashSet::new();
        for ins in &flow.inserts {
            let local = ins.item.local_name();
            if !seen.insert(local) {
                self.error(&ctx, ins.item.pos, format!("duplicate insert {local}"));
                continue;
            }
            if flow.steps.iter().any(|s| s.name == local) {
                self.error(
                    &ctx,
                    ins.pos,
                    format!(
                        "insert failed, a step named '{local}' already exist in current flow '{}'",
                        flow.name
                    ),
                );
            }
            let name = &ins.item.name;
            let found = self
                .flows
                .iter()
                .any(|f| f.name == ins.from && f.steps.iter().any(|s| &s.name == name));
            if !found {
                self.error(
                    &ctx,
                    ins.pos,
                    format!(
                        "insert failed, step '{name}' not found in flow '{}'",
                        ins.from
                    ),
                );
            }
        }
    }

    // ---- statements ----

    fn block(&mut self, ctx: &mut Ctx, block: &Block) {
        for s in block {
            self.stmt(ctx, s);
        }
    }

    fn stmt(&mut self, ctx: &mut Ctx, s: &Stmt) {
        let in_fn = ctx.in_fn > 0;
        match &s.kind {
            StmtKind::Do { assign, expr } => {
                if let Some((t, _)) = assign {
                    if ctx.flow.constants.iter().any(|c| c.name == t.name) {
                        self.error(
                            ctx,
                            t.pos,
                            format!("constant '{}' is immutable and can not be changed", t.name),
                        );
                    }
                    for seg in &t.path {
                        self.path_seg(ctx, seg, true);
                    }
                }
                self.expr(ctx, expr, true);
            }
            StmtKind::Remember { name_pos, expr, .. } => {
                if in_fn {
                    self.error(
                        ctx,
                        *name_pos,
                        "'remember' action is not allowed in function scope",
                    );
                }
                self.expr(ctx, expr, true);
            }
            StmtKind::Forget(_) => {
                if in_fn {
                    self.error(
                        ctx,
                        s.pos,
                        "'forget' action is not allowed in function scope",
                    );
                }
            }
            StmtKind::Say(e) => {
                if in_fn {
                    self.error(ctx, e.pos, "'say' action is not allowed in function scope");
                }
                self.expr(ctx, e, true);
            }
            StmtKind::Use(e) => {
                self.warn(ctx, e.pos, WARN_USE);
                self.expr(ctx, e, true);
            }
            StmtKind::Debug(e) | StmtKind::Log { expr: e, .. } => self.expr(ctx, e, false),
            StmtKind::Goto(g) => {
                if in_fn {
                    self.error(ctx, s.pos, "'goto' action is not allowed in function scope");
                }
                for name in [&g.step, &g.flow, &g.bot].into_iter().flatten() {
                    if let GotoName::Var { path, .. } = name {
                        for seg in path {
                            self.path_seg(ctx, seg, false);
                        }
                    }
                }
            }
            StmtKind::Previous(_) => {
                if in_fn {
                    self.error(ctx, s.pos, "'goto' action is not allowed in function scope");
                }
            }
            StmtKind::Hold { .. } => {
                if in_fn {
                    self.error(ctx, s.pos, "'hold' action is not allowed in function scope");
                }
            }
            StmtKind::Break => {
                if ctx.loops == 0 {
                    self.error(ctx, s.pos, "'break' action is not allowed outside loop");
                }
            }
            StmtKind::Continue => {
                if ctx.loops == 0 {
                    self.error(ctx, s.pos, "'continue' action is not allowed outside loop");
                }
            }
            StmtKind::Return(e) => {
                if !in_fn {
                    self.error(
                        ctx,
                        e.pos,
                        "'return' action is not allowed outside function scope",
                    );
                }
                self.expr(ctx, e, false);
            }
            StmtKind::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    self.expr(ctx, cond, false);
                    self.block(ctx, body);
                }
                if let Some(b) = otherwise {
                    self.block(ctx, b);
                }
            }
            StmtKind::Foreach { iter, body, .. } => {
                self.expr(ctx, iter, false);
                ctx.loops += 1;
                self.block(ctx, body);
                ctx.loops -= 1;
            }
            StmtKind::While { cond, body } => {
                self.expr(ctx, cond, false);
                ctx.loops += 1;
                self.block(ctx, body);
                ctx.loops -= 1;
            }
        }
    }

    // ---- expressions ----

    fn path_seg(&mut self, ctx: &mut Ctx, seg: &PathSeg, calls: bool) {
        match seg {
            PathSeg::Key { .. } => {}
            PathSeg::Index { expr, .. } => self.expr(ctx, expr, calls),
            PathSeg::Method { args, .. } => self.args(ctx, args, calls),
        }
    }

    fn args(&mut self, ctx: &mut Ctx, args: &[Arg], calls: bool) {
        for a in args {
            self.expr(ctx, &a.value, calls);
        }
    }

    /// Walk an expression; `calls`: check that called functions exist.
    fn expr(&mut self, ctx: &mut Ctx, e: &Expr, calls: bool) {
        match &e.kind {
            ExprKind::Null
            | ExprKind::Bool(_)
            | ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Ident(_) => {}
            ExprKind::Str(parts) => {
                for p in parts {
                    if let StrPart::Interp(x) = p {
                        self.expr(ctx, x, calls);
                    }
                }
            }
            ExprKind::Array(items) => {
                for x in items {
                    self.expr(ctx, x, calls);
                }
            }
            ExprKind::Object(fields) => {
                for (_, x) in fields {
                    self.expr(ctx, x, calls);
                }
            }
            ExprKind::Closure(def) => {
                ctx.in_fn += 1;
                self.block(ctx, &def.body);
                ctx.in_fn -= 1;
            }
            ExprKind::Path { base, segs } => {
                self.expr(ctx, base, calls);
                for seg in segs {
                    self.path_seg(ctx, seg, calls);
                }
            }
            ExprKind::Call { name, args } => {
                if calls {
                    self.call(ctx, name, e.pos);
                }
                self.args(ctx, args, calls);
            }
            ExprKind::Not(x) => self.expr(ctx, x, calls),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(ctx, lhs, calls);
                self.expr(ctx, rhs, calls);
            }
            ExprKind::As { expr, .. } => self.expr(ctx, expr, calls),
        }
    }

    fn call(&mut self, ctx: &mut Ctx, name: &str, pos: Pos) {
        match name {
            "Object" => self.warn(ctx, pos, WARN_OBJECT),
            "Fn" => self.warn(ctx, pos, WARN_FN),
            _ => {}
        }
        let known = (self.source.native_components && stdlib::is_native_component(name))
            || stdlib::is_builtin_name(name)
            || name == "Or"
            || name == "Component"
            || ctx.flow.functions.iter().any(|f| f.name == name)
            || ctx.flow.imports.iter().any(|i| i.item.local_name() == name)
            || self.remembered.contains(name)
            || self
                .closures
                .get(&ctx.scope)
                .is_some_and(|s| s.contains(name));
        if !known {
            self.error(ctx, pos, format!("function [{name}] does not exist"));
        }
    }
}

fn base_of(flow: &Flow) -> Ctx<'_> {
    Ctx {
        flow,
        step: None,
        scope: Scope::Step(String::new()),
        in_fn: 0,
        loops: 0,
    }
}

/// Calls `f` on `e` and every expression inside it, closure bodies included.
fn visit_expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match &e.kind {
        ExprKind::Str(parts) => {
            for p in parts {
                if let StrPart::Interp(x) = p {
                    visit_expr(x, f);
                }
            }
        }
        ExprKind::Array(items) => items.iter().for_each(|x| visit_expr(x, f)),
        ExprKind::Object(fields) => fields.iter().for_each(|(_, x)| visit_expr(x, f)),
        ExprKind::Path { base, segs } => {
            visit_expr(base, f);
            for seg in segs {
                match seg {
                    PathSeg::Key { .. } => {}
                    PathSeg::Index { expr, .. } => visit_expr(expr, f),
                    PathSeg::Method { args, .. } => {
                        args.iter().for_each(|a| visit_expr(&a.value, f))
                    }
                }
            }
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| visit_expr(&a.value, f)),
        ExprKind::Not(x) | ExprKind::As { expr: x, .. } => visit_expr(x, f),
        ExprKind::Binary { lhs, rhs, .. } => {
            visit_expr(lhs, f);
            visit_expr(rhs, f);
        }
        _ => {}
    }
}

/// Warn about int literals written with `_` (they evaluate to 0, spec §2.3).
fn underscore_ints(report: &mut LintReport, content: &str, flow: &Flow) {
    // Cheap pre-check (a digit run starting a word and followed by `_`) before re-parsing.
    let b = content.as_bytes();
    let mut maybe = false;
    let mut i = 0;
    while i < b.len() && !maybe {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i].is_ascii_digit() && word_start {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            maybe = b.get(i) == Some(&b'_');
        } else {
            i += 1;
        }
    }
    if !maybe {
        return;
    }
    let Ok((_, notes)) = crate::parser::parse_flow_with_notes(&flow.name, content) else {
        return;
    };
    for pos in notes {
        let step = flow
            .steps
            .iter()
            .map(|s| (s.pos, Some(s.name.as_str())))
            .chain(flow.functions.iter().map(|f| (f.pos, None)))
            .filter(|(p, _)| (p.line, p.column) <= (pos.line, pos.column))
            .max_by_key(|(p, _)| (p.line, p.column))
            .and_then(|(_, s)| s);
        report
            .warnings
            .push(diag(&flow.name, step, pos, WARN_UNDERSCORE_INT));
    }
}
