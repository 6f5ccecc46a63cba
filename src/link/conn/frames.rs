//! Every frame the connection writes is built here, and held here to
//! PROTOCOL §11: no frame over [`proto::MAX_FRAME_BYTES`], the read limit a
//! server built like this agent applies (a bigger frame would cost the
//! link, and every session on it).
//!
//! The bound holds by construction for session events, the only frames
//! whose size a guest or a runner decides: a delta is split over frames
//! of at most [`proto::MAX_DELTA_JSON_BYTES`] of JSON (the last piece
//! keeps the event's `done`, report and metadata), metadata over
//! [`proto::MAX_METADATA_BYTES`] is dropped with a warning naming the
//! session, an error text is cut to [`proto::MAX_ERROR_BYTES`], and a
//! report is cut to [`proto::MAX_REPORT_BYTES`] and to the room its frame
//! has left. [`message`] checks every frame once more before it reaches
//! the socket and refuses (debug builds: panics on) any that is over.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Message;

use super::batch;

use crate::proto::{self, Envelope, SessionOutputPayload};
use crate::session::SessionEvent;

/// Room a `session_output` frame needs besides its strings' contents and
/// metadata: the envelope's type, id and punctuation, the payload's field
/// names and `done` (under 200 bytes; the rest is margin).
const ENVELOPE_ROOM: usize = 1024;

/// One frame of session output and the output bytes it carries (none for
/// an error), counted once it is written.
pub(crate) struct Frame {
    pub(crate) text: String,
    pub(super) output: Option<u64>,
}

/// The frames of one session event, each within §11 (see the module doc).
pub(crate) fn session_frames(ev: SessionEvent) -> Vec<Frame> {
    match ev {
        SessionEvent::Output(p) => output_frames(p),
        SessionEvent::Error(mut e) => {
            proto::cut_error(&mut e.error);
            vec![Frame {
                text: Envelope::encode(proto::MSG_SESSION_ERROR, &e),
                output: None,
            }]
        }
    }
}

/// The frames of a batch of session events (merged, then built and
/// bounded here) and the output bytes each `session_output` among
/// them carries.
pub(super) fn event_frames(events: Vec<SessionEvent>) -> (VecDeque<String>, Vec<u64>) {
    let mut texts = VecDeque::with_capacity(events.len());
    let mut outputs = Vec::with_capacity(events.len());
    for ev in batch::merge(events) {
        for f in session_frames(ev) {
            texts.push_back(f.text);
            outputs.extend(f.output);
        }
    }
    (texts, outputs)
}

/// The frame texts of events not yet written, for a graceful close.
pub(super) fn unsent_frames<'a>(
    events: impl IntoIterator<Item = &'a SessionEvent>,
) -> VecDeque<String> {
    events
        .into_iter()
        .flat_map(|ev| session_frames(ev.clone()))
        .map(|f| f.text)
        .collect()
}

fn output_frames(mut p: SessionOutputPayload) -> Vec<Frame> {
    let mut frames = Vec::new();
    drop_oversized_metadata(&mut p);
    // Split the delta: every piece but the last goes as a plain delta.
    loop {
        let end = proto::prefix_within(&p.delta, usize::MAX, proto::MAX_DELTA_JSON_BYTES);
        if end == p.delta.len() {
            break;
        }
        let head = batch::split_head(&mut p, end);
        frames.push(output_frame(&head));
    }
    let room = report_room(&p);
    if let Some(report) = &mut p.report {
        proto::cut_report(report, room);
    }
    frames.push(output_frame(&p));
    frames
}

fn output_frame(p: &SessionOutputPayload) -> Frame {
    Frame {
        text: Envelope::encode(proto::MSG_SESSION_OUTPUT, p),
        output: Some(crate::session::output_bytes(p)),
    }
}

/// JSON bytes left for the report in `p`'s frame.
fn report_room(p: &SessionOutputPayload) -> usize {
    let rest = ENVELOPE_ROOM
        + proto::json_str_len(&p.session_id)
        + proto::json_str_len(&p.stage)
        + proto::json_str_len(&p.delta)
        + p.metadata.as_ref().map_or(0, metadata_len);
    proto::MAX_FRAME_BYTES.saturating_sub(rest)
}

/// Bytes of `metadata` as JSON.
fn metadata_len(metadata: &serde_json::Map<String, serde_json::Value>) -> usize {
    // Serializing a map of JSON values cannot fail; if it did, "too big"
    // is the safe answer.
    serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len())
}

