//! Memory of open sessions: the process RSS with 100 and 1000 chat
//! sessions open on the built-in chat runner, each having answered a turn,
//! and after they all end, against the idle figure measured in the same
//! run (sandbox built and runner loaded, no session). The virtual size is
//! printed beside it: the agent must start under `ulimit -v`.
//!
//! Run: `cargo bench --bench sessions`. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does a smoke run with 20 chats.

use std::sync::Arc;

use async_trait::async_trait;
use catpaw_agent::runner::{
    ChatHandle, ChatRunner, ChatSessionOpts, Output, SessionInfo, StreamSink,
};
use catpaw_agent::sandbox::{Budgets, EngineOptions, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;

struct NullSink;

fn info(id: &str) -> SessionInfo {
    SessionInfo {
        session_id: id.to_string(),
        session_type: "chat".into(),
        user_name: "bench".into(),
        allow_shell: false,
        key_id: None,
    }
}

#[async_trait]
impl StreamSink for NullSink {
    async fn send(&self, _out: Output) {}
}

/// Resident and virtual size of this process, in KiB.
fn rss_vsz_kib() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let mut f = statm
        .split_whitespace()
        .map(|v| v.parse::<u64>().expect("pages"));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024;
    let vsz = f.next().expect("size") * page;
    let rss = f.next().expect("resident") * page;
    (rss, vsz)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let steps: &[usize] = if full { &[100, 1000] } else { &[10, 20] };
    let most = *steps.last().expect("steps");
    let budgets = Budgets::default();
    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            slots: most as u32 + 2,
            max_memory: budgets.max_memory,
        },
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let loaded = sandbox
        .load("built-in chat", catpaw_agent::embedded::CHAT)
        .expect("chat runner");
    let runner = Arc::new(loaded.chat_runner(budgets).expect("serves chat"));
    let sink: Arc<dyn StreamSink> = Arc::new(NullSink);

    // One chat session that has answered `message`.
    let open_chat = |id: String, message: &'static str| {
        let (runner, sink) = (runner.clone(), sink.clone());
        async move {
            let mut h = runner
                .start(
                    &info(&id),
                    ChatSessionOpts { allow_shell: false },
                    sink,
                    CancellationToken::new(),
                )
                .await
                .expect("start");
            h.handle_message(message).await.expect("turn");
            h
        }
    };

    // Warm up (first instantiation faults in shared code pages), then the
    // idle figure.
    drop(open_chat("warm".into(), "help").await);
    let (idle, idle_vsz) = rss_vsz_kib();

    let mut open: Vec<Box<dyn ChatHandle>> = Vec::with_capacity(most);
    let mut rows = Vec::new();
    for &n in steps {
        while open.len() < n {
            open.push(open_chat(format!("s{}", open.len()), "load").await);
        }
        let (rss, vsz) = rss_vsz_kib();
        rows.push((n, rss, vsz));
    }
    drop(open);
    // Let the runtime finish dropping what the sessions held.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (after, _) = rss_vsz_kib();

    if !full {
        println!("(smoke run with few sessions; `cargo bench --bench sessions` measures)\n");
    }
    println!("## Open chat sessions (built-in chat runner, one run)\n");
    println!("| what | RSS | per session over idle | virtual size |\n|---|---|---|---|");
    println!(
        "| idle (runner loaded, no session) | {} | | {} |",
        mib(idle),
        mib(idle_vsz)
    );
    for (n, rss, vsz) in rows {
        println!(
            "| {n} chats open, each answered a turn | {} | {:.1} KiB | {} |",
            mib(rss),
            rss.saturating_sub(idle) as f64 / n as f64,
            mib(vsz)
        );
    }
    println!(
        "| after all ended | {} ({:+.1} % of idle) | | |",
        mib(after),
        (after as f64 - idle as f64) / idle as f64 * 100.0
    );
}
