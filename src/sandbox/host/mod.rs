//! Host side of the `catpaw:runner/host` imports.
//!
//! Each capability lives in its own file and owns its state and logic:
//! `stream.rs` (`emit`), `tools.rs`, `shell.rs`, `log.rs`, `llm.rs` (the
//! `llm` interface), and `v0_1.rs` (the 0.1.0 imports, forwarded to these).
//! This file holds
//! what they share: the per-session [`HostContext`] the generated `Host`
//! trait is implemented on, the per-run [`RunState`] inside it, the call
//! budget that tools and shell draw on together, and the audit helpers. A
//! new capability is a new file plus one method in the `Host` impl below.

mod llm;
pub(crate) use llm::{GuestTool, guest_request};
pub(crate) use stream::parse_metadata;
mod log;
mod mcp;
mod shell;
pub(crate) mod stream;
mod tools;
mod v0_1;

#[cfg(test)]
pub(crate) use log::MAX_LINE as MAX_LOG_LINE;

use std::sync::Arc;

use tracing::Instrument;

use super::bindings::{host, llm as llm_wit};
use super::budgets::{self, Budgets};
use super::capabilities::Grant;
use super::limits::BudgetExceeded;
use super::stdio::{CapturedStdio, Printed};
use super::tape;
use crate::audit::{Act, AuditLog, Record, Who, event, outcome};
use crate::recorder::tape::Answer;
use crate::runner::{Budget, SessionInfo, StreamSink};
use crate::shell::{Identity, ShellLimits};

/// Process-wide services the imports use, shared by every session.
#[derive(Debug, Clone, Default)]
pub struct HostServices {
    /// Where tool and shell calls are audited (`None` disables auditing,
    /// which only tests and benchmarks do).
    pub audit: Option<AuditLog>,
    /// Who granted shell commands run as (`[sandbox] shell_user`); `None`:
    /// the agent's own user.
    pub shell_user: Option<Identity>,
    /// The language models of `[ai]` (`None`: the `llm` import answers
    /// `not-configured`).
    pub llm: Option<Arc<crate::ai::Llm>>,
    /// Longest a tool call may take (`[ai] tool_timeout` when `[ai]` is
    /// enabled); `None`: tools run to their end.
    pub tool_timeout: Option<std::time::Duration>,
    /// What the operator allow-listed for the tools (`[tools]`).
    pub tools: Arc<crate::tools::ToolConfig>,
    /// The agent's counters (shell commands run and denied).
    pub telemetry: Option<crate::telemetry::Telemetry>,
    /// The `[ai.mcp]` servers (`None`: MCP is off).
    pub mcp: Option<Arc<crate::mcp_client::McpServers>>,
}

/// Per-session state of the imports: the generated `Host` trait is
/// implemented on it, and the linker reaches it through the store.
pub(crate) struct HostContext {
    /// The session this store serves.
    info: SessionInfo,
    /// Where `emit` sends deltas.
    sink: Arc<dyn StreamSink>,
    /// Shared services.
    services: Arc<HostServices>,
    /// What the runner may reach: its declaration ∩ the operator's
    /// policy; every import asks it before acting.
    grant: Grant,
    /// Output budget of the whole session.
    stream: stream::StreamState,
    /// Caps and user of this session's granted shell commands.
    shell: ShellLimits,
    /// Tool calls plus shell requests allowed per run or chat turn.
    max_calls: u64,
    /// Language-model budgets and the session's token use.
    llm: llm::LlmBudget,
    /// Why the last language-model call of the run that ended last failed,
    /// if it did (a failed AI run then falls back to the rule-based one).
    last_llm_failure: Option<String>,
    /// State of the current run or chat turn.
    run: RunState,
    /// Where each import is recorded or, in replay, answered from.
    pub(crate) tape: super::tape::SessionTape,
}

