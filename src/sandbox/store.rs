//! Per-session store state: the WASI context with nothing granted, the
//! memory caps, and the host state the imports run on; how a run or chat
//! turn ends ([`end_run`]); and what an idle chat keeps of its store when
//! it gives its instance back ([`park`], [`unpark`]).

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budgets::{self, Budgets};
use super::host::HostContext;
use super::limits::BudgetExceeded;
use super::stdio::Printed;
use crate::runner::Budget;
use crate::runner::Receipt;

/// Everything one session's `Store` owns.
pub(crate) struct SessionState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory/table/instance caps.
    caps: MemoryCaps,
    /// The host imports' state: session info, sink, services, and the
    /// state of the current run or chat turn (its guest stdio included).
    pub(crate) host: HostContext,
    /// Fuel each run or chat turn starts with.
    run_fuel: u64,
    /// The limits every run's receipt is set against.
    limits: Receipt,
    /// Output bytes the session had charged when the current run began.
    output_before: u64,
    /// `wasi:random` through the session's tape.
    pub(crate) random: super::tape::TapeRandom,
    /// Counts this store among the live ones.
    live: Live,
    /// Counts it among its sandbox's instances.
    _instance: InstanceGuard,
}

/// How many stores (each holding one runner instance) a sandbox has
/// alive: sessions running, and chats that keep their instance between
/// turns. A chat that parked its conversation holds none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Instances(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Instances {
    /// Stores alive now.
    pub(crate) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn enter(&self) -> InstanceGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InstanceGuard(self.clone())
    }
}

/// One store counted in its sandbox's [`Instances`] while it lives.
struct InstanceGuard(Instances);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Stores alive in the process.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A live store, counted; when the last one goes, the memory the sessions'
/// host state took is handed back to the system.
///
/// Sessions allocate their host state in many small pieces; when they end,
/// glibc keeps the freed heap for reuse, so an agent that served a thousand
/// chats stayed 50 % above its idle RSS after they all ended (the
/// `sessions` bench). Trimming once the sandbox is empty costs a few
/// milliseconds and happens at most once per [`TRIM_EVERY`].
struct Live;

/// Least time between two trims.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Live {
    fn new() -> Live {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if LIVE.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            trim_heap();
        }
    }
}

/// Returns the free heap to the system, at most once per [`TRIM_EVERY`].
fn trim_heap() {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    drop(last);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl WasiView for SessionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Builds a store for one session, with limits applied and fuel set to
/// `limits.fuel`. The guest's stdout and stderr go to `host`'s capture.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    limits: &Budgets,
    instances: &Instances,
    host: HostContext,
) -> wasmtime::Result<Store<SessionState>> {
    store_for(engine, limits, instances, host, 0, Live::new())
}

/// What an idle chat keeps of its store once the instance is gone: the
/// host state (session info, sink, and the budgets that span turns: the
/// output and language-model tokens used so far), and its place among the
/// live sessions (so the heap is not trimmed while it waits).
pub(crate) struct Parked {
    host: HostContext,
    output_before: u64,
    live: Live,
}

/// Drops `store` and the instance in it, keeping what [`Parked`] says.
/// Call it between runs (after [`end_run`]).
pub(crate) fn park(store: Store<SessionState>) -> Parked {
    let state = store.into_data();
    Parked {
        host: state.host,
        output_before: state.output_before,
        live: state.live,
    }
}

/// A fresh store for the next run of a parked chat, under the same limits,
/// carrying on where the parked one stopped.
pub(crate) fn unpark(
    engine: &wasmtime::Engine,
    limits: &Budgets,
    instances: &Instances,
    parked: Parked,
) -> wasmtime::Result<Store<SessionState>> {
    store_for(
        engine,
        limits,
        instances,
        parked.host,
        parked.output_before,
        parked.live,
    )
}

