//! Opaque pagination cursors (ocs-api §4.3): hex of `d=<n|p>&t=<created_at>&i=<id>`. `n`
//! continues after the position in the list order; `p` goes back before it. Keyset positions
//! keep pages stable when creation times tie.

use crate::store::ids::{hex, unhex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// true = a "previous" cursor.
    pub back: bool,
    pub created_at: i64,
    pub id: String,
}

pub fn encode(c: &Cursor) -> String {
    let d = if c.back { "p" } else { "n" };
    hex(format!("d={d}&t={}&i={}", c.created_at, c.id).as_bytes())
}

pub fn decode(s: &str) -> Option<Cursor> {
    let raw = String::from_utf8(unhex(s)?).ok()?;
    let mut back = None;
    let mut t = None;
    let mut id = None;
    for part in raw.split('&') {
        let (k, v) = part.split_once('=')?;
        match k {
            "d" => back = Some(v == "p"),
            "t" => t = v.parse().ok(),
            "i" => id = Some(v.to_string()),
            _ => return None,
        }
    }
    Some(Cursor {
        back: back?,
        created_at: t?,
        id: id?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            back: true,
            created_at: 42,
            id: "abc-1".into(),
        };
        assert_eq!(decode(&encode(&c)), Some(c));
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(&hex(b"d=n")), None);
    }
}
