//! `catpaw-agent check-runner FILE`: tells a runner author whether a
//! component will load and what it costs, before any agent runs it.
//!
//! The file is probed step by step (component, compile, exports, imports,
//! worlds and WIT version, `describe`), after its signature is checked
//! as the agent checks it (`[sandbox] runner_keys` of the config), then
//! each role it serves is run once the way the agent runs sessions: with
//! what it declared narrowed by the config's `[sandbox.policy.*]`, under
//! the default limits lowered by those tables. An inspect of each plugin
//! it describes, a diagnose, and a two-turn chat.
//! Each run's receipt is shown. The check passes only when every step and
//! run does; each failure says what to change.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runner::{
    Budget, ChatRunner, ChatSessionOpts, DiagnoseRequest, DiagnoseRunner, Output, Provenance,
    Receipt, RunError, SessionInfo, StreamSink,
};
use crate::sandbox::{Budgets, EngineOptions, LoadedRunner, Sandbox, SandboxOptions, Step};

/// The whole verdict, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file checked.
    pub file: String,
    /// True when every step and run passed.
    pub ok: bool,
    /// WIT package version it was built against, once known.
    pub wit: Option<String>,
    /// The world its exports match, once known.
    pub world: Option<String>,
    /// The probe's steps.
    pub steps: Vec<Step>,
    /// Hex SHA-256 of the component, once it loaded.
    pub sha256: Option<String>,
    /// What its sessions would be granted under this config: its declared
    /// capabilities ∩ the `[sandbox.policy.<name>]` tables that match it.
    pub capabilities: Option<String>,
    /// Who vouches for the file: `unsigned`, or `NAME (key KEYID)` whose
    /// signature was checked against `[sandbox] runner_keys`; `None` when
    /// the check refused it (its step says why).
    pub signer: Option<String>,
    /// The compiled code came from the compile cache (an earlier check or
    /// agent compiled the same file).
    pub from_cache: bool,
    /// Compiling it, in milliseconds; `None` when it came from the cache.
    pub compile_ms: Option<f64>,
    /// Loading it from the compile cache, in milliseconds.
    pub cached_load_ms: Option<f64>,
    /// One run per role it serves.
    pub runs: Vec<Run>,
    /// `--recordings DIR`: each recording replayed against the runner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recordings: Option<super::suite::SuiteCheck>,
}

/// One smoke run.
#[derive(Debug, Serialize)]
pub struct Run {
    /// `inspect <plugin>`, `diagnose`, `chat`.
    pub what: String,
    /// Whether it finished without error.
    pub ok: bool,
    /// For a failure: what went wrong and what to change.
    pub error: Option<String>,
    /// Output messages it streamed.
    pub deltas: u64,
    /// What it used.
    pub receipt: Option<Receipt>,
}

/// Counts what a smoke run streams.
#[derive(Default)]
struct Counter(AtomicU64);

