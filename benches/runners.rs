//! Runner languages side by side: the built-in (Rust) diagnose runner and
//! the example Python runner (`guest-runners/python`, componentize-py),
//! loaded and run the way the agent does. Prints a table for BENCHMARKS.md.
//!
//! Run: `cargo bench --bench runners` after the Python runner was built
//! (the test suite builds it into `target/python-runner/`; or set
//! `CATPAW_PY_RUNNER` to a built component).
//!
//! - compile: compiling the component (written to the compile cache);
//! - cached load: loading it back from that cache, as at an agent restart;
//! - session set-up: a whole inspect session that the runner refuses at
//!   once (unknown plugin): store, instantiation, one call, teardown;
//! - memory per session: the linear memory its instance reached (receipt).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catpaw_agent::runner::{DiagnoseRequest, DiagnoseRunner, Output, SessionInfo, StreamSink};
use catpaw_agent::sandbox::{Budgets, EngineOptions, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;

const SESSIONS: usize = 200;

struct NullSink;

#[async_trait]
impl StreamSink for NullSink {
    async fn send(&self, _out: Output) {}
}

fn python_runner() -> PathBuf {
    if let Some(p) = std::env::var_os("CATPAW_PY_RUNNER") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-runner");
    let newest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| {
        panic!(
            "no built Python runner in {}: run `cargo test --test python_runner` first, or set \
             CATPAW_PY_RUNNER",
            dir.display()
        )
    })
}

fn private_dir() -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let d = std::env::temp_dir().join(format!("catpaw-bench-{}", uuid::Uuid::new_v4()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&d)
        .expect("scratch dir");
    d
}

struct Row {
    name: &'static str,
    size: usize,
    compile: Duration,
    cached: Duration,
    setup: Duration,
    memory: u64,
}

fn measure(name: &'static str, bytes: &[u8], rt: &tokio::runtime::Runtime) -> Row {
    let scratch = private_dir();
    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            slots: 4,
            max_memory: 64 << 20,
        },
        cache_dir: Some(scratch.join("cache")),
        services: Default::default(),
    })
    .expect("sandbox");
    let probe = sandbox.probe(name, bytes, &scratch.join("cache"));
    let runner = probe.runner.expect("the runner loads");
    let d = runner
        .diagnose_runner(Budgets::default())
        .expect("diagnose");
    let info = SessionInfo {
        session_id: "bench".into(),
        session_type: "inspect".into(),
        user_name: "bench".into(),
        allow_shell: false,
        key_id: None,
    };
    let one = || {
        let req = DiagnoseRequest {
            mode: "inspect".into(),
            plugin: "no-such-plugin".into(),
            target: "localhost".into(),
            params: Default::default(),
        };
        rt.block_on(d.run_metered(&info, req, Arc::new(NullSink), CancellationToken::new()))
    };
    for _ in 0..10 {
        let _ = one();
    }
    let started = Instant::now();
    let mut memory = 0;
    for _ in 0..SESSIONS {
        let (result, receipt) = one();
        assert!(result.is_err(), "the unknown plugin is refused");
        memory = memory.max(receipt.expect("receipt").peak_memory);
    }
    let setup = started.elapsed() / SESSIONS as u32;
    let _ = std::fs::remove_dir_all(&scratch);
    Row {
        name,
        size: bytes.len(),
        compile: probe.compile_time.expect("compiled"),
        cached: probe.cached_load_time.expect("cached load"),
        setup,
        memory,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let py = std::fs::read(python_runner()).expect("read the Python runner");
    let rows = [
        measure(
            "Rust (built-in diagnose)",
            catpaw_agent::embedded::DIAGNOSE,
            &rt,
        ),
        measure("Python (guest-runners/python)", &py, &rt),
    ];
    println!(
        "| runner | component | compile | cached load | session set-up (mean of {SESSIONS}) | memory per session |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} MiB | {:.0} ms | {:.2} ms | {:.2} ms | {:.1} MiB |",
            r.name,
            r.size as f64 / (1 << 20) as f64,
            r.compile.as_secs_f64() * 1e3,
            r.cached.as_secs_f64() * 1e3,
            r.setup.as_secs_f64() * 1e3,
            r.memory as f64 / (1 << 20) as f64
        );
    }
}
