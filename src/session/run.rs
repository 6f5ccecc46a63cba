//! Drives one accepted session to its single `done` (PROTOCOL §5).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ChannelSink, SessionEvent};
use crate::proto::{self, ErrorCode, SessionErrorPayload, SessionStartPayload, SessionType};
use crate::runner::Receipt;
use crate::runner::{
    Budget, ChatRunner, ChatSessionOpts, DiagnoseRequest, DiagnoseRunner, Output, RunError,
    SessionInfo, Stage, StreamSink,
};

/// The runners available to sessions, by role.
#[derive(Clone, Default)]
pub struct Runners {
    /// Serves `inspect` and `diagnose`.
    pub diagnose: Option<Arc<dyn DiagnoseRunner>>,
    /// Serves `chat`.
    pub chat: Option<Arc<dyn ChatRunner>>,
    /// The inspect plugins the diagnose runner offers (its `describe`), for
    /// `register.plugins`.
    pub plugins: Vec<String>,
    /// The components behind these runners, for `status`.
    pub files: Vec<RunnerFile>,
}

/// A runner component in service: the role it serves, where it came from
/// and the SHA-256 of the bytes that were compiled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunnerFile {
    /// diagnose, chat, or ai (the built-in AI runner in front of both).
    pub role: String,
    /// The file, or `built-in`.
    pub source: String,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    /// What its sessions are granted (its declared capabilities ∩ the
    /// operator's policy), e.g. `tools:cpu,memory llm`.
    #[serde(default)]
    pub capabilities: String,
    /// Who vouches for those bytes: `built-in`, `unsigned`, or the signer
    /// (`NAME (key KEYID)`) whose signature was checked when it loaded.
    #[serde(default)]
    pub signer: String,
}

impl std::fmt::Debug for Runners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runners")
            .field("diagnose", &self.diagnose.is_some())
            .field("chat", &self.chat.is_some())
            .field("plugins", &self.plugins)
            .field("files", &self.files)
            .finish()
    }
}

impl Runners {
    /// Whether a runner serves sessions of `kind` (no runner serves an
    /// unknown type).
    pub fn serves(&self, kind: &SessionType) -> bool {
        match kind {
            SessionType::Chat => self.chat.is_some(),
            SessionType::Inspect | SessionType::Diagnose => self.diagnose.is_some(),
            SessionType::Other(_) => false,
        }
    }

    /// The component that serves sessions of `kind` first: the AI
    /// runner when it is in front, else the role's own.
    pub fn file_for(&self, kind: &SessionType) -> Option<&RunnerFile> {
        let role = match kind {
            SessionType::Chat => "chat",
            SessionType::Inspect | SessionType::Diagnose => "diagnose",
            SessionType::Other(_) => return None,
        };
        self.files
            .iter()
            .find(|f| f.role == "ai")
            .or_else(|| self.files.iter().find(|f| f.role == role))
    }

    /// Whether any runner at all is configured.
    pub fn any(&self) -> bool {
        self.diagnose.is_some() || self.chat.is_some()
    }
}

fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Runs one accepted session. Every path ends with exactly one
/// `session_output{done:true}` on `out` (unless the consumer is gone), a
/// panic on the host side included (it is sent as `diagnose_failed`).
/// Returns how it ended and its receipt, for the audit; both also go to
/// the one `session ended` log line.
///
/// `allow_shell` is the final decision for this session (operator opt-in
/// and session request already combined). `inputs` carries later chat turns;
/// `cancel` ends the session at once.
pub async fn run_session(
    start: SessionStartPayload,
    allow_shell: bool,
    runners: Runners,
    out: mpsc::Sender<SessionEvent>,
    inputs: mpsc::Receiver<String>,
    cancel: CancellationToken,
) -> SessionEnd {
    let sink = ChannelSink::new(start.session_id.clone(), out);
    drive(start, allow_shell, runners, sink, inputs, cancel, |_| {}).await
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// `ok`, `cancelled`, or the code of the `session_error` it sent.
    pub outcome: String,
    /// The budget that stopped it, if one did.
    pub breach: Option<Budget>,
    /// The `session_error` text it sent, if any.
    pub error: Option<String>,
    /// What it used against its budgets, when its runner keeps a receipt.
    pub receipt: Option<Receipt>,
    /// How its recording ended, when it was recorded.
    pub recording: Option<crate::recorder::Closed>,
}

