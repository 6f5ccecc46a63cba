//! A [`StreamSink`] that turns runner output into `session_output`
//! payloads on a bounded channel. The bound is the backpressure: a guest
//! that streams faster than the connection writes waits in `emit`.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{LiveFigures, SessionEvent};
use crate::proto::{self, SessionOutputPayload};
use crate::recorder::frame::{ErrorFrame, Frame, OutputFrame};
use crate::recorder::{Recording, Script, Tape};
use crate::runner::Budget;
use crate::runner::{Output, StreamSink};

/// Sends a session's output, tagged with its id, into a channel.
#[derive(Debug, Clone)]
pub(crate) struct ChannelSink {
    session_id: String,
    tx: mpsc::Sender<SessionEvent>,
    /// The code of the `session_error` this session sent, if any.
    failure: std::sync::Arc<std::sync::OnceLock<(String, String)>>,
    /// The budget that stopped the session, if one did.
    breach: std::sync::Arc<std::sync::OnceLock<Budget>>,
    /// Output counted for the session's figures.
    figures: Option<std::sync::Arc<LiveFigures>>,
    /// The session's recording, when it is recorded.
    recording: Option<Recording>,
    /// The recording it replays, when it is a replay.
    script: Option<std::sync::Arc<Script>>,
}

impl ChannelSink {
    /// A sink for `session_id` writing into `tx`.
    pub fn new(session_id: impl Into<String>, tx: mpsc::Sender<SessionEvent>) -> Self {
        ChannelSink {
            session_id: session_id.into(),
            tx,
            failure: Default::default(),
            breach: Default::default(),
            figures: None,
            recording: None,
            script: None,
        }
    }

    /// Answers the session's imports from `script` (`replay`).
    pub(crate) fn replaying(mut self, script: std::sync::Arc<Script>) -> Self {
        self.script = Some(script);
        self
    }

    /// Records the session into `recording`: its frames here, its imports
    /// through [`StreamSink::tape`].
    pub(crate) fn recording(mut self, recording: Option<Recording>) -> Self {
        self.recording = recording;
        self
    }

    /// The session's recording, if it is recorded.
    pub(crate) fn recorder(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    /// Counts output into `figures` as the session produces it.
    pub(crate) fn counting(mut self, figures: std::sync::Arc<LiveFigures>) -> Self {
        self.figures = Some(figures);
        self
    }

    /// Notes the budget that stopped the session.
    pub(crate) fn set_breach(&self, budget: Budget) {
        let _ = self.breach.set(budget);
    }

    /// The budget that stopped the session, if one did.
    pub(crate) fn breach(&self) -> Option<Budget> {
        self.breach.get().copied()
    }

    /// Sends any session event (used for errors and the final `done`).
    pub(crate) async fn send_event(&self, ev: SessionEvent) {
        if let Some(r) = &self.recording {
            record_frame(r, &ev);
        }
        self.send_unrecorded(ev).await;
    }

    /// Sends an event the recording already holds (the final `done`,
    /// written before the recording is sealed).
    pub(crate) async fn send_unrecorded(&self, ev: SessionEvent) {
        match &ev {
            SessionEvent::Error(e) => {
                let _ = self.failure.set((e.code.clone(), e.error.clone()));
            }
            SessionEvent::Output(o) => {
                if let Some(f) = &self.figures {
                    f.output(super::output_bytes(o));
                }
            }
        }
        // A closed channel means the consumer (connection) is gone; the
        // session is being torn down and there is nobody to tell.
        let _ = self.tx.send(ev).await;
    }

    /// The code of the `session_error` sent so far, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(|(code, _)| code.as_str())
    }

    /// The error text of that `session_error`, if any.
    pub(crate) fn failure_error(&self) -> Option<&str> {
        self.failure.get().map(|(_, error)| error.as_str())
    }

    /// The payload for `out`.
    pub fn payload(&self, out: Output) -> SessionOutputPayload {
        SessionOutputPayload {
            session_id: self.session_id.clone(),
            delta: out.delta,
            stage: out.stage.as_str().to_string(),
            done: out.done,
            report: out.report,
            metadata: out.metadata,
        }
    }
}

#[async_trait]
impl StreamSink for ChannelSink {
    async fn send(&self, out: Output) {
        let p = self.payload(out);
        self.send_event(SessionEvent::Output(p)).await;
    }

    fn tape(&self) -> Option<Tape> {
        match (&self.recording, &self.script) {
            (Some(r), _) => Some(Tape::Record(r.clone())),
            (None, Some(s)) => Some(Tape::Replay(s.clone())),
            (None, None) => None,
        }
    }
}

