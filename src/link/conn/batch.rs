//! One write's worth of session output: what the serve loop takes from the
//! session channel in one go, and the merging of deltas that makes a
//! backlog cheap to send.
//!
//! A server appends a session's deltas in order, so two consecutive deltas
//! of one session with the same stage and no metadata say the same as one
//! delta holding both texts. When sessions stream faster than the socket
//! takes frames, the channel holds a backlog; merging it turns thousands of
//! tiny frames into a few larger ones (each capped at [`MERGE_CAP`] bytes of
//! text). Nothing else is merged: a `done`, a report, metadata (a chat
//! turn's end), an error or a stage change is its own frame, and a
//! session's frames keep their order. Frames of different sessions may
//! interleave differently than they were queued; each session's stream is
//! independent on the wire.

use std::collections::{HashMap, VecDeque};

use tokio::sync::mpsc;

use crate::proto::SessionOutputPayload;
use crate::session::SessionEvent;

/// Largest merged delta, in bytes of text. A single delta larger than this
/// is sent as it came.
pub(crate) const MERGE_CAP: usize = 16 * 1024;

/// At most this many events are taken from the channel for one write, so a
/// backlog cannot keep the serve loop from reading inbound frames (an ack
/// waits behind at most one write).
pub(crate) const MAX_EVENTS: usize = 256;

/// At most this many bytes of delta text go into one write. A delta
/// larger than what is left is split, its rest sent by the next writes
/// (a server appends deltas, so the text is the same; the head goes as a
/// plain delta, the rest keeps the event's `done`, report and metadata):
/// one huge `emit` on a slow link cannot hold an inbound
/// `session_cancel` or an ack back for longer than this much takes to
/// cross. A report or an error is never split (§11 cuts them).
pub(crate) const MAX_WRITE_BYTES: usize = 64 * 1024;

/// Takes one write's worth of events, oldest first: from `pending` (the
/// rest of a split delta), then from `rx`. At most [`MAX_EVENTS`] events
/// and about [`MAX_WRITE_BYTES`] of text.
pub(crate) fn take(
    pending: &mut VecDeque<SessionEvent>,
    rx: &mut mpsc::Receiver<SessionEvent>,
) -> Vec<SessionEvent> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while out.len() < MAX_EVENTS && bytes < MAX_WRITE_BYTES {
        let Some(ev) = pending.pop_front().or_else(|| rx.try_recv().ok()) else {
            break;
        };
        let room = MAX_WRITE_BYTES - bytes;
        match ev {
            // The head goes now as a plain delta; the rest, with the
            // event's `done`, report or metadata, waits for the next write.
            SessionEvent::Output(mut p) if p.delta.len() > room => {
                let at = p.delta.floor_char_boundary(room);
                if at == 0 {
                    pending.push_front(SessionEvent::Output(p));
                    break;
                }
                let head = split_head(&mut p, at);
                pending.push_front(SessionEvent::Output(p));
                out.push(SessionEvent::Output(head));
                break;
            }
            ev => {
                bytes = bytes.saturating_add(text_len(&ev));
                out.push(ev);
            }
        }
    }
    out
}

/// Bytes of text an event carries.
fn text_len(ev: &SessionEvent) -> usize {
    match ev {
        SessionEvent::Output(p) => p.delta.len() + p.report.as_ref().map_or(0, String::len),
        SessionEvent::Error(e) => e.error.len(),
    }
}

/// True for a plain delta: text only, no `done`, report or metadata.
fn mergeable(p: &SessionOutputPayload) -> bool {
    !p.done && p.report.is_none() && p.metadata.is_none()
}

/// Merges consecutive plain deltas of each session in `events` (see the
/// module doc). Order within a session is kept; the text each session
/// streams, concatenated, is unchanged.
pub(crate) fn merge(events: Vec<SessionEvent>) -> Vec<SessionEvent> {
    let mut out: Vec<SessionEvent> = Vec::with_capacity(events.len());
    // Per session: where its last event sits in `out`, if that event is a
    // plain delta later ones may join.
    let mut open: HashMap<String, usize> = HashMap::new();
    for ev in events {
        match ev {
            SessionEvent::Output(p) if mergeable(&p) => {
                if let Some(&i) = open.get(&p.session_id)
                    && let SessionEvent::Output(last) = &mut out[i]
                    && last.stage == p.stage
                    && last.delta.len() + p.delta.len() <= MERGE_CAP
                {
                    last.delta.push_str(&p.delta);
                    continue;
                }
                open.insert(p.session_id.clone(), out.len());
                out.push(SessionEvent::Output(p));
            }
            SessionEvent::Output(p) => {
                open.remove(&p.session_id);
                out.push(SessionEvent::Output(p));
            }
            SessionEvent::Error(e) => {
                open.remove(&e.session_id);
                out.push(SessionEvent::Error(e));
            }
        }
    }
    out
}

