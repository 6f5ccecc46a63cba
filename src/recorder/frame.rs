//! A frame as a recording holds it: `{"type":..,"payload":..}`, the
//! session-side form the connection wraps in its envelope. The session's
//! sink serializes its frames with these types, and a reader rebuilds a
//! frame written by reference (`{"k":"frame","emit":N}`) with the same
//! ones, so the two agree byte for byte.

use serde::Serialize;

use crate::proto;

/// A frame: its type, then its payload.
#[derive(Serialize)]
pub(crate) struct Frame<'a, P> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) payload: P,
}

/// `session_output`, borrowed, field for field as the wire has it.
#[derive(Serialize)]
pub(crate) struct OutputFrame<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) delta: &'a str,
    pub(crate) stage: &'a str,
    pub(crate) done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<serde_json::Value>,
}

/// `session_error`, borrowed.
#[derive(Serialize)]
pub(crate) struct ErrorFrame<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) error: &'a str,
    pub(crate) code: &'a str,
}

/// The WIT stages of `host.emit` (as its lines write them) and the wire's
/// spelling of each.
const STAGES: [(&str, &str); 5] = [
    ("thinking", proto::STAGE_THINKING),
    ("tool-call", proto::STAGE_TOOL_CALL),
    ("tool-result", proto::STAGE_TOOL_RESULT),
    ("answer", proto::STAGE_ANSWER),
    ("error", proto::STAGE_ERROR),
];

/// The wire's spelling of the `host.emit` stage `wit`.
pub(crate) fn wire_stage(wit: &str) -> Option<&'static str> {
    STAGES.iter().find(|(w, _)| *w == wit).map(|(_, s)| *s)
}

/// The frame a plain delta makes (no metadata, not the last): what a
/// `frame` line that names its `host.emit` call stands for.
pub(crate) fn plain_output(session_id: &str, delta: &str, stage: &str) -> String {
    let mut out = Vec::with_capacity(96 + delta.len());
    // Serializing borrowed strings into a Vec cannot fail.
    let _ = serde_json::to_writer(
        &mut out,
        &Frame {
            kind: proto::MSG_SESSION_OUTPUT,
            payload: OutputFrame {
                session_id,
                delta,
                stage,
                done: false,
                report: None,
                metadata: None,
            },
        },
    );
    String::from_utf8(out).unwrap_or_default()
}
