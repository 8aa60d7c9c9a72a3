//! Size caps on what one library call may build. The evaluator bounds every value it copies
//! or receives ([`crate::eval::MAX_VALUE_UNITS`]: 1,048,576 nodes or 16 MB of text), but only
//! after the call returns; methods whose result can be many times the size of their inputs
//! (`replace_all`, `replace_regex`, `split`, `match`, `join`, `from_json`, ...) check the size
//! they are about to build first, so a single call can not allocate gigabytes on the way.
//!
//! Exceeding a cap is fatal, like the evaluator's own value limit, with the method's name in
//! the message.

use super::Fault;

/// Longest text a call may build, in bytes (the evaluator's limit: 16 bytes per unit).
pub(crate) const MAX_TEXT: usize = (crate::eval::MAX_VALUE_UNITS as usize) << 4;
/// Most elements a call may build.
pub(crate) const MAX_ITEMS: usize = crate::eval::MAX_VALUE_UNITS as usize;

pub(crate) fn too_large(method: &str) -> Fault {
    Fault::Fatal(format!(
        "[{method}] value too large: a result may hold at most {MAX_ITEMS} elements or 16 MB of text"
    ))
}

/// Fails when a text of `len` bytes would exceed [`MAX_TEXT`].
pub(crate) fn text(method: &str, len: usize) -> Result<(), Fault> {
    if len > MAX_TEXT {
        Err(too_large(method))
    } else {
        Ok(())
    }
}

/// Fails when `n` elements would exceed [`MAX_ITEMS`].
pub(crate) fn items(method: &str, n: usize) -> Result<(), Fault> {
    if n > MAX_ITEMS {
        Err(too_large(method))
    } else {
        Ok(())
    }
}

/// An upper bound on the number of values a JSON, YAML or XML text can describe: every value
/// after the first needs a separator or an opening bracket, a line, a `- `, a `:` or a `<`.
pub(crate) fn nodes_bound(s: &str) -> usize {
    1 + s
        .bytes()
        .filter(|b| matches!(b, b',' | b'[' | b'{' | b':' | b'-' | b'\n' | b'<'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        assert!(text("m", MAX_TEXT).is_ok());
        assert!(
            matches!(text("m", MAX_TEXT + 1), Err(Fault::Fatal(m)) if m.starts_with("[m] value too large"))
        );
        assert!(items("m", MAX_ITEMS).is_ok());
        assert!(items("m", MAX_ITEMS + 1).is_err());
        assert_eq!(nodes_bound("1"), 1);
        assert_eq!(nodes_bound("[1,2,{\"a\":3}]"), 6);
        assert!(nodes_bound("- a\n- b\n") >= 2);
        assert_eq!(MAX_TEXT, 16 << 20);
    }
}
