//! botyard as a library: the binary (`src/main.rs`), the integration tests and the bench all
//! use these modules.
//!
//! Module map: `cli` (command line), `store` (SQLite or PostgreSQL: the only module with SQL),
//! `cluster` (the live nodes of a shared database: rate-limit shares), `engine`
//! (conversation engine and bot operations), `secrets` (data-dir key, API key hashes,
//! passwords), `outbound` (outbound HTTP under policy), `http` (the server and its APIs).

pub(crate) mod admin;
pub mod cli;
pub mod cluster;
pub mod engine;
pub(crate) mod http;
pub mod ocs;
pub(crate) mod outbound;
pub mod plugins;
pub(crate) mod secrets;
pub mod store;
