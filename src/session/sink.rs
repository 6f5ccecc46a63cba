//! A [`StreamSink`] that turns runner output into `session_output`
//! payloads on a bounded channel. The bound is the backpressure: a guest
//! that streams faster than the connection writes waits in `emit`.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{LiveFigures, SessionEvent};
use crate::proto::SessionOutputPayload;
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
        }
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
}