fn store_for(
    engine: &wasmtime::Engine,
    limits: &Budgets,
    instances: &Instances,
    host: HostContext,
    output_before: u64,
    live: Live,
) -> wasmtime::Result<Store<SessionState>> {
    let stdio = host.stdio();
    let tape = host.tape.clone();
    if let Some(r) = tape.recording() {
        r.budgets(super::tape::budgets_json(limits));
    }
    // Nothing is granted: no preopens, no env, no args, closed stdin, no
    // network (TCP/UDP allowed by default in the builder only reach
    // addresses the socket check admits, and the default check admits none;
    // we also turn the socket families off outright).
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stdio.stream("stdout"))
        .stderr(stdio.stream("stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // The clocks the guest reads go through the tape: recorded, or in
        // replay answered from the recording.
        .wall_clock(super::tape::TapeClock { tape: tape.clone() })
        .monotonic_clock(super::tape::TapeClock { tape: tape.clone() });
    let state = SessionState {
        random: super::tape::TapeRandom::new(tape),
        wasi: builder.build(),
        table: ResourceTable::new(),
        caps: MemoryCaps::new(limits),
        host,
        run_fuel: limits.fuel,
        limits: limits.receipt(),
        output_before,
        live,
        _instance: instances.enter(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.caps);
    store.set_fuel(limits.fuel)?;
    store.fuel_async_yield_interval(Some(super::engine::FUEL_YIELD_INTERVAL))?;
    store.set_hostcall_fuel(hostcall_bytes(limits.max_output));
    Ok(store)
}

/// Most bytes one call may carry out of the guest into the host: what
/// wasmtime copies (every string, every list element) before the host's
/// own checks run. Lists can point many elements at one string, so without
/// this a few KiB of guest memory could make the host allocate gigabytes.
/// The most a guest may hand over in one piece is its output (`max_output`)
/// or a model conversation (4 MiB), plus room for the rest of the call;
/// past it the call traps before the copy.
pub(crate) fn hostcall_bytes(max_output: u64) -> usize {
    let most = max_output.max(4 << 20).saturating_add(1 << 20);
    usize::try_from(most).unwrap_or(usize::MAX)
}

/// Ends a diagnose run or chat turn, however it ended, and readies the
/// store for the next turn: the host state's per-run part starts afresh
/// (logging what the guest printed) and the fuel is refilled, so every
/// per-run budget is whole again. Returns what the guest printed, for the
/// error of a failed run, and the run's receipt (its wall time is the
/// caller's to fill in: the store does not know when the run began).
pub(crate) fn end_run(store: &mut Store<SessionState>) -> (Printed, Receipt) {
    let (printed, counts) = store.data_mut().host.end_run();
    let fuel = store.data().run_fuel;
    // A run that ran out of fuel may read 0 left; one that never started
    // reads the whole tank.
    let left = store.get_fuel().unwrap_or(0);
    store
        .set_fuel(fuel)
        .expect("fuel was set on this store in new_store, so metering is on");
    let state = store.data_mut();
    let fuel_used = fuel.saturating_sub(left);
    let receipt = Receipt {
        runs: 1,
        fuel_used,
        fuel_max_run: fuel_used,
        peak_memory: state.caps.peak_memory as u64,
        tool_calls: counts.tool_calls,
        shell_requests: counts.shell_requests,
        host_calls_max_run: counts.tool_calls + counts.shell_requests,
        emits: counts.emits,
        log_lines: counts.log_lines,
        llm_calls: counts.llm_calls,
        llm_tokens: counts.llm_tokens,
        output_bytes: counts.output_total.saturating_sub(state.output_before),
        ..state.limits.clone()
    };
    state.output_before = counts.output_total;
    let most = hostcall_bytes(state.limits.output_limit);
    // A chat's save lowers the bound for its own call; every run starts
    // with the usual one.
    store.set_hostcall_fuel(most);
    (printed, receipt)
}

/// Counts a report or chat answer (charged after its run ended) against
/// the session's output budget; returns its size for the run's receipt.
pub(crate) fn charge_reply(
    store: &mut Store<SessionState>,
    text: &str,
    what: &str,
) -> Result<u64, BudgetExceeded> {
    let bytes = text.len() as u64;
    let state = store.data_mut();
    state.host.charge_reply(bytes, what)?;
    state.output_before = state.output_before.saturating_add(bytes);
    Ok(bytes)
}

/// The store's caps on linear memory, table elements and instances
/// (wasmtime's `ResourceLimiter`; not to be confused with the session
/// limiter, which counts sessions).
/// A denied memory growth traps with [`BudgetExceeded`] so the session ends
/// with `resource_exhausted` naming the memory budget, rather than with an
/// allocator abort that would look like a plain trap.
pub(crate) struct MemoryCaps {
    max_memory: usize,
    max_table_elements: usize,
    max_instances: usize,
    /// Largest linear memory seen, for the receipt.
    pub(crate) peak_memory: usize,
}

impl MemoryCaps {
    fn new(limits: &Budgets) -> Self {
        MemoryCaps {
            max_memory: budgets::as_len(limits.max_memory),
            max_table_elements: Budgets::MAX_TABLE_ELEMENTS,
            max_instances: Budgets::MAX_INSTANCES,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for MemoryCaps {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(BudgetExceeded {
                budget: Budget::Memory,
                detail: format!(
                    "linear memory would grow from {current} to {desired} bytes, over the cap of {} bytes",
                    self.max_memory
                ),
            }
            .into());
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Err(BudgetExceeded {
                budget: Budget::Memory,
                detail: format!(
                    "table would grow from {current} to {desired} elements, over the cap of {}",
                    self.max_table_elements
                ),
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}
