//! Compiling the regexes of `match_regex`, `replace_regex`, `contains_regex`, ... (spec §5.3)
//! under caps, and caching them.
//!
//! A hostile pattern must cost little: `"\\w{300}"` is seven bytes but compiles to a Unicode
//! automaton of about 15 MB, which took ~170 ms per attempt and failed, and a step looping over
//! it 700 times held a thread for a minute. So:
//! * a pattern is at most [`MAX_PATTERN_LEN`] bytes (parsing is linear in it) and nests at most
//!   [`MAX_NEST`] levels;
//! * its compiled program (each of the forward and reverse NFAs) is at most
//!   [`MAX_PROGRAM_BYTES`]: compiling stops as soon as it grows past that, so one attempt,
//!   successful or not, takes a few milliseconds at most in a release build (time grows with
//!   the cap: measured ~1.4 ms at 256 KiB, ~9 ms at 1 MiB). 512 KiB still fits every ordinary
//!   pattern: `\w+@\w+\.\w+` needs ~150 KB, `\w{10}` ~500 KB (each Unicode `\w` costs ~50 KB);
//! * the lazy DFA's cache of each regex is at most [`DFA_CACHE_BYTES`]; past it the regex
//!   crate falls back to its slower engines, which stay linear in the text;
//! * an over-cap or invalid pattern is the usual non-fatal `invalid regex: ...` error.
//!
//! Caches (a loop over one pattern compiles it once, and a failure is remembered too):
//! * per thread, shared by the turns that run on it: up to [`SHARED_ENTRIES`] patterns whose
//!   program fits in [`SHARED_PROGRAM_BYTES`] (every ordinary pattern, compiled once per
//!   thread), and up to [`FAILED_ENTRIES`] failed patterns with their error;
//! * per turn ([`RegexCache`], owned by the evaluator and dropped with the turn): up to
//!   [`TURN_ENTRIES`] larger patterns, so that a hostile tenant can not pin large programs
//!   in the threads' memory between turns.
//!
//! Both are least-recently-used lists, small enough for a linear scan. Worst case per thread:
//! 16 × (2 × 256 KiB programs + 2 × 256 KiB DFA caches) = 16 MiB; per running turn 4 × 1.5 MiB.
//! Typical bots use a few patterns of a few KB.
//!
//! A regex is handed out as an `Arc` rather than cloned: a cloned `regex::Regex` gets a fresh
//! pool of search caches, which would throw away the lazy DFA state warmed up by earlier
//! searches.

use std::cell::RefCell;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};

/// Longest pattern, in bytes.
pub(crate) const MAX_PATTERN_LEN: usize = 4096;
/// Deepest nesting of groups and repetitions in a pattern.
pub(crate) const MAX_NEST: u32 = 64;
/// Largest compiled program (`RegexBuilder::size_limit`).
pub(crate) const MAX_PROGRAM_BYTES: usize = 512 << 10;
/// Largest program kept in the per-thread cache.
pub(crate) const SHARED_PROGRAM_BYTES: usize = 256 << 10;
/// Lazy DFA cache per regex (`RegexBuilder::dfa_size_limit`).
pub(crate) const DFA_CACHE_BYTES: usize = 256 << 10;
/// Compiled patterns kept per thread.
pub(crate) const SHARED_ENTRIES: usize = 16;
/// Failed patterns kept per thread.
pub(crate) const FAILED_ENTRIES: usize = 32;
/// Larger compiled patterns kept per turn.
pub(crate) const TURN_ENTRIES: usize = 4;

/// A small least-recently-used list keyed by pattern: the most recent entry is last.
#[derive(Debug)]
struct Lru<T> {
    cap: usize,
    entries: Vec<(Box<str>, T)>,
}

impl<T: Clone> Lru<T> {
    const fn new(cap: usize) -> Self {
        Lru {
            cap,
            entries: Vec::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<T> {
        let i = self.entries.iter().position(|(k, _)| &**k == key)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    fn put(&mut self, key: &str, v: T) {
        if self.entries.len() >= self.cap {
            self.entries.remove(0);
        }
        self.entries.push((key.into(), v));
    }
}

/// The per-turn cache of larger compiled patterns.
#[derive(Debug)]
pub(crate) struct RegexCache(Lru<Arc<Regex>>);

impl Default for RegexCache {
    fn default() -> Self {
        RegexCache(Lru::new(TURN_ENTRIES))
    }
}

struct Shared {
    compiled: Lru<Arc<Regex>>,
    failed: Lru<Arc<str>>,
}

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared {
            compiled: Lru::new(SHARED_ENTRIES),
            failed: Lru::new(FAILED_ENTRIES),
        })
    };
}