/// §11: metadata whose JSON is over the limit is not sent; the delta goes
/// without it, and one warning names the session.
fn drop_oversized_metadata(p: &mut SessionOutputPayload) {
    let Some(len) = p.metadata.as_ref().map(metadata_len) else {
        return;
    };
    if len > proto::MAX_METADATA_BYTES {
        p.metadata = None;
        tracing::warn!(
            session_id = %crate::util::escape_control(&p.session_id),
            bytes = len,
            limit = proto::MAX_METADATA_BYTES,
            "session output metadata over the limit was not sent (the delta was)"
        );
    }
}

/// The message for `frame`, unless it is over [`proto::MAX_FRAME_BYTES`]:
/// the last check before the socket. Session frames are bounded by
/// construction and the others are small, so a refusal is a bug (a debug
/// build panics); a release build logs it and drops the frame rather than
/// send what would cost the link.
pub(super) fn message(frame: String, what: &str) -> Option<Message> {
    if frame.len() <= proto::MAX_FRAME_BYTES {
        return Some(Message::text(frame));
    }
    debug_assert!(false, "a {what} frame of {} bytes", frame.len());
    tracing::error!(
        msg_type = %what,
        bytes = frame.len(),
        limit = proto::MAX_FRAME_BYTES,
        "refusing to send a frame over the protocol's size limit"
    );
    None
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::proto::SessionErrorPayload;

    fn output(delta: &str, report: Option<String>, metadata: Option<usize>) -> SessionEvent {
        SessionEvent::Output(SessionOutputPayload {
            session_id: "s".into(),
            delta: delta.into(),
            stage: "answer".into(),
            done: report.is_some(),
            report,
            metadata: metadata.map(|n| {
                let mut m = Map::new();
                m.insert("blob".into(), Value::String("m".repeat(n)));
                m
            }),
        })
    }

    fn payloads(frames: &[Frame]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| {
                assert!(f.text.len() <= proto::MAX_FRAME_BYTES, "{}", f.text.len());
                Envelope::parse(&f.text)
                    .expect("envelope")
                    .payload
                    .expect("payload")
            })
            .collect()
    }

    #[test]
    fn a_huge_delta_with_a_report_and_metadata_is_split_and_the_last_piece_keeps_them() {
        // Control characters: six bytes of JSON each.
        let delta = "\u{1}".repeat(300 * 1024);
        let frames = session_frames(output(&delta, Some("r".repeat(3 << 20)), Some(100)));
        let ps = payloads(&frames);
        assert!(ps.len() > 10, "{}", ps.len());
        let text: String = ps.iter().map(|p| p["delta"].as_str().unwrap()).collect();
        assert_eq!(text, delta);
        for p in &ps[..ps.len() - 1] {
            assert_eq!(p["done"], false);
            assert!(p.get("report").is_none() && p.get("metadata").is_none());
        }
        let last = ps.last().unwrap();
        assert_eq!(last["done"], true);
        assert_eq!(last["metadata"]["blob"].as_str().unwrap().len(), 100);
        let report = last["report"].as_str().unwrap();
        assert!(report.len() <= proto::MAX_REPORT_BYTES);
        assert!(report.contains("\n… [report truncated by catpaw-agent: "));
    }

    #[test]
    fn metadata_over_64_kib_is_dropped_and_the_delta_goes() {
        let ps = payloads(&session_frames(output("hello", None, Some(70 * 1024))));
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0]["delta"], "hello");
        assert!(ps[0].get("metadata").is_none(), "{}", ps[0]);
        let ps = payloads(&session_frames(output("hello", None, Some(60 * 1024))));
        assert!(ps[0].get("metadata").is_some());
    }

    #[test]
    fn an_error_text_is_cut_to_4_kib() {
        let frames = session_frames(SessionEvent::Error(SessionErrorPayload {
            session_id: "s".into(),
            error: "e".repeat(1 << 20),
            code: "diagnose_failed".into(),
        }));
        let ps = payloads(&frames);
        assert!(ps[0]["error"].as_str().unwrap().len() <= proto::MAX_ERROR_BYTES);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "frame of")]
    fn the_last_check_refuses_an_oversized_frame() {
        let _ = message("x".repeat(proto::MAX_FRAME_BYTES + 1), "test");
    }
}
