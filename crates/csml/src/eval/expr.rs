//! Expressions (spec §2.5, §3.2, §3.5–3.8, §3.13): literals and interpolation, variable reads
//! in normal and silent contexts, paths (keys, indexes, methods, write methods written back to
//! their variable), calls (components, builtins, `Or`, functions, imports, closures) and
//! closure capture.

use std::sync::Arc;

use super::scope::{Access, Slot, access_text, index_reason, key_reason, undefined_reason};
use super::{Evaluator, Frame, Locals, R, Stop};
use crate::ast::{Arg, ClosureDef, Expr, ExprKind, PathSeg, Pos, StrPart};
use crate::stdlib::{self, Args};
use crate::value::{Closure, Kind, Map, Value};

/// Names of methods that may write to their receiver (spec §5.2); the library has the final
/// word through [`stdlib::is_write_method`].
const WRITE_NAMES: &[&str] = &[
    "push",
    "pop",
    "insert_at",
    "remove_at",
    "insert",
    "assign",
    "remove",
    "clear_values",
    "at",
    "add",
    "sub",
    "with_timezone",
    "unix",
];

/// How missing keys read on a special root are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// Reported unless the context is silent.
    Normal,
    /// Never reported (`_metadata`).
    Never,
}

impl Evaluator<'_> {
    /// Evaluate an expression. `silent`: undefined names, missing keys and bad indexes give
    /// Null (carrying `info.error`) without a message (spec §3.2).
    pub fn eval(&mut self, e: &Expr, silent: bool) -> R<Value> {
        match &e.kind {
            ExprKind::Int(i) => Ok(Value::int(*i)),
            ExprKind::Ident(name) => self.read_ident(name, e.pos, silent),
            // The hot shape of loops (`i < n`, `i + 1`): no recursion to guard, and variables
            // are read in place rather than copied.
            ExprKind::Binary { op, lhs, rhs } if is_leaf(lhs) && is_leaf(rhs) => {
                // Literal operands are built in place; variables are borrowed.
                let (lt, rt);
                let l = match literal(lhs) {
                    Some(v) => {
                        lt = v;
                        Some(&lt)
                    }
                    None => self.plain_var(lhs),
                };
                let r = match literal(rhs) {
                    Some(v) => {
                        rt = v;
                        Some(&rt)
                    }
                    None => self.plain_var(rhs),
                };
                if let (Some(l), Some(r)) = (l, r) {
                    // Variables are charged as if copied (the budget bounds the work done on
                    // big values, e.g. comparing them in a loop), literals are free.
                    let units = |v: &Value, e: &Expr| match v.kind {
                        _ if is_literal(e) => Ok(0),
                        Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) | Kind::Null => Ok(1),
                        _ => super::weigh(v).map_err(|reason| (reason, e.pos)),
                    };
                    let charged = units(l, lhs).and_then(|a| Ok(a + units(r, rhs)?));
                    let out = crate::ops::binary(*op, l, r);
                    let units = match charged {
                        Ok(u) => u,
                        Err((reason, pos)) => return Err(self.fatal(reason, pos)),
                    };
                    self.charge_units(units, e.pos)?;
                    return match out {
                        Ok(v) => {
                            // A result can grow (string `+`): it is accounted for like a copy.
                            if matches!(v.kind, Kind::String(_)) {
                                self.charge(&v, e.pos)?;
                            }
                            Ok(v)
                        }
                        Err(reason) => Err(self.fatal(&reason, e.pos)),
                    };
                }
                // An undefined or special name: the general path reports it.
                let l = self.eval(lhs, true)?;
                let r = self.eval(rhs, true)?;
                self.binary(*op, &l, &r, e.pos)
            }
            _ => super::grow(|| self.eval_inner(e, silent)),
        }
    }

    /// A defined, non-special variable named by `e`, borrowed.
    #[inline]
    fn plain_var(&self, e: &Expr) -> Option<&Value> {
        match &e.kind {
            ExprKind::Ident(name) if !Self::is_special(name) => self.var(name),
            _ => None,
        }
    }

    fn binary(&mut self, op: crate::ast::BinOp, l: &Value, r: &Value, pos: Pos) -> R<Value> {
        match crate::ops::binary(op, l, r) {
            Ok(v) => Ok(v),
            Err(reason) => Err(self.fatal(&reason, pos)),
        }
    }

    fn eval_inner(&mut self, e: &Expr, silent: bool) -> R<Value> {
        match &e.kind {
            ExprKind::Null => Ok(Value::null()),
            ExprKind::Bool(b) => Ok(Value::bool(*b)),
            ExprKind::Int(i) => Ok(Value::int(*i)),
            ExprKind::Float(f) => Ok(Value::float(*f)),
            ExprKind::Str(parts) => self.eval_string(parts, silent),
            ExprKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(self.eval(it, silent)?);
                }
                Ok(Value::array(out))
            }
            ExprKind::Object(pairs) => {
                let mut m = Map::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let v = self.eval(v, silent)?;
                    m.insert(k.clone(), v);
                }
                Ok(Value::object(m))
            }
            ExprKind::Closure(def) => self.make_closure(def),
            ExprKind::Ident(name) => self.read_ident(name, e.pos, silent),
            ExprKind::Path { base, segs } => self.eval_path(base, segs, silent),
            ExprKind::Call { name, args } => self.eval_call(name, args, e.pos, silent),
            ExprKind::Not(inner) => match self.eval(inner, true) {
                Ok(v) => Ok(Value::bool(!crate::ops::truthy(&v))),
                // A spent budget is not an error the operand can swallow.
                Err(Stop::Fatal(_)) if self.budget.is_none() => Ok(Value::bool(true)),
                Err(other) => Err(other),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.eval(lhs, true)?;
                let r = self.eval(rhs, true)?;
                self.binary(*op, &l, &r, e.pos)
            }
            ExprKind::As {
                expr,
                name,
                name_pos,
            } => {
                let v = self.eval(expr, silent)?;
                self.bind(name, v.clone(), *name_pos)?;
                Ok(v)
            }
        }
    }

    /// A string literal with interpolations; secure when any interpolated value is.
    fn eval_string(&mut self, parts: &[StrPart], silent: bool) -> R<Value> {
        if let [StrPart::Lit(s)] = parts {
            return Ok(Value::string(s.clone()));
        }
        let mut out = String::new();
        let mut secure = false;
        for p in parts {
            match p {
                StrPart::Lit(s) => out.push_str(s),
                StrPart::Interp(e) => {
                    // A plain variable is displayed in place, charged as if copied.
                    if let Some(v) = self.plain_var(e) {
                        let units = super::weigh(v);
                        if units.is_ok() {
                            secure |= v.contains_secure();
                            crate::json::push_display(&mut out, v);
                        }
                        match units {
                            Ok(u) => self.charge_units(u, e.pos)?,
                            Err(reason) => return Err(self.fatal(reason, e.pos)),
                        }
                        continue;
                    }
                    let v = self.eval(e, silent)?;
                    secure |= v.contains_secure();
                    crate::json::push_display(&mut out, &v);
                }
            }
        }
        Ok(Value::string(out).with_secure(secure))
    }

    /// A closure literal captures a snapshot of the memories and locals (spec §3.13).
    fn make_closure(&mut self, def: &Arc<ClosureDef>) -> R<Value> {
        let mut captured = Map::new();
        if !self.frame.in_fn {
            for (k, v) in &self.memories {
                captured.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.frame.locals {
            captured.insert(k.clone(), v.clone());
        }
        let captured = Value::object(captured);
        self.charge(&captured, def.pos)?;
        let Kind::Object(captured) = captured.kind else {
            return Ok(Value::null());
        };
        let flow = self.bot.flows[self.frame.flow].name.clone();
        let closure = Closure {
            def: def.clone(),
            captured: *captured,
            flow,
        };
        Ok(Value::from_kind(Kind::Closure(Arc::new(closure))))
    }

    /// A bare name.
    fn read_ident(&mut self, name: &str, pos: Pos, silent: bool) -> R<Value> {
        if Self::is_special(name) {
            let v = self.special_value(name);
            self.charge(&v, pos)?;
            return Ok(v);
        }
        if let Some(v) = self.var(name) {
            let v = v.clone();
            self.charge(&v, pos)?;
            return Ok(v);
        }
        let reason = undefined_reason(name);
        Ok(if silent {
            Value::error_null(reason)
        } else {
            self.error(&reason, pos)
        })
    }

    /// Evaluate index expressions of key/index segments.
    fn accesses(&mut self, segs: &[PathSeg], silent: bool) -> R<Vec<Access>> {
        let mut out = Vec::with_capacity(segs.len());
        for s in segs {
            match s {
                PathSeg::Key { name, pos } => out.push(Access::Key(name.clone(), *pos)),
                PathSeg::Index { expr, pos } => {
                    let v = self.eval(expr, silent)?;
                    out.push(Access::Index(v, *pos));
                }
                PathSeg::Method { .. } => break,
            }
        }
        Ok(out)
    }

    pub fn eval_args(&mut self, args: &[Arg], silent: bool) -> R<Args> {
        let mut out = Args::default();
        for a in args {
            let v = self.eval(&a.value, silent)?;
            match &a.name {
                Some(n) => out.named.push((n.clone(), v)),
                None => out.positional.push(v),
            }
        }
        Ok(out)
    }

    fn eval_path(&mut self, base: &Expr, segs: &[PathSeg], silent: bool) -> R<Value> {
        let ExprKind::Ident(name) = &base.kind else {
            let v = self.eval(base, silent)?;
            return self.apply_segs(v, segs, silent, Miss::Normal);
        };
        match name.as_str() {
            "Component" => {
                let Some(PathSeg::Method {
                    name: comp,
                    args,
                    pos,
                }) = segs.first()
                else {
                    return Ok(self.error("component must have a function applied", base.pos));
                };
                let args = self.eval_args(args, silent)?;
                let v = match stdlib::call_custom_component(self, comp, args) {
                    Ok(v) => v,
                    Err(f) => self.fault(f, *pos)?,
                };
                return self.apply_segs(v, &segs[1..], silent, Miss::Normal);
            }
            "event" => {
                let v = self.event_object();
                self.charge(&v, base.pos)?;
                return self.apply_segs(v, segs, silent, Miss::Normal);
            }
            "_metadata" => {
                // Only a key/index read sees the computed `_context`; a method works on the
                // whole value, which does not hold it.
                let v = if matches!(segs.first(), Some(PathSeg::Method { .. })) {
                    self.metadata_value()
                } else {
                    self.metadata_with_context()
                };
                self.charge(&v, base.pos)?;
                return self.apply_segs(v, segs, silent, Miss::Never);
            }
            "_env" => {
                let v = self.bot.env.clone();
                self.charge(&v, base.pos)?;
                return self.apply_segs(v, segs, silent, Miss::Normal);
            }
            "_memory" => {
                let v = self.memory_value();
                self.charge(&v, base.pos)?;
                return self.apply_segs(v, segs, silent, Miss::Normal);
            }
            _ => {}
        }

        // A variable: navigate keys/indexes by reference, clone only what is reached.
        let n_access = segs
            .iter()
            .position(|s| matches!(s, PathSeg::Method { .. }));
        let n_access = n_access.unwrap_or(segs.len());
        let path = self.accesses(&segs[..n_access], silent)?;
        let rest = &segs[n_access..];

        if let Some(PathSeg::Method { name: m, args, pos }) = rest.first()
            && self.slot(name).is_some()
        {
            return self.method_on_var(name, &path, (m, args, *pos), rest, silent);
        }

        let Some(root) = self.var(name) else {
            let reason = undefined_reason(name);
            let v = if silent {
                Value::error_null(reason)
            } else {
                self.error(&reason, base.pos)
            };
            return self.apply_segs(v, rest, silent, Miss::Normal);
        };
        let v = match read_path(root, &path) {
            Ok(v) => v,
            Err(fail) => {
                let v = self.miss(fail, silent, Miss::Normal);
                return self.apply_segs(v, rest, silent, Miss::Normal);
            }
        };
        self.charge(&v, base.pos)?;
        self.apply_segs(v, rest, silent, Miss::Normal)
    }

    /// `var.path.method(args)...`: the method runs on the variable itself, taken out of its
    /// slot and put back (no copy of the receiver); a write method's change stays, and is
    /// persisted when the variable is a memory (spec §3.4 point 5).
    fn method_on_var(
        &mut self,
        name: &str,
        path: &[Access],
        (method, args, mpos): (&str, &[Arg], Pos),
        rest: &[PathSeg],
        silent: bool,
    ) -> R<Value> {
        let args = self.eval_args(args, silent)?;
        // Resolved after the arguments, which may bind new locals (`x.push(1 as y)`).
        let Some(slot) = self.slot(name) else {
            return Ok(Value::null());
        };
        if slot == Slot::Const {
            // Constants belong to the shared bot: methods run on a copy, writes are refused.
            let Some(root) = self.var(name) else {
                return Ok(Value::null());
            };
            let mut target = match read_path(root, path) {
                Ok(t) => t,
                Err(fail) => self.miss(fail, silent, Miss::Normal),
            };
            let v = if WRITE_NAMES.contains(&method) && stdlib::is_write_method(&target, method) {
                self.error(
                    "Invalid operation constants can not execute self mutable functions",
                    mpos,
                )
            } else {
                self.charge(&target, mpos)?;
                self.method(&mut target, method, args, mpos)?
            };
            return self.apply_segs(v, &rest[1..], silent, Miss::Normal);
        }
        let Some(cell) = self.var_mut(slot) else {
            return Ok(Value::null());
        };
        let mut root = std::mem::take(cell);
        let outcome = match navigate_mut(&mut root, path) {
            Some(target) => {
                let write = stdlib::is_write_method(target, method);
                Ok((self.method(target, method, args, mpos), write))
            }
            // Through a String index, or a failed access: work on what a read gives.
            None => match read_path(&root, path) {
                Ok(mut owned) => Ok((self.method(&mut owned, method, args, mpos), false)),
                Err(fail) => Err(fail),
            },
        };
        self.put_back(name, slot, root);
        let v = match outcome {
            Ok((result, write)) => {
                let v = result?;
                if write && matches!(slot, Slot::Memory(_)) {
                    self.persist_memory(name, mpos)?;
                }
                v
            }
            Err(fail) => self.miss(fail, silent, Miss::Normal),
        };
        self.charge(&v, mpos)?;
        self.apply_segs(v, &rest[1..], silent, Miss::Normal)
    }

    /// Call a method through the library, keeping closure scopes per call.
    fn method(&mut self, recv: &mut Value, name: &str, args: Args, pos: Pos) -> R<Value> {
        let mark = self.closure_scopes.len();
        let r = stdlib::call_method(self, recv, name, args);
        self.closure_scopes.truncate(mark);
        match r {
            Ok(v) => Ok(v),
            Err(f) => self.fault(f, pos),
        }
    }

    /// A failed key/index read: reported (unless silent) as a non-fatal error.
    fn miss(&mut self, fail: (String, Pos), silent: bool, mode: Miss) -> Value {
        let (reason, pos) = fail;
        if silent || mode == Miss::Never {
            Value::error_null(reason)
        } else {
            self.error(&reason, pos)
        }
    }

    /// Apply path segments to an owned value.
    fn apply_segs(&mut self, mut v: Value, segs: &[PathSeg], silent: bool, mode: Miss) -> R<Value> {
        for s in segs {
            v = match s {
                PathSeg::Method { name, args, pos } => {
                    let args = self.eval_args(args, silent)?;
                    let out = self.method(&mut v, name, args, *pos)?;
                    self.charge(&out, *pos)?;
                    out
                }
                PathSeg::Key { name, pos } => {
                    let acc = Access::Key(name.clone(), *pos);
                    self.take_access(v, &acc, silent, mode)
                }
                PathSeg::Index { expr, pos } => {
                    let i = self.eval(expr, silent)?;
                    let acc = Access::Index(i, *pos);
                    self.take_access(v, &acc, silent, mode)
                }
            };
        }
        Ok(v)
    }

    fn take_access(&mut self, v: Value, acc: &Access, silent: bool, mode: Miss) -> Value {
        // Reading through a failed value keeps the first failure without a second message.
        if v.is_null() && v.is_error() {
            return v;
        }
        let secure = v.secure;
        match take(v, acc) {
            Ok(mut out) => {
                out.secure |= secure;
                out
            }
            Err(fail) => self.miss(fail, silent, mode),
        }
    }

    /// `name(args)` (spec §3.13 resolution order).
    fn eval_call(&mut self, name: &str, args: &[Arg], pos: Pos, silent: bool) -> R<Value> {
        if name == "Or" {
            let mut last = Value::null();
            for a in args {
                let v = self.eval(&a.value, true)?;
                if !v.is_error() {
                    return Ok(v);
                }
                last = v;
            }
            return Ok(last);
        }
        let is_lib = stdlib::is_builtin_name(name) || stdlib::is_native_component(name);
        let evaluated = self.eval_args(args, silent)?;
        if is_lib {
            let mark = self.closure_scopes.len();
            let r = stdlib::call_builtin(self, name, evaluated);
            self.closure_scopes.truncate(mark);
            return match r {
                Some(Ok(v)) => {
                    self.charge(&v, pos)?;
                    Ok(v)
                }
                Some(Err(f)) => self.fault(f, pos),
                None => Ok(self.error(&format!("Unknown builtin [{name}]"), pos)),
            };
        }
        if let Some(fref) = self.bot.flows[self.frame.flow].functions.get(name).copied() {
            let func = &self.bot.flows[fref.flow].ast.functions[fref.idx];
            let locals = bind_params(&func.params, evaluated)
                .ok_or_else(|| self.fatal("function arguments are not valid", pos))?;
            let frame = Frame {
                locals,
                flow: fref.flow,
                in_fn: true,
            };
            let body = &func.body;
            let (v, _) = self.in_scope(frame, pos, |ev| ev.run_body(body))?;
            return Ok(v);
        }
        let closure = match self.var(name).map(|v| &v.kind) {
            Some(Kind::Closure(c)) => Some(c.clone()),
            _ => None,
        };
        if let Some(c) = closure {
            return self.call_closure_args(&c, evaluated.positional, evaluated.named, Some(pos));
        }
        Ok(self.error(&format!("Unknown builtin [{name}]"), pos))
    }

    /// A function or closure body: its `return` value, or Null.
    pub fn run_body(&mut self, body: &[crate::ast::Stmt]) -> R<Value> {
        match self.exec_block(body) {
            Ok(()) => Ok(Value::null()),
            Err(Stop::Return(v)) => Ok(v),
            Err(Stop::Fatal(m)) => Err(Stop::Fatal(m)),
            Err(_) => Ok(Value::null()),
        }
    }

    /// Call a closure with its captured variables and the arguments bound to its parameters.
    pub fn call_closure_args(
        &mut self,
        closure: &Closure,
        positional: Vec<Value>,
        named: Vec<(String, Value)>,
        pos: Option<Pos>,
    ) -> R<Value> {
        let pos = pos.unwrap_or(closure.def.pos);
        let key = closure as *const Closure as usize;
        let shared = self.closure_scopes.iter().position(|(k, _)| *k == key);
        let mut locals: Locals = match shared {
            Some(i) => std::mem::take(&mut self.closure_scopes[i].1),
            None => {
                self.charge_units(closure.captured.len() as u64, pos)?;
                closure
                    .captured
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        };
        let args = Args { positional, named };
        let Some(params) = bind_params(&closure.def.params, args) else {
            return Err(self.fatal("function arguments are not valid", pos));
        };
        for (k, v) in params {
            locals.insert(k, v);
        }
        let flow = self.bot.flow_any(&closure.flow).unwrap_or(self.frame.flow);
        let frame = Frame {
            locals,
            flow,
            in_fn: true,
        };
        let body = &closure.def.body;
        let (v, locals) = self.in_scope(frame, pos, |ev| ev.run_body(body))?;
        match shared {
            Some(i) => {
                if let Some(s) = self.closure_scopes.get_mut(i) {
                    s.1 = locals;
                }
            }
            None => self.closure_scopes.push((key, locals)),
        }
        Ok(v)
    }
}

/// The value of a scalar literal.
#[inline]
fn literal(e: &Expr) -> Option<Value> {
    match e.kind {
        ExprKind::Int(i) => Some(Value::int(i)),
        ExprKind::Float(f) => Some(Value::float(f)),
        ExprKind::Bool(b) => Some(Value::bool(b)),
        ExprKind::Null => Some(Value::null()),
        _ => None,
    }
}

fn is_literal(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Null
    )
}

/// An expression evaluated without recursing.
fn is_leaf(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Int(_)
            | ExprKind::Ident(_)
            | ExprKind::Float(_)
            | ExprKind::Bool(_)
            | ExprKind::Null
    )
}

