//! Sessions: what happens between an accepted `session_start` and its one
//! final `done`.
//!
//! - `run.rs`: drives one session (inspect, diagnose, chat) over the runner
//!   traits and turns every outcome into the wire payloads of PROTOCOL §5
//! - `sink.rs`: adapts a runner's streamed output to those payloads
//! - `figures.rs`: what one session produced, counted as it runs
//! - `admission.rs`: the ack decision for a `session_start` (pure)
//! - `signing.rs`: Ed25519 checks of signed `session_start` / `session_input`
//!   (PROTOCOL §9) and their bounded replay cache: the table hands the
//!   `session_start` check to admission and checks `session_input` itself
//! - `table.rs`: running sessions, chat queues, cancel; asks admission and
//!   starts what it admits
//! - `limiter.rs`: the concurrency limiter (RAII permits)
//! - `refusals.rs`: refused starts and inputs, one audit record per second
//!   per cause with a count
//!
//! Nothing here knows wasmtime or sockets: sessions talk to
//! [`crate::runner`] traits and emit [`SessionEvent`]s into a channel that
//! the connection (or the local harness) drains.

pub(crate) mod admission;
mod figures;
pub mod limiter;
mod refusals;
mod run;
pub mod signing;
mod sink;
mod table;

pub use figures::SessionFigures;
pub(crate) use figures::{LiveFigures, budget_kind, output_bytes};
pub(crate) use run::drive;
pub use run::{RunnerFile, Runners, SessionEnd, run_session};
pub(crate) use sink::{ChannelSink, frame_raw};
pub use table::{ActiveSession, InputOutcome, SessionTable};

use crate::proto::{SessionErrorPayload, SessionOutputPayload};

/// One message a session sends toward the server.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A `session_output` payload.
    Output(SessionOutputPayload),
    /// A `session_error` payload.
    Error(SessionErrorPayload),
}

impl SessionEvent {
    /// True for the final `done` output.
    pub fn is_done(&self) -> bool {
        matches!(self, SessionEvent::Output(o) if o.done)
    }
}