/// Splits `p`'s delta at byte `at` (a char boundary): returns its first
/// part as a plain delta of the same session and stage; `p` keeps the rest
/// and everything else it carries (`done`, report, metadata), so those go
/// out with the last piece.
pub(super) fn split_head(p: &mut SessionOutputPayload, at: usize) -> SessionOutputPayload {
    let rest = p.delta.split_off(at);
    SessionOutputPayload {
        session_id: p.session_id.clone(),
        delta: std::mem::replace(&mut p.delta, rest),
        stage: p.stage.clone(),
        done: false,
        report: None,
        metadata: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::proto::SessionErrorPayload;

    fn delta(sid: &str, stage: &str, text: &str) -> SessionEvent {
        SessionEvent::Output(SessionOutputPayload {
            session_id: sid.into(),
            delta: text.into(),
            stage: stage.into(),
            done: false,
            report: None,
            metadata: None,
        })
    }

    fn done(sid: &str) -> SessionEvent {
        SessionEvent::Output(SessionOutputPayload {
            session_id: sid.into(),
            delta: String::new(),
            stage: String::new(),
            done: true,
            report: Some("report".into()),
            metadata: None,
        })
    }

    fn with_metadata(sid: &str, text: &str) -> SessionEvent {
        let mut m = Map::new();
        m.insert("turn_done".into(), Value::Bool(true));
        SessionEvent::Output(SessionOutputPayload {
            session_id: sid.into(),
            delta: text.into(),
            stage: "answer".into(),
            done: false,
            report: None,
            metadata: Some(m),
        })
    }

    fn error(sid: &str) -> SessionEvent {
        SessionEvent::Error(SessionErrorPayload {
            session_id: sid.into(),
            error: "boom".into(),
            code: "runner_trapped".into(),
        })
    }

    /// Each session's text, concatenated, and the sequence of its
    /// non-plain events (with their position among that session's events).
    fn per_session(events: &[SessionEvent], sid: &str) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut marks = Vec::new();
        for ev in events {
            match ev {
                SessionEvent::Output(p) if p.session_id == sid => {
                    text.push_str(&p.delta);
                    if !mergeable(p) {
                        marks.push(format!("{}:{:?}:{}", text.len(), p.metadata, p.done));
                    }
                }
                SessionEvent::Error(e) if e.session_id == sid => {
                    marks.push(format!("{}:error:{}", text.len(), e.code));
                }
                _ => {}
            }
        }
        (text, marks)
    }

    #[test]
    fn a_backlog_of_deltas_becomes_few_frames_with_the_same_text() {
        let mut evs = Vec::new();
        for i in 0..1000 {
            evs.push(delta("a", "thinking", &format!("a{i} ")));
            evs.push(delta("b", "answer", &format!("b{i} ")));
        }
        evs.push(done("a"));
        let merged = merge(evs.clone());
        assert_eq!(merged.len(), 3, "one delta per session, then a's done");
        for sid in ["a", "b"] {
            assert_eq!(per_session(&merged, sid), per_session(&evs, sid));
        }
    }

    #[test]
    fn done_errors_metadata_and_stage_changes_are_never_merged_or_reordered() {
        let evs = vec![
            delta("a", "thinking", "1"),
            delta("a", "thinking", "2"),
            with_metadata("a", "3"),
            delta("a", "thinking", "4"),
            delta("a", "answer", "5"),
            delta("a", "answer", "6"),
            delta("b", "thinking", "x"),
            error("b"),
            delta("b", "thinking", "y"),
            delta("a", "answer", "7"),
            done("a"),
            delta("a", "answer", "late"),
        ];
        let merged = merge(evs.clone());
        for sid in ["a", "b"] {
            assert_eq!(per_session(&merged, sid), per_session(&evs, sid));
        }
        let texts: Vec<String> = merged
            .iter()
            .map(|e| match e {
                SessionEvent::Output(p) => format!("{}{}", p.session_id, p.delta),
                SessionEvent::Error(e) => format!("{}!", e.session_id),
            })
            .collect();
        assert_eq!(
            texts,
            // a's "7" joins "56" across b's events: no event of a's lies
            // between them.
            ["a12", "a3", "a4", "a567", "bx", "b!", "by", "a", "alate"]
        );
    }

    #[test]
    fn a_merged_delta_stays_under_the_cap() {
        let chunk = "x".repeat(1000);
        let evs: Vec<SessionEvent> = (0..100).map(|_| delta("a", "answer", &chunk)).collect();
        let merged = merge(evs.clone());
        assert_eq!(per_session(&merged, "a"), per_session(&evs, "a"));
        for ev in &merged {
            let SessionEvent::Output(p) = ev else {
                panic!("only outputs")
            };
            assert!(p.delta.len() <= MERGE_CAP, "{}", p.delta.len());
        }
        // 16 chunks fit under 16 KiB: 100 chunks make 7 frames.
        assert_eq!(merged.len(), 7);
        // One delta over the cap goes as it came.
        let big = "y".repeat(MERGE_CAP + 1);
        let merged = merge(vec![delta("a", "answer", "z"), delta("a", "answer", &big)]);
        assert_eq!(merged.len(), 2);
    }

    fn texts(events: &[SessionEvent]) -> String {
        events
            .iter()
            .map(|e| match e {
                SessionEvent::Output(p) => p.delta.clone(),
                SessionEvent::Error(e) => e.error.clone(),
            })
            .collect()
    }

    #[tokio::test]
    async fn one_huge_delta_is_split_across_writes_and_what_follows_waits() {
        let (tx, mut rx) = mpsc::channel(8);
        let big = "é".repeat(100 * 1024); // 200 KiB, two bytes a char
        tx.send(delta("a", "answer", &big)).await.unwrap();
        tx.send(done("a")).await.unwrap();
        let mut pending = VecDeque::new();
        let mut writes = Vec::new();
        loop {
            let w = take(&mut pending, &mut rx);
            if w.is_empty() {
                break;
            }
            writes.push(w);
        }
        assert!(writes.len() >= 4, "{} writes", writes.len());
        for w in &writes[..writes.len() - 1] {
            assert!(texts(w).len() <= MAX_WRITE_BYTES);
        }
        let all: Vec<SessionEvent> = writes.into_iter().flatten().collect();
        let (last, deltas) = all.split_last().unwrap();
        assert_eq!(
            texts(deltas),
            big,
            "the same text, in order, cut on char boundaries"
        );
        assert!(matches!(last, SessionEvent::Output(p) if p.done));
    }

    #[tokio::test]
    async fn a_huge_delta_with_metadata_is_split_and_the_last_piece_keeps_it() {
        let (tx, mut rx) = mpsc::channel(8);
        let big = "z".repeat(3 * MAX_WRITE_BYTES);
        let mut ev = with_metadata("a", &big);
        if let SessionEvent::Output(p) = &mut ev {
            p.done = true;
            p.report = Some("r".into());
        }
        tx.send(ev).await.unwrap();
        let mut pending = VecDeque::new();
        let mut pieces = Vec::new();
        loop {
            let w = take(&mut pending, &mut rx);
            if w.is_empty() {
                break;
            }
            assert!(texts(&w).len() <= MAX_WRITE_BYTES);
            pieces.extend(w);
        }
        assert_eq!(texts(&pieces), big);
        let (last, heads) = pieces.split_last().unwrap();
        assert!(
            heads
                .iter()
                .all(|e| matches!(e, SessionEvent::Output(p) if mergeable(p)))
        );
        assert!(
            matches!(last, SessionEvent::Output(p) if p.done && p.metadata.is_some() && p.report.is_some())
        );
    }

    #[tokio::test]
    async fn small_events_are_taken_up_to_the_event_cap_and_a_report_is_never_split() {
        let (tx, mut rx) = mpsc::channel(400);
        for _ in 0..300 {
            tx.send(delta("a", "answer", "x")).await.unwrap();
        }
        let mut pending = VecDeque::new();
        assert_eq!(take(&mut pending, &mut rx).len(), MAX_EVENTS);
        assert_eq!(take(&mut pending, &mut rx).len(), 300 - MAX_EVENTS);
        let mut report = done("a");
        if let SessionEvent::Output(p) = &mut report {
            p.report = Some("r".repeat(MAX_WRITE_BYTES * 2));
        }
        tx.send(report).await.unwrap();
        let w = take(&mut pending, &mut rx);
        assert_eq!(w.len(), 1);
        assert!(
            matches!(&w[0], SessionEvent::Output(p) if p.report.as_ref().unwrap().len() == MAX_WRITE_BYTES * 2)
        );
        assert!(pending.is_empty());
    }
}
