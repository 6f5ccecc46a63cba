//! The wasm implementation of the diagnose runner trait, and what it
//! shares with the chat one (`chat.rs`): one store and one instance per
//! session, every guest call guarded by the session's budgets.
//!
//! A diagnose session is one run: instantiation plus the `run` call. A chat
//! session's instantiation plus `create` is its first run, and each message
//! one more (a turn). Every run ends in `store::end_run`, however it ends:
//! through [`finish`], or through [`instantiated`] when instantiation
//! itself failed.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;

use super::Sandbox;
use super::budgets::Budgets;
use super::capabilities::Grant;
use super::host::{HostContext, HostServices};
use super::limits::{self, Guarded};
use super::store::{self, SessionState, end_run, new_store};
use super::versions::DiagnosePre;
use crate::runner::Receipt;
use crate::runner::{DiagnoseRequest, DiagnoseRunner, RunError, SessionInfo, StreamSink};

/// Serves inspect/diagnose sessions with a wasm component.
pub struct WasmDiagnoseRunner {
    sandbox: Arc<Sandbox>,
    pre: DiagnosePre,
    limits: Budgets,
    /// What its sessions may reach.
    grant: Grant,
}

impl WasmDiagnoseRunner {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        pre: DiagnosePre,
        limits: Budgets,
        grant: Grant,
    ) -> Self {
        WasmDiagnoseRunner {
            sandbox,
            pre,
            limits,
            grant,
        }
    }

    /// What its sessions may reach.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The budgets each session gets.
    pub fn limits(&self) -> &Budgets {
        &self.limits
    }
}

/// Creates the store of one session, whose imports answer only what
/// `grant` allows.
pub(super) fn session_store(
    sandbox: &Sandbox,
    limits: &Budgets,
    grant: &Grant,
    info: &SessionInfo,
    sink: Arc<dyn StreamSink>,
) -> Result<Store<SessionState>, RunError> {
    store_with(sandbox, sandbox.services.clone(), limits, grant, info, sink)
}

/// A store like a session's whose host calls are not audited and that
/// sees no model: for the load-time `describe` call, which belongs to no
/// session (its budgets allow no tool, shell or model call either).
pub(super) fn session_store_without_audit(
    sandbox: &Sandbox,
    limits: &Budgets,
    info: &SessionInfo,
    sink: Arc<dyn StreamSink>,
) -> Result<Store<SessionState>, RunError> {
    // Not a session: nothing audited, nothing counted. (Its budgets
    // end it at its first host call, before any grant is asked.)
    let services = HostServices {
        audit: None,
        telemetry: None,
        llm: None,
        mcp: None,
        ..(*sandbox.services).clone()
    };
    let grant = Grant::new(None);
    store_with(sandbox, Arc::new(services), limits, &grant, info, sink)
}

fn store_with(
    sandbox: &Sandbox,
    services: Arc<HostServices>,
    limits: &Budgets,
    grant: &Grant,
    info: &SessionInfo,
    sink: Arc<dyn StreamSink>,
) -> Result<Store<SessionState>, RunError> {
    let host = HostContext::new(info.clone(), sink, services, limits, grant.clone());
    new_store(&sandbox.engine, limits, &sandbox.instances, host)
        .map_err(|e| RunError::Host(format!("creating the session store: {e:#}")))
}

/// The receipts of one session: the run going on (or just ended) and the
/// session's sum.
#[derive(Debug, Clone)]
pub(super) struct Meter {
    started: Instant,
    pub(super) last: Receipt,
    pub(super) session: Receipt,
}

impl Meter {
    pub(super) fn new(limits: &Budgets) -> Self {
        Meter {
            started: Instant::now(),
            last: limits.receipt(),
            session: limits.receipt(),
        }
    }

    /// A run or turn begins now.
    pub(super) fn begin(&mut self) {
        self.started = Instant::now();
    }

    /// The run that began last ended with `run` (from the store).
    pub(super) fn end(&mut self, mut run: Receipt) {
        run.wall_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        run.wall_max_run_ms = run.wall_ms;
        self.session.add(&run);
        self.last = run;
    }

    /// The run's reply (report, answer) was charged: `bytes` more output.
    fn replied(&mut self, bytes: u64) {
        self.last.output_bytes += bytes;
        self.session.output_bytes += bytes;
    }
}