/// What one diagnose run or chat turn uses up and leaves behind. All of it
/// starts afresh in one call, [`RunState::reset`], when the run ends
/// (fuel, the store's part, is refilled beside it by `store::end_run`).
struct RunState {
    /// Tool calls and shell requests made.
    calls: u64,
    /// What the run called, by kind, for its receipt.
    counts: RunCounts,
    /// Language-model calls made.
    llm_calls: u64,
    /// Language-model tokens used.
    llm_tokens: u64,
    /// Why the last language-model call failed (None after a success).
    llm_failure: Option<String>,
    /// Guest log budget.
    log: log::LogState,
    /// Guest stdout and stderr (the store's WASI streams write here).
    stdio: CapturedStdio,
}

impl RunState {
    fn new(log_cap: usize, stdio_cap: usize) -> Self {
        RunState {
            calls: 0,
            counts: RunCounts::default(),
            llm_calls: 0,
            llm_tokens: 0,
            llm_failure: None,
            log: log::LogState::new(log_cap),
            stdio: CapturedStdio::new(stdio_cap),
        }
    }

    /// Starts the next run: returns what this one printed, how many log
    /// lines it dropped past the cap, and what it called.
    fn reset(&mut self) -> (Printed, u64, RunCounts) {
        self.calls = 0;
        let mut counts = std::mem::take(&mut self.counts);
        counts.llm_calls = std::mem::take(&mut self.llm_calls);
        counts.llm_tokens = std::mem::take(&mut self.llm_tokens);
        let dropped_lines = self.log.reset();
        (self.stdio.take(), dropped_lines, counts)
    }
}

/// Host calls of one run by kind, and the session's output so far: the
/// host's part of a [`Receipt`](crate::runner::Receipt).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunCounts {
    pub(crate) tool_calls: u64,
    pub(crate) shell_requests: u64,
    pub(crate) emits: u64,
    pub(crate) log_lines: u64,
    pub(crate) llm_calls: u64,
    pub(crate) llm_tokens: u64,
    /// Output bytes the session has charged, this run's included.
    pub(crate) output_total: u64,
}

impl HostContext {
    /// Counts a `request-shell` that ran (`true`) or was denied.
    pub(crate) fn count_shell_command(&self, ran: bool) {
        if let Some(t) = &self.services.telemetry {
            t.shell_command(ran);
        }
    }

    /// Context for one session under `limits`; a run or turn may write
    /// `stdio_cap` bytes of log lines and as many of stdout/stderr.
    pub(crate) fn new(
        info: SessionInfo,
        sink: Arc<dyn StreamSink>,
        services: Arc<HostServices>,
        limits: &Budgets,
        grant: Grant,
    ) -> Self {
        let shell = ShellLimits {
            max_timeout: limits.shell_timeout,
            output_cap: budgets::as_len(limits.shell_output),
            user: services.shell_user.clone(),
        };
        let tape = super::tape::SessionTape(sink.tape());
        HostContext {
            tape,
            info,
            sink,
            services,
            grant,
            stream: stream::StreamState::new(limits.max_output),
            shell,
            max_calls: limits.max_host_calls,
            llm: llm::LlmBudget {
                session_limit: limits.llm_tokens,
                run_limit: limits.llm_turn_tokens,
                max_calls: limits.max_llm_calls,
                session_used: 0,
            },
            last_llm_failure: None,
            run: RunState::new(
                budgets::as_len(limits.guest_stdio),
                budgets::as_len(limits.guest_stdio),
            ),
        }
    }

    /// The capture the store's WASI stdout and stderr write into.
    pub(crate) fn stdio(&self) -> CapturedStdio {
        self.run.stdio.clone()
    }

    /// Ends a run or chat turn: the next starts with whole call and log
    /// budgets and an empty capture. What the run left goes to the log in
    /// full (dropped log lines counted, then everything the guest printed);
    /// what it printed is also returned, for the error of a failed run.
    pub(crate) fn end_run(&mut self) -> (Printed, RunCounts) {
        self.last_llm_failure = self.run.llm_failure.take();
        let (printed, dropped_lines, mut counts) = self.run.reset();
        counts.output_total = self.stream.used();
        let sid = &self.info.session_id;
        if dropped_lines > 0 {
            tracing::warn!(target: "guest", session_id = %sid,
                dropped_lines, "guest log lines past the cap were dropped");
        }
        printed.log(sid);
        (printed, counts)
    }