/// [`run_session`] with a sink the caller built (one that counts output).
/// `before_done` gets the session's end just before its `done` is sent:
/// the session table frees the id and the slot there, so a server that
/// answers a `done` with a new `session_start` at once finds them free.
pub async fn drive(
    start: SessionStartPayload,
    allow_shell: bool,
    runners: Runners,
    sink: ChannelSink,
    inputs: mpsc::Receiver<String>,
    cancel: CancellationToken,
    before_done: impl FnOnce(&SessionEnd) + Send,
) -> SessionEnd {
    let info = SessionInfo {
        session_id: start.session_id.clone(),
        session_type: start.session_type.clone(),
        user_name: start.user_name.clone(),
        allow_shell,
        key_id: start.key_id.clone(),
    };
    let kind = SessionType::parse(&start.session_type);
    if let Some(r) = sink.recorder() {
        r.start(start_line(&start, &info, &kind, &runners));
    }
    let body = async {
        match &kind {
            SessionType::Inspect | SessionType::Diagnose => {
                run_diagnose(&info, &kind, &start.params, &runners, &sink, &cancel).await
            }
            SessionType::Chat => (
                None,
                run_chat(&info, &start.params, &runners, &sink, inputs, &cancel).await,
            ),
            SessionType::Other(other) => {
                send_error(
                    &sink,
                    &info,
                    ErrorCode::InvalidType,
                    proto::unknown_session_type(other),
                )
                .await;
                (None, None)
            }
        }
    };
    // A bug on the host side of a session (a runner wrapper, a host import)
    // must still end it the protocol's way, with an error and its `done`,
    // instead of leaving the server waiting for a session that is gone.
    let (report, receipt) = match AssertUnwindSafe(body).catch_unwind().await {
        Ok(ended) => ended,
        Err(panic) => {
            let what = crate::util::panic_text(panic.as_ref());
            tracing::error!(session_id = %info.session_id, panic = %what,
                "an internal error ended this session");
            send_error(
                &sink,
                &info,
                ErrorCode::DiagnoseFailed,
                format!("the agent hit an internal error and ended the session: {what}"),
            )
            .await;
            (None, None)
        }
    };
    let outcome = match sink.failure() {
        Some(code) => code.to_string(),
        None if cancel.is_cancelled() => "cancelled".to_string(),
        None => "ok".to_string(),
    };
    let mut end = SessionEnd {
        outcome,
        breach: sink.breach(),
        error: sink.failure_error().map(str::to_string),
        receipt,
        recording: None,
    };
    let mut done = Output::delta("", Stage::Final, None);
    done.done = true;
    done.report = report;
    let done = SessionEvent::Output(sink.payload(done));
    // The recording holds the `done` and is sealed before the `ended`
    // record (in `before_done`) names its hash; `done` goes out after.
    if let Some(r) = sink.recorder() {
        end.recording = Some(close_recording(r, &done, &end));
    }
    before_done(&end);
    sink.send_unrecorded(done).await;
    end
}

