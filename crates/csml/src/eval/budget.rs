//! The turn's budgets (spec §3.11 "Decision"): the loop, instruction, call, depth and
//! data-copied budgets, the wall-clock deadline, and the output and memory-write quotas of
//! [`TurnOptions`](crate::api::TurnOptions).
//!
//! How a budget ends a turn:
//! * Hitting one records it once ([`Evaluator::exhaust`]: the first one wins) and raises a
//!   [`Stop::Fatal`] with its message. The record is sticky: `if`/`while` conditions and `!`
//!   swallow ordinary fatal errors (spec §3.5) but not a spent budget, every later check fails
//!   again at once, and the turn loop turns any leftover record into the closing error, so no
//!   way of catching the error lets the turn go on.
//! * Quota overruns found where no error can be raised (an error message emitted while an
//!   expression is evaluated) are recorded the same way and stop the turn at its next check,
//!   at the latest when the step ends; the message that did not fit is dropped.
//! * The closing error message is always output ([`Evaluator::close_with_error`]): when the
//!   output quotas are full, the latest messages make room for it, so the output never holds
//!   more than [`TurnOptions::max_messages`](crate::api::TurnOptions::max_messages) messages
//!   nor (unless the error text alone is larger) more than the output byte quota.
//!
//! The deadline is read from the clock only every [`CLOCK_CHECK_EVERY`] units of "fuel" (one
//! per statement, loop iteration and call, one per unit of data copied), and directly at step
//! entries, before host calls and before regex work; with no deadline the clock is never read.

use std::time::Instant;

use serde_json::Value as Json;

use super::{Evaluator, R, Stop};
use crate::api::{Budget, Message};
use crate::ast::Pos;

/// Units of work between two reads of the clock (see the module documentation).
pub(crate) const CLOCK_CHECK_EVERY: i64 = 1024;

/// The byte length of `v` serialized as compact JSON (as `serde_json::to_string` writes it),
/// computed without building the text: this runs for every output message, the hello path
/// included.
pub fn json_len(v: &Json) -> u64 {
    let mut total = 0u64;
    // Iterative: message contents and memories can be deep.
    let mut stack: Vec<&Json> = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Json::Null => 4,
            Json::Bool(true) => 4,
            Json::Bool(false) => 5,
            Json::Number(n) => number_len(n),
            Json::String(s) => string_len(s),
            Json::Array(a) => {
                stack.extend(a.iter());
                2 + a.len().saturating_sub(1) as u64
            }
            Json::Object(m) => {
                stack.extend(m.values());
                // Braces, commas, and for each entry its key and a colon.
                let keys: u64 = m.keys().map(|k| string_len(k) + 1).sum();
                2 + m.len().saturating_sub(1) as u64 + keys
            }
        };
    }
    total
}

/// A JSON string's length with its quotes and escapes (`\"`, `\\`, `\n`-style two-byte
/// escapes and `\u00XX` for other control characters; everything else is written as is).
fn string_len(s: &str) -> u64 {
    let escapes: u64 = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    2 + s.len() as u64 + escapes
}

fn number_len(n: &serde_json::Number) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a number to a sink that never fails can not fail.
    let _ = serde_json::to_writer(&mut c, n);
    c.0
}