#[async_trait]
impl StreamSink for Counter {
    async fn send(&self, _out: Output) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks `file`; the report says everything, Err only when the check
/// itself could not run (a config that does not load, no engine).
///
/// The compiled code goes to the compile cache of the state directory the
/// config (`config`, or the default path) names, as the agent's and
/// `session`'s do: checking the same file again, or serving it from that
/// state directory, skips the compile (tens of seconds for a Python runner).
///
/// With `recordings`, every recording in that directory is also replayed
/// against the file (`replay --suite`); the check passes only when each
/// replays identical.
pub async fn check(
    file: &Path,
    config: Option<&Path>,
    recordings: Option<&Path>,
) -> anyhow::Result<Report> {
    let cfg = Config::load(config)?;
    let cache = cfg.paths().compile_cache();
    let trust = cfg.sandbox.runner_trust.clone();
    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: false,
            ..EngineOptions::default()
        },
        cache_dir: Some(cache.clone()),
        services: Default::default(),
    })?;
    let mut report = Report {
        file: file.display().to_string(),
        ok: false,
        wit: None,
        world: None,
        steps: Vec::new(),
        sha256: None,
        capabilities: None,
        signer: None,
        from_cache: false,
        compile_ms: None,
        cached_load_ms: None,
        runs: Vec::new(),
        recordings: None,
    };
    // As the agent reads it: a regular file within the default
    // `[sandbox] max_runner_size`, judged before a byte is read.
    let cap = crate::config::DEFAULT_MAX_RUNNER_SIZE;
    // Read once: the signature is checked over the bytes the probe
    // compiles, as the agent does.
    let read = tokio::task::spawn_blocking({
        let file = file.to_path_buf();
        move || {
            crate::fsafe::read_file(&file, cap).map(|b| {
                let signed = crate::runner::signature::verify_file(&trust, &file, &b);
                (b, signed)
            })
        }
    })
    .await?;
    let bytes = match read {
        Ok((b, signed)) => {
            let (ok, detail) = match signed {
                Ok(p) => {
                    let detail = match &p {
                        Provenance::Unsigned => "unsigned (allowed: `[sandbox] \
                            require_signed_runners` is false)"
                            .to_string(),
                        p => format!("signed by {p}"),
                    };
                    report.signer = Some(p.to_string());
                    (true, detail)
                }
                Err(e) => (false, e.to_string()),
            };
            report.steps.push(Step {
                name: "signature",
                ok,
                detail,
            });
            if !ok {
                // The agent would refuse it before compiling: so does this.
                return Ok(report);
            }
            b
        }
        Err(e) => {
            report.steps.push(Step {
                name: "read",
                ok: false,
                detail: match e {
                    crate::fsafe::FileError::TooLarge { .. } => format!(
                        "{e}: the agent's default `[sandbox] max_runner_size` is {cap} bytes"
                    ),
                    e => e.to_string(),
                },
            });
            return Ok(report);
        }
    };
    // The probe compiles into (or reads from) the sandbox's own cache
    // directory, so loading the runner afterwards reads the artifact
    // instead of compiling a second time.
    let probe = {
        let sandbox = sandbox.clone();
        let name = file.display().to_string();
        tokio::task::spawn_blocking(move || sandbox.probe(&name, &bytes, &cache)).await?
    };
    report.steps.extend(probe.steps);
    report.from_cache = probe.from_cache;
    report.compile_ms = probe.compile_time.map(|d| d.as_secs_f64() * 1e3);
    report.cached_load_ms = probe.cached_load_time.map(|d| d.as_secs_f64() * 1e3);
    if let Some(runner) = &probe.runner {
        report.wit = Some(runner.version().to_string());
        report.world = Some(runner.world().to_string());
        report.sha256 = Some(runner.sha256().to_string());
        let (step, granted) = capabilities(runner, &cfg);
        report.capabilities = Some(granted);
        let refused = !step.ok;
        report.steps.push(step);
        // The agent would refuse it at load: nothing to run.
        if !refused {
            report.runs = smoke(runner, &cfg.sandbox.policies).await;
        }
    }
    if let (Some(dir), Some(_)) = (recordings, &probe.runner) {
        report.recordings = Some(super::suite::check(dir, file).await);
    }
    report.ok = probe.runner.is_some()
        && report.steps.iter().all(|s| s.ok)
        && report.runs.iter().all(|r| r.ok)
        && report.recordings.as_ref().is_none_or(|s| s.ok);
    Ok(report)
}

