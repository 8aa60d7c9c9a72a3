//! A compiled bot: parsed flows, evaluated constants, resolved imports/inserts and component
//! templates. Immutable, `Send + Sync`, cached per bot version by the platform; cloning a
//! [`Bot`] only bumps a reference count.
//!
//! Choices where the spec leaves room:
//! * Duplicate steps or functions in one flow (only possible with [`Bot::compile_unchecked`]):
//!   the first definition wins.
//! * `import f` with no `from` takes `f` from the first *other* flow, in bot order, that
//!   defines it; modules are searched after the bot's own flows.
//! * `insert s as a from F` makes `F`'s step `s` reachable as step `a` of the inserting flow,
//!   running with the inserting flow's context (constants, functions, `_context`).
//! * An import that names a flow which itself imports the function is followed (up to a few
//!   hops), so re-exports work.

use std::sync::Arc;

use crate::api::{BotSource, Diagnostic, Validation};
use crate::ast::{BinOp, ClosureDef, Expr, ExprKind, Flow, ImportSource, PathSeg, Pos, Stmt};
use crate::ast::{StmtKind, StrPart};
use crate::eval::fxhash::{FxHashMap, FxIndexMap};
use crate::value::{Map, Value};

/// A parsed, prepared bot. Cheap to clone and share across threads.
#[derive(Debug, Clone)]
pub struct Bot {
    pub(crate) inner: Arc<BotInner>,
}

/// Where a step's body lives: flow index and step index in that flow's AST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepRef {
    pub flow: usize,
    pub idx: usize,
}

/// Where a function's body lives: flow index and function index in that flow's AST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FnRef {
    pub flow: usize,
    pub idx: usize,
}

#[derive(Debug)]
pub(crate) struct CompiledFlow {
    pub name: String,
    pub ast: Flow,
    /// Own steps, then inserted steps under their local names.
    pub steps: FxHashMap<String, StepRef>,
    /// Own functions, then imports under their local names.
    pub functions: FxHashMap<String, FnRef>,
    pub constants: FxIndexMap<String, Value>,
}

#[derive(Debug)]
pub(crate) struct BotInner {
    pub source: BotSource,
    /// The bot's flows in source order, then its modules.
    pub flows: Vec<CompiledFlow>,
    pub flow_by_name: FxHashMap<String, usize>,
    pub module_by_name: FxHashMap<String, usize>,
    pub default_flow: Option<usize>,
    pub env: Value,
    pub warnings: Vec<Diagnostic>,
    /// Closure literals by (flow name, position), for loading remembered closures.
    pub closures: FxHashMap<(String, Pos), Arc<ClosureDef>>,
}

const CONST_ERR: &str = "Constant invalid expression type";

impl Bot {
    /// Parse, lint and prepare a bot. Fails with the validation report when it has errors.
    pub fn compile(source: BotSource) -> Result<Bot, Validation> {
        Self::build(source, true)
    }

    /// Parse and prepare a bot without linting it: what the conformance protocol needs, since
    /// the reference runs bots the linter would reject. Parse errors and invalid constants
    /// still fail.
    pub fn compile_unchecked(source: BotSource) -> Result<Bot, Validation> {
        Self::build(source, false)
    }

    /// The source the bot was compiled from.
    pub fn source(&self) -> &BotSource {
        &self.inner.source
    }