impl Evaluator<'_> {
    /// Record that budget `b` is spent (unless one already is) and give the stop that ends the
    /// turn: the first budget's message, located at `pos`.
    #[cold]
    pub fn exhaust(&mut self, b: Budget, reason: &str, pos: Pos) -> Stop {
        if self.budget.is_none() {
            let text = self.located(reason, pos);
            self.budget = Some((b, text));
        }
        // Every later check fails at once.
        self.fuel = -1;
        self.spent().unwrap_or_else(|| self.fatal(reason, pos))
    }

    /// The stop of the spent budget, if one is.
    pub fn spent(&self) -> Option<Stop> {
        self.budget
            .as_ref()
            .map(|(_, text)| Stop::Fatal(text.clone()))
    }

    /// Use `n` units of fuel; when it runs out, check the budgets and the clock.
    #[inline]
    pub fn spend(&mut self, n: u64, pos: Pos) -> R<()> {
        self.fuel -= n.min(i64::MAX as u64) as i64;
        if self.fuel < 0 {
            return self.checkpoint(pos);
        }
        Ok(())
    }

    /// Fail when a budget is spent or the deadline has passed; else refuel.
    #[cold]
    pub fn checkpoint(&mut self, pos: Pos) -> R<()> {
        if let Some(stop) = self.spent() {
            return Err(stop);
        }
        if let Some(deadline) = self.opts.deadline
            && Instant::now() >= deadline
        {
            let reason = format!("[Timeout] the turn ran longer than {} ms", self.deadline_ms);
            return Err(self.exhaust(Budget::Deadline, &reason, pos));
        }
        self.fuel = CLOCK_CHECK_EVERY;
        Ok(())
    }

    /// Append an output message within the output quotas. A message that does not fit is
    /// dropped and the quota recorded as spent (the turn stops at its next check); `false`
    /// then.
    pub fn push_message(&mut self, msg: Message, pos: Pos) -> bool {
        if self.budget.is_some() {
            return false;
        }
        let size = json_len(&msg.content);
        if self.messages.len() as u64 >= u64::from(self.opts.max_messages) {
            let reason = format!(
                "[Budget] output limit reached: more than {} messages in a single turn",
                self.opts.max_messages
            );
            self.exhaust(Budget::Messages, &reason, pos);
            return false;
        }
        if self.out_bytes + size > self.opts.max_output_bytes {
            let reason = format!(
                "[Budget] output limit reached: more than {} bytes of messages in a single turn",
                self.opts.max_output_bytes
            );
            self.exhaust(Budget::OutputBytes, &reason, pos);
            return false;
        }
        self.out_bytes += size;
        self.messages.push(msg);
        true
    }

    /// Append the error message that closes the turn (a fatal error or a spent budget). It is
    /// always output: when the quotas are full, the latest messages make room for it.
    pub fn close_with_error(&mut self, text: String) {
        let msg = error_message(text);
        let size = json_len(&msg.content);
        while let Some(last) = self.messages.last() {
            let over_count = self.messages.len() as u64 >= u64::from(self.opts.max_messages);
            let over_bytes = self.out_bytes + size > self.opts.max_output_bytes;
            if !over_count && !over_bytes {
                break;
            }
            self.out_bytes -= json_len(&last.content);
            self.messages.pop();
        }
        self.out_bytes += size;
        self.messages.push(msg);
    }

    /// Count `bytes` of memory writes (or of locals saved by a hold) against the quota.
    pub fn charge_memory(&mut self, bytes: u64, pos: Pos) -> R<()> {
        if let Some(stop) = self.spent() {
            return Err(stop);
        }
        self.mem_bytes += bytes;
        if self.mem_bytes > self.opts.max_memory_bytes {
            let reason = format!(
                "[Budget] memory limit reached: more than {} bytes of memory writes in a single turn",
                self.opts.max_memory_bytes
            );
            return Err(self.exhaust(Budget::MemoryBytes, &reason, pos));
        }
        Ok(())
    }
}

/// `{"content_type": "error", "content": {"error": text}}` (spec §4.5).
pub(crate) fn error_message(text: String) -> Message {
    let mut m = serde_json::Map::with_capacity(1);
    m.insert("error".to_string(), Json::String(text));
    Message {
        content_type: "error".to_string(),
        content: Json::Object(m),
    }
}

#[cfg(test)]
mod tests {
    use super::json_len;
    use serde_json::json;

    #[test]
    fn json_len_is_the_serialized_length() {
        let cases = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12345678901234i64),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!(-0.000123),
            json!(""),
            json!("plain"),
            json!(
                "quote \" backslash \\ nl \n cr \r tab \t bs \u{8} ff \u{c} nul \u{0} us \u{1f} del \u{7f}"
            ),
            json!("été 🎉 中文"),
            json!([]),
            json!({}),
            json!([1, [2, [3, {}]], "x"]),
            json!({"text": "Hello world"}),
            json!({"a": {"b\"c": [null, true, {"d": 1.25}]}, "e": []}),
        ];
        for v in cases {
            assert_eq!(
                json_len(&v),
                serde_json::to_string(&v).unwrap().len() as u64,
                "{v}"
            );
        }
    }
}
