//! The runner roles a session is served by, independent of how they run.
//!
//! These traits mirror the reference agent's roles: a [`DiagnoseRunner`]
//! serves one `inspect` or `diagnose` session and returns a report, a
//! [`ChatRunner`] opens a [`ChatHandle`] that answers one turn at a time.
//! Progress streams through a [`StreamSink`] as it happens. The session
//! layer only sees these traits; the sandbox implements them with wasm
//! components, and benchmarks implement them natively as a baseline.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::proto;

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
            | RunError::ModelUnavailable(_) => failure_code,
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

/// What a runner says about itself through the WIT `describe` export, read
/// once when it is loaded; cut and checked by the host (see
/// [`Description::bounded`]), since nothing a guest sends is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Description {
    /// Short name, e.g. `catpaw-diagnose`.
    pub name: String,
    /// The runner's own version.
    pub version: String,
    /// The inspect plugins it offers.
    pub plugins: Vec<PluginInfo>,
    /// Host capabilities it says it uses (`tools`, `shell`, …).
    pub capabilities: Vec<String>,
}

/// One inspect plugin a runner offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The `params.plugin` value that selects it.
    pub name: String,
    /// One line saying what it looks at.
    pub description: String,
}

impl Description {
    /// Most plugins kept from one runner.
    pub const MAX_PLUGINS: usize = 64;
    /// Longest name, version, plugin name or capability kept, in bytes.
    pub const MAX_NAME: usize = 64;
    /// Longest plugin description kept, in bytes.
    pub const MAX_LINE: usize = 200;

    /// The description with every field cut to its cap and freed of
    /// control characters, and plugins whose name is not a plain word
    /// (`[A-Za-z0-9_.-]+`) or repeats an earlier one dropped. Returns what
    /// was dropped beside it, for the load log.
    pub fn bounded(self) -> (Description, Vec<String>) {
        let clean = |s: &str, max: usize| -> String {
            let s: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            crate::util::truncate_utf8(s.trim(), max).to_string()
        };
        let mut dropped = Vec::new();
        let mut plugins: Vec<PluginInfo> = Vec::new();
        for p in self.plugins {
            let plain = !p.name.is_empty()
                && p.name.len() <= Self::MAX_NAME
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !plain {
                dropped.push(format!(
                    "plugin name {:?} is not a plain word",
                    clean(&p.name, Self::MAX_NAME)
                ));
            } else if plugins.iter().any(|q| q.name == p.name) {
                dropped.push(format!("plugin {} is listed twice", p.name));
            } else if plugins.len() == Self::MAX_PLUGINS {
                dropped.push(format!(
                    "plugin {}: more than {}",
                    p.name,
                    Self::MAX_PLUGINS
                ));
            } else {
                plugins.push(PluginInfo {
                    description: clean(&p.description, Self::MAX_LINE),
                    name: p.name,
                });
            }
        }
        let capabilities = self
            .capabilities
            .iter()
            .take(Self::MAX_PLUGINS)
            .map(|c| clean(c, Self::MAX_NAME))
            .filter(|c| !c.is_empty())
            .collect();
        (
            Description {
                name: clean(&self.name, Self::MAX_NAME),
                version: clean(&self.version, Self::MAX_NAME),
                plugins,
                capabilities,
            },
            dropped,
        )
    }
}

/// What a run, a chat turn or a whole session used, beside the budgets it
/// had: the figures an author sizes limits by. The sandbox fills a run's
/// in from its store when the run ends (the limits come from
/// `Budgets::receipt`); a session's adds its runs up (totals, and the
/// largest single run where the budget is per run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Runs counted: 1 for a run or turn; a chat session counts its
    /// start and every turn.
    pub runs: u64,
    /// Fuel used, all runs together.
    pub fuel_used: u64,
    /// Fuel used by the hungriest single run (the budget is per run).
    pub fuel_max_run: u64,
    /// Fuel each run had.
    pub fuel_limit: u64,
    /// Largest total linear memory the instance reached, in bytes.
    pub peak_memory: u64,
    /// The memory cap, in bytes.
    pub memory_limit: u64,
    /// Wall time of all runs together, in milliseconds.
    pub wall_ms: u64,
    /// Wall time of the longest single run, in milliseconds.
    pub wall_max_run_ms: u64,
    /// Wall-clock limit of one run, in milliseconds.
    pub timeout_ms: u64,
    /// `call-tool` calls.
    pub tool_calls: u64,
    /// `request-shell` requests, granted or not.
    pub shell_requests: u64,
    /// Tool calls plus shell requests of the busiest single run.
    pub host_calls_max_run: u64,
    /// Tool calls plus shell requests one run may make.
    pub host_calls_limit: u64,
    /// `emit` calls.
    pub emits: u64,
    /// `log` calls (kept or dropped past the cap).
    pub log_lines: u64,
    /// Bytes of output charged (deltas, report, answers), all runs.
    pub output_bytes: u64,
    /// The session's output budget, in bytes.
    pub output_limit: u64,
}

