//! Statements and blocks (spec §2.6), with the hold numbering of spec §3.11: every plain
//! instruction takes the next number of its step/function/closure body, depth first; `if`,
//! `foreach` and `while` take none (their `index` is that of their first inner instruction).

use super::{
    ERR_ACTION_ARG, ERR_GENERIC, ERR_GOTO, ERR_REMEMBER, ERR_RETURN, ERR_USE, PResult, Parser, err,
    no_value_to,
};
use crate::ast::{
    AssignOp, Block, Expr, ExprKind, Forget, Goto, GotoName, LogLevel, PathSeg, Previous, Stmt,
    StmtKind, Target,
};
use crate::lexer::{self, Cursor, RESERVED_DEFINE, RESERVED_READ};

/// Words that start a statement (case-sensitive).
const STMT_KEYWORDS: &[&str] = &[
    "do",
    "remember",
    "forget",
    "say",
    "debug",
    "log",
    "use",
    "goto",
    "previous",
    "hold",
    "hold_secure",
    "break",
    "continue",
    "return",
    "if",
    "foreach",
    "while",
];

impl Parser<'_> {
    fn at_stmt_keyword(&self) -> bool {
        STMT_KEYWORDS.contains(&self.c.peek_ident())
    }

    fn next_index(&mut self) -> u32 {
        let i = self.counter;
        self.counter = self.counter.saturating_add(1);
        i
    }

    /// The statements of a step or a `fn name():` body: up to the first thing that does not
    /// start a statement (the next top-level item, or an error the top level reports).
    pub(super) fn open_block(&mut self) -> PResult<Block> {
        let mut block = Vec::new();
        loop {
            let mut c = self.c;
            c.skip_ws();
            let word = c.peek_ident();
            // `log:` is the next step, not a `log` statement.
            let step_name = c.bytes().get(c.pos + word.len()) == Some(&b':');
            if c.at_end() || !STMT_KEYWORDS.contains(&word) || step_name {
                return Ok(block);
            }
            self.c = c;
            block.push(self.statement()?);
        }
    }

    /// `{ statements }`, the cursor on `{` (after optional whitespace).
    pub(super) fn braced_block(&mut self) -> PResult<Block> {
        self.c.skip_ws();
        if !self.c.eat("{") {
            return err(self.c.pos, ERR_GENERIC);
        }
        self.enter()?;
        let mut block = Vec::new();
        loop {
            self.c.skip_ws();
            if self.c.eat("}") {
                break;
            }
            if self.c.at_end() {
                return err(self.c.pos, "expecting '}'");
            }
            if !self.at_stmt_keyword() {
                return err(self.c.pos, ERR_GENERIC);
            }
            block.push(self.statement()?);
        }
        self.leave();
        Ok(block)
    }

    /// `if`/`else` body: a braced block or one bare statement.
    fn body(&mut self) -> PResult<Block> {
        self.c.skip_ws();
        if self.c.peek() == Some(b'{') {
            return self.braced_block();
        }
        if !self.at_stmt_keyword() {
            return err(self.c.pos, ERR_GENERIC);
        }
        self.enter()?;
        let s = self.statement()?;
        self.leave();
        Ok(vec![s])
    }

    /// One statement; the cursor is on its keyword.
    pub(super) fn statement(&mut self) -> PResult<Stmt> {
        let start = self.c.pos;
        let pos = self.here();
        let word = self.c.peek_ident();
        self.c.pos += word.len();
        let (index, kind) = match word {
            "if" => (self.counter, self.if_stmt()?),
            "foreach" => (self.counter, self.foreach_stmt()?),
            "while" => (self.counter, self.while_stmt()?),
            _ => {
                let index = self.next_index();
                (index, self.simple(word, start)?)
            }
        };
        Ok(Stmt { pos, index, kind })
    }

    /// An argument expression of an action keyword: `msg` when nothing starts here.
    fn arg(&mut self, msg: &'static str) -> PResult<Expr> {
        self.c.skip_ws();
        let start = self.c.pos;
        self.expr().map_err(|e| no_value_to(e, start, msg))
    }

    fn simple(&mut self, word: &str, start: usize) -> PResult<StmtKind> {
        Ok(match word {
            "do" => self.do_stmt()?,
            "remember" => self.remember()?,
            "forget" => StmtKind::Forget(self.forget()?),
            "say" => StmtKind::Say(self.arg(ERR_ACTION_ARG)?),
            "debug" => StmtKind::Debug(self.arg(ERR_ACTION_ARG)?),
            "log" => {
                let level = self.log_level();
                StmtKind::Log {
                    level,
                    expr: self.arg(ERR_ACTION_ARG)?,
                }
            }
            "use" => {
                let e = self.arg(ERR_USE)?;
                if !matches!(e.kind, ExprKind::As { .. }) {
                    return err(start, ERR_USE);
                }
                StmtKind::Use(e)
            }
            "goto" => StmtKind::Goto(self.goto(start)?),
            "previous" => {
                if self.eat_kw_ws("step") {
                    StmtKind::Previous(Previous::Step)
                } else if self.eat_kw_ws("flow") {
                    StmtKind::Previous(Previous::Flow)
                } else {
                    self.c.skip_ws();
                    return err(self.c.pos, ERR_GENERIC);
                }
            }
            "hold" => StmtKind::Hold { secure: false },
            "hold_secure" => StmtKind::Hold { secure: true },
            "break" => StmtKind::Break,
            "continue" => StmtKind::Continue,
            "return" => StmtKind::Return(self.arg(ERR_RETURN)?),
            _ => return err(start, ERR_GENERIC),
        })
    }

    /// `do target op expr`, `do expr as name` or `do expr`. Like the reference, the target form
    /// is tried first (so the target name follows the definition rules, not the read rules);
    /// when it does not fit, the whole argument is an expression.
    fn do_stmt(&mut self) -> PResult<StmtKind> {
        self.c.skip_ws();
        let start = self.c.pos;
        if let Some((target, op)) = self.assign_target() {
            if lexer::bool_prefixed(&target.name) {
                return err(start, lexer::ERR_BOOL_PREFIX);
            }
            let value = self.arg(ERR_ACTION_ARG)?;
            return Ok(StmtKind::Do {
                assign: Some((target, op)),
                expr: value,
            });
        }
        let e = self.arg(ERR_ACTION_ARG)?;
        let mut c = self.c;
        c.skip_ws();
        if assign_op(&c).is_some() {
            // e.g. `do x.f() = 1`, `do 1 = 2`, `do event = 1`
            return err(c.pos, ERR_GENERIC);
        }
        if let ExprKind::As {
            expr,
            name,
            name_pos,
        } = e.kind
        {
            let target = Target {
                name,
                pos: name_pos,
                path: Vec::new(),
            };
            return Ok(StmtKind::Do {
                assign: Some((target, AssignOp::Set)),
                expr: *expr,
            });
        }
        Ok(StmtKind::Do {
            assign: None,
            expr: e,
        })
    }

    /// `NAME {key/index segment} OP` at the cursor, consumed through the operator; nothing is
    /// consumed when the text is not of that shape.
    fn assign_target(&mut self) -> Option<(Target, AssignOp)> {
        let saved = (self.c, self.depth);
        let word = self.c.peek_ident();
        if word.is_empty() || lexer::check_name(word, Some(RESERVED_DEFINE)).is_err() {
            return None;
        }
        let pos = self.here();
        self.c.pos += word.len();
        let name = word.to_string();
        let path = match self.path_segs(true) {
            Ok(path) if !path.iter().any(|s| matches!(s, PathSeg::Method { .. })) => path,
            _ => {
                (self.c, self.depth) = saved;
                return None;
            }
        };
        let mut c = self.c;
        c.skip_ws();
        match assign_op(&c) {
            Some((len, op)) => {
                self.c = c;
                self.c.pos += len;
                Some((Target { name, pos, path }, op))
            }
            None => {
                (self.c, self.depth) = saved;
                None
            }
        }
    }

    fn remember(&mut self) -> PResult<StmtKind> {
        self.c.skip_ws();
        let start = self.c.pos;
        let word = self.c.peek_ident();
        if !word.is_empty() {
            let mut c = self.c;
            c.pos += word.len();
            c.skip_ws();
            if c.starts_with("=") && !c.starts_with("==") {
                let (name, name_pos) = self.var_name(ERR_REMEMBER)?;
                self.expect_ws("=", ERR_REMEMBER)?;
                let expr = self.arg(ERR_ACTION_ARG)?;
                return Ok(StmtKind::Remember {
                    name,
                    name_pos,
                    expr,
                });
            }
        }
        let e = self.arg(ERR_REMEMBER)?;
        match e.kind {
            ExprKind::As {
                expr,
                name,
                name_pos,
            } => Ok(StmtKind::Remember {
                name,
                name_pos,
                expr: *expr,
            }),
            _ => err(start, ERR_REMEMBER),
        }
    }

    fn forget(&mut self) -> PResult<Forget> {
        self.c.skip_ws();
        if self.c.eat("*") {
            return Ok(Forget::All);
        }
        if self.c.eat("[") {
            let mut names = Vec::new();
            loop {
                if self.eat_ws("]") {
                    return Ok(Forget::Names(names));
                }
                names.push(self.name(Some(RESERVED_READ), "expecting ']'")?.0);
                if self.eat_ws(",") {
                    continue;
                }
                self.expect_ws("]", "expecting ']'")?;
                return Ok(Forget::Names(names));
            }
        }
        Ok(Forget::Names(vec![
            self.name(Some(RESERVED_READ), ERR_ACTION_ARG)?.0,
        ]))
    }

    /// `log` takes an optional level: like the reference, a word of letters, digits, `_` and
    /// `\` that names a level is always the level (`log error` alone is an error).
    fn log_level(&mut self) -> LogLevel {
        let mut c = self.c;
        c.skip_ws();
        let rest = c.rest();
        let len = rest
            .char_indices()
            .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_' || ch == '\\'))
            .map_or(rest.len(), |(i, _)| i);
        let level = match rest[..len].to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return LogLevel::Info,
        };
        c.pos += len;
        self.c = c;
        level
    }

    fn goto(&mut self, start: usize) -> PResult<Goto> {
        self.c.skip_ws();
        let mut g = Goto {
            step: None,
            flow: None,
            bot: None,
        };
        let word = self.c.peek_ident();
        if (word == "step" || word == "flow")
            && self.c.src[self.c.pos + word.len()..]
                .starts_with(|ch: char| ch.is_whitespace() || ch == '$' || ch == '/')
        {
            self.c.pos += word.len();
            self.c.skip_ws();
            let name = self.goto_name()?.ok_or(super::PErr {
                off: self.c.pos,
                msg: ERR_GOTO.into(),
            })?;
            if word == "step" {
                g.step = Some(name);
            } else {
                g.flow = Some(name);
            }
        } else {
            g.step = self.goto_name()?;
            if self.c.eat("@") {
                g.flow = self.goto_name()?;
            } else if g.step.is_none() {
                let _ = start;
                return err(self.c.pos, ERR_GOTO);
            }
        }
        // `in BOT`
        let mut c = self.c;
        c.skip_ws();
        if c.at_keyword("in") {
            let save = self.c;
            self.c = c;
            self.c.pos += 2;
            if self.c.at_ws() {
                self.c.skip_ws();
                if let Some(bot) = self.goto_name()? {
                    g.bot = Some(bot);
                    return Ok(g);
                }
            }
            self.c = save;
        }
        Ok(g)
    }

    /// `IDENT` or `$IDENT{path}` right at the cursor; `None` when neither starts here.
    fn goto_name(&mut self) -> PResult<Option<GotoName>> {
        let start = self.c.pos;
        if self.c.eat("$") {
            let word = self.c.peek_ident();
            if word.is_empty() {
                return err(self.c.pos, ERR_GOTO);
            }
            // `$name` reads a variable, so the variable naming rules apply.
            if let Err(m) = lexer::check_var_name(word) {
                return err(self.c.pos, m);
            }
            let pos = self.pos(self.c.pos);
            self.c.pos += word.len();
            let name = word.to_string();
            let path: Vec<PathSeg> = self.path_segs(false)?;
            let _ = start;
            return Ok(Some(GotoName::Var { name, path, pos }));
        }
        let word = self.c.peek_ident();
        if word.is_empty() {
            return Ok(None);
        }
        if let Err(m) = lexer::check_name(word, Some(RESERVED_DEFINE)) {
            return err(start, m);
        }
        self.c.pos += word.len();
        Ok(Some(GotoName::Literal(word.to_string())))
    }

    fn paren_cond(&mut self) -> PResult<Expr> {
        self.expect_ws("(", ERR_GENERIC)?;
        self.enter()?;
        let e = self.arg(ERR_GENERIC)?;
        self.expect_ws(")", "expecting ')'")?;
        self.leave();
        Ok(e)
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        let mut branches = Vec::new();
        let mut otherwise = None;
        loop {
            let cond = self.paren_cond()?;
            let body = self.body()?;
            branches.push((cond, body));
            if !self.eat_kw_ws("else") {
                break;
            }
            if self.eat_kw_ws("if") {
                continue;
            }
            otherwise = Some(self.body()?);
            break;
        }
        Ok(StmtKind::If {
            branches,
            otherwise,
        })
    }

    fn foreach_stmt(&mut self) -> PResult<StmtKind> {
        self.expect_ws("(", ERR_GENERIC)?;
        let (var, _) = self.var_name(ERR_GENERIC)?;
        let index_var = if self.eat_ws(",") {
            Some(self.var_name(ERR_GENERIC)?.0)
        } else {
            None
        };
        self.expect_ws(")", "expecting ')'")?;
        if !self.eat_kw_ws("in") {
            self.c.skip_ws();
            return err(self.c.pos, ERR_GENERIC);
        }
        let saved = self.no_closure_at.replace(self.depth);
        let iter = self.arg(ERR_ACTION_ARG)?;
        self.no_closure_at = saved;
        let body = self.braced_block()?;
        Ok(StmtKind::Foreach {
            var,
            index_var,
            iter,
            body,
        })
    }

    fn while_stmt(&mut self) -> PResult<StmtKind> {
        let cond = self.paren_cond()?;
        let body = self.braced_block()?;
        Ok(StmtKind::While { cond, body })
    }
}

/// The assignment operator at `c`, with its length (`==` is not one).
fn assign_op(c: &Cursor) -> Option<(usize, AssignOp)> {
    [
        ("+=", AssignOp::Add),
        ("-=", AssignOp::Sub),
        ("*=", AssignOp::Mul),
        ("/=", AssignOp::Div),
        ("%=", AssignOp::Rem),
        ("=", AssignOp::Set),
    ]
    .into_iter()
    .find(|(s, _)| c.starts_with(s) && !(*s == "=" && c.starts_with("==")))
    .map(|(s, op)| (s.len(), op))
}
