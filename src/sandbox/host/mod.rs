//! Host side of the `catpaw:runner/host` imports.
//!
//! Each capability lives in its own file and owns its per-session state and
//! logic; this file only holds the per-session [`HostContext`] and wires the
//! generated `Host` trait to those files. A new capability is a new file
//! plus one method here.

mod log;
mod shell;
mod stream;
mod tools;

use std::sync::Arc;

use tracing::Instrument;

use super::bindings::host;
use super::budgets::{self, Budgets};
use super::limits::BudgetExceeded;
use super::store::SessionState;
use crate::audit::{Act, AuditLog, Record, Who, event, outcome};
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
}

/// Per-session state of the imports.
pub(crate) struct HostContext {
    /// The session this store serves.
    pub(crate) info: SessionInfo,
    /// Where `emit` sends deltas.
    pub(crate) sink: Arc<dyn StreamSink>,
    /// Shared services.
    pub(crate) services: Arc<HostServices>,
    /// Output budget state.
    pub(crate) stream: stream::StreamState,
    /// Caps and user of this session's granted shell commands.
    pub(crate) shell: ShellLimits,
    /// Tool calls and shell requests made in this run or chat turn.
    calls: u64,
    max_calls: u64,
    /// Guest log budget of this run or chat turn.
    log: log::LogState,
}

impl HostContext {
    /// Context for one session under `limits`.
    pub(crate) fn new(
        info: SessionInfo,
        sink: Arc<dyn StreamSink>,
        services: Arc<HostServices>,
        limits: &Budgets,
    ) -> Self {
        let shell = ShellLimits {
            max_timeout: limits.shell_timeout,
            output_cap: budgets::as_len(limits.shell_output),
            user: services.shell_user.clone(),
        };
        HostContext {
            info,
            sink,
            services,
            stream: stream::StreamState::new(limits.max_output),
            shell,
            calls: 0,
            max_calls: limits.max_host_calls,
            log: log::LogState::new(budgets::as_len(limits.guest_stdio)),
        }
    }

    /// A new chat turn gets the full call budget again (like fuel).
    pub(crate) fn new_turn(&mut self) {
        self.calls = 0;
    }

    /// Ends a run or turn's log budget, reporting lines dropped past it.
    pub(crate) fn end_of_run(&mut self) {
        let dropped = self.log.reset();
        if dropped > 0 {
            tracing::warn!(target: "guest", session_id = %self.info.session_id,
                dropped_lines = dropped, "guest log lines past the cap were dropped");
        }
    }

    /// Counts one tool call or shell request. Past the budget the call is
    /// refused, audited as such, and the session ends with
    /// `resource_exhausted`: a guest looping on cheap host calls would
    /// otherwise fill the audit log and the disk under it.
    fn charge_call(&mut self, kind: &str, name: &str) -> Result<(), BudgetExceeded> {
        self.calls += 1;
        if self.calls <= self.max_calls {
            return Ok(());
        }
        let detail = format!(
            "made more than {} tool calls and shell requests in one {}",
            self.max_calls,
            if self.info.session_type == "chat" {
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

impl host::Host for SessionState {
    async fn session(&mut self) -> wasmtime::Result<host::SessionInfo> {
        let i = &self.host.info;
        Ok(host::SessionInfo {
            session_id: i.session_id.clone(),
            session_type: i.session_type.clone(),
            user_name: i.user_name.clone(),
            allow_shell: i.allow_shell,
        })
    }

    async fn emit(
        &mut self,
        delta: String,
        stage: host::Stage,
        metadata_json: Option<String>,
    ) -> wasmtime::Result<()> {
        let span = self.host.span("emit");
        stream::emit(&mut self.host, delta, stage, metadata_json)
            .instrument(span)
            .await
    }

    async fn list_tools(&mut self) -> wasmtime::Result<Vec<host::ToolInfo>> {
        Ok(tools::list())
    }

    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> wasmtime::Result<Result<String, String>> {
        self.host.charge_call("tool", &name)?;
        let span = self.host.span("call-tool");
        Ok(tools::call(&self.host, name, args_json)
            .instrument(span)
            .await)
    }

    async fn request_shell(
        &mut self,
        command: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<host::ShellOutput, host::ShellError>> {
        self.host.charge_call("shell", &command)?;
        let span = self.host.span("request-shell");
        Ok(shell::request(&self.host, command, timeout_ms)
            .instrument(span)
            .await)
    }

    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        log::log(&mut self.host, level, &message);
        Ok(())
    }
}