/// The `capabilities` step: what the runner declared and what its
/// sessions would be granted under `cfg`'s policies, per role it serves
/// (the grant alone, second). A runner that declares nothing passes with
/// a warning, or fails under `[sandbox] require_declared_capabilities`.
fn capabilities(runner: &LoadedRunner, cfg: &Config) -> (Step, String) {
    let mut roles = Vec::new();
    for (serves, role, budgets) in [
        (
            runner.serves_diagnose(),
            "diagnose",
            &cfg.sandbox.budgets.diagnose,
        ),
        (runner.serves_chat(), "chat", &cfg.sandbox.budgets.chat),
    ] {
        if serves {
            let (r, _) = cfg.sandbox.policies.apply(runner, role, budgets);
            roles.push((role, r.grant().granted.to_string()));
        }
    }
    let granted = match roles.as_slice() {
        [(_, a), (_, b)] if a != b => format!("{a} (diagnose), {b} (chat)"),
        [(_, a), ..] => a.clone(),
        [] => runner.grant().granted.to_string(),
    };
    let step = |ok: bool, detail: String| Step {
        name: "capabilities",
        ok,
        detail,
    };
    let step = match (
        &runner.grant().declared,
        runner.check_declared(cfg.sandbox.require_declared_capabilities),
    ) {
        (Some(d), _) => step(true, format!("declared {d}; granted {granted}")),
        (None, Ok(())) => step(
            true,
            format!(
                "warning: declares none, so it keeps everything the operator allows \
                 (granted {granted}); declare what it uses in describe (`tools` or \
                 `tools:NAME,...`, `shell`, `llm`, `mcp`)"
            ),
        ),
        (None, Err(e)) => step(false, format!("{e:#}")),
    };
    (step, granted)
}

fn info(kind: &str) -> SessionInfo {
    SessionInfo {
        session_id: format!("check-{kind}"),
        session_type: kind.to_string(),
        user_name: "check-runner".to_string(),
        allow_shell: false,
        key_id: None,
    }
}

/// What to change for a run that failed with `e`.
fn advice(e: &RunError) -> String {
    match e {
        RunError::ResourceExhausted { budget, .. } => {
            let key = match budget {
                Budget::Fuel => "fuel",
                Budget::Memory => "max_memory",
                Budget::Time => "timeout",
                Budget::Output => "max_output",
                Budget::Calls => "max_host_calls",
                Budget::LlmTokens => "llm_tokens",
                Budget::LlmCalls => "max_llm_calls",
            };
            format!(
                "{e}: the run does not fit the default limits (lowered by any matching \
                 [sandbox.policy.*]); make it do less, or raise `{key}` under [sandbox] for \
                 every session (and in the policy that lowered it)"
            )
        }
        RunError::Trapped(_) => format!("the runner crashed; fix the trap it names: {e}"),
        RunError::Failed(m) => {
            format!("the runner returned an error: {m}; a smoke run must succeed")
        }
        RunError::ModelUnavailable(_) => format!(
            "{e}: the language model could not be reached; check [ai] (the agent would serve \
             the session with the rule-based runner)"
        ),
        RunError::Cancelled | RunError::Host(_) => format!("{e}"),
    }
}

/// Runs every role the runner serves as the agent would grant it: its
/// declaration narrowed by the `[sandbox.policy.*]` tables that match it
/// for that role, under the default limits lowered by those tables.
async fn smoke(runner: &LoadedRunner, policies: &crate::sandbox::Policies) -> Vec<Run> {
    let mut runs = Vec::new();
    let (as_diagnose, budgets) = policies.apply(runner, "diagnose", &Budgets::default());
    if let Some(d) = as_diagnose.diagnose_runner(budgets) {
        for plugin in runner.plugin_names() {
            runs.push(diagnose_run(&d, "inspect", &plugin, Map::new()).await);
        }
        let mut params = Map::new();
        params.insert(
            "descriptions".into(),
            Value::String("check-runner smoke test: high load".into()),
        );
        // A diagnose names the runner's first plugin, or the server's
        // default when it describes none.
        let plugin = runner
            .plugin_names()
            .into_iter()
            .next()
            .unwrap_or_else(|| crate::proto::DEFAULT_DIAGNOSE_PLUGIN.to_string());
        runs.push(diagnose_run(&d, "diagnose", &plugin, params).await);
    }
    let (as_chat, budgets) = policies.apply(runner, "chat", &Budgets::default());
    if let Some(c) = as_chat.chat_runner(budgets) {
        runs.push(chat_run(&c).await);
    }
    runs
}

