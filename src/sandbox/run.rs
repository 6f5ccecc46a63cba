//! The wasm implementations of the runner traits: one store and one
//! instance per session, every guest call guarded by the session's budgets.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::Sandbox;
use super::bindings::chat_world::{ChatRunner as ChatWorld, ChatRunnerPre};
use super::bindings::diagnose_world::DiagnoseRunnerPre;
use super::bindings::diagnose_world::exports::catpaw::runner::diagnose::Request;
use super::budgets::Budgets;
use super::host::HostContext;
use super::limits::{self, Guarded};
use super::store::{SessionState, new_store};
use crate::runner::{
    ChatHandle, ChatRunner, ChatSessionOpts, DiagnoseRequest, DiagnoseRunner, RunError,
    SessionInfo, StreamSink,
};

/// Serves inspect/diagnose sessions with a wasm component.
pub struct WasmDiagnoseRunner {
    sandbox: Arc<Sandbox>,
    pre: DiagnoseRunnerPre<SessionState>,
    limits: Budgets,
}

impl WasmDiagnoseRunner {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        pre: DiagnoseRunnerPre<SessionState>,
        limits: Budgets,
    ) -> Self {
        WasmDiagnoseRunner {
            sandbox,
            pre,
            limits,
        }
    }

    /// The budgets each session gets.
    pub fn limits(&self) -> &Budgets {
        &self.limits
    }
}

/// Creates the store of one session.
fn session_store(
    sandbox: &Sandbox,
    limits: &Budgets,
    info: &SessionInfo,
    sink: Arc<dyn StreamSink>,
) -> Result<Store<SessionState>, RunError> {
    let host = HostContext::new(info.clone(), sink, sandbox.services.clone(), limits);
    new_store(&sandbox.engine, limits, host)
        .map_err(|e| RunError::Host(format!("creating the session store: {e:#}")))
}

/// Turns a guarded call's outcome into the session's result, blaming the
/// guest or the host.
fn settle<T>(
    store: &Store<SessionState>,
    limits: &Budgets,
    outcome: Guarded<T>,
) -> Result<T, RunError> {
    match outcome {
        Guarded::Finished(Ok(v)) => Ok(v),
        Guarded::Finished(Err(e)) => {
            let (stdio, _) = store.data().stdio.take();
            let stderr: String = stdio
                .iter()
                .filter(|(n, _)| *n == "stderr")
                .map(|(_, t)| t.as_str())
                .collect();
            let tail = last_lines(&stderr, 3);
            Err(limits::classify(&e, limits.fuel, Some(tail)))
        }
        Guarded::TimedOut => Err(limits::timed_out(limits.timeout)),
        Guarded::Cancelled => Err(RunError::Cancelled),
    }
}

/// Instantiation errors caused by the pool being full are the host's; all
/// others (start functions trapping, budgets) are the guest's.
fn instantiate_error(e: wasmtime::Error, limits: &Budgets) -> RunError {
    let text = format!("{e:#}");
    if text.contains("maximum concurrent") || text.contains("pooling allocator") {
        return RunError::Host(format!("no sandbox slot free: {text}"));
    }
    limits::classify(&e, limits.fuel, None)
}

/// Longest error text a guest may hand back (it goes to the server as
/// `session_error.error` or as a chat error turn).
const MAX_FAILURE_TEXT: usize = 4096;

/// The guest's own error, cut to [`MAX_FAILURE_TEXT`] with a marker.
fn guest_failure(msg: String) -> RunError {
    if msg.len() <= MAX_FAILURE_TEXT {
        return RunError::Failed(msg);
    }
    let kept = crate::util::truncate_utf8(&msg, MAX_FAILURE_TEXT);
    RunError::Failed(format!(
        "{kept}… [truncated: the runner's error was {} bytes]",
        msg.len()
    ))
}

/// Counts a report or chat answer against the session's output budget.
fn charge_reply(store: &mut Store<SessionState>, text: &str, what: &str) -> Result<(), RunError> {
    Ok(store
        .data_mut()
        .host
        .stream
        .charge(text.len() as u64, what)?)
}

fn last_lines(text: &str, n: usize) -> &str {
    let trimmed = text.trim_end();
    let mut start = trimmed.len();
    for _ in 0..n {
        match trimmed[..start].rfind('\n') {
            Some(i) => start = i,
            None => return trimmed,
        }
    }
    trimmed[start..].trim_start_matches('\n')
}

