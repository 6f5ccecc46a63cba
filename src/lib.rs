//! catpaw-agent: the catpaw agent runtime whose remote diagnosis sessions
//! run inside a WebAssembly sandbox.
//!
//! # Layout
//!
//! The folders are the architecture: a session comes in over [`link`] as
//! [`proto`] messages, is admitted and driven by [`session`], runs in
//! [`sandbox`], which reaches the host only through [`tools`] and
//! [`shell`], each act recorded in [`audit`].
//!
//! Listed from the top down: a module uses only modules listed below it,
//! never one above (no import runs back up, and none goes in a circle).
//!
//! - [`cli`]: what only the command line uses: setup, session harness,
//!   demo, logging
//! - [`link`]: the server link: connection, reconnect loop and policy, TLS,
//!   transport; it connects sessions and alerts to the server
//! - [`config`]: the TOML config file, `${ENV}` expansion, units, URL
//!   derivation, the one funnel for budgets (file, per-role overrides,
//!   flags), the state-dir layout, config hygiene warnings
//! - [`session`]: admission (ack decisions, signed-session checks), the
//!   session table and limiter, driving one session to its single `done`
//! - [`sandbox`]: wasmtime engine, component cache, per-session stores,
//!   session budgets and their enforcement, the host side of the WIT
//!   imports (the only wasmtime user)
//! - [`runner`]: the runner roles (diagnose, chat) and the output sink, the
//!   seam between sessions and the sandbox
//! - [`audit`]: the hash-chained, fail-closed audit trail
//! - [`tools`]: read-only structured diagnostic tools offered to guests;
//!   secret masking
//! - [`alerts`]: the alert ring buffer, the local ingest socket, frame caps
//! - [`shell`]: the one shell executor, behind `allow_shell`: cleared
//!   environment, optional `shell_user`, a subreaper supervisor that kills
//!   the whole process tree
//! - [`proto`]: the wire contract (PROTOCOL.md): envelope, payloads and
//!   every wire string
//! - [`embedded`]: the built-in runners, compiled into the binary
//! - [`ratelimit`], [`util`]: small shared helpers

pub mod alerts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod link;
pub mod proto;
pub mod ratelimit;
pub mod runner;
pub mod sandbox;
pub mod session;
pub mod shell;
pub mod tools;
pub mod util;