async fn diagnose_run(
    runner: &dyn DiagnoseRunner,
    kind: &str,
    plugin: &str,
    params: Map<String, Value>,
) -> Run {
    let sink = Arc::new(Counter::default());
    let req = DiagnoseRequest {
        mode: if kind == "inspect" {
            "inspect"
        } else {
            "alert"
        }
        .to_string(),
        plugin: plugin.to_string(),
        target: "localhost".to_string(),
        params,
    };
    let (result, receipt) = runner
        .run_metered(&info(kind), req, sink.clone(), CancellationToken::new())
        .await;
    Run {
        what: if kind == "inspect" {
            format!("inspect {plugin}")
        } else {
            "diagnose".to_string()
        },
        ok: result.is_ok(),
        error: result.err().map(|e| advice(&e)),
        deltas: sink.0.load(Ordering::Relaxed),
        receipt,
    }
}

async fn chat_run(runner: &dyn ChatRunner) -> Run {
    let sink = Arc::new(Counter::default());
    let mut run = Run {
        what: "chat (2 turns)".to_string(),
        ok: false,
        error: None,
        deltas: 0,
        receipt: None,
    };
    let opts = ChatSessionOpts { allow_shell: false };
    let started = runner
        .start(&info("chat"), opts, sink.clone(), CancellationToken::new())
        .await;
    let mut chat = match started {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("starting the conversation: {}", advice(&e)));
            return run;
        }
    };
    let mut failed = None;
    for turn in ["hello", "help"] {
        if let Err(e) = chat.handle_message(turn).await {
            failed = Some(format!("turn {turn:?}: {}", advice(&e)));
            break;
        }
    }
    run.receipt = chat.receipts().map(|(_, s)| s);
    run.deltas = sink.0.load(Ordering::Relaxed);
    run.ok = failed.is_none();
    run.error = failed;
    run
}

/// The report for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = format!("check-runner {}\n", r.file);
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    for s in &r.steps {
        out.push_str(&format!("  {} {:<10} {}\n", mark(s.ok), s.name, s.detail));
    }
    if let Some(sha) = &r.sha256 {
        out.push_str(&format!("       {:<10} {sha}\n", "sha256"));
    }
    match (r.compile_ms, r.cached_load_ms) {
        (Some(c), Some(l)) => out.push_str(&format!(
            "       {:<10} compile {c:.1} ms, cached load {l:.2} ms\n",
            "timing"
        )),
        (None, Some(l)) => out.push_str(&format!(
            "       {:<10} cached load {l:.2} ms (not compiled: from cache)\n",
            "timing"
        )),
        _ => {}
    }
    for run in &r.runs {
        // A trap's error ends with the guest's stderr (a panic message, a
        // traceback): its lines are indented under the run.
        let what = match &run.error {
            Some(e) => e.replace('\n', "\n         | "),
            None => format!("{} deltas", run.deltas),
        };
        out.push_str(&format!("  {} {:<10} {what}\n", mark(run.ok), run.what));
        if let Some(receipt) = &run.receipt {
            out.push_str(&format!("       receipt: {}\n", receipt.line()));
        }
    }
    if let Some(suite) = &r.recordings {
        for row in &suite.rows {
            let ok = row.verdict == "identical";
            out.push_str(&format!(
                "  {} {:<10} {} ({}): {}\n",
                mark(ok),
                "recording",
                row.recording,
                row.session_type,
                if ok {
                    row.detail.clone()
                } else {
                    format!("{}: {}", row.verdict, row.detail)
                }
            ));
        }
        out.push_str(&format!(
            "  {} {:<10} {}\n",
            mark(suite.ok),
            "replay",
            suite.summary
        ));
    }
    let failed = r.steps.iter().filter(|s| !s.ok).count()
        + r.runs.iter().filter(|x| !x.ok).count()
        + r.recordings.as_ref().map_or(0, |s| usize::from(!s.ok));
    out.push_str(&if r.ok {
        "result: ok, the runner is ready for --runner or [sandbox] runner\n".to_string()
    } else {
        format!("result: FAIL ({failed} failed; see above for what to change)\n")
    });
    out
}
