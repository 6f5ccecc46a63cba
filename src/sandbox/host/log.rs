//! `log`: a guest's log lines, tagged with its session id.
//!
//! Each line is capped, and so is the total a run or chat turn may write
//! (the `[sandbox] guest_stdio` budget, shared in spirit with captured
//! stdout/stderr): past it, lines are counted and dropped, with a warning
//! at the first drop and the count when the run ends, so a guest cannot
//! flood the host's log and the disk under it.

use super::HostContext;
use crate::sandbox::bindings::host::Level;

/// Longest guest log line kept, in bytes.
pub(crate) const MAX_LINE: usize = 4096;

/// Log bytes written and dropped in the current run or chat turn.
pub(crate) struct LogState {
    cap: usize,
    used: usize,
    dropped_lines: u64,
}

impl LogState {
    pub(crate) fn new(cap: usize) -> Self {
        LogState {
            cap,
            used: 0,
            dropped_lines: 0,
        }
    }

    /// Starts a new run or turn; returns how many lines the last one dropped.
    pub(crate) fn reset(&mut self) -> u64 {
        self.used = 0;
        std::mem::take(&mut self.dropped_lines)
    }
}

/// The WIT name of `level`, as a recording writes it.
pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Trace => tracing::enabled!(target: "guest", tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: "guest", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "guest", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "guest", tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: "guest", tracing::Level::ERROR),
    }
}

pub(crate) fn log(ctx: &mut HostContext, level: Level, message: &str) {
    // Lines the filter drops anyway cost nothing and use no budget.
    if !enabled(level) {
        return;
    }
    let msg = crate::util::truncate_utf8(message, MAX_LINE);
    let sid = &ctx.info.session_id;
    let state = &mut ctx.run.log;
    if state.used + msg.len() > state.cap {
        state.dropped_lines += 1;
        if state.dropped_lines == 1 {
            tracing::warn!(target: "guest", session_id = %sid, cap_bytes = state.cap,
                "guest log lines past the cap are dropped for the rest of this run");
        }
        return;
    }
    state.used += msg.len();
    match level {
        Level::Trace => tracing::trace!(target: "guest", session_id = %sid, "{msg}"),
        Level::Debug => tracing::debug!(target: "guest", session_id = %sid, "{msg}"),
        Level::Info => tracing::info!(target: "guest", session_id = %sid, "{msg}"),
        Level::Warn => tracing::warn!(target: "guest", session_id = %sid, "{msg}"),
        Level::Error => tracing::error!(target: "guest", session_id = %sid, "{msg}"),
    }
}
