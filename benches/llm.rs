//! Host overhead of one language-model call, the model excluded: a
//! scripted OpenAI-compatible server on loopback answers at once (three
//! streamed text pieces, usage), and the same call is timed three ways:
//!
//! - raw HTTP floor: reqwest POSTs the request and reads the SSE body,
//!   nothing parsed;
//! - the host client: `catpaw_agent::ai::Llm::complete` (request building,
//!   SSE parsing, scrubbing, the daily ledger written to disk);
//! - from a guest: the bench runner calls `llm.complete` through the
//!   sandbox (WIT lowering, budgets, the audit record before and after,
//!   streaming the deltas to a sink), the session set-up subtracted.
//!
//! Run: `cargo bench --bench llm`

#[path = "../tests/common/guests.rs"]
mod guests;

#[path = "../tests/common/llm.rs"]
#[allow(dead_code)]
mod llm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catpaw_agent::ai::{AiConfig, ModelConfig, Secret};
use catpaw_agent::ai::{CallContext, Llm, Message, Role};
use catpaw_agent::audit::AuditLog;
use catpaw_agent::runner::{DiagnoseRequest, DiagnoseRunner, Output, SessionInfo, StreamSink};
use catpaw_agent::sandbox::{Budgets, EngineOptions, HostServices, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;

const CALLS: u32 = 300;

struct NullSink;

#[async_trait]
impl StreamSink for NullSink {
    async fn send(&self, _out: Output) {}
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn req(plugin: &str, n: u32) -> DiagnoseRequest {
    DiagnoseRequest {
        mode: "inspect".into(),
        plugin: plugin.into(),
        target: n.to_string(),
        params: Default::default(),
    }
}

#[tokio::main]
async fn main() {
    let server = llm::LlmServer::start(vec![], Some(llm::text("The load is normal."))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = ModelConfig {
        provider: "openai".into(),
        base_url: server.base_url(),
        api_key: Secret::new("sk-bench-0123456789"),
        api_key_from_env: false,
        model: "bench".into(),
        max_tokens: 1000,
        max_completion_tokens: 0,
        context_window: 128_000,
        extra_body: Default::default(),
    };
    let cfg = AiConfig {
        enabled: true,
        model_priority: vec!["bench".into()],
        models: BTreeMap::from([("bench".to_string(), model)]),
        max_retries: 0,
        ..AiConfig::default()
    };
    let client = Arc::new(
        Llm::new(
            &cfg,
            "bench-agent".into(),
            dir.path().join("llm_tokens.json"),
        )
        .expect("client")
        .expect("enabled"),
    );

    // Raw HTTP floor.
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    let body = serde_json::json!({"model": "bench", "stream": true, "messages": [
        {"role": "system", "content": "You diagnose hosts."},
        {"role": "user", "content": "Is the load high?"}]});
    let raw = async || {
        let r = http.post(&url).json(&body).send().await.expect("send");
        r.bytes().await.expect("body");
    };
    raw().await;
    let start = Instant::now();
    for _ in 0..CALLS {
        raw().await;
    }
    let floor = start.elapsed() / CALLS;

    // The host client.
    let messages = vec![
        Message {
            role: Role::System,
            content: "You diagnose hosts.".into(),
            tool_calls: vec![],
            tool_call_id: None,
        },
        Message {
            role: Role::User,
            content: "Is the load high?".into(),
            tool_calls: vec![],
            tool_call_id: None,
        },
    ];
    let cx = CallContext {
        scene: "diagnose",
        session_id: "bench".into(),
    };
    let call = async || {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let admitted = client
            .admit(messages.clone(), vec![], &[])
            .expect("within budget");
        let (r, _) = client.complete(&cx, admitted, &tx).await;
        drop(tx);
        drain.await.expect("drain");
        r.expect("reply");
    };
    call().await;
    let start = Instant::now();
    for _ in 0..CALLS {
        call().await;
    }
    let direct = start.elapsed() / CALLS;

    // From a guest: without tools and audit (the floor of the import),
    // then audited, then offering every tool as the AI runner does.
    let guest = guests::guest("catpaw_bench_guest");
    let info = SessionInfo {
        session_id: "bench".into(),
        session_type: "diagnose".into(),
        user_name: "bench".into(),
        allow_shell: false,
        key_id: None,
    };
    let sink: Arc<dyn StreamSink> = Arc::new(NullSink);
    let mut per_guest = Vec::new();
    for (audited, plugin) in [(false, "llm-bare"), (true, "llm-bare"), (true, "llm")] {
        let audit = audited.then(|| {
            AuditLog::open(&dir.path().join(format!("audit-{plugin}.jsonl"))).expect("audit")
        });
        let sandbox = Sandbox::new(SandboxOptions {
            engine: EngineOptions {
                pooling: true,
                slots: 4,
                max_memory: 64 << 20,
            },
            services: HostServices {
                audit,
                shell_user: None,
                llm: Some(client.clone()),
                tool_timeout: None,
                telemetry: None,
                mcp: None,
                tools: Default::default(),
            },
            ..SandboxOptions::default()
        })
        .expect("sandbox");
        let loaded = sandbox
            .load_file(&guest, catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE)
            .expect("bench guest");
        let runner = loaded
            .diagnose_runner(Budgets {
                max_llm_calls: u64::from(CALLS) + 1,
                llm_tokens: u64::MAX,
                llm_turn_tokens: u64::MAX,
                ..Budgets::default()
            })
            .expect("diagnose");
        let run = async |plugin: &str, n: u32| {
            let start = Instant::now();
            runner
                .run(
                    &info,
                    req(plugin, n),
                    sink.clone(),
                    CancellationToken::new(),
                )
                .await
                .expect("run");
            start.elapsed()
        };
        run(plugin, 1).await;
        let setup = (run("noop", 0).await + run("noop", 0).await + run("noop", 0).await) / 3;
        let total = run(plugin, CALLS).await;
        per_guest.push((audited, plugin, total.saturating_sub(setup) / CALLS));
    }
    let (_, _, bare) = per_guest[0];
    let (_, _, guest_per) = per_guest[1];
    let (_, _, with_tools) = per_guest[2];

    println!("One language-model call, {CALLS} calls each, loopback server answering at once:\n");
    println!("| path | per call |");
    println!("|---|---|");
    println!(
        "| raw HTTP floor (reqwest POST, SSE body read, nothing parsed) | {} |",
        us(floor)
    );
    println!(
        "| host client `Llm::complete` (no tools) | {} |",
        us(direct)
    );
    println!("| from a guest, no tools, audit off | {} |", us(bare));
    println!("| from a guest, no tools, audited | {} |", us(guest_per));
    println!(
        "| from a guest, every tool offered, audited (the AI runner's call) | {} |",
        us(with_tools)
    );
    println!();
    println!(
        "host client over the floor (request, SSE parse, scrub, daily ledger): {}",
        us(direct.saturating_sub(floor))
    );
    println!(
        "the import over the client (WIT, budgets, streaming to the sink): {}",
        us(bare.saturating_sub(direct))
    );
    println!(
        "the audit records of a call: {}",
        us(guest_per.saturating_sub(bare))
    );
    println!(
        "total host overhead per call, no tools, the model excluded: {}",
        us(guest_per.saturating_sub(floor))
    );
}