/// The frame `ev` as the recording holds it: `{"type":..,"payload":..}`,
/// every string masked, as the session hands it to the connection (which
/// adds the envelope's fresh message id and may merge deltas after).
pub(crate) fn frame_raw(ev: &SessionEvent) -> String {
    let mut out = Vec::with_capacity(128);
    write_frame(&mut out, ev, None);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the frame `ev` into `out` as [`frame_raw`] returns it;
/// `delta_masked`: the delta already masked (the `host.emit` line that
/// carried it masked it), so it is not masked a second time.
fn write_frame(out: &mut Vec<u8>, ev: &SessionEvent, delta_masked: Option<&str>) {
    // Serializing borrowed fields into a Vec cannot fail.
    let _ = match ev {
        SessionEvent::Output(p) => {
            let masked;
            let delta = match delta_masked {
                Some(d) => d,
                None => {
                    masked = crate::tools::mask_secrets(&p.delta);
                    &masked
                }
            };
            let report = p
                .report
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(crate::tools::mask_secrets);
            let metadata = p.metadata.as_ref().filter(|m| !m.is_empty()).map(|m| {
                let mut v = serde_json::Value::Object(m.clone());
                crate::tools::mask_json(&mut v);
                v
            });
            serde_json::to_writer(
                &mut *out,
                &Frame {
                    kind: proto::MSG_SESSION_OUTPUT,
                    payload: OutputFrame {
                        session_id: &p.session_id,
                        delta,
                        stage: &p.stage,
                        done: p.done,
                        report: report.as_deref(),
                        metadata,
                    },
                },
            )
        }
        SessionEvent::Error(p) => serde_json::to_writer(
            &mut *out,
            &Frame {
                kind: proto::MSG_SESSION_ERROR,
                payload: ErrorFrame {
                    session_id: &p.session_id,
                    error: &crate::tools::mask_secrets(&p.error),
                    code: &p.code,
                },
            },
        ),
    };
}

/// Writes `ev` as a `frame` line, straight into the recording's buffer;
/// a delta the `host.emit` line just masked is not masked again.
pub(crate) fn record_frame(r: &Recording, ev: &SessionEvent) {
    let delta = match ev {
        SessionEvent::Output(p) => Some(p.delta.as_str()),
        SessionEvent::Error(_) => None,
    };
    // A delta with nothing more (no report, no metadata, not the last)
    // may be written as a reference to the `host.emit` call that made it.
    let plain_stage = match ev {
        SessionEvent::Output(p)
            if !p.done
                && p.report.as_deref().is_none_or(str::is_empty)
                && p.metadata.as_ref().is_none_or(|m| m.is_empty()) =>
        {
            Some(p.stage.as_str())
        }
        _ => None,
    };
    r.frame(delta, plain_stage, |out, masked| {
        write_frame(out, ev, masked)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SessionErrorPayload;

    #[test]
    fn a_recorded_frame_is_type_then_payload_as_on_the_wire_with_secrets_masked() {
        let out = SessionEvent::Output(SessionOutputPayload {
            session_id: "s".into(),
            delta: "password=hunter2x".into(),
            stage: "answer".into(),
            done: false,
            report: None,
            metadata: None,
        });
        assert_eq!(
            frame_raw(&out),
            r#"{"type":"session_output","payload":{"session_id":"s","delta":"password=***","stage":"answer","done":false}}"#
        );
        let err = SessionEvent::Error(SessionErrorPayload {
            session_id: "s".into(),
            error: "boom".into(),
            code: "runner_trapped".into(),
        });
        assert_eq!(
            frame_raw(&err),
            r#"{"type":"session_error","payload":{"session_id":"s","error":"boom","code":"runner_trapped"}}"#
        );
    }

    #[test]
    fn a_plain_delta_frame_names_its_emit_call_and_reads_back_as_the_whole_frame() {
        use crate::recorder::writer::json_str;
        let dir = tempfile::tempdir().expect("tmp");
        let rec = Recording::create(
            dir.path(),
            "s1",
            &crate::recorder::RecorderOptions::default(),
            None,
        );
        rec.start(serde_json::json!({"session":{"id":"s1","type":"diagnose"}}));
        let out = |delta: &str,
                   stage: &str,
                   metadata: Option<serde_json::Map<String, serde_json::Value>>| {
            SessionEvent::Output(SessionOutputPayload {
                session_id: "s1".into(),
                delta: delta.into(),
                stage: stage.into(),
                done: false,
                report: None,
                metadata,
            })
        };
        let emit = |text: &str, stage: Option<&'static str>| {
            rec.emit_call(text, stage, true, |b, masked| {
                b.extend_from_slice(b",\"args\":{\"delta\":");
                json_str(b, masked);
                b.extend_from_slice(
                    b",\"stage\":\"tool-call\",\"metadata-json\":null},\"ret\":null",
                );
            });
        };
        let frames = [
            // By reference: the delta its emit made, nothing more.
            out("password=hunter2x now", "tool_call", None),
            // Whole: a stage the emit did not have.
            out("b", "answer", None),
            // Whole: metadata.
            out(
                "c",
                "tool_call",
                Some(serde_json::Map::from_iter([("k".to_string(), 1.into())])),
            ),
        ];
        emit("password=hunter2x now", Some("tool_call"));
        record_frame(&rec, &frames[0]);
        emit("b", Some("tool_call"));
        record_frame(&rec, &frames[1]);
        emit("c", None);
        record_frame(&rec, &frames[2]);
        rec.close(|_| {});
        let file = std::fs::read_dir(dir.path())
            .expect("dir")
            .next()
            .expect("a file")
            .expect("entry")
            .path();
        let text = std::fs::read_to_string(&file).expect("read");
        let written: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"k\":\"frame\""))
            .collect();
        assert!(written[0].ends_with(",\"emit\":1}"), "{}", written[0]);
        assert!(written[1].contains("\"raw\":") && written[2].contains("\"raw\":"));
        let back = crate::recorder::read::read(&file).expect("reads");
        let raw: Vec<String> = back
            .all("frame")
            .map(|f| f["raw"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = frames.iter().map(frame_raw).collect();
        assert_eq!(raw, want);
        assert!(raw[0].contains("password=*** now"));
    }
}