impl Receipt {
    /// Adds one run's receipt to this (session) receipt.
    pub fn add(&mut self, run: &Receipt) {
        self.runs += run.runs;
        self.fuel_used = self.fuel_used.saturating_add(run.fuel_used);
        self.fuel_max_run = self.fuel_max_run.max(run.fuel_max_run);
        self.peak_memory = self.peak_memory.max(run.peak_memory);
        self.wall_ms = self.wall_ms.saturating_add(run.wall_ms);
        self.wall_max_run_ms = self.wall_max_run_ms.max(run.wall_max_run_ms);
        self.tool_calls += run.tool_calls;
        self.shell_requests += run.shell_requests;
        self.host_calls_max_run = self.host_calls_max_run.max(run.host_calls_max_run);
        self.emits += run.emits;
        self.log_lines += run.log_lines;
        self.output_bytes = self.output_bytes.saturating_add(run.output_bytes);
    }

    /// One line for a terminal or a log: each figure beside its budget,
    /// with the share of the per-run budgets the hungriest run used.
    pub fn line(&self) -> String {
        let pct = |used: u64, limit: u64| {
            if limit == 0 {
                0.0
            } else {
                used as f64 * 100.0 / limit as f64
            }
        };
        format!(
            "{} run(s): fuel {} (max run {:.1}% of {}), memory peak {} of {} ({:.0}%), \
             time {} ms (max run {} ms of {} ms), host calls {} tool + {} shell \
             (max run {} of {}), {} emits, {} log lines, output {} of {} bytes",
            self.runs,
            self.fuel_used,
            pct(self.fuel_max_run, self.fuel_limit),
            self.fuel_limit,
            self.peak_memory,
            self.memory_limit,
            pct(self.peak_memory, self.memory_limit),
            self.wall_ms,
            self.wall_max_run_ms,
            self.timeout_ms,
            self.tool_calls,
            self.shell_requests,
            self.host_calls_max_run,
            self.host_calls_limit,
            self.emits,
            self.log_lines,
            self.output_bytes,
            self.output_limit,
        )
    }
}

/// A runner backed by a language model, with a rule-based runner behind
/// it: when the model cannot be reached ([`RunError::ModelUnavailable`]),
/// the session says so in its stream and the fallback serves it (a chat
/// tries the model again on its next turn).
pub struct WithFallback<R: ?Sized> {
    /// The model-backed runner.
    pub primary: Arc<R>,
    /// The rule-based runner.
    pub fallback: Arc<R>,
}

/// What the stream says when the fallback takes over.
fn fallback_notice(why: &str) -> Output {
    Output::delta(
        format!(
            "The language model could not be reached ({why}). Falling back to the built-in \
             rule-based runner for this answer."
        ),
        Stage::Thinking,
        None,
    )
}

#[async_trait]
impl DiagnoseRunner for WithFallback<dyn DiagnoseRunner> {
    async fn run(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<String, RunError> {
        let first = self
            .primary
            .run(info, req.clone(), sink.clone(), cancel.clone())
            .await;
        match first {
            Err(RunError::ModelUnavailable(why)) => {
                sink.send(fallback_notice(&why)).await;
                self.fallback.run(info, req, sink, cancel).await
            }
            other => other,
        }
    }
}

#[async_trait]
impl ChatRunner for WithFallback<dyn ChatRunner> {
    async fn start(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<Box<dyn ChatHandle>, RunError> {
        let primary = self
            .primary
            .start(info, opts, sink.clone(), cancel.clone())
            .await?;
        Ok(Box::new(FallbackChat {
            primary,
            fallback: None,
            runner: self.fallback.clone(),
            info: info.clone(),
            opts,
            sink,
            cancel,
        }))
    }
}

/// A conversation with the model, and the rule-based one started the
/// first time the model is out of reach.
struct FallbackChat {
    primary: Box<dyn ChatHandle>,
    fallback: Option<Box<dyn ChatHandle>>,
    runner: Arc<dyn ChatRunner>,
    info: SessionInfo,
    opts: ChatSessionOpts,
    sink: Arc<dyn StreamSink>,
    cancel: CancellationToken,
}

#[async_trait]
impl ChatHandle for FallbackChat {
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError> {
        let why = match self.primary.handle_message(input).await {
            Err(RunError::ModelUnavailable(why)) => why,
            other => return other,
        };
        self.sink.send(fallback_notice(&why)).await;
        if self.fallback.is_none() {
            let handle = self
                .runner
                .start(
                    &self.info,
                    self.opts,
                    self.sink.clone(),
                    self.cancel.clone(),
                )
                .await?;
            self.fallback = Some(handle);
        }
        match &mut self.fallback {
            Some(f) => f.handle_message(input).await,
            None => Err(RunError::Host("the fallback chat did not start".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_bounded_and_bad_plugin_names_dropped() {
        let p = |name: &str, description: &str| PluginInfo {
            name: name.into(),
            description: description.into(),
        };
        let raw = Description {
            name: "x\u{1b}[31m".repeat(40),
            version: "1.0".into(),
            plugins: vec![
                p("cpu", "CPU\nand load"),
                p("cpu", "again"),
                p("has space", "no"),
                p("", "empty"),
                p("disk", &"d".repeat(500)),
            ],
            capabilities: vec!["tools".into(), " ".into()],
        };
        let (d, dropped) = raw.bounded();
        assert!(d.name.len() <= Description::MAX_NAME && !d.name.contains('\u{1b}'));
        let names: Vec<&str> = d.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cpu", "disk"]);
        assert_eq!(d.plugins[0].description, "CPU and load");
        assert_eq!(d.plugins[1].description.len(), Description::MAX_LINE);
        assert_eq!(d.capabilities, ["tools"]);
        assert_eq!(dropped.len(), 3, "{dropped:?}");
    }
}
