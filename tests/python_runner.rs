//! The example Python runner (`guest-runners/python`, built with
//! componentize-py) end to end through the session driver and the real
//! sandbox: describe, tool calls, streaming, a chat with a denied and a
//! granted shell, and a budget breach.

mod common;

use catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE;
use catpaw_agent::sandbox::{LoadedRunner, WitVersion};
use catpaw_agent::session::SessionEvent;
use common::{TestSandbox, chat, diagnose, error_of, inspect, report_of, stages};
use serde_json::json;

/// The Python runner, loaded once per test binary (through the compile
/// cache shared with other test binaries).
fn python() -> &'static (TestSandbox, LoadedRunner) {
    static LOADED: std::sync::OnceLock<(TestSandbox, LoadedRunner)> = std::sync::OnceLock::new();
    LOADED.get_or_init(|| {
        let file = common::python::example_runner();
        let sb = TestSandbox::with_cache(Some(common::python::compile_cache()));
        let r = sb
            .sandbox
            .load_file(&file, DEFAULT_MAX_RUNNER_SIZE)
            .expect("the Python runner loads");
        (sb, r)
    })
}

/// The session id of a session's events.
fn session_id(events: &[SessionEvent]) -> String {
    match events.last().expect("events") {
        SessionEvent::Output(p) => p.session_id.clone(),
        SessionEvent::Error(e) => e.session_id.clone(),
    }
}

/// The answers of a chat's turns, in order.
fn answers(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output(p)
                if p.metadata
                    .as_ref()
                    .and_then(|m| m.get("turn_done"))
                    .is_some() =>
            {
                Some(p.delta.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_runner_serves_every_session_kind_end_to_end() {
    let (sb, py) = python();
    let py = py.clone();
    assert_eq!(py.version(), WitVersion::V0_2);
    assert_eq!(py.world(), "runner");
    assert_eq!(py.plugin_names(), ["cpu", "mem", "disk", "uptime"]);

    // Inspect: tool calls stream as they happen, then the report.
    let (events, end) = inspect("mem").start_on(&py).finish_with_end().await;
    assert_eq!(end.outcome, "ok", "{events:?}");
    let s = stages(&events);
    assert!(
        s.iter().any(|x| x == "tool_call") && s.iter().any(|x| x == "tool_result"),
        "{s:?}"
    );
    let report = report_of(&events).expect("report");
    assert!(
        report.contains("# Inspection: mem on localhost (catpaw-py)"),
        "{report}"
    );
    assert!(
        report.contains("total_bytes"),
        "the memory tool's JSON: {report}"
    );
    let r = end.receipt.expect("receipt");
    assert!(
        r.tool_calls == 2 && r.fuel_used > 0 && r.peak_memory <= r.memory_limit,
        "{r:?}"
    );
    let sid = session_id(&events);
    let audited = sb
        .audit_records()
        .iter()
        .filter(|a| a["kind"] == "tool" && a["event"] == "started" && a["session_id"] == sid)
        .count();
    assert_eq!(audited, 2, "every tool call is audited");

    // Diagnose: the alert text is read from params.
    let events = diagnose(json!({"descriptions": "host slow"}))
        .run_on(&py)
        .await;
    let report = report_of(&events).expect("report");
    assert!(
        report.contains("> host slow") && report.contains("## uptime"),
        "{report}"
    );

    // Chat: state across turns; a shell request without a grant is denied
    // (an answer, the chat goes on).
    let run = chat(json!({"message": "uptime"})).start_on(&py);
    run.say("run id").await;
    run.say("hello").await;
    let (events, end) = run.finish_with_end().await;
    let a = answers(&events);
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a[0].starts_with("turn 1, uptime:"), "{a:?}");
    assert!(a[1].starts_with("shell denied: "), "{a:?}");
    assert!(
        a[2].starts_with("turn 3:"),
        "the conversation kept its state: {a:?}"
    );
    assert_eq!(end.receipt.expect("receipt").shell_requests, 1);
    let denied = sb
        .audit_records()
        .iter()
        .any(|a| a["kind"] == "shell" && a["name"] == "id" && a["outcome"] == "denied");
    assert!(denied, "{:?}", sb.audit_records());

    // With a grant, the command runs.
    let run = chat(json!({"message": "run echo from-python"}))
        .allow_shell()
        .start_on(&py);
    let a = answers(&run.finish().await);
    assert_eq!(a, ["exit 0\nfrom-python\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_runner_is_held_to_its_budgets() {
    let py = python().1.clone();
    // An inspect takes some 200 000 fuel units; a quarter of that breaks
    // the fuel budget.
    let (events, end) = inspect("cpu")
        .budget(|b| b.fuel = 50_000)
        .start_on(&py)
        .finish_with_end()
        .await;
    let (code, error) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted", "{error}");
    assert!(error.contains("fuel"), "{error}");
    assert_eq!(end.receipt.expect("receipt").fuel_max_run, 50_000);

    // Less memory than the interpreter needs: the memory budget, by name.
    let events = inspect("cpu")
        .budget(|b| b.max_memory = 4 << 20)
        .run_on(&py)
        .await;
    let (code, error) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted", "{error}");
    assert!(error.contains("memory"), "{error}");
}
