//! `log`: a guest's log lines, tagged with its session id.
//!
//! Lines are capped so a guest cannot flood the host log with one call.

use super::HostContext;
use crate::sandbox::bindings::host::Level;

/// Longest guest log line kept, in bytes.
const MAX_LINE: usize = 4096;

pub(crate) fn log(ctx: &HostContext, level: Level, message: &str) {
    let msg = crate::util::truncate_utf8(message, MAX_LINE);
    let sid = &ctx.info.session_id;
    match level {
        Level::Trace => tracing::trace!(target: "guest", session_id = %sid, "{msg}"),
        Level::Debug => tracing::debug!(target: "guest", session_id = %sid, "{msg}"),
        Level::Info => tracing::info!(target: "guest", session_id = %sid, "{msg}"),
        Level::Warn => tracing::warn!(target: "guest", session_id = %sid, "{msg}"),
        Level::Error => tracing::error!(target: "guest", session_id = %sid, "{msg}"),
    }
}
