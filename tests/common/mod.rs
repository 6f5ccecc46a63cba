//! Shared helpers for the end-to-end tests (all but `conformance.rs`,
//! which shares nothing on purpose). Before writing a new one, look here.
//!
//! # Layout
//!
//! - [`guests`]: real guests built from `guest-runners/` ([`guest`]);
//! - this file: a real sandbox
//!   ([`TestSandbox`]), and sessions run by the real session driver, said
//!   the way a test means them ([`inspect`]`("cpu").budget(..).start_on(&spin)`);
//! - [`server`]: the one fake catpaw-server, [`server::TestServer`], on
//!   loopback over `ws://` or `wss://`;
//! - [`agent`]: the agent in-process against it, with short timers
//!   ([`agent::Harness`]);
//! - [`process`]: the agent binary as a child process, with its home,
//!   config, log and signals ([`process::AgentProcess`]);
//! - [`slow_link`]: a throttling proxy between the agent and the server;
//! - [`fault_proxy`]: a proxy with Toxiproxy's faults, switched while
//!   traffic flows (`tests/fault_campaign.rs`);
//! - [`llm`]: a scripted OpenAI-compatible server and catpaw-server LLM
//!   gateway on loopback (real HTTP, real SSE framing);
//! - [`ai`]: the agent with `[ai]` against it, and what tests read back
//!   (deltas, `llm` audit records, the daily ledger);
//! - [`mcp`]: the fake MCP server and the `[ai.mcp]` section that starts it;
//! - [`host`]: what this host allows (root, the append-only attribute);
//! - this file: [`skip`], how a test that cannot run here says why.
#![allow(dead_code)]

pub mod agent;
pub mod ai;
pub mod fault_proxy;
pub mod guests;
pub mod host;
pub mod llm;
pub mod mcp;
pub mod process;
pub mod python;
pub mod server;
pub mod slow_link;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use catpaw_agent::audit::AuditLog;
use catpaw_agent::config::{DEFAULT_MAX_RUNNER_SIZE, StatePaths};
use catpaw_agent::proto::SessionStartPayload;
use catpaw_agent::sandbox::{
    Budgets, EngineOptions, HostServices, LoadedRunner, Sandbox, SandboxOptions,
};
use catpaw_agent::session::{Runners, SessionEnd, SessionEvent, run_session};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Writes `body` as `<dir>/conf.d/config.toml` (so `state_dir` defaults
/// to `<dir>/state.d`) and returns its path. Unless the body sets its own
/// `[audit]`, the trail is kept without the append-only attribute, which
/// an agent running as root would otherwise set on temp files the test
/// could not remove.
pub fn write_config(dir: &std::path::Path, body: &str) -> PathBuf {
    let conf = dir.join("conf.d");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let path = conf.join("config.toml");
    let mut text = body.to_string();
    if !text.contains("[audit]") {
        text.push_str("\n[audit]\nappend_only = false\n");
    }
    std::fs::write(&path, text).expect("write config");
    path
}

pub use guests::guest;

/// Says why the calling test returns early: `skipped: REASON` on stderr
/// (shown by `cargo test -- --nocapture`), so a skipped test is never
/// mistaken for a passed one (tests/README.md). Call it, then `return`.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
}

/// What `tracing` logs on this thread at `level` and above, as plain text,
/// while the guard lives (a current-thread runtime's tasks included).
///
/// One subscriber serves the whole test binary and writes each event into
/// the capture of the thread that logged it. A subscriber per test
/// (`set_default`) is not enough: a callsite first reached on another
/// test's thread while a new subscriber registers can keep the interest it
/// was given before, and its events are then lost to every capture.
pub fn capture_log(level: tracing::Level) -> (CaptureGuard, CapturedLog) {
    use tracing_subscriber::layer::SubscriberExt;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                CAPTURE.with(|c| c.borrow().as_ref().is_some_and(|(l, _)| meta.level() <= l))
            }));
        let subscriber = tracing_subscriber::registry().with(layer);
        // A binary that installed a subscriber of its own keeps it; its
        // captures then see nothing, which the tests' own checks reveal.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    let log = CapturedLog::default();
    let previous = CAPTURE.with(|c| c.borrow_mut().replace((level, log.clone())));
    (CaptureGuard { previous }, log)
}

use tracing_subscriber::Layer as _;

thread_local! {
    /// The capture of this thread, with its level, while a guard lives.
    static CAPTURE: std::cell::RefCell<Option<(tracing::Level, CapturedLog)>> =
        const { std::cell::RefCell::new(None) };
}

