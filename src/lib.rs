//! catpaw-agent: the catpaw agent runtime whose remote diagnosis sessions
//! run inside a WebAssembly sandbox.
//!
//! # Layout
//!
//! The folders are the architecture: a session comes in over [`link`], is
//! admitted and driven by [`session`], runs in [`sandbox`], which reaches
//! the host only through [`tools`] and [`shell`], each act recorded in
//! [`audit`].
//!
//! - [`link`]: the server link: wire types, connection, reconnect loop and
//!   policy, TLS, transport, signed-session checks
//! - [`session`]: admission (ack decisions), the session table and limiter,
//!   driving one session to its single `done`
//! - [`runner`]: the runner roles (diagnose, chat) and the output sink, the
//!   seam between sessions and the sandbox
//! - [`sandbox`]: wasmtime engine, component cache, per-session stores,
//!   session budgets and their enforcement, the host side of the WIT
//!   imports (the only wasmtime user)
//! - [`tools`]: read-only structured diagnostic tools offered to guests;
//!   secret masking
//! - [`shell`]: the one shell executor, behind `allow_shell`: cleared
//!   environment, optional `shell_user`, a subreaper supervisor that kills
//!   the whole process tree
//! - [`audit`]: the hash-chained, fail-closed audit trail
//! - [`alerts`]: the alert ring buffer, the local ingest socket, frame caps
//! - [`config`]: the TOML config file, `${ENV}` expansion, units, URL
//!   derivation, the one funnel for budgets (file, per-role overrides,
//!   flags), the state-dir layout, config hygiene warnings
//! - [`cli`]: what only the command line uses: setup, session harness,
//!   demo, logging
//! - [`telemetry`]: the one set of counters (sessions, budget breaches,
//!   shell requests, alerts, reconnects, link state)
//! - [`ops`]: what operators look at: the `status` socket and the
//!   Prometheus endpoint, both reading [`telemetry`]
//! - [`embedded`]: the built-in runners, compiled into the binary
//! - [`ratelimit`], [`util`]: small shared helpers

pub mod alerts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod link;
pub mod ops;
pub mod ratelimit;
pub mod runner;
pub mod sandbox;
pub mod session;
pub mod shell;
pub mod telemetry;
pub mod tools;
pub mod util;
