//! Expressions (spec §2.3–2.5): the precedence levels of §2.5, literals, strings with `{{ }}`
//! interpolation, closures, calls and path segments.

use std::sync::Arc;

use super::{
    ERR_ARG_LIST, ERR_END_INTERP, ERR_END_STRING, ERR_GENERIC, ERR_INTERP_ARG, NO_VALUE, PErr,
    PResult, Parser, err, no_value_to,
};
use crate::ast::{Arg, BinOp, ClosureDef, Expr, ExprKind, PathSeg, StrPart};
use crate::lexer::{self, RESERVED_READ};

/// Binding strength of the binary operators (spec §2.5); prefix `!` sits between comparisons
/// and `+`/`-`.
const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_CMP: u8 = 3;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;

impl Parser<'_> {
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        self.binary(PREC_OR)
    }

    /// The binary operator after optional whitespace: operator, length, precedence.
    fn peek_binop(&self) -> Option<(BinOp, usize, u8)> {
        let mut c = self.c;
        c.skip_ws();
        let b0 = c.peek()?;
        let b1 = c.peek_at(1);
        // `+=` and friends belong to `do`, not to the expression.
        let arith = |op, prec| {
            if b1 == Some(b'=') {
                None
            } else {
                Some((op, 1, prec))
            }
        };
        match b0 {
            b'|' if b1 == Some(b'|') => Some((BinOp::Or, 2, PREC_OR)),
            b'&' if b1 == Some(b'&') => Some((BinOp::And, 2, PREC_AND)),
            b'+' => arith(BinOp::Add, PREC_ADD),
            b'-' => arith(BinOp::Sub, PREC_ADD),
            b'*' => arith(BinOp::Mul, PREC_MUL),
            b'/' => arith(BinOp::Div, PREC_MUL),
            b'%' => arith(BinOp::Rem, PREC_MUL),
            b'!' if b1 == Some(b'=') => Some((BinOp::Ne, 2, PREC_CMP)),
            b'!' => {
                let mut c2 = c;
                c2.pos += 1;
                c2.at_keyword("match")
                    .then_some((BinOp::NotMatch, 6, PREC_CMP))
            }
            b'=' if b1 == Some(b'=') => Some((BinOp::Eq, 2, PREC_CMP)),
            b'>' if b1 == Some(b'=') => Some((BinOp::Ge, 2, PREC_CMP)),
            b'<' if b1 == Some(b'=') => Some((BinOp::Le, 2, PREC_CMP)),
            b'>' => Some((BinOp::Gt, 1, PREC_CMP)),
            b'<' => Some((BinOp::Lt, 1, PREC_CMP)),
            _ if c.at_keyword("match") => Some((BinOp::Match, 5, PREC_CMP)),
            _ => None,
        }
    }

    /// Precedence climbing over the operators binding at least as tightly as `min`. All
    /// levels are left-associative except comparisons, of which one is taken at most: in
    /// `a < b < c` the second `<` is left unconsumed, an error for the caller. Each operator
    /// deepens the tree, so it counts towards the nesting limit.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = if min <= PREC_CMP {
            self.operand()?
        } else {
            self.term()?
        };
        let mut extra = 0;
        let mut last: Option<u8> = None;
        while let Some((op, len, prec)) = self.peek_binop() {
            if prec < min || last.is_some_and(|l| prec > l || (prec == PREC_CMP && l == PREC_CMP)) {
                break;
            }
            self.c.skip_ws();
            self.c.pos += len;
            self.enter()?;
            extra += 1;
            let rhs = if prec == PREC_CMP {
                self.operand()?
            } else {
                self.binary(prec + 1)?
            };
            last = Some(prec);
            let pos = lhs.pos;
            lhs = Expr {
                pos,
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
        self.depth -= extra;
        Ok(lhs)
    }

    /// `!`… applies to the whole additive expression that follows.
    fn operand(&mut self) -> PResult<Expr> {
        self.c.skip_ws();
        let mut nots = Vec::new();
        while self.c.peek() == Some(b'!') {
            nots.push(self.here());
            self.c.pos += 1;
            self.enter()?;
            self.c.skip_ws();
        }
        let mut e = self.binary(PREC_ADD)?;
        for pos in nots.into_iter().rev() {
            self.leave();
            e = Expr {
                pos,
                kind: ExprKind::Not(Box::new(e)),
            };
        }
        Ok(e)
    }

    /// `primary {path_seg} [as NAME]`.
    fn term(&mut self) -> PResult<Expr> {
        let base = self.primary()?;
        let segs = self.path_segs(true)?;
        let e = if segs.is_empty() {
            base
        } else {
            Expr {
                pos: base.pos,
                kind: ExprKind::Path {
                    base: Box::new(base),
                    segs,
                },
            }
        };
        if self.eat_kw_ws("as") {
            let (name, name_pos) = self.var_name(ERR_GENERIC)?;
            return Ok(Expr {
                pos: e.pos,
                kind: ExprKind::As {
                    expr: Box::new(e),
                    name,
                    name_pos,
                },
            });
        }
        Ok(e)
    }

    /// `[expr]` (touching what precedes it) and `.name` / `.name(args)` segments; `dot_ws`
    /// allows whitespace and newlines before `.`.
    pub(super) fn path_segs(&mut self, dot_ws: bool) -> PResult<Vec<PathSeg>> {
        let mut segs = Vec::new();
        loop {
            if self.c.peek() == Some(b'[') {
                self.c.pos += 1;
                self.enter()?;
                self.c.skip_ws();
                let pos = self.here();
                let start = self.c.pos;
                let expr = self
                    .expr()
                    .map_err(|e| no_value_to(e, start, ERR_GENERIC))?;
                self.expect_ws("]", "expecting ']'")?;
                self.leave();
                segs.push(PathSeg::Index { expr, pos });
                continue;
            }
            let mut c = self.c;
            if dot_ws {
                c.skip_ws();
            }
            if c.peek() != Some(b'.') {
                return Ok(segs);
            }
            c.pos += 1;
            let word = c.peek_ident();
            if word.is_empty() {
                return Ok(segs);
            }
            if let Err(m) = lexer::check_name(word, None) {
                return err(c.pos, m);
            }
            let pos = self.pos(c.pos);
            c.pos += word.len();
            self.c = c;
            let name = word.to_string();
            if self.peek_ws("(") {
                self.c.skip_ws();
                self.c.pos += 1;
                let args = self.call_args()?;
                segs.push(PathSeg::Method { name, args, pos });
            } else {
                segs.push(PathSeg::Key { name, pos });
            }
        }
    }

    /// Arguments after `(`, through `)`.
    fn call_args(&mut self) -> PResult<Vec<Arg>> {
        self.enter()?;
        let mut args = Vec::new();
        loop {
            if self.eat_ws(")") {
                break;
            }
            self.c.skip_ws();
            let word = self.c.peek_ident();
            let mut name = None;
            if !word.is_empty() {
                let mut c = self.c;
                c.pos += word.len();
                c.skip_ws();
                if c.starts_with("=") && !c.starts_with("==") {
                    if let Err(m) = lexer::check_name(word, None) {
                        return err(self.c.pos, m);
                    }
                    name = Some(word.to_string());
                    self.c = c;
                    self.c.pos += 1;
                    self.c.skip_ws();
                }
            }
            let start = self.c.pos;
            let value = self
                .expr()
                .map_err(|e| no_value_to(e, start, ERR_ARG_LIST))?;
            args.push(Arg { name, value });
            if self.eat_ws(",") {
                continue;
            }
            self.expect_ws(")", ERR_ARG_LIST)?;
            break;
        }
        self.leave();
        Ok(args)
    }

    fn primary(&mut self) -> PResult<Expr> {
        self.c.skip_ws();
        let start = self.c.pos;
        let pos = self.here();
        let Some(b) = self.c.peek() else {
            return err(start, NO_VALUE);
        };
        if self.interp && self.c.starts_with("\\\"") {
            return self.raw_string();
        }
        match b {
            b'"' if !self.interp => return self.string(),
            b'(' => return self.paren(),
            b'+' | b'-' if self.c.peek_at(1) == Some(b'(') => {
                let op = if b == b'+' { BinOp::Add } else { BinOp::Sub };
                self.c.pos += 1;
                let inner = self.group()?;
                let zero = Expr {
                    pos,
                    kind: ExprKind::Int(0),
                };
                return Ok(Expr {
                    pos,
                    kind: ExprKind::Binary {
                        op,
                        lhs: Box::new(zero),
                        rhs: Box::new(inner),
                    },
                });
            }
            _ => {}
        }
        if let Some(n) = self.c.number_shape() {
            let text = &self.c.src[start..n.end];
            self.c.pos = n.end;
            let kind = if n.float {
                ExprKind::Float(text.parse().unwrap_or(0.0))
            } else if text.contains('_') {
                self.underscore_ints.push(start);
                ExprKind::Int(0)
            } else {
                // Overflow gives 0, like the reference (spec §2.3).
                ExprKind::Int(text.parse().unwrap_or(0))
            };
            return Ok(Expr { pos, kind });
        }
        match b {
            b'[' => return self.array(),
            b'{' => return self.object(),
            _ => {}
        }
        for (kw, v) in [("true", true), ("false", false)] {
            // Matched as prefixes, like the reference: `trueval` is `true` then `val`.
            if self.c.eat(kw) {
                return Ok(Expr {
                    pos,
                    kind: ExprKind::Bool(v),
                });
            }
        }
        let word = self.c.peek_ident();
        if word.is_empty() {
            return err(start, NO_VALUE);
        }
        if word.eq_ignore_ascii_case("null") {
            self.c.pos += word.len();
            return Ok(Expr {
                pos,
                kind: ExprKind::Null,
            });
        }
        if let Err(m) = lexer::check_name(word, Some(RESERVED_READ)) {
            return err(start, m);
        }
        self.c.pos += word.len();
        let name = word.to_string();
        if self.peek_ws("(") {
            self.c.skip_ws();
            self.c.pos += 1;
            let args = self.call_args()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Call { name, args },
            });
        }
        Ok(Expr {
            pos,
            kind: ExprKind::Ident(name),
        })
    }

    /// `(params) { body }` or a parenthesised expression.
    fn paren(&mut self) -> PResult<Expr> {
        if self.no_closure_at == Some(self.depth) {
            return self.group();
        }
        match self.closure_params() {
            Some(params) => self.closure(params),
            None => self.group(),
        }
    }

    /// Tries `( [name {, name} [,]] )` followed by `{`; on success the cursor is after `)`.
    /// On failure nothing is consumed.
    fn closure_params(&mut self) -> Option<(usize, Vec<(usize, String)>)> {
        let open = self.c.pos;
        let mut c = self.c;
        c.pos += 1;
        let mut params = Vec::new();
        loop {
            c.skip_ws();
            if c.eat(")") {
                break;
            }
            let word = c.peek_ident();
            if word.is_empty() {
                return None;
            }
            params.push((c.pos, word.to_string()));
            c.pos += word.len();
            c.skip_ws();
            if c.eat(",") {
                continue;
            }
            if c.eat(")") {
                break;
            }
            return None;
        }
        let mut after = c;
        after.skip_ws();
        if after.peek() != Some(b'{') {
            return None;
        }
        self.c = c;
        Some((open, params))
    }

    fn closure(&mut self, (open, params): (usize, Vec<(usize, String)>)) -> PResult<Expr> {
        for (off, p) in &params {
            if let Err(m) = lexer::check_name(p, None) {
                return err(*off, m);
            }
        }
        let saved = self.counter;
        self.counter = 0;
        let body = self.braced_block()?;
        self.counter = saved;
        let pos = self.pos(open);
        let def = ClosureDef {
            params: params.into_iter().map(|(_, p)| p).collect(),
            body,
            pos,
        };
        Ok(Expr {
            pos,
            kind: ExprKind::Closure(Arc::new(def)),
        })
    }

    /// `( expr )`, the cursor on `(`.
    fn group(&mut self) -> PResult<Expr> {
        self.c.pos += 1;
        self.enter()?;
        self.c.skip_ws();
        let start = self.c.pos;
        let e = self
            .expr()
            .map_err(|e| no_value_to(e, start, ERR_GENERIC))?;
        self.expect_ws(")", "expecting ')'")?;
        self.leave();
        Ok(e)
    }

    fn array(&mut self) -> PResult<Expr> {
        let pos = self.here();
        self.c.pos += 1;
        self.enter()?;
        let mut items = Vec::new();
        loop {
            if self.eat_ws("]") {
                break;
            }
            self.c.skip_ws();
            let start = self.c.pos;
            items.push(
                self.expr()
                    .map_err(|e| no_value_to(e, start, "expecting ']'"))?,
            );
            if self.eat_ws(",") {
                continue;
            }
            self.expect_ws("]", "expecting ']'")?;
            break;
        }
        self.leave();
        Ok(Expr {
            pos,
            kind: ExprKind::Array(items),
        })
    }

    fn object(&mut self) -> PResult<Expr> {
        let pos = self.here();
        self.c.pos += 1;
        self.enter()?;
        let mut fields = Vec::new();
        loop {
            if self.eat_ws("}") {
                break;
            }
            self.c.skip_ws();
            let key = self.object_key()?;
            self.expect_ws(":", "expecting '}'")?;
            self.c.skip_ws();
            let start = self.c.pos;
            let value = self
                .expr()
                .map_err(|e| no_value_to(e, start, "expecting '}'"))?;
            fields.push((key, value));
            if self.eat_ws(",") {
                continue;
            }
            self.expect_ws("}", "expecting '}'")?;
            break;
        }
        self.leave();
        Ok(Expr {
            pos,
            kind: ExprKind::Object(fields),
        })
    }

    /// `"key"` (no escapes, no interpolation), or `\"key\"` inside an interpolation.
    fn object_key(&mut self) -> PResult<String> {
        let start = self.c.pos;
        let quote = if self.interp { "\\\"" } else { "\"" };
        if !self.c.eat(quote) {
            return err(start, ERR_GENERIC);
        }
        let rest = self.c.rest();
        let Some(len) = rest.find(quote) else {
            return err(start, ERR_END_STRING);
        };
        let key = &rest[..len];
        if !self.interp && (key.contains('\\') || key.contains("{{")) {
            return err(start, ERR_GENERIC);
        }
        self.c.pos += len + quote.len();
        Ok(key.to_string())
    }

    /// `\"text\"` inside an interpolation: raw, no escapes, no interpolation.
    fn raw_string(&mut self) -> PResult<Expr> {
        let start = self.c.pos;
        self.c.pos += 2;
        let pos = self.here();
        let Some(len) = self.c.rest().find("\\\"") else {
            return err(start, ERR_END_STRING);
        };
        let text = self.c.rest()[..len].to_string();
        self.c.pos += len + 2;
        let parts = if text.is_empty() {
            Vec::new()
        } else {
            vec![StrPart::Lit(text)]
        };
        Ok(Expr {
            pos,
            kind: ExprKind::Str(parts),
        })
    }

    /// `"..."`: ends at the first `"` preceded by an even number of backslashes (spec §2.4).
    fn string(&mut self) -> PResult<Expr> {
        let open = self.c.pos;
        let b = self.c.bytes();
        let mut i = open + 1;
        let mut backslashes = 0usize;
        let close = loop {
            if i >= self.c.end {
                return err(open, ERR_END_STRING);
            }
            match b[i] {
                b'\\' => backslashes += 1,
                b'"' if backslashes.is_multiple_of(2) => break i,
                _ => backslashes = 0,
            }
            i += 1;
        };
        let pos = self.pos(open + 1);
        let parts = self.string_parts(open + 1, close)?;
        self.c.pos = close + 1;
        Ok(Expr {
            pos,
            kind: ExprKind::Str(parts),
        })
    }

    /// Literal text with escapes, and `{{ expr }}` parts, of the string body `start..close`.
    ///
    /// Like the reference, the text is cut at brace pairs found by plain search: when the
    /// first `{{` comes before the first `}}`, the text up to the first *unescaped* `{{` is
    /// literal and an interpolation follows (no unescaped `{{` at all: the rest is literal, so
    /// `"\{{x}}"` is the text `{{x}}`); a `}}` met first must be written `\}}`; a lone `{{` with
    /// no `}}` after it must be written `\{{`.
    fn string_parts(&mut self, start: usize, close: usize) -> PResult<Vec<StrPart>> {
        let src = self.c.src;
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = start;
        while i < close {
            let rest = &src[i..close];
            let escaped = |at: usize| at >= 1 && rest.as_bytes()[at - 1] == b'\\';
            match (rest.find("{{"), rest.find("}}")) {
                (Some(l), Some(r)) if l < r => match first_unescaped_open(rest) {
                    Some(u) => {
                        unescape_into(&rest[..u], &mut lit);
                        if !lit.is_empty() {
                            parts.push(StrPart::Lit(std::mem::take(&mut lit)));
                        }
                        let (expr, end) = self.interpolation(i + u + 2, close)?;
                        if let Some(e) = expr {
                            parts.push(StrPart::Interp(e));
                        }
                        i = end;
                    }
                    None => {
                        unescape_into(rest, &mut lit);
                        break;
                    }
                },
                (_, Some(r)) => {
                    if !escaped(r) {
                        return err(i + r, ERR_END_INTERP);
                    }
                    unescape_into(&rest[..r + 2], &mut lit);
                    i += r + 2;
                }
                (Some(l), None) => {
                    if !escaped(l) {
                        return err(i + l, ERR_END_INTERP);
                    }
                    unescape_into(rest, &mut lit);
                    break;
                }
                (None, None) => {
                    unescape_into(rest, &mut lit);
                    break;
                }
            }
        }
        if !lit.is_empty() {
            parts.push(StrPart::Lit(lit));
        }
        Ok(parts)
    }

    /// The expression of `{{ ... }}` starting at `from`; returns it (`None` for `{{}}`) and the
    /// offset after `}}`.
    fn interpolation(&mut self, from: usize, close: usize) -> PResult<(Option<Expr>, usize)> {
        let saved = (self.c, self.interp);
        self.c.pos = from;
        self.c.end = close;
        self.interp = true;
        self.enter()?;
        self.c.skip_ws();
        let expr = if self.c.starts_with("}}") {
            None
        } else {
            let start = self.c.pos;
            Some(
                self.expr()
                    .map_err(|e| no_value_to(e, start, ERR_INTERP_ARG))?,
            )
        };
        self.c.skip_ws();
        if !self.c.eat("}}") {
            return Err(PErr {
                off: self.c.pos,
                msg: ERR_END_INTERP.into(),
            });
        }
        self.leave();
        let end = self.c.pos;
        (self.c, self.interp) = saved;
        Ok((expr, end))
    }
}

/// Offset of the first `{{` not preceded by an escaping backslash.
fn first_unescaped_open(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut escape = false;
    for (i, &c) in b.iter().enumerate() {
        if c == b'{' && !escape && b.get(i + 1) == Some(&b'{') {
            return Some(i);
        }
        escape = c == b'\\' && !escape;
    }
    None
}

/// Append `text` with its escapes processed (spec §2.4): `\n`, `\t`, `\r`, and `\X` → `X`.
fn unescape_into(text: &str, out: &mut String) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
}
