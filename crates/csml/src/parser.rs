//! CSML source text → [`crate::ast::Flow`] (spec §2). Reports the first parse error as a
//! located [`Diagnostic`] with the reference's reason text (spec §6.1).
//!
//! A hand-written recursive-descent parser driving the [`Cursor`] of [`crate::lexer`]. Every
//! parse function skips the whitespace *before* what it reads and leaves the cursor right after
//! its last byte, so "no whitespace here" rules (`x[0]`, `name:`, `a@b`) are plain byte checks
//! and a step's source range ends at its last statement.
//!
//! Nesting is bounded: every nested construct and every operator of a chain adds one to a depth
//! counter capped at [`MAX_DEPTH`], so neither the parser nor anything that walks the tree
//! recursively (evaluator, `Drop`) can overflow the stack.

mod expr;
mod stmt;

use std::borrow::Cow;

use crate::api::Diagnostic;
use crate::ast::{Block, Const, Flow, Function, Import, ImportSource, Insert, NameAs, Pos, Step};
use crate::ast::{ExprKind, StmtKind};
use crate::lexer::{self, Cursor, LineIndex, RESERVED_DEFINE};

/// Deepest tree the parser builds (nested brackets, blocks, interpolations, operator chains).
pub const MAX_DEPTH: usize = 128;

/// Stack the parser lets itself use, in bytes. Unoptimized builds use far bigger frames than
/// release builds, so on them this, not [`MAX_DEPTH`], is what stops deep nesting.
const STACK_BUDGET: usize = 512 * 1024;

/// An address on the current stack, to measure how much stack the parser has used.
#[inline(never)]
fn stack_addr() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

pub const ERR_GENERIC: &str =
    "Invalid argument. One of the action keywords [say, do, if, ...] is missing";
pub const ERR_DEPTH: &str = "expression or block nested too deeply";
pub const ERR_CONST: &str =
    "Constant invalid expression type: constants can not be assign this type of expression";
pub const ERR_IMPORT: &str =
    "'import' expecting valid function name. Example: 'import function from flow'";
pub const ERR_END_STRING: &str = "expecting '\"' to end string";
pub const ERR_END_INTERP: &str = "expecting '}}' to end expandable string";
pub const ERR_INTERP_ARG: &str = "wrong argument(s) given to expandable string";
pub const ERR_ARG_LIST: &str =
    "Invalid argument. Expecting one ',' between each argument or ')' to end the list";
pub const ERR_ACTION_ARG: &str =
    "expecting valid argument after action keywords. Example: say value";
pub const ERR_REMEMBER: &str =
    "'remember' must be assigning to a variable via '='. Example: 'remember key = value'";
pub const ERR_USE: &str =
    "'use' must be assigning a variable with keyword 'as'. Example: 'use value as key'";
pub const ERR_RETURN: &str = "return expects a value to return";
pub const ERR_GOTO: &str = "missing step name after goto";

/// Internal marker: no expression starts here. Callers turn it into their own reason.
const NO_VALUE: &str = "expecting a value";

/// A parse failure: byte offset and reason.
#[derive(Debug)]
struct PErr {
    off: usize,
    msg: Cow<'static, str>,
}

type PResult<T> = Result<T, PErr>;

fn err<T>(off: usize, msg: &'static str) -> PResult<T> {
    Err(PErr {
        off,
        msg: Cow::Borrowed(msg),
    })
}

/// Parse one flow. Never panics and never overflows the stack: nesting deeper than the parser's
/// limit is a located error.
pub fn parse_flow(name: &str, source: &str) -> Result<Flow, Diagnostic> {
    parse_flow_with_notes(name, source).map(|(flow, _)| flow)
}

/// [`parse_flow`], plus the positions of int literals written with `_` (they evaluate to 0;
/// the linter warns about them, spec §2.3).
pub fn parse_flow_with_notes(name: &str, source: &str) -> Result<(Flow, Vec<Pos>), Diagnostic> {
    let mut p = Parser::new(source);
    let mut flow = Flow {
        name: name.to_string(),
        ..Flow::default()
    };
    match p.flow(&mut flow) {
        Ok(()) => Ok((
            flow,
            p.underscore_ints.iter().map(|&o| p.lines.pos(o)).collect(),
        )),
        Err(e) => {
            let pos = p.lines.pos(e.off.min(source.len()));
            Err(Diagnostic {
                flow: name.to_string(),
                step: p.step.take(),
                line: pos.line,
                column: pos.column,
                message: if e.msg == NO_VALUE {
                    ERR_GENERIC.into()
                } else {
                    e.msg.into_owned()
                },
            })
        }
    }
}

