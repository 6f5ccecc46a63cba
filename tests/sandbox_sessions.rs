//! The built-in runners in the sandbox: every plugin reports, diagnose uses
//! the alert text, chat keeps state across turns, session rules hold.

mod common;

use catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE;
use catpaw_agent::session::SessionEvent;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_of_every_plugin_produces_a_report() {
    let sb = TestSandbox::new();
    let built_in = sb.builtin_diagnose();
    // Each plugin's report carries the numbers of its own area.
    let evidence = [
        ("cpu", "CPU busy"),
        ("mem", "memory used"),
        ("disk", "disk: / ("),
        ("net", "lo "),
        ("process", "top by memory"),
        ("system", "uptime:"),
    ];
    for (plugin, numbers) in evidence {
        let events = inspect(plugin).run_on(&built_in).await;
        assert_eq!(
            error_of(&events),
            None,
            "inspect {plugin} failed: {events:?}"
        );
        let report = report_of(&events).unwrap_or_default();
        assert!(report.contains("Findings"), "{plugin}: {report}");
        assert!(report.contains("Thresholds"), "{plugin}: {report}");
        assert!(
            report.contains(numbers),
            "{plugin} lacks {numbers:?}: {report}"
        );
        assert!(!report.contains("unknown tool"), "{plugin}: {report}");
        let st = stages(&events);
        assert_eq!(
            st.first().map(String::as_str),
            Some("thinking"),
            "{plugin}: {st:?}"
        );
        assert!(st.iter().any(|s| s == "tool_call"), "{plugin}: {st:?}");
        assert!(st.iter().any(|s| s == "tool_result"), "{plugin}: {st:?}");
    }
    // Every tool call was audited.
    let audit = sb.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["kind"] == "tool" && r["name"] == "memory")
    );
    assert!(audit.iter().all(|r| r["session_type"] == "inspect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_of_every_plugin_uses_the_alert_text() {
    let sb = TestSandbox::new();
    let built_in = sb.builtin_diagnose();
    for plugin in ["cpu", "mem", "disk", "net", "process", "system"] {
        let events =
            diagnose(json!({"plugin": plugin, "descriptions": "memory usage above 90% on web-1"}))
                .run_on(&built_in)
                .await;
        assert_eq!(error_of(&events), None, "diagnose {plugin}: {events:?}");
        let report = report_of(&events).unwrap_or_default();
        assert!(
            report.contains("memory usage above 90% on web-1"),
            "{report}"
        );
        assert!(report.contains("Likely cause"), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_defaults_to_the_system_plugin() {
    let sb = TestSandbox::new();
    let events = diagnose(json!({})).run_on(&sb.builtin_diagnose()).await;
    assert_eq!(error_of(&events), None);
    let report = report_of(&events).unwrap_or_default();
    assert!(report.contains("system"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_without_plugin_is_a_missing_plugin_error() {
    let sb = TestSandbox::new();
    let events = session("inspect", json!({}))
        .run_on(&sb.builtin_diagnose())
        .await;
    assert_eq!(
        error_of(&events),
        Some((
            "missing_plugin".into(),
            "plugin is required for inspect".into()
        ))
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_plugin_fails_the_run_with_diagnose_failed() {
    let sb = TestSandbox::new();
    let events = inspect("toaster").run_on(&sb.builtin_diagnose()).await;
    let (code, error) = error_of(&events).expect("must fail");
    assert_eq!(code, "diagnose_failed");
    assert!(error.contains("toaster"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_type_is_invalid_type() {
    let sb = TestSandbox::new();
    let events = session("teleport", json!({}))
        .run_on(&sb.builtin_diagnose())
        .await;
    assert_eq!(
        error_of(&events),
        Some((
            "invalid_type".into(),
            "unknown session type: teleport".into()
        ))
    );
}

fn reply(ev: &SessionEvent) -> (String, String) {
    match ev {
        SessionEvent::Output(p) => {
            assert!(!p.done, "expected a turn, got done");
            assert_eq!(
                p.metadata.as_ref().and_then(|m| m.get("turn_done")),
                Some(&Value::Bool(true)),
                "turn reply must carry turn_done"
            );
            (p.stage.clone(), p.delta.clone())
        }
        other => panic!("expected a turn reply, got {other:?}"),
    }
}

/// Next turn reply, skipping streamed `thinking` deltas.
async fn next_reply(run: &mut Running) -> (String, String) {
    loop {
        let ev = run.next().await;
        if matches!(&ev, SessionEvent::Output(p) if !p.done && p.stage == "thinking") {
            continue;
        }
        return reply(&ev);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_keeps_state_across_turns() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "how is memory?"})).start_on(&sb.builtin_chat());
    let (stage, text) = next_reply(&mut run).await;
    assert_eq!(stage, "answer");
    assert!(text.to_lowercase().contains("memory"), "{text}");
    run.say("what about disk space").await;
    let (_, text) = next_reply(&mut run).await;
    assert!(text.to_lowercase().contains("disk"), "{text}");
    run.say("history").await;
    let (_, text) = next_reply(&mut run).await;
    assert!(text.contains("how is memory?"), "{text}");
    assert!(text.contains("what about disk space"), "{text}");
    // finish() closes the input.
    let rest = run.finish().await;
    assert_eq!(rest.len(), 1, "only done after the input closed: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_chat_turn_is_reported_and_the_chat_goes_on() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({})).start_on(&sb.builtin_chat());
    run.say("   ").await;
    let (stage, text) = next_reply(&mut run).await;
    assert_eq!(stage, "error");
    assert!(text.contains("empty"), "{text}");
    run.say("help").await;
    let (stage, _) = next_reply(&mut run).await;
    assert_eq!(stage, "answer");
    run.cancel.cancel();
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_run_command_is_denied_without_allow_shell() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "run id -u"})).start_on(&sb.builtin_chat());
    let (stage, text) = next_reply(&mut run).await;
    assert_eq!(stage, "answer");
    assert!(text.contains("not allowed"), "{text}");
    run.cancel.cancel();
    run.finish().await;
    let audit = sb.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["kind"] == "shell" && r["outcome"] == "denied")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_runs_commands_with_allow_shell() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "run echo catpaw-$((6*7))"}))
        .allow_shell()
        .start_on(&sb.builtin_chat());
    let (_, text) = next_reply(&mut run).await;
    assert!(text.contains("catpaw-42"), "{text}");
    run.cancel.cancel();
    run.finish().await;
}

#[test]
fn bad_runner_files_are_refused_with_a_clear_message() {
    let sb = TestSandbox::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "text.wasm",
            b"this is not wasm at all",
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            b"\0asm\x01\x00\x00\x00",
            "core WebAssembly module",
        ),
        ("empty.wasm", b"\0asm\x0d\x00\x01\x00", "exports neither"),
        (
            "broken.wasm",
            b"\0asm\x0d\x00\x01\x00\xff\xff\xff",
            "not a valid WebAssembly component",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = sb
            .sandbox
            .load_file(&path, DEFAULT_MAX_RUNNER_SIZE)
            .expect_err(name);
        let msg = format!("{err:#}");
        assert!(msg.contains(expect), "{name}: {msg}");
        assert!(msg.contains(name), "error names the file: {msg}");
    }
    let missing = sb
        .sandbox
        .load_file(&dir.path().join("nope.wasm"), DEFAULT_MAX_RUNNER_SIZE)
        .expect_err("missing");
    assert!(format!("{missing:#}").contains("nope.wasm"));
}

#[test]
fn hazard_guests_export_diagnose_only() {
    let sb = TestSandbox::new();
    let g = sb.load("hazard_spin");
    assert!(g.serves_diagnose());
    assert!(!g.serves_chat());
    let c = sb.builtin_chat();
    assert!(c.serves_chat());
    assert!(!c.serves_diagnose());
}