/// Ends a [`capture_log`] when dropped (the thread's earlier capture, if
/// any, resumes).
pub struct CaptureGuard {
    previous: Option<(tracing::Level, CapturedLog)>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
    }
}

/// The writer of the shared subscriber: the logging thread's capture.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some((_, log)) = c.borrow_mut().as_mut() {
                let _ = std::io::Write::write(log, b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The text [`capture_log`] collected.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sandbox whose audit log lives in a fresh temp dir.
pub struct TestSandbox {
    pub sandbox: Arc<Sandbox>,
    pub audit: AuditLog,
    _dir: tempfile::TempDir,
}

impl TestSandbox {
    pub fn new() -> Self {
        Self::build(None, Default::default(), None)
    }

    /// A sandbox whose tool calls are waited for `limit` at most (as
    /// `[ai] tool_timeout` sets it).
    pub fn with_tool_timeout(limit: Duration) -> Self {
        Self::build(None, Default::default(), Some(limit))
    }

    /// A sandbox that keeps compiled runners in `cache_dir` (shared by
    /// tests whose runner takes long to compile).
    pub fn with_cache(cache_dir: Option<PathBuf>) -> Self {
        Self::build(cache_dir, Default::default(), None)
    }

    /// A sandbox whose tools run under the allow-lists `tools`.
    pub fn with_tools(tools: catpaw_agent::tools::ToolConfig) -> Self {
        Self::build(None, tools, None)
    }

    fn build(
        cache_dir: Option<PathBuf>,
        tools: catpaw_agent::tools::ToolConfig,
        tool_timeout: Option<Duration>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = AuditLog::open(&StatePaths::new(dir.path()).audit_trail()).expect("audit");
        let sandbox = Sandbox::new(SandboxOptions {
            engine: EngineOptions {
                pooling: true,
                slots: 8,
                max_memory: 64 << 20,
            },
            cache_dir,
            services: HostServices {
                audit: Some(audit.clone()),
                shell_user: None,
                llm: None,
                tool_timeout,
                tools: Arc::new(tools),
                telemetry: None,
                mcp: None,
            },
        })
        .expect("sandbox");
        TestSandbox {
            sandbox,
            audit,
            _dir: dir,
        }
    }

    pub fn load(&self, name: &str) -> LoadedRunner {
        self.sandbox
            .load_file(&guest(name), DEFAULT_MAX_RUNNER_SIZE)
            .expect("load guest")
    }

    pub fn builtin_diagnose(&self) -> LoadedRunner {
        self.sandbox
            .load("built-in diagnose", catpaw_agent::embedded::DIAGNOSE)
            .expect("built-in diagnose")
    }

    pub fn builtin_chat(&self) -> LoadedRunner {
        self.sandbox
            .load("built-in chat", catpaw_agent::embedded::CHAT)
            .expect("built-in chat")
    }

    /// Audit records as JSON values.
    pub fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit.path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }
}

/// Budgets for tests: the defaults (shell commands capped at 10 s) with an
/// optional tweak.
pub fn limits(f: impl FnOnce(&mut Budgets)) -> Budgets {
    let mut l = Budgets {
        shell_timeout: Duration::from_secs(10),
        ..Budgets::default()
    };
    f(&mut l);
    l
}

pub fn diagnose_runners(r: &LoadedRunner, l: Budgets) -> Runners {
    Runners {
        diagnose: Some(Arc::new(r.diagnose_runner(l).expect("exports diagnose"))),
        chat: None,
        plugins: Vec::new(),
        files: Vec::new(),
    }
}

pub fn chat_runners(r: &LoadedRunner, l: Budgets) -> Runners {
    Runners {
        diagnose: None,
        chat: Some(Arc::new(r.chat_runner(l).expect("exports chat"))),
        plugins: Vec::new(),
        files: Vec::new(),
    }
}

pub fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("params must be an object"),
    }
}

/// A session as a sandbox test says it, run by the real session driver:
///
/// ```ignore
/// inspect("cpu").budget(|b| b.fuel = 200_000_000).start_on(&spin)
/// inspect("cpu").allow_shell().run_on(&probe).await
/// chat(json!({})).budget(|b| b.max_output = 64).start_on(&bot)
/// ```
///
/// The user is `tester`; the budget starts from the defaults; the shell is
/// denied unless asked for.
pub struct Plan {
    session_type: String,
    params: Map<String, Value>,
    budget: Budgets,
    allow_shell: bool,
}

/// A session of `session_type` with `params` (any type, known or not).
pub fn session(session_type: &str, p: Value) -> Plan {
    Plan {
        session_type: session_type.to_string(),
        params: params(p),
        budget: limits(|_| {}),
        allow_shell: false,
    }
}

