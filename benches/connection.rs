//! Connection benchmark over a loopback WebSocket server, in one run:
//! - `session_start` → `ack` latency (p50/p99) while 3 sessions stream;
//! - deltas per second from one sandboxed guest to the server's socket;
//! - the same emits from a native `DiagnoseRunner` (no sandbox) as baseline;
//! - the sandboxed deltas with the flight recorder on and off, side by
//!   side (process CPU per delta).
//!
//! The agent runs on a runtime of its own, built as the binary builds it
//! (multi-threaded, one worker per core); the server and the measuring code
//! run on the bench's main thread, as an independent server would: a
//! server sharing the agent's workers would wait for the sessions'
//! guests to give a worker back before it could read an ack.
//!
//! Run: `cargo bench --bench connection`. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does a quick smoke run of the same
//! code with small counts, so the bench cannot rot unnoticed.

#[path = "../tests/common/guests.rs"]
mod guests;

#[path = "../tests/common/server.rs"]
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catpaw_agent::config::Config;
use catpaw_agent::link::agent::{Agent, AgentOptions};
use catpaw_agent::runner::{
    DiagnoseRequest, DiagnoseRunner, Output, RunError, SessionInfo, Stage, StreamSink,
};
use catpaw_agent::sandbox::{Budgets, EngineOptions, Sandbox, SandboxOptions};
use catpaw_agent::session::Runners;
use serde_json::json;
use server::{ServerConn, TestServer};
use tokio_util::sync::CancellationToken;

/// How much to measure.
#[derive(Clone, Copy)]
struct Sizes {
    /// Deltas per throughput run.
    deltas: u32,
    /// Interleaved sandboxed/native rounds for the throughput ratio.
    rounds: usize,
    ack_samples: usize,
}

const FULL: Sizes = Sizes {
    deltas: 100_000,
    rounds: 7,
    ack_samples: 300,
};
const SMOKE: Sizes = Sizes {
    deltas: 2_000,
    rounds: 1,
    ack_samples: 10,
};

/// One delta, as the bench guest emits it.
const DELTA: &str = "0123456789abcdef";

/// Frames the throughput runs received (deltas arrive merged when the
/// socket is the bottleneck).
static FRAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Emits `target` deltas natively: the no-sandbox baseline.
struct NativeEmitter;

#[async_trait]
impl DiagnoseRunner for NativeEmitter {
    async fn run(
        &self,
        _info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        _cancel: CancellationToken,
    ) -> Result<String, RunError> {
        let n: u32 = req.target.parse().unwrap_or(0);
        for _ in 0..n {
            sink.send(Output::delta(DELTA, Stage::Answer, None)).await;
        }
        Ok(String::new())
    }
}

async fn connect(
    runners: Runners,
) -> (TestServer, ServerConn, CancellationToken, tempfile::TempDir) {
    connect_recording(runners, false).await
}

/// [`connect`], with `[recorder] enabled = record`.
async fn connect_recording(
    runners: Runners,
    record: bool,
) -> (TestServer, ServerConn, CancellationToken, tempfile::TempDir) {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config {
        state_dir: state.path().to_path_buf(),
        ..Config::default()
    };
    cfg.server.enabled = true;
    cfg.server.address = server.addr.to_string();
    cfg.sandbox.max_concurrent_sessions = 8;
    cfg.recorder.enabled = record;
    let agent = Agent::new(&cfg, runners, AgentOptions::default()).expect("agent");
    *TELEMETRY.lock().expect("telemetry") = Some(agent.telemetry());
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    agent_runtime().spawn(async move { agent.run(s).await });
    let (conn, _) = server.accept_registered().await;
    (server, conn, shutdown, state)
}

/// The agent's runtime, as `main` builds it.
fn agent_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("agent runtime"))
}

/// The counters of the agent connected last.
static TELEMETRY: std::sync::Mutex<Option<catpaw_agent::telemetry::Telemetry>> =
    std::sync::Mutex::new(None);

/// Mean of the agent's own `session_start` read → ack written, from its
/// `session_ack_latency_seconds` histogram.
fn agent_ack_mean() -> Duration {
    let text = TELEMETRY
        .lock()
        .expect("telemetry")
        .as_ref()
        .expect("an agent ran")
        .encode();
    let value = |suffix: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "catpaw_agent_session_ack_latency_seconds_{suffix} "
                ))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Duration::from_secs_f64(value("sum") / value("count").max(1.0))
}

