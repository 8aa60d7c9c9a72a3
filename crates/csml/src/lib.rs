//! botyard's CSML 1.11 interpreter. A library with no I/O of its own: every side effect (clock,
//! randomness, outbound HTTP, `App()`, SMTP, logging) goes through the [`Host`] the caller
//! supplies.
//!
//! The way through: [`BotSource`] → [`Bot::compile`] (parse every flow, lint, evaluate
//! constants) → an immutable, shareable [`Bot`] → [`run_turn`] once per incoming event, with the
//! conversation's [`Context`], giving a [`TurnResult`]. [`validate`] reports diagnostics without
//! building a bot.
//!
//! Module map: `ast` (syntax tree), `lexer`/`parser` (text → tree), `lint` (whole-bot
//! validation), `value` (runtime values), `json` (values ↔ JSON, string forms), `ops`
//! (operators, truthiness, equality, `match`), `stdlib` (methods, builtins, components),
//! `eval` (statements, steps, hold/resume, the turn loop), `bot` (compiled bot).

pub mod ast;
pub mod bot;
pub mod eval;
pub mod json;
pub mod lexer;
pub mod lint;
pub mod ops;
pub mod parser;
pub mod stdlib;
pub mod value;

mod api;
pub use api::*;
pub use bot::Bot;
pub use eval::run_turn;
