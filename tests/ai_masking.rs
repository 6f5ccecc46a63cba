//! Secrets in tool results never reach the model provider (README: "tool
//! results are masked before they reach a prompt"; SECURITY.md: "Tool
//! messages are masked again before they leave for the provider"): a
//! real process on this host with a password on its command line, read
//! by a real tool the AI runner calls, and a hostile runner that writes a
//! password into a tool message itself; every request body the scripted
//! provider received is searched.

mod common;

use common::ai::{agent, ai_toml, alert, probe_agent};
use common::llm::{LlmServer, calls, text};
use common::{diagnose, error_of, report_of};
use serde_json::{Value, json};

/// A secret no other process or file on the host holds.
fn secret() -> String {
    format!("hunter2-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Every `tool` message of every request the provider received.
fn tool_messages(server: &LlmServer) -> Vec<String> {
    server
        .received()
        .iter()
        .flat_map(|r| r.messages())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts that no request body the provider received holds `secret`.
fn assert_never_sent(server: &LlmServer, secret: &str) {
    let got = server.received();
    assert!(!got.is_empty(), "the provider was asked nothing");
    for (i, r) in got.iter().enumerate() {
        let body = r.body.to_string();
        assert!(
            !body.contains(secret),
            "request {i} to the provider holds the secret: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_on_a_command_line_reaches_the_model_masked_and_never_in_clear() {
    let secret = secret();
    let mark = format!("catpaw-mask-probe-{}", rand_suffix());
    let _holder = common::process::SecretHolder::start(&mark, &secret);
    let args = json!({ "cmdline_contains": mark }).to_string();
    let server = LlmServer::start(
        vec![
            calls(&[("process_count", args.as_str())]),
            text("## Database\n\nIt runs."),
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = agent(dir.path(), &ai_toml(&[("main", server.base_url())], ""));
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(error_of(&events), None, "{events:?}");

    assert_never_sent(&server, &secret);
    // The tool did find the process, and the model got its command line
    // with the password masked.
    let tools = tool_messages(&server);
    assert!(
        tools.iter().any(|t| t.contains(&mark)
            && t.contains("--db-password=***")
            && t.contains("\"count\":1")),
        "no tool message with the masked command line: {tools:?}"
    );
    // Nor did the session's output or the audit trail carry it.
    assert!(!format!("{events:?}").contains(&secret), "{events:?}");
    let trail = std::fs::read_to_string(a.audit.path()).expect("trail");
    assert!(!trail.contains(&secret), "the audit holds the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_a_runner_writes_into_a_tool_message_is_masked_before_the_provider() {
    let secret = secret();
    let server = LlmServer::start(vec![text("noted")], None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = probe_agent(dir.path(), &server, "", "");
    let events = diagnose(json!({ "target": "tool-message", "secret": secret }))
        .start_with(a.runners.clone())
        .finish()
        .await;
    let report = report_of(&events).expect("the probe reports");
    assert!(report.starts_with("complete: Ok("), "{report}");

    assert_never_sent(&server, &secret);
    let tools = tool_messages(&server);
    assert_eq!(
        tools,
        ["postgres started with DB_PASSWORD=*** in its environment"],
        "{:?}",
        server
            .received()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<Value>>()
    );
}
