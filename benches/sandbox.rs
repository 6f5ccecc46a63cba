//! Sandbox benchmark: prices the sandbox against baselines measured in the
//! same process, and prints a table for BENCHMARKS.md.
//!
//! Run: `cargo bench --bench sandbox`
//!
//! - session set-up: our full `DiagnoseRunner::run` of a guest that returns
//!   at once, vs the raw wasmtime floor (store + WASI context + instantiate
//!   from an `InstancePre` + first call + drop), pooling and not;
//! - cost per `emit` through our host import;
//! - a compute-bound guest under our limits vs the same code native, and
//!   under each limit mechanism wasmtime offers (none, fuel, fuel with
//!   async yields, epoch, fuel + epoch);
//! - compiling a component vs deserializing a precompiled one.

#[path = "../tests/common/guests.rs"]
mod guests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catpaw_agent::runner::{DiagnoseRequest, DiagnoseRunner, Output, SessionInfo, StreamSink};
use catpaw_agent::sandbox::{Budgets, EngineOptions, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const COMPUTE_ROUNDS: u32 = 20_000;

struct NullSink;

#[async_trait]
impl StreamSink for NullSink {
    async fn send(&self, _out: Output) {}
}

/// A sink whose session is recorded (the flight recorder on).
struct RecordingSink(catpaw_agent::recorder::Recording);

#[async_trait]
impl StreamSink for RecordingSink {
    async fn send(&self, _out: Output) {}

    fn tape(&self) -> Option<catpaw_agent::recorder::Tape> {
        Some(catpaw_agent::recorder::Tape::Record(self.0.clone()))
    }
}

/// The agent's recordings store in `dir` (its spare files made ahead),
/// bounded as by default.
fn store(dir: &std::path::Path) -> catpaw_agent::recorder::store::Store {
    let opts = catpaw_agent::recorder::RecorderOptions::default();
    let s = catpaw_agent::recorder::store::Store::new(dir, (&opts).into());
    s.prepare().expect("recordings dir");
    s
}

/// A recording of one session in `store`, as the session table starts one.
fn recording(
    store: &catpaw_agent::recorder::store::Store,
    i: u32,
) -> catpaw_agent::recorder::Recording {
    catpaw_agent::recorder::Recording::create_in(
        store,
        &format!("bench-{i}"),
        &catpaw_agent::recorder::RecorderOptions::default(),
        None,
    )
}

/// The median time of one `f`, run `n` times `gap` apart (after a
/// warm-up): a session's own time on an agent that is not starting
/// sessions back to back.
async fn time_paced<F, Fut>(n: u32, gap: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..(n / 10).max(3) {
        f().await;
    }
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tokio::time::sleep(gap).await;
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mech {
    None,
    Fuel,
    FuelYield,
    Epoch,
    FuelEpoch,
}

fn raw_engine(pooling: bool, mech: Mech) -> Engine {
    raw_engine_reserving(pooling, mech, None)
}

/// A raw engine; `reserve` sets each linear memory's reservation (and a
/// 32 MiB guard) as the agent's engine does, instead of wasmtime's 4 GiB.
fn raw_engine_reserving(pooling: bool, mech: Mech, reserve: Option<u64>) -> Engine {
    let mut cfg = Config::new();
    if let Some(bytes) = reserve {
        cfg.memory_reservation(bytes);
        cfg.memory_guard_size(32 << 20);
        cfg.memory_reservation_for_growth(0);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(8)
            .total_core_instances(128)
            .total_memories(16)
            .total_tables(64)
            .total_stacks(8)
            .max_memory_size(64 << 20);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    match mech {
        Mech::None => {}
        Mech::Fuel | Mech::FuelYield => {
            cfg.consume_fuel(true);
        }
        Mech::Epoch => {
            cfg.epoch_interruption(true);
        }
        Mech::FuelEpoch => {
            cfg.consume_fuel(true);
            cfg.epoch_interruption(true);
        }
    }
    Engine::new(&cfg).expect("engine")
}

fn raw_pre(engine: &Engine, bytes: &[u8]) -> InstancePre<RawState> {
    let component = Component::new(engine, bytes).expect("compile");
    let mut linker = Linker::<RawState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    linker
        .define_unknown_imports_as_traps(&component)
        .expect("traps");
    linker.instantiate_pre(&component).expect("pre")
}

fn request(plugin: &str, target: &str) -> Val {
    Val::Record(vec![
        ("mode".into(), Val::String("inspect".into())),
        ("plugin".into(), Val::String(plugin.into())),
        ("target".into(), Val::String(target.into())),
        ("params-json".into(), Val::String("{}".into())),
    ])
}

/// One raw session: store + WASI ctx + instantiate + call + drop.
async fn raw_session(
    engine: &Engine,
    pre: &InstancePre<RawState>,
    mech: Mech,
    plugin: &str,
    target: &str,
) {
    let mut store = Store::new(
        engine,
        RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    match mech {
        Mech::None => {}
        Mech::Fuel => store.set_fuel(u64::MAX).expect("fuel"),
        Mech::FuelYield => {
            store.set_fuel(u64::MAX).expect("fuel");
            store
                .fuel_async_yield_interval(Some(1_000_000))
                .expect("yield");
        }
        Mech::Epoch => store.set_epoch_deadline(u64::MAX / 2),
        Mech::FuelEpoch => {
            store.set_fuel(u64::MAX).expect("fuel");
            store.set_epoch_deadline(u64::MAX / 2);
        }
    }
    let inst = pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let iface = inst
        .get_export_index(&mut store, None, "catpaw:runner/diagnose@0.2.0")
        .expect("diagnose export");
    let run = inst
        .get_export_index(&mut store, Some(&iface), "run")
        .expect("run export");
    let func = inst.get_func(&mut store, run).expect("func");
    let mut results = [Val::Bool(false)];
    func.call_async(&mut store, &[request(plugin, target)], &mut results)
        .await
        .expect("call");
}

fn per_iter(total: Duration, n: u32) -> Duration {
    total / n
}

async fn time_n<F, Fut>(n: u32, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm up (pool slots, caches).
    for _ in 0..(n / 10).max(3) {
        f().await;
    }
    let start = Instant::now();
    for _ in 0..n {
        f().await;
    }
    per_iter(start.elapsed(), n)
}

fn info() -> SessionInfo {
    SessionInfo {
        session_id: "bench".into(),
        session_type: "inspect".into(),
        user_name: "bench".into(),
        allow_shell: false,
        key_id: None,
    }
}

fn req(plugin: &str, target: &str) -> DiagnoseRequest {
    DiagnoseRequest {
        mode: "inspect".into(),
        plugin: plugin.into(),
        target: target.into(),
        params: Default::default(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    // The agent's logger at its default level: what a session logs is part
    // of what it costs.
    catpaw_agent::cli::logging::init(&catpaw_agent::config::Config::default().log.level, false);
    let bench_bytes = std::fs::read(guests::guest("catpaw_bench_guest")).expect("bench guest");
    let diagnose_bytes = catpaw_agent::embedded::DIAGNOSE;

    // --- compile vs deserialize ---
    let engine = raw_engine(true, Mech::Fuel);
    let start = Instant::now();
    let n_compile = 5;
    let mut component = None;
    for _ in 0..n_compile {
        component = Some(Component::new(&engine, diagnose_bytes).expect("compile"));
    }
    let compile = start.elapsed() / n_compile;
    let artifact = component.expect("compiled").serialize().expect("serialize");
    let start = Instant::now();
    let n_deser = 50;
    for _ in 0..n_deser {
        // SAFETY: the artifact was produced by this engine just above.
        let _c = unsafe { Component::deserialize(&engine, &artifact) }.expect("deserialize");
    }
    let deser = start.elapsed() / n_deser;

    // --- session set-up ---
    let n = 2000;
    let mut rows = Vec::new();
    for (pooling, reserve) in [(true, None), (true, Some(64 << 20)), (false, None)] {
        let e = raw_engine_reserving(pooling, Mech::None, reserve);
        let pre = raw_pre(&e, &bench_bytes);
        let t = time_n(n, || raw_session(&e, &pre, Mech::None, "noop", "0")).await;
        rows.push((
            format!(
                "raw wasmtime floor, {} allocator{}",
                if pooling { "pooling" } else { "on-demand" },
                if reserve.is_some() {
                    ", memories reserved at 64 MiB (as the agent's engine)"
                } else {
                    ""
                }
            ),
            t,
        ));
    }
    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            slots: 8,
            max_memory: 64 << 20,
        },
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let loaded = sandbox.load("bench guest", &bench_bytes).expect("load");
    let limits = Budgets {
        fuel: u64::MAX / 4,
        ..Budgets::default()
    };
    let runner = Arc::new(loaded.diagnose_runner(limits).expect("diagnose"));
    let sink: Arc<dyn StreamSink> = Arc::new(NullSink);
    // One noop session, and one recorded (a recording created, written and
    // sealed per session: the recorder on).
    let rec_dir = tempfile::tempdir().expect("tempdir");
    let rec_store = store(rec_dir.path());
    let counter = std::sync::atomic::AtomicU32::new(0);
    let noop = || {
        let r = runner.clone();
        let s = sink.clone();
        async move {
            r.run(&info(), req("noop", "0"), s, CancellationToken::new())
                .await
                .expect("run");
        }
    };
    let noop_recorded = || {
        let r = runner.clone();
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rec = recording(&rec_store, i);
        async move {
            let s: Arc<dyn StreamSink> = Arc::new(RecordingSink(rec.clone()));
            r.run(&info(), req("noop", "0"), s, CancellationToken::new())
                .await
                .expect("run");
            rec.close(|_| {});
        }
    };
    let ours = time_n(n, noop).await;
    rows.push((
        "our full session (DiagnoseRunner::run, limits, audit off)".into(),
        ours,
    ));
    // The same, recorded, measured right after the row above.
    let recorded = time_n(n, noop_recorded).await;
    rows.push((
        "our full session, recorder on (recording created, written, sealed)".into(),
        recorded,
    ));
    // The same two, one session every 2 ms, median of each session's own
    // time: the recorder's spare files are made between sessions, as on an
    // agent that is not starting sessions back to back.
    let gap = Duration::from_millis(2);
    let n_paced = n.min(1000);
    let paced = time_paced(n_paced, gap, noop).await;
    let paced_recorded = time_paced(n_paced, gap, noop_recorded).await;
    rows.push((
        "our full session, one every 2 ms, median (recorder off)".into(),
        paced,
    ));
    rows.push((
        "our full session, one every 2 ms, median (recorder on)".into(),
        paced_recorded,
    ));

    // --- emit ---
    let emits = 200_000u32;
    let start = Instant::now();
    runner
        .run(
            &info(),
            req("emit", &emits.to_string()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .expect("emit run");
    let per_emit = start.elapsed().saturating_sub(ours) / emits;
    let rec = recording(&rec_store, u32::MAX);
    let start = Instant::now();
    runner
        .run(
            &info(),
            req("emit", &emits.to_string()),
            Arc::new(RecordingSink(rec.clone())),
            CancellationToken::new(),
        )
        .await
        .expect("emit run");
    rec.close(|_| {});
    let per_emit_recorded = start.elapsed().saturating_sub(recorded) / emits;

    // --- compute ---
    let start = Instant::now();
    let native_result = std::hint::black_box(catpaw_guest_common::bench_kernel(
        std::hint::black_box(COMPUTE_ROUNDS),
    ));
    let native = start.elapsed();
    let target = COMPUTE_ROUNDS.to_string();
    let mut compute_rows = vec![("native (same code, no sandbox)".to_string(), native)];
    for mech in [
        Mech::None,
        Mech::Fuel,
        Mech::FuelYield,
        Mech::Epoch,
        Mech::FuelEpoch,
    ] {
        let e = raw_engine(true, mech);
        let pre = raw_pre(&e, &bench_bytes);
        raw_session(&e, &pre, mech, "compute", &target).await;
        let start = Instant::now();
        for _ in 0..3 {
            raw_session(&e, &pre, mech, "compute", &target).await;
        }
        compute_rows.push((
            format!("raw wasmtime, limits: {mech:?}"),
            start.elapsed() / 3,
        ));
    }
    let report = runner
        .run(
            &info(),
            req("compute", &target),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .expect("compute");
    assert_eq!(
        report,
        native_result.to_string(),
        "guest and native kernels disagree"
    );
    let start = Instant::now();
    for _ in 0..3 {
        runner
            .run(
                &info(),
                req("compute", &target),
                sink.clone(),
                CancellationToken::new(),
            )
            .await
            .expect("compute");
    }
    compute_rows.push((
        "our sandbox (fuel + async yield + host timer)".into(),
        start.elapsed() / 3,
    ));

    println!("## Session set-up (noop guest, mean of {n})\n");
    println!("| what | per session | vs pooling floor |\n|---|---|---|");
    let floor = rows[0].1;
    for (name, t) in &rows {
        println!(
            "| {name} | {} | {:.2}× |",
            us(*t),
            t.as_secs_f64() / floor.as_secs_f64()
        );
    }
    println!("\n## Host call\n\n| what | cost |\n|---|---|");
    println!(
        "| one `emit` through our host import (mean of {emits}) | {:.0} ns |",
        per_emit.as_secs_f64() * 1e9
    );
    println!(
        "| one `emit`, recorder on (a `host.emit` line, masked, per delta; mean of {emits}) | {:.0} ns |",
        per_emit_recorded.as_secs_f64() * 1e9
    );
    println!("\n## Compile cache\n\n| what | time |\n|---|---|");
    println!(
        "| compile the built-in diagnose component | {} |",
        ms(compile)
    );
    println!("| deserialize its precompiled artifact | {} |", ms(deser));
    println!("\n## Compute-bound guest ({COMPUTE_ROUNDS} kernel rounds)\n");
    println!("| where | time | vs native |\n|---|---|---|");
    for (name, t) in &compute_rows {
        println!(
            "| {name} | {} | {:.2}× |",
            ms(*t),
            t.as_secs_f64() / native.as_secs_f64()
        );
    }
}