    /// Why the last language-model call of the run that just ended
    /// failed, when it did.
    pub(crate) fn last_llm_failure(&self) -> Option<&str> {
        self.last_llm_failure.as_deref()
    }

    /// Counts a report or chat answer against the session's output budget.
    pub(crate) fn charge_reply(&mut self, bytes: u64, what: &str) -> Result<(), BudgetExceeded> {
        self.stream.charge(bytes, what)
    }

    /// Counts one tool call or shell request. Past the budget the call is
    /// refused, audited as such, and the session ends with
    /// `resource_exhausted`: a guest looping on cheap host calls would
    /// otherwise fill the audit log and the disk under it.
    fn charge_call(&mut self, kind: &str, name: &str) -> Result<(), BudgetExceeded> {
        self.run.calls += 1;
        if kind == crate::audit::kind::SHELL {
            self.run.counts.shell_requests += 1;
        } else {
            self.run.counts.tool_calls += 1;
        }
        if self.run.calls <= self.max_calls {
            return Ok(());
        }
        let detail = format!(
            "made more than {} tool calls and shell requests in one {}",
            self.max_calls,
            if self.info.kind() == crate::proto::SessionType::Chat {
                "turn"
            } else {
                "run"
            }
        );
        self.note(kind, name, "", outcome::REFUSED, &detail);
        tracing::warn!(session_id = %self.info.session_id, %detail, "tool call budget exhausted");
        Err(BudgetExceeded {
            budget: Budget::Calls,
            detail,
        })
    }

    /// Span every host call of this session runs in.
    fn span(&self, call: &'static str) -> tracing::Span {
        tracing::debug_span!("host", call, session_id = %self.info.session_id)
    }

    /// Who this session's audit records name.
    fn who(&self) -> Who {
        self.info.who()
    }

    /// Writes the `started` record of an act (synced when `sync`) and
    /// returns its guard; `Ok(None)` when auditing is off (tests and
    /// benchmarks only). Err: the record could not be written, so the act
    /// must not happen (fail closed); the text says why.
    fn begin(&self, kind: &str, name: &str, args: &str, sync: bool) -> Result<Option<Act>, String> {
        let Some(log) = &self.services.audit else {
            return Ok(None);
        };
        log.begin(&self.who(), kind, name, args, sync)
            .map(Some)
            .map_err(|e| {
                tracing::error!(session_id = %self.info.session_id, %kind, error = %e,
                    path = %log.path().display(), "audit write failed; refusing the call");
                format!("audit unavailable: {e}")
            })
    }

    /// Records an act that never started (denied, refused) in one line.
    fn note(&self, kind: &str, name: &str, args: &str, outcome: &str, detail: &str) {
        if let Some(log) = &self.services.audit {
            log.note(
                Record::new(&self.who(), kind, event::OUTCOME, name, args)
                    .with_outcome(outcome, detail),
            );
        }
    }
}

impl host::Host for HostContext {
    async fn session(&mut self) -> wasmtime::Result<host::SessionInfo> {
        let i = &self.info;
        let info = host::SessionInfo {
            session_id: i.session_id.clone(),
            session_type: i.session_type.clone(),
            user_name: i.user_name.clone(),
            allow_shell: i.allow_shell,
        };
        if let Some(r) = self.tape.recording() {
            let ret = serde_json::json!({"session-id": info.session_id,
                "session-type": info.session_type, "user-name": info.user_name,
                "allow-shell": info.allow_shell});
            tape::write_call(r, "host.session", false, &serde_json::json!({}), Ok(ret));
        }
        Ok(info)
    }

    async fn emit(
        &mut self,
        delta: String,
        stage: host::Stage,
        metadata_json: Option<String>,
    ) -> wasmtime::Result<()> {
        self.run.counts.emits += 1;
        let span = self.span("emit");
        stream::emit(self, delta, stage, metadata_json)
            .instrument(span)
            .await
    }