/// The `start` line: who, what, and the runner that serves it (and the
/// rule-based one behind the AI runner, which may take over).
fn start_line(
    start: &SessionStartPayload,
    info: &SessionInfo,
    kind: &SessionType,
    runners: &Runners,
) -> Value {
    let mut params = Value::Object(start.params.clone());
    crate::tools::mask_json(&mut params);
    let masked = params != Value::Object(start.params.clone());
    let file = runners.file_for(kind);
    let fallback = file.filter(|f| f.role == "ai").and_then(|_| {
        let role = if *kind == SessionType::Chat {
            "chat"
        } else {
            "diagnose"
        };
        runners.files.iter().find(|f| f.role == role)
    });
    serde_json::json!({
        "session": {
            "id": info.session_id,
            "type": info.session_type,
            "user": info.user_name,
            "key_id": info.key_id,
            "allow_shell": info.allow_shell,
        },
        "params": params,
        "masked": masked,
        "runner": file,
        "fallback": fallback,
    })
}

/// Writes the `done` frame, the receipt and the end, and seals.
fn close_recording(
    r: &crate::recorder::Recording,
    done: &SessionEvent,
    end: &SessionEnd,
) -> crate::recorder::Closed {
    use crate::recorder::writer::{json_str, json_u64};
    super::sink::record_frame(r, done);
    if let Some(receipt) = &end.receipt {
        r.line("receipt", false, |b| {
            b.extend_from_slice(b",\"receipt\":");
            let _ = serde_json::to_writer(&mut *b, receipt);
        });
    }
    r.close(|b| {
        b.extend_from_slice(b",\"outcome\":");
        json_str(b, &end.outcome);
        b.extend_from_slice(b",\"error\":");
        match &end.error {
            Some(e) => {
                let error = serde_json::json!({
                    "code": end.outcome,
                    "message": crate::tools::mask_secrets(e),
                });
                let _ = serde_json::to_writer(&mut *b, &error);
            }
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"fuel_used\":");
        json_u64(b, end.receipt.as_ref().map_or(0, |r| r.fuel_used));
    })
}

async fn send_error(sink: &ChannelSink, info: &SessionInfo, code: ErrorCode, error: String) {
    tracing::debug!(session_id = %info.session_id, code = code.as_str(), %error, "session failed");
    sink.send_event(SessionEvent::Error(SessionErrorPayload {
        session_id: info.session_id.clone(),
        error,
        code: code.as_str().to_string(),
    }))
    .await;
}

/// Reports a runner error (unless it was a cancel) with the right code.
async fn report_failure(
    sink: &ChannelSink,
    info: &SessionInfo,
    err: &RunError,
    failure: ErrorCode,
) {
    if *err == RunError::Cancelled {
        tracing::debug!(session_id = %info.session_id, "session cancelled");
        return;
    }
    if let RunError::ResourceExhausted { budget, .. } = err {
        sink.set_breach(*budget);
    }
    send_error(sink, info, err.code(failure), err.to_string()).await;
}

/// Inspect and diagnose: one run, then the report on `done`; returns the
/// report and the run's receipt.
async fn run_diagnose(
    info: &SessionInfo,
    kind: &SessionType,
    params: &Map<String, Value>,
    runners: &Runners,
    sink: &ChannelSink,
    cancel: &CancellationToken,
) -> (Option<String>, Option<Receipt>) {
    let Some(runner) = runners.diagnose.clone() else {
        // The ack already refused this; kept for callers that skip the ack.
        send_error(
            sink,
            info,
            ErrorCode::DiagnoseFailed,
            proto::AckError::DiagnoseEngineNotAvailable.to_string(),
        )
        .await;
        return (None, None);
    };
    let inspect = *kind == SessionType::Inspect;
    let plugin = match (param_str(params, proto::PARAM_PLUGIN), inspect) {
        (Some(p), _) => p,
        (None, true) => {
            send_error(
                sink,
                info,
                ErrorCode::MissingPlugin,
                proto::PLUGIN_REQUIRED_FOR_INSPECT.to_string(),
            )
            .await;
            return (None, None);
        }
        (None, false) => proto::DEFAULT_DIAGNOSE_PLUGIN.to_string(),
    };
    let req = DiagnoseRequest {
        mode: if inspect { "inspect" } else { "alert" }.to_string(),
        plugin,
        target: param_str(params, proto::PARAM_TARGET)
            .unwrap_or_else(|| proto::DEFAULT_TARGET.to_string()),
        params: params.clone(),
    };
    tracing::debug!(session_id = %info.session_id, session_type = %info.session_type,
        plugin = %req.plugin, target = %req.target, user = %info.user_name, "session started");
    let (result, receipt) = runner
        .run_metered(info, req, Arc::new(sink.clone()), cancel.clone())
        .await;
    match result {
        Ok(report) => (Some(report), receipt),
        Err(e) => {
            report_failure(sink, info, &e, ErrorCode::DiagnoseFailed).await;
            (None, receipt)
        }
    }
}

