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
//! never one above (no import outside tests runs back up, and none goes in
//! a circle).
//!
//! - [`fuzz_entry`]: entry points for the fuzz targets in `fuzz/` (hidden
//!   from the docs; nothing in the agent calls it): the parsers of
//!   untrusted bytes, reached as the agent runs them
//! - [`cli`]: what only the command line uses: setup, the agent's serve
//!   loop, the session harness, demo, `check-runner`, hot reload (SIGHUP,
//!   `--watch`), `runner new`, `config check` / `status`, `mcp`, logging
//! - [`mcp`]: `catpaw-agent mcp`, the MCP server: the catalog tools and
//!   inspect/diagnose sessions offered to an MCP client over stdio or
//!   streamable HTTP (token, `Host`/`Origin` checks), every call audited
//! - [`ops`]: what operators look at: the `status` socket and the
//!   Prometheus endpoint, both reading [`telemetry`]
//! - [`link`]: the server link: connection, reconnect loop and policy, TLS,
//!   transport; it connects sessions and alerts to the server
//! - [`config`]: the TOML config file (`[server]` with signing, `[sandbox]`,
//!   `[ai]`, `[tools]`, `[global.labels]`…), `${ENV}` expansion, units, URL
//!   derivation, the one funnel for budgets (file, per-role overrides,
//!   flags), the state-dir layout, config hygiene warnings, the effective
//!   config and the example file
//! - [`session`]: admission (ack decisions, signed-session checks), the
//!   session table and limiter, driving one session to its single `done`
//! - [`sandbox`]: wasmtime engine, component cache, per-session stores,
//!   session budgets and their enforcement, the host side of the WIT
//!   imports (the only wasmtime user)
//! - [`ai`]: the language models runners ask through the host's `llm`
//!   import: OpenAI-compatible endpoints and the server's gateway,
//!   failover, retries, the daily token ledger (keys never leave it)
//! - [`runner`]: the runner roles (diagnose, chat) and the output sink, the
//!   seam between sessions and the sandbox; what a runner describes of
//!   itself, usage receipts, the model-backed runner with the
//!   rule-based one behind it, and runner signatures (minisign: keygen,
//!   sign, the check at every load)
//! - [`recorder`]: the flight recorder: each session's import calls and
//!   answers, chat inputs and frames, written as it runs (bounded, sealed
//!   with its SHA-256), read back by `play` and `replay`
//! - [`audit`]: the hash-chained, fail-closed audit trail
//! - [`mcp_client`]: the `[ai.mcp]` servers the host starts, contained
//!   and restarted, whose tools runners may call beside the built-in ones
//! - [`tools`]: read-only structured diagnostic tools offered to guests;
//!   secret masking
//! - [`alerts`]: the alert ring buffer, the local ingest socket, frame caps
//! - [`shell`]: the one shell executor, behind `allow_shell`: cleared
//!   environment, optional `shell_user`, a subreaper supervisor that kills
//!   the whole process tree
//! - [`proto`]: the wire contract (PROTOCOL.md): envelope, payloads and
//!   every wire string
//! - [`telemetry`]: the one set of counters (sessions, budget breaches,
//!   shell requests, alerts, reconnects, link state), counted by session,
//!   sandbox, alerts and link, read by ops
//! - [`embedded`]: the built-in runners, compiled into the binary
//! - [`ratelimit`], [`util`]: small shared helpers
//! - [`fsafe`]: opening a file someone else may replace (runner files,
//!   allow-listed files) and judging it on the descriptor: its kind, its
//!   size against a cap, the path it really has; reads bounded by the cap
//!
//! Tests only: `documented_defaults` pins every default and limit the docs
//! give as a number against the code.

// The docs are read by people working on the crate (`cargo doc
// --document-private-items`): they link to crate-private items freely.
#![allow(rustdoc::private_intra_doc_links)]

pub mod ai;
pub mod alerts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod fsafe;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod link;
pub mod mcp;
pub mod mcp_client;
pub mod ops;
pub mod proto;
pub mod ratelimit;
pub mod recorder;
pub mod runner;
pub mod sandbox;
pub mod session;
pub mod shell;
pub mod telemetry;
pub mod tools;
pub mod util;

#[cfg(test)]
mod documented_defaults;