/// Bind call arguments to parameters: positional in order, named by parameter name; extra
/// arguments are ignored. `None` when a parameter is left without a value.
fn bind_params(params: &[String], args: Args) -> Option<Locals> {
    let mut slots: Vec<Option<Value>> = vec![None; params.len()];
    for (slot, v) in slots.iter_mut().zip(args.positional) {
        *slot = Some(v);
    }
    for (n, v) in args.named {
        if let Some(i) = params.iter().position(|p| *p == n) {
            slots[i] = Some(v);
        }
    }
    let mut locals = Locals::default();
    for (p, s) in params.iter().zip(slots) {
        locals.insert(p.clone(), s?);
    }
    Some(locals)
}

/// Follow key/index accesses by reference and clone what is reached (indexing into a String
/// switches to owned values).
fn read_path(root: &Value, path: &[Access]) -> Result<Value, (String, Pos)> {
    let mut cur = root;
    for (i, acc) in path.iter().enumerate() {
        if let (Access::Index(..), Kind::String(_)) = (acc, &cur.kind) {
            let mut v = take(cur.clone(), acc)?;
            for acc in &path[i + 1..] {
                v = take(v, acc)?;
            }
            return Ok(v);
        }
        cur = step_ref(cur, acc)?;
    }
    Ok(cur.clone())
}

