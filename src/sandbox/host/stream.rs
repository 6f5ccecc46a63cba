//! `emit`: streams a guest's deltas to the session sink as they happen.
//!
//! The sink may apply backpressure (a slow server connection), in which case
//! the guest simply waits inside `emit`; its wall-clock budget keeps
//! running. Every byte counts against the session's output budget, and so
//! do the report and each chat answer, so an emit flood or an outsized
//! reply ends with `resource_exhausted` instead of filling the host's memory
//! or sending the server a frame it may refuse.

use serde_json::{Map, Value};

use super::HostContext;
use crate::runner::{Budget, Output, Stage};
use crate::sandbox::bindings::host;
use crate::sandbox::limits::BudgetExceeded;

/// Output budget of one session.
pub(crate) struct StreamState {
    max_output: u64,
    used: u64,
}

impl StreamState {
    pub(crate) fn new(max_output: u64) -> Self {
        StreamState {
            max_output,
            used: 0,
        }
    }

    /// Bytes of output charged so far.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Counts `bytes` of `what` against the budget, or says why not.
    pub(crate) fn charge(&mut self, bytes: u64, what: &str) -> Result<(), BudgetExceeded> {
        let used = self.used.saturating_add(bytes);
        if used > self.max_output {
            return Err(BudgetExceeded {
                budget: Budget::Output,
                detail: format!(
                    "{what} of {bytes} bytes would take the session past its {} bytes of output",
                    self.max_output
                ),
            });
        }
        self.used = used;
        Ok(())
    }
}

pub(crate) fn stage(s: host::Stage) -> Stage {
    match s {
        host::Stage::Thinking => Stage::Thinking,
        host::Stage::ToolCall => Stage::ToolCall,
        host::Stage::ToolResult => Stage::ToolResult,
        host::Stage::Answer => Stage::Answer,
        host::Stage::Error => Stage::Error,
    }
}

/// Every `host.emit` stage: its WIT name (as a recording's line writes
/// it) and the wire's spelling the session sends.
#[cfg(test)]
pub(crate) fn emit_stages() -> Vec<(&'static str, &'static str)> {
    [
        host::Stage::Thinking,
        host::Stage::ToolCall,
        host::Stage::ToolResult,
        host::Stage::Answer,
        host::Stage::Error,
    ]
    .into_iter()
    .map(|s| (crate::sandbox::tape::stage_name(s), stage(s).as_str()))
    .collect()
}

/// Guest metadata as it goes out: a JSON object, or nothing.
pub(crate) fn parse_metadata(raw: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Some(m),
        Ok(_) | Err(_) => None,
    }
}

/// Parses guest metadata; anything but a JSON object is dropped with a log
/// line (the delta itself still goes out).
fn metadata(ctx: &HostContext, raw: Option<String>) -> Option<Map<String, Value>> {
    let parsed = parse_metadata(&raw?);
    if parsed.is_none() {
        tracing::warn!(session_id = %ctx.info.session_id,
            "guest emit metadata is not a JSON object; dropped it");
    }
    parsed
}

pub(crate) async fn emit(
    ctx: &mut HostContext,
    delta: String,
    s: host::Stage,
    metadata_json: Option<String>,
) -> wasmtime::Result<()> {
    let size = delta.len() as u64 + metadata_json.as_ref().map_or(0, |m| m.len() as u64);
    let charged = ctx.stream.charge(size, "a delta");
    if let Some(r) = ctx.tape.recording() {
        let meta = metadata_json.as_deref();
        crate::sandbox::tape::record_emit(
            r,
            &delta,
            s,
            stage(s).as_str(),
            meta,
            charged.as_ref().err(),
        );
    }
    charged?;
    let meta = metadata(ctx, metadata_json);
    ctx.sink.send(Output::delta(delta, stage(s), meta)).await;
    Ok(())
}