    async fn list_tools(&mut self) -> wasmtime::Result<Vec<host::ToolInfo>> {
        const NAME: &str = "host.list-tools";
        match self.tape.replayed(NAME, || serde_json::json!({})) {
            Some(Answer::Ret(v)) => return Ok(tape::tools_of(&v)),
            Some(Answer::Trap { detail, budget }) => return Err(tape::trap_error(detail, budget)),
            Some(_) => return Ok(Vec::new()),
            None => {}
        }
        let span = self.span("list-tools");
        let tools = tools::list(self).instrument(span).await;
        self.tape
            .record(NAME, || serde_json::json!({}), Ok(tape::tools_json(&tools)));
        Ok(tools)
    }

    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> wasmtime::Result<Result<String, String>> {
        const NAME: &str = "host.call-tool";
        let args = || serde_json::json!({"name": name, "args-json": args_json});
        if let Err(e) = self.charge_call("tool", &name) {
            self.tape.trapped(NAME, &e);
            return Err(e.into());
        }
        match self.tape.replayed(NAME, args) {
            Some(Answer::Ret(v)) => return Ok(tape::string_result(&v)),
            Some(Answer::Trap { detail, budget }) => return Err(tape::trap_error(detail, budget)),
            Some(Answer::Missing(m) | Answer::Omitted(m)) => return Ok(Err(m)),
            None => {}
        }
        let span = self.span("call-tool");
        let r = tools::call(self, name.clone(), args_json.clone())
            .instrument(span)
            .await;
        let ret = tape::result_json(&r, |o| o.clone().into(), |e| e.clone().into());
        self.tape.record(NAME, args, Ok(ret));
        Ok(r)
    }

    async fn request_shell(
        &mut self,
        command: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<host::ShellOutput, host::ShellError>> {
        const NAME: &str = "host.request-shell";
        let args = || serde_json::json!({"command": command, "timeout-ms": timeout_ms});
        if let Err(e) = self.charge_call("shell", &command) {
            self.tape.trapped(NAME, &e);
            return Err(e.into());
        }
        match self.tape.replayed(NAME, args) {
            Some(Answer::Ret(v)) => return Ok(tape::shell_of(&v)),
            Some(Answer::Trap { detail, budget }) => return Err(tape::trap_error(detail, budget)),
            Some(Answer::Missing(m) | Answer::Omitted(m)) => {
                return Ok(Err(host::ShellError::Failed(m)));
            }
            None => {}
        }
        let span = self.span("request-shell");
        let r = shell::request(self, command.clone(), timeout_ms)
            .instrument(span)
            .await;
        self.tape.record(NAME, args, Ok(tape::shell_json(&r)));
        Ok(r)
    }

    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        self.run.counts.log_lines += 1;
        if let Some(r) = self.tape.recording() {
            let args = serde_json::json!({"level": log::level_name(level),
                "message": crate::tools::mask_secrets(&message)});
            tape::write_call(r, "host.log", false, &args, Ok(serde_json::Value::Null));
        }
        log::log(self, level, &message);
        Ok(())
    }
}

impl llm_wit::Host for HostContext {
    async fn settings(&mut self) -> wasmtime::Result<llm_wit::AiSettings> {
        const NAME: &str = "llm.settings";
        match self.tape.replayed(NAME, || serde_json::json!({})) {
            Some(Answer::Ret(v)) => return Ok(tape::settings_of(&v)),
            Some(Answer::Trap { detail, budget }) => return Err(tape::trap_error(detail, budget)),
            Some(_) => return Ok(tape::settings_of(&serde_json::Value::Null)),
            None => {}
        }
        let s = llm::settings(self);
        self.tape
            .record(NAME, || serde_json::json!({}), Ok(tape::settings_json(&s)));
        Ok(s)
    }

    async fn complete(
        &mut self,
        messages: Vec<llm_wit::Message>,
        tools: Vec<host::ToolInfo>,
        stream_as: Option<host::Stage>,
    ) -> wasmtime::Result<Result<llm_wit::Reply, llm_wit::LlmError>> {
        let span = self.span("llm-complete");
        llm::complete(self, messages, tools, stream_as)
            .instrument(span)
            .await
    }
}