    /// Lint warnings found when the bot was compiled (empty for unchecked bots).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.inner.warnings
    }

    /// Names of the bot's flows, in source order (modules excluded).
    pub fn flow_names(&self) -> impl Iterator<Item = &str> {
        self.inner.source.flows.iter().map(|f| f.name.as_str())
    }

    fn build(source: BotSource, lint: bool) -> Result<Bot, Validation> {
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(source.flows.len() + source.modules.len());
        for f in source.flows.iter().chain(&source.modules) {
            match crate::parser::parse_flow(&f.name, &f.content) {
                Ok(flow) => parsed.push(flow),
                Err(d) => errors.push(d),
            }
        }
        if !errors.is_empty() {
            return Err(Validation {
                valid: false,
                errors,
                warnings: Vec::new(),
            });
        }
        let n_main = source.flows.len();
        let mut warnings = Vec::new();
        if lint {
            let report = crate::lint::lint(&source, &parsed[..n_main]);
            if !report.errors.is_empty() {
                return Err(Validation {
                    valid: false,
                    errors: report.errors,
                    warnings: report.warnings,
                });
            }
            warnings = report.warnings;
        }

        let mut flows = Vec::with_capacity(parsed.len());
        for ast in parsed {
            let mut constants = FxIndexMap::default();
            for c in &ast.constants {
                match eval_const(&c.value) {
                    Ok(v) => {
                        constants.entry(c.name.clone()).or_insert(v);
                    }
                    Err(reason) => errors.push(Diagnostic {
                        flow: ast.name.clone(),
                        step: None,
                        line: c.value.pos.line,
                        column: c.value.pos.column,
                        message: format!("{CONST_ERR}: {reason}"),
                    }),
                }
            }
            flows.push(CompiledFlow {
                name: ast.name.clone(),
                ast,
                steps: FxHashMap::default(),
                functions: FxHashMap::default(),
                constants,
            });
        }
        if !errors.is_empty() {
            return Err(Validation {
                valid: false,
                errors,
                warnings,
            });
        }

        let mut flow_by_name = FxHashMap::default();
        for (i, f) in flows.iter().enumerate().take(n_main) {
            flow_by_name.entry(f.name.clone()).or_insert(i);
        }
        let mut module_by_name = FxHashMap::default();
        for (i, f) in flows.iter().enumerate().skip(n_main) {
            module_by_name.entry(f.name.clone()).or_insert(i);
        }

        // Own steps and functions first.
        for (fi, f) in flows.iter_mut().enumerate() {
            for (si, s) in f.ast.steps.iter().enumerate() {
                f.steps
                    .entry(s.name.clone())
                    .or_insert(StepRef { flow: fi, idx: si });
            }
            for (ki, func) in f.ast.functions.iter().enumerate() {
                f.functions
                    .entry(func.name.clone())
                    .or_insert(FnRef { flow: fi, idx: ki });
            }
        }
        // Inserts and imports, resolved against own definitions (following re-exports).
        let mut resolved_steps = Vec::new();
        let mut resolved_fns = Vec::new();
        for (fi, f) in flows.iter().enumerate() {
            for ins in &f.ast.inserts {
                let target = flow_by_name.get(&ins.from).copied();
                if let Some(sref) = target.and_then(|t| own_step(&flows[t], &ins.item.name)) {
                    resolved_steps.push((fi, ins.item.local_name().to_string(), sref));
                }
            }
            for imp in &f.ast.imports {
                let found = match &imp.from {
                    Some(ImportSource::Flow(name)) => flow_by_name
                        .get(name)
                        .and_then(|&t| find_fn(&flows, &flow_by_name, t, &imp.item.name, 4)),
                    Some(ImportSource::Module(name)) => module_by_name
                        .get(name)
                        .and_then(|&t| find_fn(&flows, &flow_by_name, t, &imp.item.name, 4)),
                    None => (0..flows.len())
                        .filter(|&t| t != fi)
                        .find_map(|t| own_fn(&flows[t], &imp.item.name)),
                };
                if let Some(fref) = found {
                    resolved_fns.push((fi, imp.item.local_name().to_string(), fref));
                }
            }
        }
        for (fi, name, sref) in resolved_steps {
            flows[fi].steps.entry(name).or_insert(sref);
        }
        for (fi, name, fref) in resolved_fns {
            flows[fi].functions.entry(name).or_insert(fref);
        }

        let default_flow = flow_by_name.get(&source.default_flow).copied().or_else(|| {
            flows
                .iter()
                .take(n_main)
                .position(|f| f.name.eq_ignore_ascii_case(&source.default_flow))
        });
        let env = crate::json::from_json(&serde_json::Value::Object(source.env.clone()));
        let mut closures = FxHashMap::default();
        for f in &flows {
            collect_closures(&f.ast, &mut closures);
        }
        Ok(Bot {
            inner: Arc::new(BotInner {
                source,
                flows,
                flow_by_name,
                module_by_name,
                default_flow,
                env,
                warnings,
                closures,
            }),
        })
    }
}

impl BotInner {
    /// A flow of the bot by exact name (the script's view, spec §1 "Name matching").
    pub fn flow_exact(&self, name: &str) -> Option<usize> {
        self.flow_by_name.get(name).copied()
    }

    /// A flow by name as the engine looks it up: exact, then ASCII-case-insensitive.
    pub fn flow_loose(&self, name: &str) -> Option<usize> {
        self.flow_exact(name).or_else(|| {
            self.source
                .flows
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
        })
    }

    /// A value in the memory format, with remembered closures found again in the bot.
    pub fn load_memory(&self, j: &serde_json::Value) -> Value {
        crate::json::from_memory_with(j, &mut |flow, pos| {
            self.closures.get(&(flow.to_string(), pos)).cloned()
        })
    }

    /// A flow or module by the name stored in a closure.
    pub fn flow_any(&self, name: &str) -> Option<usize> {
        self.flow_exact(name)
            .or_else(|| self.module_by_name.get(name).copied())
    }
}

fn own_step(flow: &CompiledFlow, name: &str) -> Option<StepRef> {
    flow.steps.get(name).copied()
}

fn own_fn(flow: &CompiledFlow, name: &str) -> Option<FnRef> {
    flow.ast
        .functions
        .iter()
        .position(|f| f.name == name)
        .and_then(|_| flow.functions.get(name).copied())
}

/// `name` in flow `t`: its own function, or one it imports (bounded hops).
fn find_fn(
    flows: &[CompiledFlow],
    by_name: &FxHashMap<String, usize>,
    t: usize,
    name: &str,
    hops: u32,
) -> Option<FnRef> {
    if let Some(f) = own_fn(&flows[t], name) {
        return Some(f);
    }
    if hops == 0 {
        return None;
    }
    let imp = flows[t]
        .ast
        .imports
        .iter()
        .find(|i| i.item.local_name() == name)?;
    match &imp.from {
        Some(ImportSource::Flow(src)) => {
            let s = *by_name.get(src)?;
            find_fn(flows, by_name, s, &imp.item.name, hops - 1)
        }
        _ => None,
    }
}

