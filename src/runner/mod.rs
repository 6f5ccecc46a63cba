//! The runner roles a session is served by, independent of how they run.
//!
//! These traits mirror the reference agent's roles: a [`DiagnoseRunner`]
//! serves one `inspect` or `diagnose` session and returns a report, a
//! [`ChatRunner`] opens a [`ChatHandle`] that answers one turn at a time.
//! Progress streams through a [`StreamSink`] as it happens. The session
//! layer only sees these traits; the sandbox implements them with wasm
//! components, and benchmarks implement them natively as a baseline.
//!
//! `signature.rs` checks who signed a runner file, `sign.rs` makes keys
//! and signatures (`runner keygen`, `runner sign`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::proto;

mod description;
mod fallback;
mod receipt;
pub mod sign;
pub mod signature;

pub use description::{Description, PluginInfo};
pub use fallback::WithFallback;
pub use receipt::Receipt;
pub use signature::{Provenance, Refusal, RunnerTrust, Signer};

/// What a streamed delta is about (`session_output.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The runner explains what it is about to do.
    Thinking,
    /// The runner calls a tool.
    ToolCall,
    /// What a tool returned, summarised.
    ToolResult,
    /// Part of the answer.
    Answer,
    /// Something went wrong (a failed chat turn).
    Error,
    /// No stage: the final `done` message.
    Final,
}

impl Stage {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Thinking => proto::STAGE_THINKING,
            Stage::ToolCall => proto::STAGE_TOOL_CALL,
            Stage::ToolResult => proto::STAGE_TOOL_RESULT,
            Stage::Answer => proto::STAGE_ANSWER,
            Stage::Error => proto::STAGE_ERROR,
            Stage::Final => "",
        }
    }
}

/// One piece of session output, as the server receives it in
/// `session_output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Text to append.
    pub delta: String,
    /// What the text is about.
    pub stage: Stage,
    /// True only on the last message of a session.
    pub done: bool,
    /// The final report, on the `done` message of inspect/diagnose.
    pub report: Option<String>,
    /// Extra structured data (e.g. `{"turn_done": true}`).
    pub metadata: Option<Map<String, Value>>,
}

impl Output {
    /// A streaming delta (not done).
    pub fn delta(
        delta: impl Into<String>,
        stage: Stage,
        metadata: Option<Map<String, Value>>,
    ) -> Self {
        Output {
            delta: delta.into(),
            stage,
            done: false,
            report: None,
            metadata,
        }
    }
}

/// Where a session's output goes: the server connection, the terminal, a
/// test's buffer. `send` may wait (backpressure) but must not fail: a
/// consumer that went away simply drops what it gets.
#[async_trait]
pub trait StreamSink: Send + Sync {
    /// Delivers one piece of output, in order.
    async fn send(&self, out: Output);

    /// Where the session's imports are recorded or replayed from
    /// (`None`: neither, as for a bench's or `describe`'s sink).
    fn tape(&self) -> Option<crate::recorder::Tape> {
        None
    }
}

/// Who and what a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Server-assigned id.
    pub session_id: String,
    /// `inspect`, `diagnose` or `chat`.
    pub session_type: String,
    /// Operator who started it.
    pub user_name: String,
    /// Whether the shell import may ever be granted.
    pub allow_shell: bool,
    /// The signing key that vouched for the session (PROTOCOL §9), if any.
    pub key_id: Option<String>,
}

impl SessionInfo {
    /// The session's type.
    pub fn kind(&self) -> proto::SessionType {
        proto::SessionType::parse(&self.session_type)
    }

    /// Who the session's audit records name.
    pub(crate) fn who(&self) -> crate::audit::Who {
        crate::audit::Who {
            session_id: self.session_id.clone(),
            session_type: self.session_type.clone(),
            user: self.user_name.clone(),
            key_id: self.key_id.clone(),
        }
    }
}

/// One inspect or diagnose request.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnoseRequest {
    /// `inspect` or `alert`.
    pub mode: String,
    /// Plugin area (`cpu`, `mem`, …).
    pub plugin: String,
    /// Target host, `localhost` by default.
    pub target: String,
    /// The session's full `params` object.
    pub params: Map<String, Value>,
}