fn turn_done() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(proto::META_TURN_DONE.to_string(), Value::Bool(true));
    m
}

/// Chat: one conversation, one turn per message, until cancelled, the input
/// channel closes, or the runner breaks a budget. Each turn's receipt is
/// logged as the turn ends; the session's is returned.
async fn run_chat(
    info: &SessionInfo,
    params: &Map<String, Value>,
    runners: &Runners,
    sink: &ChannelSink,
    inputs: mpsc::Receiver<String>,
    cancel: &CancellationToken,
) -> Option<Receipt> {
    let Some(runner) = runners.chat.clone() else {
        send_error(
            sink,
            info,
            ErrorCode::ChatInitFailed,
            proto::AckError::ChatEngineNotAvailable.to_string(),
        )
        .await;
        return None;
    };
    tracing::debug!(session_id = %info.session_id, user = %info.user_name,
        allow_shell = info.allow_shell, "chat started");
    let opts = ChatSessionOpts {
        allow_shell: info.allow_shell,
    };
    let (started, start_receipt) = runner
        .start_metered(info, opts, Arc::new(sink.clone()), cancel.clone())
        .await;
    let mut chat = match started {
        Ok(c) => c,
        Err(e) => {
            report_failure(sink, info, &e, ErrorCode::ChatInitFailed).await;
            return start_receipt;
        }
    };
    converse(info, params, sink, inputs, cancel, chat.as_mut()).await;
    chat.receipts().map(|(_, session)| session)
}

/// The turns of an open chat.
async fn converse(
    info: &SessionInfo,
    params: &Map<String, Value>,
    sink: &ChannelSink,
    mut inputs: mpsc::Receiver<String>,
    cancel: &CancellationToken,
    chat: &mut dyn crate::runner::ChatHandle,
) {
    let mut pending = param_str(params, proto::PARAM_MESSAGE);
    loop {
        let message = match pending.take() {
            Some(m) => m,
            None => tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                m = inputs.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
            },
        };
        if let Some(r) = sink.recorder() {
            r.input(&message);
        }
        let result = chat.handle_message(&message).await;
        if let Some((turn, _)) = chat.receipts() {
            tracing::debug!(session_id = %info.session_id, receipt = %turn.line(), "chat turn ended");
        }
        match result {
            Ok(reply) => {
                sink.send(Output::delta(reply, Stage::Answer, Some(turn_done())))
                    .await
            }
            Err(e @ RunError::ModelUnavailable(_)) => {
                // No rule-based runner behind this one: the turn fails,
                // saying why, and the chat goes on.
                sink.send(Output::delta(
                    e.to_string(),
                    Stage::Error,
                    Some(turn_done()),
                ))
                .await
            }
            Err(RunError::Failed(msg)) | Err(RunError::Host(msg)) => {
                // A failed turn is reported in the conversation; the chat
                // goes on (reference behaviour).
                sink.send(Output::delta(msg, Stage::Error, Some(turn_done())))
                    .await
            }
            Err(RunError::Cancelled) => return,
            Err(e) => {
                // A trap or a budget breach leaves the instance unusable:
                // the conversation ends here.
                report_failure(sink, info, &e, ErrorCode::DiagnoseFailed).await;
                return;
            }
        }
    }
}
