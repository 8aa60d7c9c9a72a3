//! The syntax tree of one CSML flow, as produced by the parser and read by the linter and the
//! evaluator. Every node that can be the subject of an error message carries its [`Pos`].
//!
//! The tree is plain data: immutable once parsed, `Send + Sync`, and shared by every turn that
//! runs on the same bot version.

use std::sync::Arc;

/// A source position: line and column from 1; the column counts bytes within the line (spec §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// One parsed flow: its top-level items, grouped by kind, each list in source order.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    pub name: String,
    pub steps: Vec<Step>,
    pub functions: Vec<Function>,
    pub constants: Vec<Const>,
    pub imports: Vec<Import>,
    pub inserts: Vec<Insert>,
}

/// `name:` followed by its statements.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub pos: Pos,
    pub body: Block,
    /// Hash of the step's source text: a hold taken in this step is dropped when it changes
    /// (spec §3.11, "hash mismatch").
    pub hash: u64,
    /// Whether any statement of the step (at any depth) is a `hold`/`hold_secure`; used by the
    /// infinite-loop lint.
    pub has_hold: bool,
}

/// `fn name(params) { body }` or `fn name(params): body`.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub pos: Pos,
    pub params: Vec<String>,
    pub body: Block,
}

/// `const NAME = const_expr`. The parser checks that `value` only uses the forms a constant
/// may use (spec §2.7); it is evaluated once when the bot is compiled.
#[derive(Debug, Clone)]
pub struct Const {
    pub name: String,
    pub pos: Pos,
    pub value: Expr,
}

/// One name of an `import` or `insert`: the original name and the local alias, if any.
#[derive(Debug, Clone)]
pub struct NameAs {
    pub name: String,
    pub alias: Option<String>,
    pub pos: Pos,
}

impl NameAs {
    /// The name this item is known by in the importing flow.
    pub fn local_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// `import f [as g] [from flow | from modules/NAME]`, one entry per imported name.
#[derive(Debug, Clone)]
pub struct Import {
    pub item: NameAs,
    /// `None` when there is no `from`: search every flow, first in bot order wins.
    pub from: Option<ImportSource>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    Flow(String),
    /// `from modules/NAME`: a module supplied with the bot version as an extra flow.
    Module(String),
}

/// `insert step [as alias] from flow`, one entry per inserted step.
#[derive(Debug, Clone)]
pub struct Insert {
    pub item: NameAs,
    pub from: String,
    pub pos: Pos,
}

pub type Block = Vec<Stmt>;

/// A statement. `index` is the hold numbering of spec §3.11 / the test protocol: every plain
/// instruction gets the next number in source order, depth first, from 0 within its step (or
/// function body); `if`, `foreach` and `while` take no number of their own (their `index` is the
/// number of the first instruction inside them, and is not used for resuming).
#[derive(Debug, Clone)]
pub struct Stmt {
    pub pos: Pos,
    pub index: u32,
    pub kind: StmtKind,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `do expr`, or `do target op expr` (`do e as x` is parsed as `do x = e`).
    Do {
        assign: Option<(Target, AssignOp)>,
        expr: Expr,
    },
    /// `remember name = expr` / `remember expr as name`.
    Remember {
        name: String,
        name_pos: Pos,
        expr: Expr,
    },
    Forget(Forget),
    Say(Expr),
    Debug(Expr),
    Log {
        level: LogLevel,
        expr: Expr,
    },
    /// Deprecated `use e as x`: `expr` is always an [`ExprKind::As`].
    Use(Expr),
    Goto(Goto),
    Previous(Previous),
    Hold {
        secure: bool,
    },
    Break,
    Continue,
    Return(Expr),
    If {
        branches: Vec<(Expr, Block)>,
        otherwise: Option<Block>,
    },
    Foreach {
        var: String,
        index_var: Option<String>,
        iter: Expr,
        body: Block,
    },
    While {
        cond: Expr,
        body: Block,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    All,
    Names(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    Step,
    Flow,
}

/// The left side of an assignment: a root name and an optional path into it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub pos: Pos,
    pub path: Vec<PathSeg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// `goto` in all its forms (spec §2.6). `step: None` means the `start` step; `flow: None` means
/// the current flow. `goto end` is `step: Some(Literal("end"))`.
#[derive(Debug, Clone)]
pub struct Goto {
    pub step: Option<GotoName>,
    pub flow: Option<GotoName>,
    /// `in BOT` (switching bots, spec §7.5).
    pub bot: Option<GotoName>,
}

#[derive(Debug, Clone)]
pub enum GotoName {
    Literal(String),
    /// `$var` or `$var.path`: the value must be a String at run time.
    Var {
        name: String,
        path: Vec<PathSeg>,
        pos: Pos,
    },
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub pos: Pos,
    pub kind: ExprKind,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string literal: literal text and `{{ }}` interpolations, in order. A plain literal is a
    /// single `Lit` part (or no part at all for `""`).
    Str(Vec<StrPart>),
    Array(Vec<Expr>),
    /// Keys in source order.
    Object(Vec<(String, Expr)>),
    Closure(Arc<ClosureDef>),
    Ident(String),
    /// `base.seg.seg[...]...` — key reads, index reads and method calls.
    Path {
        base: Box<Expr>,
        segs: Vec<PathSeg>,
    },
    /// `Name(args)`: a component, a builtin, `Or`, a flow function, an import or a local
    /// closure, resolved at run time in that order (spec §3.13). `Component.Name(...)` is a
    /// [`ExprKind::Path`] on the identifier `Component`.
    Call {
        name: String,
        args: Vec<Arg>,
    },
    /// `!e` (each `!` of `!!e` is its own node).
    Not(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `expr as name`: evaluates `expr`, binds it to the local `name`, and yields it.
    As {
        expr: Box<Expr>,
        name: String,
        name_pos: Pos,
    },
}

#[derive(Debug, Clone)]
pub enum StrPart {
    Lit(String),
    Interp(Expr),
}

#[derive(Debug, Clone)]
pub struct ClosureDef {
    pub params: Vec<String>,
    pub body: Block,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum PathSeg {
    /// `.name`
    Key { name: String, pos: Pos },
    /// `[expr]`
    Index { expr: Expr, pos: Pos },
    /// `.name(args)`; `pos` is the position of the method name.
    Method {
        name: String,
        args: Vec<Arg>,
        pos: Pos,
    },
}

/// A call argument: positional, or named (`name = value`).
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<String>,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    NotMatch,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    /// The operator as written, used in error texts (`illegal operation: PrimitiveInt + ...`).
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Match => "match",
            BinOp::NotMatch => "!match",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}