/// Options for a chat session (the reference agent's `ChatSessionOpts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatSessionOpts {
    /// Whether the chat may run shell commands.
    pub allow_shell: bool,
}

/// The budget a session ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Fuel (instructions) per run or chat turn.
    Fuel,
    /// Linear memory, tables or instances.
    Memory,
    /// Wall-clock time per run or chat turn.
    Time,
    /// Bytes of streamed output.
    Output,
    /// Tool calls and shell requests per run or chat turn.
    Calls,
    /// Language-model tokens per session or per run (chat turn).
    LlmTokens,
    /// Language-model calls per run or chat turn.
    LlmCalls,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Budget::Fuel => "fuel",
            Budget::Memory => "memory",
            Budget::Time => "time",
            Budget::Output => "output",
            Budget::Calls => "tool call",
            Budget::LlmTokens => "llm tokens",
            Budget::LlmCalls => "llm calls",
        })
    }
}

/// Why a run or a turn produced no result. Blame is part of the type:
/// the first four are the guest's doing, `Host` is ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The runner returned an error of its own.
    #[error("{0}")]
    Failed(String),
    /// The runner exceeded a budget.
    #[error("{budget} budget exhausted: {detail}")]
    ResourceExhausted {
        /// Which budget.
        budget: Budget,
        /// Figures behind it, e.g. "used all 1000000000 fuel units".
        detail: String,
    },
    /// The runner trapped (panic, stack overflow, bad memory access…).
    #[error("runner trapped: {0}")]
    Trapped(String),
    /// The session was cancelled while the runner ran.
    #[error("session cancelled")]
    Cancelled,
    /// The host could not run the runner (instantiation failed, pool full…).
    #[error("host error: {0}")]
    Host(String),
    /// The runner gave up because its language model could not be
    /// reached (the text says why); a rule-based runner may take over.
    #[error("the language model is unavailable: {0}")]
    ModelUnavailable(String),
    /// A chat's saved conversation could not be restored into a fresh
    /// instance (the runner's reason): the conversation is gone, so the
    /// session ends.
    #[error("the conversation could not be restored: {0}")]
    Lost(String),
}

impl RunError {
    /// The `session_error.code` for this error, given the code used for a
    /// plain failure of this kind of session (`diagnose_failed` or
    /// `chat_init_failed`).
    pub fn code(&self, failure_code: proto::ErrorCode) -> proto::ErrorCode {
        match self {
            RunError::ResourceExhausted { .. } => proto::ErrorCode::ResourceExhausted,
            RunError::Trapped(_) => proto::ErrorCode::RunnerTrapped,
            RunError::Failed(_)
            | RunError::Cancelled
            | RunError::Host(_)
            | RunError::ModelUnavailable(_)
            | RunError::Lost(_) => failure_code,
        }
    }
}

/// Serves `inspect` and `diagnose` sessions.
#[async_trait]
pub trait DiagnoseRunner: Send + Sync {
    /// Runs one session to its report. Progress goes to `sink` as it
    /// happens; `cancel` stops the run at once with [`RunError::Cancelled`].
    async fn run(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<String, RunError>;

    /// [`run`](Self::run), with the session's receipt when the runner
    /// keeps one (the sandbox's do; others may not).
    async fn run_metered(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> (Result<String, RunError>, Option<Receipt>) {
        (self.run(info, req, sink, cancel).await, None)
    }
}

/// Serves `chat` sessions.
#[async_trait]
pub trait ChatRunner: Send + Sync {
    /// Opens a conversation for one session.
    async fn start(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<Box<dyn ChatHandle>, RunError>;

    /// [`start`](Self::start); when the start fails, the receipt of that
    /// failed start if the runner keeps one (an open chat's receipts come
    /// from [`ChatHandle::receipts`]).
    async fn start_metered(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> (Result<Box<dyn ChatHandle>, RunError>, Option<Receipt>) {
        (self.start(info, opts, sink, cancel).await, None)
    }
}

/// One open conversation; it keeps its state between turns.
#[async_trait]
pub trait ChatHandle: Send {
    /// Answers one user turn.
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError>;

    /// The receipt of the last run (turn, or the start before the first
    /// turn) and of the whole session so far, when the runner keeps them.
    fn receipts(&self) -> Option<(Receipt, Receipt)> {
        None
    }
}
