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
use super::store::SessionState;
use crate::audit::{AuditLog, AuditRecord};
use crate::runner::{SessionInfo, StreamSink};
use crate::shell::ShellLimits;

/// Process-wide services the imports use, shared by every session.
#[derive(Debug, Clone, Default)]
pub struct HostServices {
    /// Where tool and shell calls are audited (`None` disables auditing,
    /// which only tests and benchmarks do).
    pub audit: Option<AuditLog>,
    /// Caps for granted shell commands.
    pub shell: ShellLimits,
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
}

impl HostContext {
    /// Context for one session; `max_output` is its output budget in bytes.
    pub(crate) fn new(
        info: SessionInfo,
        sink: Arc<dyn StreamSink>,
        services: Arc<HostServices>,
        max_output: u64,
    ) -> Self {
        HostContext {
            info,
            sink,
            services,
            stream: stream::StreamState::new(max_output),
        }
    }

    /// Span every host call of this session runs in.
    fn span(&self, call: &'static str) -> tracing::Span {
        tracing::debug_span!("host", call, session_id = %self.info.session_id)
    }

    /// Appends one audit record for this session.
    fn audit(
        &self,
        kind: &str,
        name: &str,
        args: &str,
        started: std::time::Instant,
        outcome: &str,
        detail: &str,
    ) {
        let Some(log) = &self.services.audit else {
            return;
        };
        log.record(&AuditRecord {
            time: AuditRecord::now(),
            session_id: self.info.session_id.clone(),
            session_type: self.info.session_type.clone(),
            user: self.info.user_name.clone(),
            kind: kind.to_string(),
            name: crate::tools::mask_secrets(name),
            args: crate::tools::mask_secrets(args),
            duration_ms: AuditRecord::millis(started.elapsed()),
            outcome: outcome.to_string(),
            detail: crate::tools::mask_secrets(detail),
        });
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
        let span = self.host.span("request-shell");
        Ok(shell::request(&self.host, command, timeout_ms)
            .instrument(span)
            .await)
    }

    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        log::log(&self.host, level, &message);
        Ok(())
    }
}
