//! The two contract versions a runner may be built against, 0.2.0 and
//! 0.1.0 (see `bindings.rs`), behind one type per export: the session
//! code instantiates and calls a runner without knowing which it is.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre, ResourceAny};

use super::bindings::chat_world::{ChatRunner as Chat2, ChatRunnerIndices as ChatIndices2};
use super::bindings::diagnose_world::exports::catpaw::runner::diagnose::Request as Request2;
use super::bindings::diagnose_world::{DiagnoseRunner as Diag2, DiagnoseRunnerPre as DiagPre2};
use super::bindings::v0_1::chat_world::{ChatRunner as Chat1, ChatRunnerPre as ChatPre1};
use super::bindings::v0_1::diagnose_world::exports::catpaw::runner::diagnose::Request as Request1;
use super::bindings::v0_1::diagnose_world::{
    DiagnoseRunner as Diag1, DiagnoseRunnerPre as DiagPre1,
};
use super::store::SessionState;
use crate::runner::{Description, DiagnoseRequest, PluginInfo};

/// The WIT package version a runner was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitVersion {
    /// `catpaw:runner@0.1.0`: no `describe`, no `llm`.
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

/// A pre-linked runner's `diagnose` export.
#[derive(Clone)]
pub(crate) enum DiagnosePre {
    V2(DiagPre2<SessionState>),
    V1(DiagPre1<SessionState>),
}

/// A pre-linked runner's `chat` export. (0.2.0 keeps the component
/// instance at hand for the optional `snapshot` export beside `chat`.)
#[derive(Clone)]
pub(crate) enum ChatPre {
    V2(InstancePre<SessionState>, ChatIndices2),
    V1(ChatPre1<SessionState>),
}

/// An instance serving `diagnose`.
pub(crate) enum DiagnoseInstance {
    V2(Diag2),
    V1(Diag1),
}

/// An instance serving `chat`.
pub(crate) enum ChatInstance {
    V2(Chat2, Instance),
    V1(Chat1),
}

impl DiagnosePre {
    /// The export of `pre`, of whichever version it was built against.
    pub(crate) fn new(pre: &InstancePre<SessionState>) -> Option<Self> {
        DiagPre2::new(pre.clone())
            .ok()
            .map(DiagnosePre::V2)
            .or_else(|| DiagPre1::new(pre.clone()).ok().map(DiagnosePre::V1))
    }

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
        req: DiagnoseRequest,
    ) -> wasmtime::Result<Result<String, String>> {
        let params_json = serde_json::Value::Object(req.params).to_string();
        match self {
            DiagnoseInstance::V2(i) => {
                let r = Request2 {
                    mode: req.mode,
                    plugin: req.plugin,
                    target: req.target,
                    params_json,
                };
                i.catpaw_runner_diagnose().call_run(store, &r).await
            }
            DiagnoseInstance::V1(i) => {
                let r = Request1 {
                    mode: req.mode,
                    plugin: req.plugin,
                    target: req.target,
                    params_json,
                };
                i.catpaw_runner_diagnose().call_run(store, &r).await
            }
        }
    }
}

impl DiagnoseInstance {
    /// What `describe` says; `None` for a 0.1.0 runner, which has none.
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

impl ChatInstance {
    /// What `describe` says; `None` for a 0.1.0 runner, which has none.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<SessionState>,
    ) -> Option<wasmtime::Result<Description>> {
        match self {
            ChatInstance::V2(i, _) => Some(
                i.catpaw_runner_describe()
                    .call_describe(store)
                    .await
                    .map(|d| description!(d)),
            ),
            ChatInstance::V1(_) => None,
        }
    }
}

impl ChatPre {
    /// The export of `pre`, of whichever version it was built against.
    pub(crate) fn new(pre: &InstancePre<SessionState>) -> Option<Self> {
        ChatIndices2::new(pre)
            .ok()
            .map(|i| ChatPre::V2(pre.clone(), i))
            .or_else(|| ChatPre1::new(pre.clone()).ok().map(ChatPre::V1))
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<SessionState>,
    ) -> wasmtime::Result<ChatInstance> {
        Ok(match self {
            ChatPre::V2(pre, indices) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                ChatInstance::V2(indices.load(&mut *store, &instance)?, instance)
            }
            ChatPre::V1(p) => ChatInstance::V1(p.instantiate_async(store).await?),
        })
    }
}

impl ChatInstance {
    /// The component instance, where the `snapshot` export is (0.2.0).
    pub(crate) fn component_instance(&self) -> Option<&Instance> {
        match self {
            ChatInstance::V2(_, i) => Some(i),
            ChatInstance::V1(_) => None,
        }
    }

    pub(crate) async fn create(
        &self,
        store: &mut Store<SessionState>,
        allow_shell: bool,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        match self {
            ChatInstance::V2(i, _) => {
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
            ChatInstance::V2(i, _) => {
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
}