fn step_ref<'v>(v: &'v Value, acc: &Access) -> Result<&'v Value, (String, Pos)> {
    let fail = || (key_reason(&access_text(acc)), acc.pos());
    match (acc, &v.kind) {
        (Access::Key(k, _), Kind::Object(m)) => m.get(k.as_str()).ok_or_else(fail),
        (Access::Index(i, _), Kind::Object(m)) => match &i.kind {
            Kind::String(k) => m.get(k.as_str()).ok_or_else(fail),
            _ => Err(fail()),
        },
        (Access::Index(i, p), Kind::Array(a)) => match i.kind {
            Kind::Int(n) => {
                if n >= 0 && (n as usize) < a.len() {
                    Ok(&a[n as usize])
                } else {
                    Err((index_reason(n), *p))
                }
            }
            _ => Err(fail()),
        },
        _ => Err(fail()),
    }
}

fn navigate_mut<'v>(root: &'v mut Value, path: &[Access]) -> Option<&'v mut Value> {
    let mut cur = root;
    for acc in path {
        cur = match (acc, &mut cur.kind) {
            (Access::Key(k, _), Kind::Object(m)) => m.get_mut(k.as_str())?,
            (Access::Index(i, _), Kind::Object(m)) => match &i.kind {
                Kind::String(k) => m.get_mut(k.as_str())?,
                _ => return None,
            },
            (Access::Index(i, _), Kind::Array(a)) => match i.kind {
                Kind::Int(n) if n >= 0 => a.get_mut(n as usize)?,
                _ => return None,
            },
            _ => return None,
        };
    }
    Some(cur)
}