/// Writes what the guest printed to the log, tagged with the session, and
/// closes the run's guest log budget.
fn flush_stdio(store: &mut Store<SessionState>) {
    store.data_mut().host.end_of_run();
    let (runs, dropped) = store.data().stdio.take();
    let sid = &store.data().host.info.session_id;
    for (stream, text) in runs {
        for line in text.lines() {
            tracing::info!(target: "guest", session_id = %sid, stream, "{line}");
        }
    }
    if dropped > 0 {
        tracing::warn!(target: "guest", session_id = %sid, dropped_bytes = dropped,
            "guest stdout/stderr past the cap was dropped");
    }
}

#[async_trait]
impl DiagnoseRunner for WasmDiagnoseRunner {
    async fn run(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<String, RunError> {
        let limits = &self.limits;
        let mut store = session_store(&self.sandbox, limits, info, sink)?;
        let inst = match limits::guard(
            self.pre.instantiate_async(&mut store),
            limits.timeout,
            &cancel,
        )
        .await
        {
            Guarded::Finished(Err(e)) => return Err(instantiate_error(e, limits)),
            other => settle(&store, limits, other)?,
        };
        let request = Request {
            mode: req.mode,
            plugin: req.plugin,
            target: req.target,
            params_json: serde_json::Value::Object(req.params).to_string(),
        };
        let outcome = limits::guard(
            inst.catpaw_runner_diagnose().call_run(&mut store, &request),
            limits.timeout,
            &cancel,
        )
        .await;
        let result = settle(&store, limits, outcome);
        flush_stdio(&mut store);
        let report = result?.map_err(guest_failure)?;
        charge_reply(&mut store, &report, "the report")?;
        Ok(report)
    }
}

/// Serves chat sessions with a wasm component.
pub struct WasmChatRunner {
    sandbox: Arc<Sandbox>,
    pre: ChatRunnerPre<SessionState>,
    limits: Budgets,
}

impl WasmChatRunner {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        pre: ChatRunnerPre<SessionState>,
        limits: Budgets,
    ) -> Self {
        WasmChatRunner {
            sandbox,
            pre,
            limits,
        }
    }

    /// The budgets each session (each turn, for fuel and time) gets.
    pub fn limits(&self) -> &Budgets {
        &self.limits
    }
}

#[async_trait]
impl ChatRunner for WasmChatRunner {
    async fn start(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<Box<dyn ChatHandle>, RunError> {
        let limits = self.limits.clone();
        let mut store = session_store(&self.sandbox, &limits, info, sink)?;
        let inst = match limits::guard(
            self.pre.instantiate_async(&mut store),
            limits.timeout,
            &cancel,
        )
        .await
        {
            Guarded::Finished(Err(e)) => return Err(instantiate_error(e, &limits)),
            other => settle(&store, &limits, other)?,
        };
        let outcome = limits::guard(
            inst.catpaw_runner_chat()
                .conversation()
                .call_create(&mut store, opts.allow_shell),
            limits.timeout,
            &cancel,
        )
        .await;
        let created = settle(&store, &limits, outcome);
        flush_stdio(&mut store);
        let conversation = created?.map_err(guest_failure)?;
        Ok(Box::new(WasmChat {
            store,
            inst,
            conversation,
            limits,
            cancel,
        }))
    }
}

/// One open wasm conversation: its store lives as long as the chat.
struct WasmChat {
    store: Store<SessionState>,
    inst: ChatWorld,
    conversation: ResourceAny,
    limits: Budgets,
    cancel: CancellationToken,
}

#[async_trait]
impl ChatHandle for WasmChat {
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError> {
        // Fuel and tool calls are per-turn budgets: a long chat is not
        // starved by the turns before it.
        self.store
            .set_fuel(self.limits.fuel)
            .map_err(|e| RunError::Host(format!("setting fuel: {e:#}")))?;
        self.store.data_mut().host.new_turn();
        let outcome = limits::guard(
            self.inst
                .catpaw_runner_chat()
                .conversation()
                .call_handle_message(&mut self.store, self.conversation, input),
            self.limits.timeout,
            &self.cancel,
        )
        .await;
        let result = settle(&self.store, &self.limits, outcome);
        flush_stdio(&mut self.store);
        let answer = result?.map_err(guest_failure)?;
        charge_reply(&mut self.store, &answer, "the answer")?;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_guest_error_is_cut_with_a_marker() {
        let short = guest_failure("disk probe failed".into());
        assert!(matches!(short, RunError::Failed(ref m) if m == "disk probe failed"));
        match guest_failure("é".repeat(10_000)) {
            RunError::Failed(m) => {
                assert!(m.len() < MAX_FAILURE_TEXT + 64, "{}", m.len());
                assert!(m.ends_with("[truncated: the runner's error was 20000 bytes]"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\nd\n", 2), "c\nd");
        assert_eq!(last_lines("only", 3), "only");
        assert_eq!(last_lines("", 3), "");
    }
}
