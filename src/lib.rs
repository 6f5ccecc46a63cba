//! catpaw-agent: the catpaw agent runtime whose remote diagnosis sessions
//! run inside a WebAssembly sandbox.
//!
//! # Layout
//!
//! - [`config`]: the TOML config file, `${ENV}` expansion, URL derivation
//! - [`proto`]: the wire protocol: envelope, payloads, every wire string
//! - [`conn`]: one server connection: dial, register, serve, with priorities
//! - [`signing`]: Ed25519 checks of signed `session_start`/`session_input`
//!   (§9) and their bounded replay cache (pure)
//! - [`transport`]: the TCP dial and the progress clock under write deadlines
//! - [`alert_frame`]: the size cap of `alert_events` frames, cutting giants
//! - [`reconnect`]: the backoff policy (pure) and its jitter
//! - [`agent`]: the reconnect loop and what outlives connections
//! - [`ringbuf`]: the alert ring buffer
//! - [`ratelimit`]: counting repeated events while logging them rarely
//! - [`logging`]: log output: control characters escaped, wire crates capped
//! - [`ingest`]: the local alert socket (`<state_dir>/agent.sock`)
//! - [`limiter`]: the session limiter (RAII permits)
//! - [`tls`]: rustls client configuration
//! - [`hostinfo`]: hostname and primary IPv4 for `register`
//! - [`runner`]: the runner roles (diagnose, chat) and the output sink
//! - [`session`]: drives one accepted session to its single `done`
//! - [`sandbox`]: wasmtime engine, component cache, per-session stores and
//!   limits, the host side of the WIT imports (the only wasmtime user)
//! - [`tools`]: read-only structured diagnostic tools offered to guests
//! - [`shell`]: the one shell executor, behind `allow_shell`: cleared
//!   environment, optional `shell_user`, a subreaper supervisor that kills
//!   the whole process tree
//! - [`audit`]: the hash-chained, fail-closed audit trail (records before
//!   every act, outcomes on every path, rotation, `audit verify`)
//! - [`setup`]: config → sandbox + runners
//! - [`demo`]: `catpaw-agent demo`, a loopback server and a real agent
//! - [`harness`]: the local session harness (`catpaw-agent session`)
//! - [`embedded`]: the built-in runners, compiled into the binary

pub mod agent;
pub mod alert_frame;
pub mod audit;
pub mod config;
pub mod conn;
pub mod demo;
pub mod embedded;
pub mod harness;
pub mod hostinfo;
pub mod ingest;
pub mod limiter;
pub mod logging;
pub mod proto;
pub mod ratelimit;
pub mod reconnect;
pub mod ringbuf;
pub mod runner;
pub mod sandbox;
pub mod session;
pub mod setup;
pub mod shell;
pub mod signing;
pub mod tls;
pub mod tools;
pub mod transport;
pub mod util;
