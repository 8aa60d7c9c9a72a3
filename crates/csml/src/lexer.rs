//! The byte-level scanner under the parser (spec §2.1–2.4): whitespace and comments, identifier
//! and number shapes, keyword tables, and byte offset → line/column mapping.
//!
//! CSML's lexical rules depend on where the parser stands (`-` starts an identifier in operand
//! position but is an operator after an operand; `[` must touch the expression it indexes;
//! `true` is matched as a prefix), so there is no separate token stream: the parser drives a
//! [`Cursor`] and asks it for the shape it expects at each point.

use crate::ast::Pos;

/// Reserved when a name is *defined* (assignment targets, `as`, steps, `fn`, `const`, foreach
/// variables, imports, goto targets). Compared ASCII-case-insensitively.
pub const RESERVED_DEFINE: &[&str] = &[
    "foreach",
    "while",
    "if",
    "else",
    "import",
    "as",
    "do",
    "event",
    "flow",
    "step",
    "say",
    "use",
    "hold",
    "goto",
    "match",
    "remember",
    "forget",
    "_metadata",
    "_memory",
    "_env",
    "true",
    "false",
    "null",
    "break",
];

/// Reserved when a name is *read* in an expression. Compared ASCII-case-insensitively.
pub const RESERVED_READ: &[&str] = &[
    "foreach", "while", "if", "else", "import", "const", "insert", "as", "do", "flow", "step",
    "say", "use", "hold", "goto", "match", "remember", "forget", "break",
];

/// Longest identifier accepted, in bytes.
pub const MAX_IDENT_LEN: usize = 255;

pub const ERR_RESERVED: &str = "reserved keyword can't be used as identifier";
pub const ERR_NUMERIC_IDENT: &str = "Int/Float can't be used as identifier";
pub const ERR_IDENT_LEN: &str = "key can't be longer than 255 character";
pub const ERR_BOOL_PREFIX: &str = "reserved keyword can't be used as identifier: a variable or function name can't start with `true` or `false`";

/// Maps byte offsets to 1-based line/column (column in bytes).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let col = offset - self.starts[line - 1] + 1;
        Pos::new(clamp_u32(line), clamp_u32(col))
    }

    /// Byte range of line `line` (1-based) without its newline.
    pub fn line_range(&self, line: usize, src_len: usize) -> (usize, usize) {
        let start = self
            .starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(src_len);
        let end = self.starts.get(line).map(|s| s - 1).unwrap_or(src_len);
        (start, end.max(start))
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether `c` may appear in an identifier: Unicode alphanumeric, `_`, `-` or `\`.
pub fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '\\'
}

/// Whether `word` matches one of `list`, ignoring ASCII case.
pub fn is_in(list: &[&str], word: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The checks every defined or read name goes through, in the reference's order; `reserved`
/// is the reserved list for the context, or `None` for parameters and named arguments.
pub fn check_name(word: &str, reserved: Option<&[&str]>) -> Result<(), &'static str> {
    if let Some(list) = reserved
        && is_in(list, word)
    {
        return Err(ERR_RESERVED);
    }
    if word.len() > MAX_IDENT_LEN {
        return Err(ERR_IDENT_LEN);
    }
    if word.parse::<f64>().is_ok() {
        return Err(ERR_NUMERIC_IDENT);
    }
    Ok(())
}

/// Whether `word` starts with the literal `true` or `false` without being it. Such a word can
/// never be read back: in an expression the literal is matched as a prefix, so `trueval` is
/// `true` followed by `val` (spec §2.2). Names of variables and functions are therefore
/// rejected where they are defined too (spec §2.2 Decision). Step names and literal goto
/// targets never go through the expression lexer, so they are not concerned.
pub fn bool_prefixed(word: &str) -> bool {
    ["true", "false"]
        .iter()
        .any(|kw| word.len() > kw.len() && word.starts_with(kw))
}

/// [`check_name`] for a variable or function name being defined: the definition reserved
/// list, then the `true`/`false` prefix rule ([`bool_prefixed`]).
pub fn check_var_name(word: &str) -> Result<(), &'static str> {
    check_name(word, Some(RESERVED_DEFINE))?;
    if bool_prefixed(word) {
        return Err(ERR_BOOL_PREFIX);
    }
    Ok(())
}

/// A number literal as scanned: its text range and whether it is a float.
#[derive(Debug, Clone, Copy)]
pub struct NumberShape {
    pub end: usize,
    pub float: bool,
}

/// A position in the source with an upper bound: the parser of an interpolation works on the
/// same text, bounded by the string's closing quote.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    pub src: &'a str,
    pub pos: usize,
    pub end: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Self {
        Cursor {
            src,
            pos: 0,
            end: src.len(),
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    pub fn peek(&self) -> Option<u8> {
        if self.pos < self.end {
            Some(self.bytes()[self.pos])
        } else {
            None
        }
    }

    pub fn peek_at(&self, n: usize) -> Option<u8> {
        let i = self.pos + n;
        if i < self.end {
            Some(self.bytes()[i])
        } else {
            None
        }
    }

    pub fn rest(&self) -> &'a str {
        &self.src[self.pos..self.end]
    }

    pub fn starts_with(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    /// Consume `s` if the input starts with it.
    pub fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// The char at the cursor, if any.
    pub fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Skip whitespace (space, tab, CR, LF) and comments. An unclosed `/*` runs to the end.
    pub fn skip_ws(&mut self) {
        let b = self.bytes();
        while self.pos < self.end {
            match b[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'/' if self.peek_at(1) == Some(b'/') => {
                    while self.pos < self.end && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'/' if self.peek_at(1) == Some(b'*') => {
                    self.pos += 2;
                    match self.rest().find("*/") {
                        Some(i) => self.pos += i + 2,
                        None => self.pos = self.end,
                    }
                }
                _ => break,
            }
        }
    }

    /// Whether whitespace or a comment starts at the cursor.
    pub fn at_ws(&self) -> bool {
        matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n'))
            || self.starts_with("//")
            || self.starts_with("/*")
    }

    /// End offset of the identifier starting at the cursor (the cursor itself when there is
    /// none). `\"` ends an identifier: it opens a raw string inside an interpolation.
    pub fn ident_end(&self) -> usize {
        let mut i = self.pos;
        let s = self.src;
        while i < self.end {
            let b = s.as_bytes()[i];
            if b < 0x80 {
                let c = b as char;
                if c == '\\' && s.as_bytes().get(i + 1) == Some(&b'"') {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\\') {
                    break;
                }
                i += 1;
            } else {
                let c = s[i..].chars().next().unwrap_or(' ');
                if !c.is_alphanumeric() {
                    break;
                }
                i += c.len_utf8();
            }
        }
        i.min(self.end)
    }

    /// The identifier at the cursor, without consuming it.
    pub fn peek_ident(&self) -> &'a str {
        &self.src[self.pos..self.ident_end()]
    }

    /// Whether the word at the cursor is exactly `kw` (a whole word).
    pub fn at_keyword(&self, kw: &str) -> bool {
        self.peek_ident() == kw
    }

    /// A number literal at the cursor (spec §2.3): `[+-]? DIGIT (DIGIT|_)*`, optionally
    /// followed by `. DIGITS`, or `. DIGITS`. Nothing is consumed.
    pub fn number_shape(&self) -> Option<NumberShape> {
        let b = self.bytes();
        let mut i = self.pos;
        let digit = |i: usize| i < self.end && b[i].is_ascii_digit();
        if i < self.end && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digit(i) {
            while i < self.end && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            let int_end = i;
            if i < self.end && b[i] == b'.' && digit(i + 1) && !b[self.pos..int_end].contains(&b'_')
            {
                i += 1;
                while digit(i) {
                    i += 1;
                }
                return Some(NumberShape {
                    end: i,
                    float: true,
                });
            }
            return Some(NumberShape {
                end: int_end,
                float: false,
            });
        }
        if i == self.pos && i < self.end && b[i] == b'.' && digit(i + 1) {
            i += 1;
            while digit(i) {
                i += 1;
            }
            return Some(NumberShape {
                end: i,
                float: true,
            });
        }
        None
    }
}