/// Ends a run or chat turn whose last guest call ended with `outcome`
/// (see [`end_run`]: what the guest printed is logged, the budgets are
/// whole again, the run's receipt goes to `meter`) and turns that outcome
/// into the session's result, blaming the guest or the host. A trap's
/// error carries the guest's last words on stderr.
pub(super) fn finish<T>(
    store: &mut Store<SessionState>,
    limits: &Budgets,
    meter: &mut Meter,
    outcome: Guarded<T>,
) -> Result<T, RunError> {
    let (printed, receipt) = end_run(store);
    let fuel = receipt.fuel_used;
    meter.end(receipt);
    let result = match outcome {
        Guarded::Finished(Ok(v)) => Ok(v),
        Guarded::Finished(Err(e)) => {
            let tail = printed.stderr_tail();
            Err(limits::classify(&e, limits.fuel, Some(&tail)))
        }
        Guarded::TimedOut => Err(limits::timed_out(limits.timeout)),
        Guarded::Cancelled => Err(RunError::Cancelled),
    };
    record_run_end(store, fuel, result.as_ref().err());
    result
}

/// Writes the `run_end` line of the run that just ended.
fn record_run_end(store: &Store<SessionState>, fuel: u64, err: Option<&RunError>) {
    let Some(r) = store.data().host.tape.recording() else {
        return;
    };
    let outcome = match err {
        None => "ok",
        Some(RunError::ResourceExhausted { .. }) => "resource_exhausted",
        Some(RunError::Trapped(_)) => "trapped",
        Some(RunError::Cancelled) => "cancelled",
        Some(RunError::Host(_)) => "host_error",
        Some(_) => "error",
    };
    let turn = r.turn();
    r.line("run_end", true, |b| {
        use crate::recorder::writer::json_u64;
        b.extend_from_slice(b",\"turn\":");
        match turn {
            Some(n) => json_u64(b, n),
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"fuel_used\":");
        json_u64(b, fuel);
        b.extend_from_slice(b",\"outcome\":\"");
        b.extend_from_slice(outcome.as_bytes());
        b.push(b'"');
    });
}

/// The instance, when instantiating succeeded: the first run goes on. When
/// it failed, that run ends here.
pub(super) fn instantiated<T>(
    store: &mut Store<SessionState>,
    limits: &Budgets,
    meter: &mut Meter,
    outcome: Guarded<T>,
) -> Result<T, RunError> {
    match outcome {
        Guarded::Finished(Ok(inst)) => Ok(inst),
        Guarded::Finished(Err(e)) => {
            let receipt = end_run(store).1;
            let fuel = receipt.fuel_used;
            meter.end(receipt);
            let err = instantiate_error(e, limits);
            record_run_end(store, fuel, Some(&err));
            Err(err)
        }
        other => finish(store, limits, meter, other),
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
pub(super) fn guest_failure(msg: String) -> RunError {
    if msg.len() <= MAX_FAILURE_TEXT {
        return RunError::Failed(msg);
    }
    let kept = crate::util::truncate_utf8(&msg, MAX_FAILURE_TEXT);
    RunError::Failed(format!(
        "{kept}… [truncated: the runner's error was {} bytes]",
        msg.len()
    ))
}

/// The error of a run the guest failed: when its last language-model call
/// failed too, the model was out of reach and a rule-based runner may
/// take over ([`RunError::ModelUnavailable`]).
pub(super) fn failed(store: &Store<SessionState>, msg: String) -> RunError {
    match store.data().host.last_llm_failure() {
        Some(why) => RunError::ModelUnavailable(why.to_string()),
        None => guest_failure(msg),
    }
}

/// Counts a report or chat answer against the session's output budget.
pub(super) fn charge_reply(
    store: &mut Store<SessionState>,
    meter: &mut Meter,
    text: &str,
    what: &str,
) -> Result<(), RunError> {
    meter.replied(store::charge_reply(store, text, what)?);
    Ok(())
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
        self.run_metered(info, req, sink, cancel).await.0
    }

    async fn run_metered(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> (Result<String, RunError>, Option<Receipt>) {
        let mut meter = Meter::new(&self.limits);
        let result = self.run_in(info, req, sink, cancel, &mut meter).await;
        (result, Some(meter.session))
    }
}

impl WasmDiagnoseRunner {
    async fn run_in(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
        meter: &mut Meter,
    ) -> Result<String, RunError> {
        let limits = &self.limits;
        let mut store = session_store(&self.sandbox, limits, &self.grant, info, sink)?;
        meter.begin();
        let outcome =
            limits::guard(self.pre.instantiate(&mut store), limits.timeout, &cancel).await;
        let inst = instantiated(&mut store, limits, meter, outcome)?;
        let outcome = limits::guard(inst.run(&mut store, req), limits.timeout, &cancel).await;
        let report = finish(&mut store, limits, meter, outcome)?.map_err(|m| failed(&store, m))?;
        charge_reply(&mut store, meter, &report, "the report")?;
        Ok(report)
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
}