struct Parser<'a> {
    c: Cursor<'a>,
    lines: LineIndex,
    depth: usize,
    stack_base: usize,
    /// Inside `{{ }}`: string literals are raw `\"...\"`.
    interp: bool,
    /// While parsing a `foreach` iterable: the depth at which `(a) {` is a group followed by
    /// the loop body, not a closure.
    no_closure_at: Option<usize>,
    /// The step being parsed, for error reports.
    step: Option<String>,
    /// Next hold number in the current step / function / closure body.
    counter: u32,
    underscore_ints: Vec<usize>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            c: Cursor::new(src),
            lines: LineIndex::new(src),
            depth: 0,
            stack_base: stack_addr(),
            interp: false,
            no_closure_at: None,
            step: None,
            counter: 0,
            underscore_ints: Vec::new(),
        }
    }

    fn pos(&self, off: usize) -> Pos {
        self.lines.pos(off)
    }

    fn here(&self) -> Pos {
        self.pos(self.c.pos)
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH || self.stack_base.abs_diff(stack_addr()) > STACK_BUDGET {
            err(self.c.pos, ERR_DEPTH)
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Whether `s` comes next after optional whitespace; nothing is consumed.
    fn peek_ws(&self, s: &str) -> bool {
        let mut c = self.c;
        c.skip_ws();
        c.starts_with(s)
    }

    /// Consume optional whitespace and `s` if `s` comes next; otherwise consume nothing.
    fn eat_ws(&mut self, s: &str) -> bool {
        let mut c = self.c;
        c.skip_ws();
        if c.eat(s) {
            self.c = c;
            true
        } else {
            false
        }
    }

    /// Consume the whole word `kw` (after optional whitespace) if it comes next.
    fn eat_kw_ws(&mut self, kw: &str) -> bool {
        let mut c = self.c;
        c.skip_ws();
        if c.at_keyword(kw) {
            c.pos += kw.len();
            self.c = c;
            true
        } else {
            false
        }
    }

    fn expect_ws(&mut self, s: &str, msg: &'static str) -> PResult<()> {
        self.c.skip_ws();
        if self.c.eat(s) {
            Ok(())
        } else {
            err(self.c.pos, msg)
        }
    }

    /// A name being defined, at the cursor (after whitespace): checked against the
    /// definition reserved list (or only the numeric/length rules when `reserved` is `None`).
    fn name(&mut self, reserved: Option<&[&str]>, missing: &'static str) -> PResult<(String, Pos)> {
        self.c.skip_ws();
        let start = self.c.pos;
        let word = self.c.peek_ident();
        if word.is_empty() {
            return err(start, missing);
        }
        if let Err(m) = lexer::check_name(word, reserved) {
            return err(start, m);
        }
        self.c.pos += word.len();
        Ok((word.to_string(), self.pos(start)))
    }

    /// A variable or function name being defined (spec §2.2): [`Parser::name`] with the
    /// definition reserved list, plus the `true`/`false` prefix rule.
    fn var_name(&mut self, missing: &'static str) -> PResult<(String, Pos)> {
        self.c.skip_ws();
        let start = self.c.pos;
        let word = self.c.peek_ident();
        if !word.is_empty()
            && let Err(m) = lexer::check_var_name(word)
        {
            return err(start, m);
        }
        self.name(Some(RESERVED_DEFINE), missing)
    }

    // ---- top level (spec §2.7) ----

    fn flow(&mut self, flow: &mut Flow) -> PResult<()> {
        loop {
            self.c.skip_ws();
            if self.c.at_end() {
                return Ok(());
            }
            let start = self.c.pos;
            let word = self.c.peek_ident();
            match word {
                "const" => {
                    self.step = None;
                    self.c.pos += word.len();
                    flow.constants.push(self.constant()?);
                }
                "import" => {
                    self.step = None;
                    self.c.pos += word.len();
                    self.import(start, flow)?;
                }
                "insert" => {
                    self.step = None;
                    self.c.pos += word.len();
                    self.insert(start, flow)?;
                }
                "fn" => {
                    self.step = None;
                    self.c.pos += word.len();
                    flow.functions.push(self.function()?);
                }
                _ if !word.is_empty() && self.c.bytes().get(start + word.len()) == Some(&b':') => {
                    flow.steps.push(self.step()?);
                }
                _ => return err(start, ERR_GENERIC),
            }
        }
    }

    fn step(&mut self) -> PResult<Step> {
        let start = self.c.pos;
        let (name, pos) = self.name(Some(RESERVED_DEFINE), ERR_GENERIC)?;
        self.c.pos += 1; // ':'
        self.step = Some(name.clone());
        self.counter = 0;
        let body = self.open_block()?;
        let hash = lexer::fnv1a64(&self.c.bytes()[start..self.c.pos]);
        let has_hold = block_has_hold(&body);
        Ok(Step {
            name,
            pos,
            body,
            hash,
            has_hold,
        })
    }

    fn function(&mut self) -> PResult<Function> {
        let (name, pos) = self.var_name(ERR_GENERIC)?;
        self.expect_ws("(", ERR_GENERIC)?;
        let params = self.param_list()?;
        self.counter = 0;
        self.c.skip_ws();
        let body = if self.c.peek() == Some(b'{') {
            self.braced_block()?
        } else if self.c.eat(":") {
            self.open_block()?
        } else {
            return err(self.c.pos, ERR_GENERIC);
        };
        Ok(Function {
            name,
            pos,
            params,
            body,
        })
    }

    /// Parameter names after `(`, through `)`; trailing comma allowed.
    fn param_list(&mut self) -> PResult<Vec<String>> {
        let mut params = Vec::new();
        loop {
            if self.eat_ws(")") {
                return Ok(params);
            }
            let (p, _) = self.name(None, ERR_ARG_LIST)?;
            params.push(p);
            if self.eat_ws(",") {
                continue;
            }
            self.expect_ws(")", ERR_ARG_LIST)?;
            return Ok(params);
        }
    }

    fn constant(&mut self) -> PResult<Const> {
        let (name, pos) = self.var_name(ERR_GENERIC)?;
        self.c.skip_ws();
        if !self.c.eat("=") || self.c.peek() == Some(b'=') {
            return err(self.c.pos, ERR_GENERIC);
        }
        self.c.skip_ws();
        let start = self.c.pos;
        let value = self.expr().map_err(|e| no_value_to(e, start, ERR_CONST))?;
        if !const_ok(&value) {
            return err(start, ERR_CONST);
        }
        Ok(Const { name, pos, value })
    }

    fn name_as_list(&mut self, missing: &'static str) -> PResult<Vec<NameAs>> {
        let mut items = Vec::new();
        if self.eat_ws("{") {
            loop {
                if self.eat_ws("}") {
                    break;
                }
                items.push(self.name_as(missing)?);
                if self.eat_ws(",") {
                    continue;
                }
                self.expect_ws("}", missing)?;
                break;
            }
            if items.is_empty() {
                return err(self.c.pos, missing);
            }
        } else {
            items.push(self.name_as(missing)?);
        }
        Ok(items)
    }

    fn name_as(&mut self, missing: &'static str) -> PResult<NameAs> {
        let (name, pos) = self.var_name(missing)?;
        let alias = if self.eat_kw_ws("as") {
            Some(self.var_name(missing)?.0)
        } else {
            None
        };
        Ok(NameAs { name, alias, pos })
    }

    fn import(&mut self, start: usize, flow: &mut Flow) -> PResult<()> {
        let pos = self.pos(start);
        let items = self.name_as_list(ERR_IMPORT)?;
        let from = if self.eat_kw_ws("from") {
            self.c.skip_ws();
            if self.c.eat("modules/") {
                Some(ImportSource::Module(self.name(None, ERR_IMPORT)?.0))
            } else {
                Some(ImportSource::Flow(self.name(None, ERR_IMPORT)?.0))
            }
        } else {
            None
        };
        flow.imports.extend(items.into_iter().map(|item| Import {
            item,
            from: from.clone(),
            pos,
        }));
        Ok(())
    }

    fn insert(&mut self, start: usize, flow: &mut Flow) -> PResult<()> {
        let pos = self.pos(start);
        let items = self.name_as_list(ERR_GENERIC)?;
        if !self.eat_kw_ws("from") {
            self.c.skip_ws();
            return err(self.c.pos, ERR_GENERIC);
        }
        let from = self.name(None, ERR_GENERIC)?.0;
        flow.inserts.extend(items.into_iter().map(|item| Insert {
            item,
            from: from.clone(),
            pos,
        }));
        Ok(())
    }
}

/// Turn the internal "no value here" marker at `start` into `msg`.
fn no_value_to(e: PErr, start: usize, msg: &'static str) -> PErr {
    if e.msg == NO_VALUE && e.off == start {
        PErr {
            off: e.off,
            msg: Cow::Borrowed(msg),
        }
    } else {
        e
    }
}

/// What a `const` may hold (spec §2.7): literals, arrays, objects, `!` and binary operators
/// other than `match`, over constant expressions only; strings without interpolation.
fn const_ok(e: &crate::ast::Expr) -> bool {
    use crate::ast::{BinOp, StrPart};
    match &e.kind {
        ExprKind::Null | ExprKind::Bool(_) | ExprKind::Int(_) | ExprKind::Float(_) => true,
        ExprKind::Str(parts) => parts.iter().all(|p| matches!(p, StrPart::Lit(_))),
        ExprKind::Array(items) => items.iter().all(const_ok),
        ExprKind::Object(fields) => fields.iter().all(|(_, v)| const_ok(v)),
        ExprKind::Not(inner) => const_ok(inner),
        ExprKind::Binary { op, lhs, rhs } => {
            !matches!(op, BinOp::Match | BinOp::NotMatch) && const_ok(lhs) && const_ok(rhs)
        }
        _ => false,
    }
}

fn block_has_hold(block: &Block) -> bool {
    block.iter().any(|s| match &s.kind {
        StmtKind::Hold { .. } => true,
        StmtKind::If {
            branches,
            otherwise,
        } => {
            branches.iter().any(|(_, b)| block_has_hold(b))
                || otherwise.as_ref().is_some_and(block_has_hold)
        }
        StmtKind::Foreach { body, .. } | StmtKind::While { body, .. } => block_has_hold(body),
        _ => false,
    })
}
