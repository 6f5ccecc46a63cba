//! Memory of open sessions: the process RSS with 100 and 1000 chat
//! sessions open on the built-in chat runner, each having answered a turn,
//! and after they all end, against the idle figure measured in the same
//! run (sandbox built and runner loaded, no session). The virtual size is
//! printed beside it: the agent must start under `ulimit -v`.
//!
//! Each figure is taken twice: with the chats' conversations saved between
//! turns (the runner's `snapshot` export; no instance while idle, the
//! default) and with every chat keeping its live instance
//! (`max_chat_state = 0`, as before the export). The turn latency of an
//! open chat is measured both ways too: a "help" turn on each open chat
//! in turn, restore and save included when saved.
//!
//! A second table says where each open session's resident memory goes,
//! from `/proc/self/smaps`: the pages of the runner's memory image (shared
//! with every other instance of it, but counted in each instance's RSS),
//! the async stack the session's store keeps between turns, the rest of
//! its linear memory and pool slots, and the host heap; and the
//! proportional set size (PSS), which counts shared pages once.
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

/// Resident KiB by kind, from `/proc/self/smaps` (see the module doc).
#[derive(Default, Clone, Copy)]
struct Where {
    image: u64,
    stacks: u64,
    other_anon: u64,
    heap: u64,
    pss: u64,
}

/// The size of an async (fiber) stack: wasmtime's default, which the
/// sandbox keeps.
const ASYNC_STACK_KIB: u64 = 2048;

fn where_resident() -> Where {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut w = Where::default();
    let (mut name, mut size_kib) = (String::new(), 0u64);
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            size_kib = (b - a) / 1024;
            name = parts.nth(4).unwrap_or("").to_string();
            continue;
        }
        let kib = || {
            parts
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => {
                let rss = kib();
                if name.contains("wasm-memory-image") {
                    w.image += rss;
                } else if name == "[heap]" {
                    w.heap += rss;
                } else if name.is_empty() && size_kib == ASYNC_STACK_KIB {
                    w.stacks += rss;
                } else if name.is_empty() {
                    w.other_anon += rss;
                }
            }
            "Pss:" => w.pss += kib(),
            _ => {}
        }
    }
    w
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What one way of keeping idle chats measured.
struct Measured {
    label: &'static str,
    idle: u64,
    idle_vsz: u64,
    idle_where: Where,
    rows: Vec<(usize, u64, u64, Where)>,
    after: u64,
    /// Durations of turns on open chats, sorted, in µs.
    turns_us: Vec<f64>,
}

/// Opens `steps` chats on the built-in chat runner under `budgets`,
/// measuring at each step, times `turns` turns on them, and closes them.
async fn measure(
    sandbox: &Arc<Sandbox>,
    label: &'static str,
    budgets: Budgets,
    steps: &[usize],
    turns: usize,
) -> Measured {
    let most = *steps.last().expect("steps");
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
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (idle, idle_vsz) = rss_vsz_kib();
    let idle_where = where_resident();

    let mut open: Vec<Box<dyn ChatHandle>> = Vec::with_capacity(most);
    let mut rows = Vec::new();
    for &n in steps {
        while open.len() < n {
            open.push(open_chat(format!("s{}", open.len()), "load").await);
        }
        let (rss, vsz) = rss_vsz_kib();
        rows.push((n, rss, vsz, where_resident()));
    }
    let mut turns_us = Vec::with_capacity(turns);
    for i in 0..turns {
        let chat = &mut open[i % most];
        let t = std::time::Instant::now();
        chat.handle_message("help").await.expect("turn");
        turns_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    turns_us.sort_by(f64::total_cmp);
    drop(open);
    // Let the runtime finish dropping what the sessions held.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (after, _) = rss_vsz_kib();
    Measured {
        label,
        idle,
        idle_vsz,
        idle_where,
        rows,
        after,
        turns_us,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The agent's logger at its default level: what a session logs is part
    // of what it costs.
    catpaw_agent::cli::logging::init(&catpaw_agent::config::Config::default().log.level, false);
    let full = std::env::args().any(|a| a == "--bench");
    let steps: &[usize] = if full { &[100, 1000] } else { &[10, 20] };
    let turns = if full { 2000 } else { 40 };
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
    let live = Budgets {
        max_chat_state: 0,
        ..budgets.clone()
    };
    let all = [
        measure(&sandbox, "saved between turns", budgets, steps, turns).await,
        measure(&sandbox, "live instance between turns", live, steps, turns).await,
    ];

    if !full {
        println!("(smoke run with few sessions; `cargo bench --bench sessions` measures)\n");
    }
    println!("## Open chat sessions (built-in chat runner, one run)\n");
    println!("| idle chats keep | what | RSS | per session over idle | virtual size |");
    println!("|---|---|---|---|---|");
    for m in &all {
        println!(
            "| {} | idle (runner loaded, no session) | {} | | {} |",
            m.label,
            mib(m.idle),
            mib(m.idle_vsz)
        );
        for &(n, rss, vsz, _) in &m.rows {
            println!(
                "| {} | {n} chats open, each answered a turn | {} | {:.1} KiB | {} |",
                m.label,
                mib(rss),
                rss.saturating_sub(m.idle) as f64 / n as f64,
                mib(vsz)
            );
        }
        println!(
            "| {} | after all ended | {} ({:+.1} % of idle) | | |",
            m.label,
            mib(m.after),
            (m.after as f64 - m.idle as f64) / m.idle as f64 * 100.0
        );
    }

    println!("\n### Where each open session's resident memory goes (KiB, over idle)\n");
    println!(
        "| idle chats keep | open chats | memory image (shared) | async stack kept by the store | \
         linear memory and pool slots | host heap | RSS | PSS |\n|---|---|---|---|---|---|---|---|"
    );
    for m in &all {
        for &(n, rss, _, w) in &m.rows {
            let per = |v: u64, idle: u64| v.saturating_sub(idle) as f64 / n as f64;
            println!(
                "| {} | {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                m.label,
                per(w.image, m.idle_where.image),
                per(w.stacks, m.idle_where.stacks),
                per(w.other_anon, m.idle_where.other_anon),
                per(w.heap, m.idle_where.heap),
                per(rss, m.idle),
                per(w.pss, m.idle_where.pss),
            );
        }
    }

    println!("\n### A \"help\" turn on an open chat ({turns} turns over the {most} open chats)\n");
    println!("| idle chats keep | p50 | p99 |\n|---|---|---|");
    for m in &all {
        println!(
            "| {} | {:.0} µs | {:.0} µs |",
            m.label,
            percentile(&m.turns_us, 0.5),
            percentile(&m.turns_us, 0.99)
        );
    }
}
