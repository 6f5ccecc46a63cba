//! catpaw-agent: the catpaw agent runtime whose remote diagnosis sessions
//! run inside a WebAssembly sandbox.
//!
//! # Layout
//!
//! - [`config`]: the TOML config file, `${ENV}` expansion, URL derivation
//! - [`proto`]: the wire protocol: envelope, payloads, every wire string
//! - [`runner`]: the runner roles (diagnose, chat) and the output sink
//! - [`session`]: drives one accepted session to its single `done`
//! - [`sandbox`]: wasmtime engine, component cache, per-session stores and
//!   limits, the host side of the WIT imports (the only wasmtime user)
//! - [`tools`]: read-only structured diagnostic tools offered to guests
//! - [`shell`]: the one shell executor, behind `allow_shell`
//! - [`audit`]: append-only JSONL audit of every tool and shell call
//! - [`setup`]: config → sandbox + runners
//! - [`harness`]: the local session harness (`catpaw-agent session`)
//! - [`embedded`]: the built-in runners, compiled into the binary

pub mod audit;
pub mod config;
pub mod embedded;
pub mod harness;
pub mod proto;
pub mod runner;
pub mod sandbox;
pub mod session;
pub mod setup;
pub mod shell;
pub mod tools;
pub mod util;
