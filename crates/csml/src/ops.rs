//! Operators on values (spec §3.5–3.7): truthiness, comparison, strict equality, arithmetic,
//! `match`.

use crate::ast::BinOp;
use crate::value::Value;

/// Truthiness (spec §3.5).
pub fn truthy(v: &Value) -> bool {
    let _ = v;
    todo!("truthy")
}

/// Strict per-kind equality used for nested elements, `find`, `index_of` (spec §3.6).
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    let _ = (a, b);
    todo!("strict_eq")
}

/// `L match R` (spec §3.7).
pub fn matches(l: &Value, r: &Value) -> bool {
    let _ = (l, r);
    todo!("matches")
}

/// Apply a binary operator to two evaluated operands. `&&`/`||` included (both operands are
/// always evaluated). The error is the reference's reason text, e.g.
/// `illegal operation: PrimitiveString + PrimitiveInt`.
pub fn binary(op: BinOp, l: &Value, r: &Value) -> Result<Value, String> {
    let _ = (op, l, r);
    todo!("binary")
}
