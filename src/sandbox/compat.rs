//! Serving components of both WIT versions through one code path.
//!
//! `catpaw:runner@0.1.0` and `@0.2.0` have the same `host`, `diagnose` and
//! `chat` items under different versioned names (0.x minors are not
//! semver-compatible, so the linker cannot match one to the other). The
//! 0.1.0 `host` imports are implemented here by handing each call to the
//! 0.2.0 implementation, and the role wrappers below hide which version an
//! instance was built against from `run.rs`.

use wasmtime::Store;
use wasmtime::component::{InstancePre, ResourceAny};

use super::bindings::chat_world::{ChatRunner as ChatWorld, ChatRunnerPre};
use super::bindings::diagnose_world::exports::catpaw::runner::diagnose::Request;
use super::bindings::diagnose_world::{DiagnoseRunner as DiagnoseWorld, DiagnoseRunnerPre};
use super::bindings::v1;
use super::bindings::{host, v1::host as old};
use super::host::HostContext;
use super::store::SessionState;
use crate::runner::{Description, PluginInfo};

/// Turns a generated `runner-info` (each world has its own type) into a
/// [`Description`].
macro_rules! description {
    ($info:expr) => {{
        let i = $info;
        Description {
            name: i.name,
            version: i.version,
            plugins: i
                .plugins
                .into_iter()
                .map(|p| PluginInfo {
                    name: p.name,
                    description: p.description,
                })
                .collect(),
            capabilities: i.capabilities,
        }
    }};
}

/// The WIT package version a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitVersion {
    /// `catpaw:runner@0.1.0`: no `describe`.
    V0_1,
    /// `catpaw:runner@0.2.0`.
    V0_2,
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WitVersion::V0_1 => "catpaw:runner@0.1.0",
            WitVersion::V0_2 => "catpaw:runner@0.2.0",
        })
    }
}

/// The `diagnose` export, pre-linked, in either version.
#[derive(Clone)]
pub(crate) enum DiagnosePre {
    V2(DiagnoseRunnerPre<SessionState>),
    V1(v1::diagnose_world::DiagnoseRunnerPre<SessionState>),
}

/// The `chat` export, pre-linked, in either version.
#[derive(Clone)]
pub(crate) enum ChatPre {
    V2(ChatRunnerPre<SessionState>),
    V1(v1::chat_world::ChatRunnerPre<SessionState>),
}

/// What a pre-linked component exports, by role, and its version.
pub(crate) struct Exports {
    pub(crate) version: WitVersion,
    pub(crate) diagnose: Option<DiagnosePre>,
    pub(crate) chat: Option<ChatPre>,
}

/// Finds the roles `pre` serves. A component exporting items of 0.2.0 is
/// taken as 0.2.0; otherwise as 0.1.0 when it exports any of those.
pub(crate) fn exports(pre: &InstancePre<SessionState>) -> Exports {
    let diagnose = DiagnoseRunnerPre::new(pre.clone())
        .ok()
        .map(DiagnosePre::V2);
    let chat = ChatRunnerPre::new(pre.clone()).ok().map(ChatPre::V2);
    if diagnose.is_some() || chat.is_some() {
        return Exports {
            version: WitVersion::V0_2,
            diagnose,
            chat,
        };
    }
    Exports {
        version: WitVersion::V0_1,
        diagnose: v1::diagnose_world::DiagnoseRunnerPre::new(pre.clone())
            .ok()
            .map(DiagnosePre::V1),
        chat: v1::chat_world::ChatRunnerPre::new(pre.clone())
            .ok()
            .map(ChatPre::V1),
    }
}

/// A diagnose instance of either version.
pub(crate) enum DiagnoseInstance {
    V2(DiagnoseWorld),
    V1(v1::diagnose_world::DiagnoseRunner),
}

impl DiagnosePre {
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<SessionState>,
    ) -> wasmtime::Result<DiagnoseInstance> {
        Ok(match self {
            DiagnosePre::V2(p) => DiagnoseInstance::V2(p.instantiate_async(store).await?),
            DiagnosePre::V1(p) => DiagnoseInstance::V1(p.instantiate_async(store).await?),
        })
    }
}

impl DiagnoseInstance {
    pub(crate) async fn run(
        &self,
        store: &mut Store<SessionState>,
        req: &Request,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            DiagnoseInstance::V2(i) => i.catpaw_runner_diagnose().call_run(store, req).await,
            DiagnoseInstance::V1(i) => {
                use v1::diagnose_world::exports::catpaw::runner::diagnose::Request as Old;
                let req = Old {
                    mode: req.mode.clone(),
                    plugin: req.plugin.clone(),
                    target: req.target.clone(),
                    params_json: req.params_json.clone(),
                };
                i.catpaw_runner_diagnose().call_run(store, &req).await
            }
        }
    }

    /// What `describe` says; `None` for a 0.1.0 component.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<SessionState>,
    ) -> Option<wasmtime::Result<Description>> {
        match self {
            DiagnoseInstance::V2(i) => Some(
                i.catpaw_runner_describe()
                    .call_describe(store)
                    .await
                    .map(|d| description!(d)),
            ),
            DiagnoseInstance::V1(_) => None,
        }
    }
}

/// A chat instance of either version.
pub(crate) enum ChatInstance {
    V2(ChatWorld),
    V1(v1::chat_world::ChatRunner),
}

impl ChatPre {
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<SessionState>,
    ) -> wasmtime::Result<ChatInstance> {
        Ok(match self {
            ChatPre::V2(p) => ChatInstance::V2(p.instantiate_async(store).await?),
            ChatPre::V1(p) => ChatInstance::V1(p.instantiate_async(store).await?),
        })
    }
}

impl ChatInstance {
    pub(crate) async fn create(
        &self,
        store: &mut Store<SessionState>,
        allow_shell: bool,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        match self {
            ChatInstance::V2(i) => {
                i.catpaw_runner_chat()
                    .conversation()
                    .call_create(store, allow_shell)
                    .await
            }
            ChatInstance::V1(i) => {
                i.catpaw_runner_chat()
                    .conversation()
                    .call_create(store, allow_shell)
                    .await
            }
        }
    }

    pub(crate) async fn handle_message(
        &self,
        store: &mut Store<SessionState>,
        conversation: ResourceAny,
        input: &str,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            ChatInstance::V2(i) => {
                i.catpaw_runner_chat()
                    .conversation()
                    .call_handle_message(store, conversation, input)
                    .await
            }
            ChatInstance::V1(i) => {
                i.catpaw_runner_chat()
                    .conversation()
                    .call_handle_message(store, conversation, input)
                    .await
            }
        }
    }

    /// What `describe` says; `None` for a 0.1.0 component.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<SessionState>,
    ) -> Option<wasmtime::Result<Description>> {
        match self {
            ChatInstance::V2(i) => Some(
                i.catpaw_runner_describe()
                    .call_describe(store)
                    .await
                    .map(|d| description!(d)),
            ),
            ChatInstance::V1(_) => None,
        }
    }
}

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