/// CPU time this process has used (agent and in-process server alike).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU spent by the throughput runs, and their deltas.
static CPU_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static CPU_DELTAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Deltas per second through the whole path: runner → session → socket.
async fn deltas_per_sec(runners: Runners, deltas: u32) -> f64 {
    deltas_recorded(runners, deltas, false).await.0
}

/// [`deltas_per_sec`] with the recorder on or off, and the process CPU per
/// delta of that run.
async fn deltas_recorded(runners: Runners, deltas: u32, record: bool) -> (f64, Duration) {
    let (_server, mut c, stop, _state) = connect_recording(runners, record).await;
    let start = Instant::now();
    let cpu = cpu_time();
    assert!(
        c.start_session(
            "flood",
            "inspect",
            json!({"plugin": "emit", "target": deltas.to_string()})
        )
        .await
        .ok
    );
    let msgs = c.session_until_done("flood").await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu;
    CPU_NANOS.fetch_add(cpu.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    CPU_DELTAS.fetch_add(u64::from(deltas), std::sync::atomic::Ordering::Relaxed);
    // Deltas queued behind a busy socket arrive merged: count the text.
    let text: usize = msgs
        .iter()
        .filter_map(|m| m.payload.as_ref()?["delta"].as_str().map(str::len))
        .sum();
    assert_eq!(
        text,
        deltas as usize * DELTA.len(),
        "every delta's text arrived, then done"
    );
    FRAMES.fetch_add(msgs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    stop.cancel();
    (f64::from(deltas) / secs, cpu / deltas)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // The agent's logger at its default level: what a session logs is part
    // of what it costs.
    catpaw_agent::cli::logging::init(&catpaw_agent::config::Config::default().log.level, false);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime")
        .block_on(bench());
}

async fn bench() {
    let full = std::env::args().any(|a| a == "--bench");
    let Sizes {
        deltas,
        rounds,
        ack_samples,
    } = if full { FULL } else { SMOKE };
    let guest = guests::guest("catpaw_bench_guest");
    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            slots: 16,
            max_memory: 64 << 20,
        },
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let loaded = sandbox
        .load_file(&guest, catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE)
        .expect("bench guest");
    let limits = Budgets {
        fuel: u64::MAX / 4,
        max_output: u64::MAX,
        timeout: Duration::from_secs(600),
        ..Budgets::default()
    };
    let wasm = Runners {
        diagnose: Some(Arc::new(loaded.diagnose_runner(limits).expect("diagnose"))),
        chat: None,
        plugins: Vec::new(),
        files: Vec::new(),
    };
    let native = Runners {
        diagnose: Some(Arc::new(NativeEmitter)),
        chat: None,
        plugins: Vec::new(),
        files: Vec::new(),
    };

    // `PROFILE_RECORDER=on|off`: 20 runs with the recorder one way only,
    // for a profiler to compare (BENCHMARKS.md, "Flight recorder").
    if let Ok(mode) = std::env::var("PROFILE_RECORDER") {
        let record = mode == "on";
        for _ in 0..20 {
            let (_, cpu) = deltas_recorded(wasm.clone(), deltas, record).await;
            println!("cpu/delta {:.2} us", cpu.as_secs_f64() * 1e6);
        }
        return;
    }
    // Warm-up, then interleaved rounds (alternating which path goes first)
    // so drift in machine load hits both paths alike; medians reported.
    deltas_per_sec(wasm.clone(), deltas).await;
    let (mut sandboxed, mut baseline, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (s, b) = if round % 2 == 0 {
            let s = deltas_per_sec(wasm.clone(), deltas).await;
            (s, deltas_per_sec(native.clone(), deltas).await)
        } else {
            let b = deltas_per_sec(native.clone(), deltas).await;
            (deltas_per_sec(wasm.clone(), deltas).await, b)
        };
        sandboxed.push(s);
        baseline.push(b);
        ratios.push(s / b);
    }
    let (sandboxed, baseline, ratio) = (median(sandboxed), median(baseline), median(ratios));

    // The flight recorder on and off, interleaved the same way.
    let (mut cpu_on, mut cpu_off, mut rate_on, mut rate_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for record in order {
            let (rate, cpu) = deltas_recorded(wasm.clone(), deltas, record).await;
            let (r, c) = if record {
                (&mut rate_on, &mut cpu_on)
            } else {
                (&mut rate_off, &mut cpu_off)
            };
            r.push(rate);
            c.push(cpu.as_secs_f64() * 1e6);
        }
    }
    let (rate_on, rate_off) = (median(rate_on), median(rate_off));
    let (cpu_on, cpu_off) = (median(cpu_on), median(cpu_off));

    // A session's whole life with nothing else running: start → done.
    let (_server, mut c, stop, _state) = connect(wasm.clone()).await;
    let mut life = Vec::with_capacity(ack_samples);
    for i in 0..ack_samples {
        let id = format!("noop{i}");
        let t0 = Instant::now();
        let ack = c
            .start_session(&id, "inspect", json!({"plugin": "noop", "target": "0"}))
            .await;
        assert!(ack.ok, "{ack:?}");
        c.session_until_done(&id).await;
        life.push(t0.elapsed());
    }
    stop.cancel();
    life.sort();

    // Ack latency while 3 sessions stream as fast as they can.
    let (_server, mut c, stop, _state) = connect(wasm).await;
    for i in 0..3 {
        let ack = c
            .start_session(
                &format!("bg{i}"),
                "inspect",
                json!({"plugin": "emit", "target": "100000000"}),
            )
            .await;
        assert!(ack.ok);
    }
    let mut lat = Vec::with_capacity(ack_samples);
    for i in 0..ack_samples {
        let id = format!("probe{i}");
        let t0 = Instant::now();
        let ack = c
            .start_session(&id, "inspect", json!({"plugin": "noop", "target": "0"}))
            .await;
        lat.push(t0.elapsed());
        assert!(ack.ok, "{ack:?}");
        c.session_until_done(&id).await;
    }
    let agent_part = agent_ack_mean();
    stop.cancel();
    lat.sort();

    if !full {
        println!("(smoke run with small counts; `cargo bench --bench connection` measures)\n");
    }
    println!("## Connection (loopback server, one run)\n");
    println!("| what | figure |\n|---|---|");
    println!(
        "| session_start → ack, p50, 3 sessions streaming ({ack_samples} samples) | {:.0} µs |",
        pct(&lat, 0.5).as_secs_f64() * 1e6
    );
    println!(
        "| session_start → ack, p99, 3 sessions streaming | {:.0} µs |",
        pct(&lat, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "| of which the agent's own part (read → ack written), mean | {:.0} µs |",
        agent_part.as_secs_f64() * 1e6
    );
    println!(
        "| deltas/s, sandboxed guest → server socket ({deltas} deltas, median of {rounds}) | {sandboxed:.0} |"
    );
    println!(
        "| deltas/s, native DiagnoseRunner → server socket (baseline, median of {rounds}) | {baseline:.0} |"
    );
    println!("| sandboxed / native (median of the {rounds} per-round ratios) | {ratio:.2}× |");
    let cpu_per_delta = CPU_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64
        / CPU_DELTAS.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64
        / 1000.0;
    println!(
        "| process CPU per delta, all throughput runs (agent and the in-process server) | {cpu_per_delta:.2} µs |"
    );
    println!(
        "| noop session start → done, p50 / p99, nothing else running ({ack_samples} sessions) | {:.0} / {:.0} µs |",
        pct(&life, 0.5).as_secs_f64() * 1e6,
        pct(&life, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "| deltas/s, sandboxed, recorder off / on (median of {rounds}) | {rate_off:.0} / {rate_on:.0} |"
    );
    println!(
        "| process CPU per delta, recorder off / on (median of {rounds}) | {cpu_off:.2} / {cpu_on:.2} µs ({:+.1} %) |",
        (cpu_on / cpu_off - 1.0) * 100.0
    );
    let runs = 4 * rounds as u64 + 1;
    println!(
        "| frames per throughput run ({deltas} deltas; merged under backpressure) | {} |",
        FRAMES.load(std::sync::atomic::Ordering::Relaxed) / runs
    );
}
