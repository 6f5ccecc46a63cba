//! The 0.1.0 `host` imports, for runners built before `llm`: each call is
//! converted and handed to the 0.2.0 implementation, so both versions
//! share one behaviour (budgets, audit, masking) and cannot drift apart.

use super::HostContext;
use crate::sandbox::bindings::host;
use crate::sandbox::bindings::v0_1::host as old;

fn stage(s: old::Stage) -> host::Stage {
    match s {
        old::Stage::Thinking => host::Stage::Thinking,
        old::Stage::ToolCall => host::Stage::ToolCall,
        old::Stage::ToolResult => host::Stage::ToolResult,
        old::Stage::Answer => host::Stage::Answer,
        old::Stage::Error => host::Stage::Error,
    }
}

fn level(l: old::Level) -> host::Level {
    match l {
        old::Level::Trace => host::Level::Trace,
        old::Level::Debug => host::Level::Debug,
        old::Level::Info => host::Level::Info,
        old::Level::Warn => host::Level::Warn,
        old::Level::Error => host::Level::Error,
    }
}

impl old::Host for HostContext {
    async fn session(&mut self) -> wasmtime::Result<old::SessionInfo> {
        let i = host::Host::session(self).await?;
        Ok(old::SessionInfo {
            session_id: i.session_id,
            session_type: i.session_type,
            user_name: i.user_name,
            allow_shell: i.allow_shell,
        })
    }

    async fn emit(
        &mut self,
        delta: String,
        s: old::Stage,
        metadata_json: Option<String>,
    ) -> wasmtime::Result<()> {
        host::Host::emit(self, delta, stage(s), metadata_json).await
    }

    async fn list_tools(&mut self) -> wasmtime::Result<Vec<old::ToolInfo>> {
        Ok(host::Host::list_tools(self)
            .await?
            .into_iter()
            .map(|t| old::ToolInfo {
                name: t.name,
                description: t.description,
                params_schema: t.params_schema,
            })
            .collect())
    }

    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> wasmtime::Result<Result<String, String>> {
        host::Host::call_tool(self, name, args_json).await
    }

    async fn request_shell(
        &mut self,
        command: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<old::ShellOutput, old::ShellError>> {
        Ok(
            match host::Host::request_shell(self, command, timeout_ms).await? {
                Ok(o) => Ok(old::ShellOutput {
                    exit_code: o.exit_code,
                    stdout: o.stdout,
                    stderr: o.stderr,
                    truncated: o.truncated,
                }),
                Err(host::ShellError::Denied(m)) => Err(old::ShellError::Denied(m)),
                Err(host::ShellError::Timeout) => Err(old::ShellError::Timeout),
                Err(host::ShellError::Failed(m)) => Err(old::ShellError::Failed(m)),
            },
        )
    }

    async fn log(&mut self, l: old::Level, message: String) -> wasmtime::Result<()> {
        host::Host::log(self, level(l), message).await
    }
}