/// One access on an owned value, moving the member out. Strings index by Unicode scalar.
fn take(v: Value, acc: &Access) -> Result<Value, (String, Pos)> {
    let fail = || (key_reason(&access_text(acc)), acc.pos());
    match (acc, v.kind) {
        (Access::Key(k, _), Kind::Object(mut m)) => m.swap_remove(k.as_str()).ok_or_else(fail),
        (Access::Index(i, _), Kind::Object(mut m)) => match &i.kind {
            Kind::String(k) => m.swap_remove(k.as_str()).ok_or_else(fail),
            _ => Err(fail()),
        },
        (Access::Index(i, p), Kind::Array(mut a)) => match i.kind {
            Kind::Int(n) if n >= 0 && (n as usize) < a.len() => Ok(a.swap_remove(n as usize)),
            Kind::Int(n) => Err((index_reason(n), *p)),
            _ => Err(fail()),
        },
        (Access::Index(i, p), Kind::String(s)) => match i.kind {
            Kind::Int(n) if n >= 0 => match s.chars().nth(n as usize) {
                Some(c) => Ok(Value::string(c)),
                None => Err((index_reason(n), *p)),
            },
            Kind::Int(n) => Err((index_reason(n), *p)),
            _ => Err(fail()),
        },
        _ => Err(fail()),
    }
}
