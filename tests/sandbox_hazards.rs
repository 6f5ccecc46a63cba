//! Each hazard guest ends its own session with the right code, and a normal
//! session beside it is unharmed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE;
use catpaw_agent::runner::{DiagnoseRequest, DiagnoseRunner, RunError, SessionInfo, StreamSink};
use catpaw_agent::sandbox::{Budgets, EngineOptions, Sandbox, SandboxOptions};
use catpaw_agent::session::SessionEvent;
use common::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_runs_out_of_fuel_while_a_normal_session_completes() {
    let sb = TestSandbox::new();
    let spin = sb.load("hazard_spin");
    let normal = sb.builtin_diagnose();
    let hazard = inspect("cpu")
        .budget(|b| b.fuel = 200_000_000)
        .start_on(&spin);
    let beside = inspect("mem").start_on(&normal);
    let (h, n) = tokio::join!(hazard.finish(), beside.finish());
    let (code, error) = error_of(&h).expect("spin must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("fuel"), "{error}");
    assert_eq!(error_of(&n), None, "normal session was harmed");
    let report = report_of(&n).expect("normal session has a report");
    assert!(report.contains("Findings"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_an_endless_loop_long_before_any_budget_would() {
    let sb = TestSandbox::new();
    let spin = sb.load("hazard_spin");
    let mut run = inspect("cpu")
        .budget(|b| {
            b.fuel = u64::MAX / 4;
            b.timeout = Duration::from_secs(600);
        })
        .start_on(&spin);
    // The guest streams `spinning` right before its loop: once it is
    // here, the guest is in the loop (or a few instructions from it).
    match run.next().await {
        SessionEvent::Output(p) if !p.done && p.stage == "thinking" && p.delta == "spinning" => {}
        other => panic!("expected the `spinning` delta first, got {other:?}"),
    }
    let cancelled_at = Instant::now();
    run.cancel.cancel();
    let events = run.finish().await;
    let took = cancelled_at.elapsed();
    // A bound that only catches a hang, not a latency measurement: a cancel
    // is seen at the guest's next fuel yield (every 1 M units) and ends the
    // session in milliseconds, while a loop left running would go on to its
    // 600 s wall clock (and fail `finish`'s 60 s wait for an event first).
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");
    assert_eq!(error_of(&events), None, "a cancel is not an error");
    assert_eq!(events.len(), 1, "only the done message: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_budget_ends_an_endless_loop() {
    let sb = TestSandbox::new();
    let spin = sb.load("hazard_spin");
    let started = Instant::now();
    let events = inspect("cpu")
        .budget(|b| {
            b.fuel = u64::MAX / 4;
            b.timeout = Duration::from_millis(500);
        })
        .run_on(&spin)
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("time"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps() {
    let sb = TestSandbox::new();
    let recursion = sb.load("hazard_recursion");
    let events = inspect("cpu").run_on(&recursion).await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "runner_trapped");
    assert!(error.contains("stack overflow"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_guest_traps_with_its_message() {
    let sb = TestSandbox::new();
    let panics = sb.load("hazard_trap");
    let events = diagnose(json!({})).run_on(&panics).await;
    assert_eq!(
        stages(&events),
        ["thinking"],
        "the delta before the panic streams"
    );
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "runner_trapped");
    assert!(error.contains("deliberate panic"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_asks_the_host_to_copy_more_than_the_guest_holds_traps_before_the_copy() {
    let sb = TestSandbox::new();
    let probe = sb.load("hazard_llm_probe");
    // 64 tool schemas that all point at one 1 MiB string: 64 MiB for the
    // host to copy out of 1 MiB of guest memory.
    let events = diagnose(json!({"target": "amplify"})).run_on(&probe).await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "runner_trapped", "{error}");
    assert!(error.contains("too much data"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_flood_runs_out_of_output_budget() {
    let sb = TestSandbox::new();
    let flood = sb.load("hazard_emit_flood");
    let events = inspect("cpu")
        .budget(|b| b.max_output = 256 * 1024)
        .run_on(&flood)
        .await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("output"), "{error}");
    let streamed: usize = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output(p) if !p.done => Some(p.delta.len()),
            _ => None,
        })
        .sum();
    assert!(
        streamed <= 256 * 1024,
        "streamed {streamed} bytes past the budget"
    );
    assert!(
        streamed > 200 * 1024,
        "deltas before the breach were delivered: {streamed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsized_report_or_answer_counts_against_the_output_budget() {
    let sb = TestSandbox::new();
    let echo = sb.load("hazard_echo");
    // A report past the budget never reaches the server.
    let events = inspect("cpu")
        .param("report_bytes", 4 << 20)
        .budget(|b| b.max_output = 64 * 1024)
        .run_on(&echo)
        .await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(
        error.contains("report") && error.contains("65536"),
        "{error}"
    );
    assert!(report_of(&events).is_none());
    // One within it does.
    let events = inspect("cpu")
        .param("report_bytes", 32 * 1024)
        .budget(|b| b.max_output = 64 * 1024)
        .run_on(&echo)
        .await;
    assert_eq!(report_of(&events).map(|r| r.len()), Some(32 * 1024));

    // The same for a chat answer: the built-in chat's help does not fit
    // into 64 bytes.
    let bot = sb.builtin_chat();
    let run = chat(json!({})).budget(|b| b.max_output = 64).start_on(&bot);
    run.say("help").await;
    let events = run.finish().await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("answer"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_flood_runs_out_of_its_call_budget_and_the_audit_stays_bounded() {
    let sb = TestSandbox::new();
    let flood = sb.load("hazard_call_flood");
    let normal = sb.builtin_diagnose();
    let hazard = inspect("cpu")
        .budget(|b| b.max_host_calls = 30)
        .start_on(&flood);
    let ok = inspect("system").start_on(&normal);
    let events = hazard.finish().await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(
        error.contains("tool call") && error.contains("more than 30"),
        "{error}"
    );
    assert!(report_of(&ok.finish().await).is_some());

    // 30 calls went ahead (tools and denied shell requests alike), the 31st
    // was refused and recorded as such; nothing after it. (Each tool call
    // also has its `started` record before its outcome.)
    let audit = sb.audit_records();
    let flood: Vec<_> = audit
        .iter()
        .filter(|r| r["session_id"] == events_session(&audit, "no-such-tool"))
        .filter(|r| r["event"] == "outcome")
        .collect();
    assert_eq!(flood.len(), 31, "{flood:?}");
    assert_eq!(flood[30]["outcome"], "refused");
    assert!(flood[..30].iter().any(|r| r["kind"] == "shell"));
    assert!(flood[..30].iter().any(|r| r["name"] == "uptime"));
}

/// The session id of the audit records that mention tool `name`.
fn events_session(audit: &[serde_json::Value], name: &str) -> serde_json::Value {
    audit
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| r["session_id"].clone())
        .expect("a record of the tool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_stream_while_the_guest_is_still_running() {
    let sb = TestSandbox::new();
    let flood = sb.load("hazard_emit_flood");
    let mut run = inspect("cpu")
        .budget(|b| b.timeout = Duration::from_secs(600))
        .start_on(&flood);
    // The flood never returns: any delta we see was streamed live.
    match run.next().await {
        SessionEvent::Output(p) => {
            assert!(!p.done);
            assert_eq!(p.stage, "thinking");
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    run.cancel.cancel();
    let rest = run.finish().await;
    assert!(rest.last().is_some_and(|e| e.is_done()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_cannot_read_host_files_env_or_network() {
    // A listener that answers, so a refused connection can only mean the
    // guest had no socket, not that nothing was there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let sb = TestSandbox::new();
    let probe = sb.load("hazard_file_probe");
    let events = inspect("cpu").param("port", port).run_on(&probe).await;
    assert_eq!(
        error_of(&events),
        None,
        "probe reported an escape: {events:?}"
    );
    let report = report_of(&events).expect("report");
    assert!(report.starts_with("blocked:"), "{report}");
    assert!(!report.contains("root:"), "{report}");
    // Every probe ran and was refused (each names what it tried).
    for tried in [
        "read /etc/passwd: ".to_string(),
        "list /: ".to_string(),
        "environment: empty".to_string(),
        format!("connect 127.0.0.1:{port}: "),
        "resolve localhost: ".to_string(),
        format!("udp to 127.0.0.1:{port}: "),
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(&tried)),
            "no {tried:?} line in {report}"
        );
    }
    // The listener saw no connection from the guest.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the host's listener: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_is_denied_without_allow_shell_and_audited() {
    let sb = TestSandbox::new();
    let probe = sb.load("hazard_shell_probe");
    let events = inspect("cpu").run_on(&probe).await;
    let report = report_of(&events).expect("report");
    assert!(report.starts_with("shell denied"), "{report}");
    let audit = sb.audit_records();
    let shell: Vec<_> = audit.iter().filter(|r| r["kind"] == "shell").collect();
    assert_eq!(shell.len(), 1, "{audit:?}");
    assert_eq!(shell[0]["outcome"], "denied");
    assert_eq!(shell[0]["user"], "tester");
    assert!(
        shell[0]["name"]
            .as_str()
            .unwrap_or("")
            .contains("catpaw-shell-ok")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_is_granted_with_allow_shell_and_audited() {
    let sb = TestSandbox::new();
    let probe = sb.load("hazard_shell_probe");
    let events = inspect("cpu").allow_shell().run_on(&probe).await;
    let report = report_of(&events).expect("report");
    assert!(report.starts_with("shell granted"), "{report}");
    assert!(report.contains("catpaw-shell-ok"), "{report}");
    let audit = sb.audit_records();
    // The synced `started` record, then the outcome that names it.
    let shell: Vec<_> = audit.iter().filter(|r| r["kind"] == "shell").collect();
    assert_eq!(shell.len(), 2, "{audit:?}");
    assert_eq!(shell[0]["event"], "started");
    assert_eq!(shell[1]["event"], "outcome");
    assert_eq!(shell[1]["act"], shell[0]["seq"]);
    assert_eq!(shell[1]["outcome"], "exit");
    assert_eq!(shell[1]["detail"], "exit 0");
}

/// Runs the trap hazard (a stdout line, then a panic) in a sandbox
/// keeping `stdio_cap` bytes of stdio; returns the session's error and
/// everything it logged.
fn run_the_trap_guest(stdio_cap: usize) -> (RunError, String) {
    struct NullSink;
    #[async_trait]
    impl StreamSink for NullSink {
        async fn send(&self, _out: catpaw_agent::runner::Output) {}
    }

    let sandbox = Sandbox::new(SandboxOptions {
        engine: EngineOptions {
            pooling: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("sandbox");
    let path = guest("hazard_trap");
    let runner = sandbox
        .load_file(&path, DEFAULT_MAX_RUNNER_SIZE)
        .expect("trap guest")
        .diagnose_runner(Budgets {
            guest_stdio: stdio_cap as u64,
            ..Budgets::default()
        })
        .expect("a diagnose runner");
    let info = SessionInfo {
        session_id: "trap-1".into(),
        session_type: "diagnose".into(),
        user_name: "test".into(),
        allow_shell: false,
        key_id: None,
    };
    let req = DiagnoseRequest {
        mode: "inspect".into(),
        plugin: "cpu".into(),
        target: "localhost".into(),
        params: Default::default(),
    };
    let (guard, log) = capture_log(tracing::Level::INFO);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(runner.run(&info, req, Arc::new(NullSink), CancellationToken::new()));
    drop(guard);
    (result.expect_err("the guest panics"), log.text())
}

#[test]
fn a_trapped_run_logs_everything_the_guest_printed() {
    let (err, log) = run_the_trap_guest(16 * 1024);
    // The stderr tail goes into the error …
    assert!(
        matches!(err, RunError::Trapped(ref m) if m.contains("deliberate panic")),
        "{err:?}"
    );
    // … and the whole of what the guest printed into the log.
    let logged = |stream: &str, text: &str| {
        log.lines().any(|l| {
            l.contains("session_id=trap-1")
                && l.contains(&format!("stream=\"{stream}\""))
                && l.contains(text)
        })
    };
    assert!(
        logged("stdout", "hazard-trap: stdout before the panic"),
        "{log}"
    );
    assert!(logged("stderr", "panicked at"), "{log}");
    assert!(logged("stderr", "hazard-trap: deliberate panic"), "{log}");
    assert!(logged("stderr", "RUST_BACKTRACE"), "{log}");

    // Past the cap, the log says how much was dropped.
    let (_, log) = run_the_trap_guest(8);
    assert!(log.contains("dropped_bytes="), "{log}");
}

#[test]
fn a_runner_whose_describe_acts_on_the_host_does_not_load() {
    let sb = TestSandbox::new();
    // Its describe calls a tool and the model: acts no session owns, which
    // nothing could audit.
    let err = sb
        .sandbox
        .load_file(&guest("hazard_describe_calls"), DEFAULT_MAX_RUNNER_SIZE)
        .map(|_| ())
        .expect_err("must not load");
    let text = format!("{err:#}");
    assert!(
        text.contains("describe export failed") && text.contains("more than 0 tool calls"),
        "{text}"
    );
}
