//! What one session cost and produced: counted while it runs (status shows
//! them for running sessions), logged once when it ends (the session's one
//! info line) and summed into [`crate::telemetry`].
//!
//! Every per-session figure lives in [`SessionFigures`]; the end line and
//! the status socket read that one struct, so a figure added here shows up
//! in both. The counters take the session's duration from it; output bytes
//! reach them from the write path, once they are on the socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The `kind` label of a budget in the agent's counters (one of
/// [`crate::telemetry::BUDGET_KINDS`]).
pub(crate) fn budget_kind(b: crate::runner::Budget) -> &'static str {
    use crate::runner::Budget;
    match b {
        Budget::Fuel => "fuel",
        Budget::Memory => "memory",
        Budget::Time => "time",
        Budget::Output => "output",
        Budget::Calls => "calls",
        Budget::LlmTokens => "llm_tokens",
        Budget::LlmCalls => "llm_calls",
    }
}

/// The bytes of text a `session_output` carries (delta and report): the
/// measure of output in a session's figures and in the agent's counters.
pub fn output_bytes(p: &crate::proto::SessionOutputPayload) -> u64 {
    (p.delta.len() + p.report.as_ref().map_or(0, String::len)) as u64
}

/// Counts output as a session sends it; shared between the session's sink
/// and its table entry.
#[derive(Debug)]
pub struct LiveFigures {
    started: Instant,
    output_messages: AtomicU64,
    output_bytes: AtomicU64,
}

impl Default for LiveFigures {
    fn default() -> Self {
        LiveFigures {
            started: Instant::now(),
            output_messages: AtomicU64::new(0),
            output_bytes: AtomicU64::new(0),
        }
    }
}

impl LiveFigures {
    /// One `session_output` with `bytes` of text (delta and report).
    pub fn output(&self, bytes: u64) {
        self.output_messages.fetch_add(1, Ordering::Relaxed);
        self.output_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The figures so far.
    pub fn snapshot(&self) -> SessionFigures {
        SessionFigures {
            duration: self.started.elapsed(),
            output_messages: self.output_messages.load(Ordering::Relaxed),
            output_bytes: self.output_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A session's figures, so far or at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionFigures {
    /// Time since the session was accepted.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// `session_output` messages sent.
    pub output_messages: u64,
    /// Bytes of delta and report text sent.
    pub output_bytes: u64,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl SessionFigures {
    /// The session's one info line; `error` is the text of the
    /// `session_error` it sent, if it sent one.
    pub fn log_end(
        &self,
        who: (&str, &str, &str),
        outcome: &str,
        error: Option<&str>,
        receipt: Option<&crate::runner::Receipt>,
    ) {
        let (session_id, session_type, user) = who;
        let receipt = receipt.map(crate::runner::Receipt::line);
        tracing::info!(
            session_id = %session_id,
            session_type = %session_type,
            user = %user,
            outcome = %outcome,
            error,
            duration_ms = self.duration.as_millis() as u64,
            output_messages = self.output_messages,
            output_bytes = self.output_bytes,
            receipt = receipt.as_deref(),
            "session ended"
        );
    }
}
