//! A small, fast, non-cryptographic hasher for the interpreter's own name tables (scopes, step
//! and function lookups), and [`find`], the name lookup used on the hot path. Keys are short
//! identifiers chosen by the bot author, not attacker-sized collections, so hash-flooding
//! resistance is not needed there; lookup speed is (a turn looks up names in tight loops).

use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hash used by rustc ("FxHash").
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
pub type FxIndexMap<K, V> = indexmap::IndexMap<K, V, FxBuild>;

/// Tables up to this size are searched linearly by [`find`]: for a handful of short names,
/// comparing them is cheaper than hashing the name and probing.
const LINEAR_MAX: usize = 8;

/// The index of `name` in `map`. Scopes are usually small (a step's locals, a flow's
/// constants), so small tables are scanned without hashing; larger ones (memories, closure
/// captures) use the hash index.
#[inline]
pub fn find<V>(map: &FxIndexMap<String, V>, name: &str) -> Option<usize> {
    if map.len() > LINEAR_MAX {
        return map.get_index_of(name);
    }
    let b = name.as_bytes();
    // Names are short: a byte loop beats a call to `bcmp`, and the length settles most
    // mismatches.
    map.keys()
        .position(|k| k.len() == b.len() && k.bytes().zip(b).all(|(x, y)| x == *y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_small_and_large_tables() {
        for n in [0usize, 1, 3, 8, 9, 40] {
            let mut m: FxIndexMap<String, usize> = FxIndexMap::default();
            for i in 0..n {
                m.insert(format!("v{i}"), i);
            }
            for i in 0..n {
                assert_eq!(find(&m, &format!("v{i}")), Some(i));
            }
            assert_eq!(find(&m, "v"), None);
            assert_eq!(find(&m, "x0"), None);
            assert_eq!(find(&m, ""), None);
        }
    }
}