/// FNV-1a, 64 bits: a stable hash (unlike std's randomized hasher) for step sources.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_bytes() {
        let idx = LineIndex::new("ab\nécd\n");
        assert_eq!(idx.pos(0), Pos::new(1, 1));
        assert_eq!(idx.pos(2), Pos::new(1, 3));
        assert_eq!(idx.pos(3), Pos::new(2, 1));
        assert_eq!(idx.pos(5), Pos::new(2, 3));
        assert_eq!(idx.pos(8), Pos::new(3, 1));
    }

    #[test]
    fn number_shapes() {
        let shape = |s: &str| Cursor::new(s).number_shape().map(|n| (n.end, n.float));
        assert_eq!(shape("5-3"), Some((1, false)));
        assert_eq!(shape("-3"), Some((2, false)));
        assert_eq!(shape("+7x"), Some((2, false)));
        assert_eq!(shape("1_000"), Some((5, false)));
        assert_eq!(shape(".5"), Some((2, true)));
        assert_eq!(shape("1.25.3"), Some((4, true)));
        assert_eq!(shape("5."), Some((1, false)));
        assert_eq!(shape("-.5"), None);
        assert_eq!(shape("a1"), None);
    }

    #[test]
    fn identifiers() {
        let c = Cursor::new("a-b\\c éà+1");
        assert_eq!(c.peek_ident(), "a-b\\c");
        assert_eq!(check_name("12", None), Err(ERR_NUMERIC_IDENT));
        assert_eq!(check_name("inf", None), Err(ERR_NUMERIC_IDENT));
        assert_eq!(
            check_name("Event", Some(RESERVED_DEFINE)),
            Err(ERR_RESERVED)
        );
        assert_eq!(check_name("event", Some(RESERVED_READ)), Ok(()));
        assert_eq!(check_name(&"x".repeat(256), None), Err(ERR_IDENT_LEN));
        assert_eq!(check_var_name("trueval"), Err(ERR_BOOL_PREFIX));
        assert_eq!(check_var_name("false_"), Err(ERR_BOOL_PREFIX));
        assert_eq!(check_var_name("TrueVal"), Ok(()));
        assert_eq!(check_var_name("is_true"), Ok(()));
        assert_eq!(check_var_name("tru"), Ok(()));
        assert_eq!(check_var_name("true"), Err(ERR_RESERVED));
    }
}