/// The compiled `pattern`, from the caches or compiled now (and cached). `turn` is the running
/// turn's cache, if any. The error is the text of the non-fatal `invalid regex` error.
pub(crate) fn compile(
    mut turn: Option<&mut RegexCache>,
    pattern: &str,
) -> Result<Arc<Regex>, String> {
    if let Some(c) = turn.as_deref_mut()
        && let Some(re) = c.0.get(pattern)
    {
        return Ok(re);
    }
    let hit = SHARED.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(re) = s.compiled.get(pattern) {
            return Some(Ok(re));
        }
        s.failed.get(pattern).map(|e| Err(e.to_string()))
    });
    if let Some(r) = hit {
        return r;
    }
    match build(pattern) {
        Ok((re, shared)) => {
            let re = Arc::new(re);
            if shared {
                SHARED.with(|s| s.borrow_mut().compiled.put(pattern, re.clone()));
            } else if let Some(c) = turn {
                c.0.put(pattern, re.clone());
            }
            Ok(re)
        }
        Err(e) => {
            // Only the first few KB of a pattern reach this list (MAX_PATTERN_LEN).
            if pattern.len() <= MAX_PATTERN_LEN {
                SHARED.with(|s| s.borrow_mut().failed.put(pattern, e.as_str().into()));
            }
            Err(e)
        }
    }
}

/// Compile under the caps: first within [`SHARED_PROGRAM_BYTES`] (`true`: small enough for
/// the per-thread cache), else within [`MAX_PROGRAM_BYTES`]. The failed first attempt stops at
/// the smaller cap, so it costs a fraction of the second.
fn build(pattern: &str) -> Result<(Regex, bool), String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "invalid regex: a pattern may be at most {MAX_PATTERN_LEN} bytes long"
        ));
    }
    let with_limit = |limit: usize| {
        RegexBuilder::new(pattern)
            .size_limit(limit)
            .dfa_size_limit(DFA_CACHE_BYTES)
            .nest_limit(MAX_NEST)
            .build()
    };
    match with_limit(SHARED_PROGRAM_BYTES) {
        Ok(re) => Ok((re, true)),
        Err(regex::Error::CompiledTooBig(_)) => match with_limit(MAX_PROGRAM_BYTES) {
            Ok(re) => Ok((re, false)),
            Err(e) => Err(message(e)),
        },
        Err(e) => Err(message(e)),
    }
}

fn message(e: regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => format!(
            "invalid regex: the compiled pattern would exceed {} KiB",
            MAX_PROGRAM_BYTES >> 10
        ),
        e => format!("invalid regex: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_caches() {
        // An ordinary pattern compiles and lands in the shared cache.
        let a = compile(None, r"\w+@\w+\.\w+").unwrap();
        let b = compile(None, r"\w+@\w+\.\w+").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Over the program cap: an error, remembered.
        let e = compile(None, r"\w{300}").unwrap_err();
        assert!(
            e.starts_with("invalid regex: the compiled pattern would exceed"),
            "{e}"
        );
        assert!(SHARED.with(|s| s.borrow_mut().failed.get(r"\w{300}").is_some()));
        // Over the length cap.
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(
            compile(None, &long)
                .unwrap_err()
                .contains("at most 4096 bytes")
        );
        // Too deep.
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(compile(None, &deep).is_err());
        // Between the two caps: kept by the turn, not by the thread.
        let mut turn = RegexCache::default();
        let big = compile(Some(&mut turn), r"\w{8}").unwrap();
        assert!(SHARED.with(|s| s.borrow_mut().compiled.get(r"\w{8}").is_none()));
        let again = compile(Some(&mut turn), r"\w{8}").unwrap();
        assert!(Arc::ptr_eq(&big, &again));
        assert!(big.is_match("abcdefgh"));
    }

    #[test]
    fn lru_evicts_the_least_recent() {
        let mut l = Lru::new(2);
        l.put("a", 1);
        l.put("b", 2);
        assert_eq!(l.get("a"), Some(1));
        l.put("c", 3);
        assert_eq!(l.get("b"), None);
        assert_eq!(l.get("a"), Some(1));
        assert_eq!(l.get("c"), Some(3));
    }
}