/// Evaluate a `const` expression (spec §2.7): literals, arrays, objects, `!` and binary
/// operators other than `match`, with no variables.
fn eval_const(e: &Expr) -> Result<Value, String> {
    fn invalid() -> String {
        "constants can not be assign this type of expression".to_string()
    }
    Ok(match &e.kind {
        ExprKind::Null => Value::null(),
        ExprKind::Bool(b) => Value::bool(*b),
        ExprKind::Int(i) => Value::int(*i),
        ExprKind::Float(f) => Value::float(*f),
        ExprKind::Str(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    StrPart::Lit(t) => s.push_str(t),
                    StrPart::Interp(_) => return Err(invalid()),
                }
            }
            Value::string(s)
        }
        ExprKind::Array(items) => Value::array(
            items
                .iter()
                .map(eval_const)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        ExprKind::Object(pairs) => {
            let mut m = Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                m.insert(k.clone(), eval_const(v)?);
            }
            Value::object(m)
        }
        ExprKind::Not(inner) => Value::bool(!crate::ops::truthy(&eval_const(inner)?)),
        ExprKind::Binary { op, lhs, rhs } => {
            if matches!(op, BinOp::Match | BinOp::NotMatch) {
                return Err(invalid());
            }
            let (l, r) = (eval_const(lhs)?, eval_const(rhs)?);
            crate::ops::binary(*op, &l, &r)?
        }
        _ => return Err(invalid()),
    })
}

// A compiled bot is shared across threads by the platform.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Bot>();
};

/// Every closure literal of a flow by position, so remembered closures can be loaded back
/// (the memory format stores a closure as its flow and position, see `json::closure_key`).
fn collect_closures(flow: &Flow, out: &mut FxHashMap<(String, Pos), Arc<ClosureDef>>) {
    let mut stack: Vec<&Expr> = Vec::new();
    let mut blocks: Vec<&[Stmt]> = Vec::new();
    for s in &flow.steps {
        blocks.push(&s.body);
    }
    for f in &flow.functions {
        blocks.push(&f.body);
    }
    // Explicit work lists instead of recursion: the tree is as deep as the parser allows.
    loop {
        if let Some(e) = stack.pop() {
            match &e.kind {
                ExprKind::Str(parts) => {
                    for p in parts {
                        if let StrPart::Interp(x) = p {
                            stack.push(x);
                        }
                    }
                }
                ExprKind::Array(items) => stack.extend(items.iter()),
                ExprKind::Object(pairs) => stack.extend(pairs.iter().map(|(_, v)| v)),
                ExprKind::Closure(def) => {
                    out.entry((flow.name.clone(), def.pos))
                        .or_insert_with(|| def.clone());
                    blocks.push(&def.body);
                }
                ExprKind::Path { base, segs } => {
                    stack.push(base);
                    push_segs(segs, &mut stack);
                }
                ExprKind::Call { args, .. } => stack.extend(args.iter().map(|a| &a.value)),
                ExprKind::Not(x) => stack.push(x),
                ExprKind::Binary { lhs, rhs, .. } => {
                    stack.push(lhs);
                    stack.push(rhs);
                }
                ExprKind::As { expr, .. } => stack.push(expr),
                _ => {}
            }
            continue;
        }
        let Some(block) = blocks.pop() else { break };
        for s in block {
            match &s.kind {
                StmtKind::Do { assign, expr } => {
                    stack.push(expr);
                    if let Some((t, _)) = assign {
                        push_segs(&t.path, &mut stack);
                    }
                }
                StmtKind::Remember { expr, .. }
                | StmtKind::Say(expr)
                | StmtKind::Debug(expr)
                | StmtKind::Log { expr, .. }
                | StmtKind::Use(expr)
                | StmtKind::Return(expr) => stack.push(expr),
                StmtKind::If {
                    branches,
                    otherwise,
                } => {
                    for (c, b) in branches {
                        stack.push(c);
                        blocks.push(b);
                    }
                    if let Some(b) = otherwise {
                        blocks.push(b);
                    }
                }
                StmtKind::Foreach { iter, body, .. } => {
                    stack.push(iter);
                    blocks.push(body);
                }
                StmtKind::While { cond, body } => {
                    stack.push(cond);
                    blocks.push(body);
                }
                _ => {}
            }
        }
    }
}

fn push_segs<'a>(segs: &'a [PathSeg], stack: &mut Vec<&'a Expr>) {
    for s in segs {
        match s {
            PathSeg::Index { expr, .. } => stack.push(expr),
            PathSeg::Method { args, .. } => stack.extend(args.iter().map(|a| &a.value)),
            PathSeg::Key { .. } => {}
        }
    }
}