/// An `inspect` of `plugin`.
pub fn inspect(plugin: &str) -> Plan {
    session("inspect", json!({ "plugin": plugin }))
}

/// A `diagnose` with `params`.
pub fn diagnose(params: Value) -> Plan {
    session("diagnose", params)
}

/// A `chat` with `params`; later turns go in with [`Running::say`].
pub fn chat(params: Value) -> Plan {
    session("chat", params)
}

impl Plan {
    /// One more parameter.
    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Plan {
        self.params.insert(key.to_string(), value.into());
        self
    }

    /// Changes the budget the runner gets.
    pub fn budget(mut self, f: impl FnOnce(&mut Budgets)) -> Plan {
        f(&mut self.budget);
        self
    }

    /// The session may run shell commands.
    pub fn allow_shell(mut self) -> Plan {
        self.allow_shell = true;
        self
    }

    /// Starts the session on `runner` (its chat export for a chat, its
    /// diagnose export for anything else).
    pub fn start_on(self, runner: &LoadedRunner) -> Running {
        let runners = if self.session_type == "chat" {
            chat_runners(runner, self.budget.clone())
        } else {
            diagnose_runners(runner, self.budget.clone())
        };
        self.start_with(runners)
    }

    /// Starts the session on `runners` as they are (e.g. those
    /// `catpaw_agent::cli::setup::build` made from a config file).
    pub fn start_with(self, runners: Runners) -> Running {
        let (tx, rx) = mpsc::channel(16);
        let (in_tx, in_rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let start = SessionStartPayload {
            session_id: uuid::Uuid::new_v4().to_string(),
            session_type: self.session_type,
            user_name: "tester".to_string(),
            params: self.params,
            key_id: None,
        };
        let task = tokio::spawn(run_session(
            start,
            self.allow_shell,
            runners,
            tx,
            in_rx,
            cancel.clone(),
        ));
        Running {
            events: rx,
            inputs: Some(in_tx),
            cancel,
            task,
        }
    }

    /// Runs the session on `runner` to its end: every event up to `done`.
    pub async fn run_on(self, runner: &LoadedRunner) -> Vec<SessionEvent> {
        self.start_on(runner).finish().await
    }
}

/// A running session whose events can be awaited.
pub struct Running {
    pub events: mpsc::Receiver<SessionEvent>,
    pub inputs: Option<mpsc::Sender<String>>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<SessionEnd>,
}

impl Running {
    /// Sends the next chat turn.
    pub async fn say(&self, turn: &str) {
        self.inputs
            .as_ref()
            .expect("the session's input is open")
            .send(turn.to_string())
            .await
            .expect("send turn");
    }

    /// Next event, failing the test after 60 s.
    pub async fn next(&mut self) -> SessionEvent {
        tokio::time::timeout(Duration::from_secs(60), self.events.recv())
            .await
            .expect("session produced no event within 60 s")
            .expect("session channel closed before done")
    }

    /// Collects events up to and including `done`, and checks that exactly
    /// one `done` arrives and nothing after it.
    pub async fn finish(self) -> Vec<SessionEvent> {
        self.finish_with_end().await.0
    }

    /// [`finish`](Self::finish), with how the session ended and its
    /// receipt.
    pub async fn finish_with_end(mut self) -> (Vec<SessionEvent>, SessionEnd) {
        drop(self.inputs.take());
        let mut all = Vec::new();
        loop {
            let ev = self.next().await;
            let done = ev.is_done();
            all.push(ev);
            if done {
                break;
            }
        }
        let end = self.task.await.expect("session task");
        assert!(self.events.recv().await.is_none(), "events after done");
        (all, end)
    }
}

/// The one `session_error` among events, if any: `(code, error)`.
pub fn error_of(events: &[SessionEvent]) -> Option<(String, String)> {
    let errs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Error(p) => Some((p.code.clone(), p.error.clone())),
            _ => None,
        })
        .collect();
    assert!(errs.len() <= 1, "more than one session_error: {errs:?}");
    errs.into_iter().next()
}

/// The report on the `done` message.
pub fn report_of(events: &[SessionEvent]) -> Option<String> {
    match events.last() {
        Some(SessionEvent::Output(p)) if p.done => p.report.clone(),
        other => panic!("last event is not done: {other:?}"),
    }
}

/// Stages of the streamed (non-done) outputs, in order.
pub fn stages(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output(p) if !p.done => Some(p.stage.clone()),
            _ => None,
        })
        .collect()
}
