//! The `catpaw-agent session` harness, run as a user would run it.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::guest;
use common::process::{AgentHome, HomeCommand};
use serde_json::Value;

/// `catpaw-agent session`, run in a fresh bare home (so the default config
/// path is absent and state goes to a throwaway place) that lives as long
/// as the returned command.
fn session() -> HomeCommand {
    let mut cmd = AgentHome::bare().into_command();
    cmd.arg("session");
    cmd
}

/// The payload lines of `--json` output (the receipt line that ends it is
/// left out; [`receipt_line`] reads it).
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    all_json_lines(stdout)
        .into_iter()
        .filter(|v| v.get("receipt").is_none())
        .collect()
}

fn all_json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The receipt `--json` prints after the last payload.
fn receipt_line(stdout: &[u8]) -> Value {
    let all = all_json_lines(stdout);
    let last = all.last().expect("output");
    assert!(
        last.get("receipt").is_some(),
        "the last line is the receipt: {last}"
    );
    assert_eq!(
        all.iter().filter(|v| v.get("receipt").is_some()).count(),
        1,
        "one receipt"
    );
    last["receipt"].clone()
}

#[test]
fn every_session_kind_ends_with_a_plausible_receipt() {
    let cases: [&[&str]; 3] = [
        &["--type", "inspect", "--param", "plugin=cpu"],
        &["--type", "diagnose", "--param", "descriptions=disk full"],
        &["--type", "chat", "--param", "message=memory"],
    ];
    for args in cases {
        let out = session().args(args).arg("--json").output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = receipt_line(&out.stdout);
        let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(
            n("fuel_used") > 0 && n("fuel_max_run") <= n("fuel_limit"),
            "{args:?}: {r}"
        );
        assert!(
            n("peak_memory") > 0 && n("peak_memory") <= n("memory_limit"),
            "{r}"
        );
        assert!(
            n("tool_calls") > 0,
            "every built-in session calls a tool: {r}"
        );
        assert!(n("emits") > 0 && n("output_bytes") > 0, "{r}");
        assert!(n("output_bytes") <= n("output_limit"), "{r}");
        assert_eq!(n("memory_limit"), 64 << 20);
        assert_eq!(n("shell_requests"), 0);
    }
    // Without --json the receipt is one line beside the transcript.
    let out = session()
        .args(["--type", "inspect", "--param", "plugin=mem"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("receipt: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("fuel") && lines[0].contains("memory peak"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("receipt"));
}

#[test]
fn json_mode_prints_the_payloads_a_server_would_receive() {
    let out = session()
        .args(["--type", "inspect", "--param", "plugin=mem", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let last = lines.last().expect("lines");
    assert_eq!(last["done"], true);
    assert_eq!(last["stage"], "");
    assert!(
        last["report"]
            .as_str()
            .unwrap_or("")
            .contains("memory used")
    );
    let sid = last["session_id"].as_str().expect("session id");
    for l in &lines {
        assert_eq!(l["session_id"], sid);
        let keys: Vec<&str> = l
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for k in &keys {
            assert!(
                ["session_id", "delta", "stage", "done", "report", "metadata"].contains(k),
                "unexpected field {k}"
            );
        }
    }
    assert_eq!(lines.iter().filter(|l| l["done"] == true).count(), 1);
    assert!(lines.iter().any(|l| l["stage"] == "tool_call"));
}

#[test]
fn a_failed_session_exits_non_zero_with_the_reason() {
    let out = session()
        .args(["--type", "diagnose", "--fuel", "100000", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stdout);
    let err = lines
        .iter()
        .find(|l| l.get("code").is_some())
        .expect("session_error line");
    assert_eq!(err["code"], "resource_exhausted");
    assert!(err["error"].as_str().unwrap_or("").contains("fuel"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resource_exhausted"), "{stderr}");
}

#[test]
fn chat_reads_turns_from_stdin() {
    let mut cmd = session();
    let mut child = cmd
        .args(["--type", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"memory\nhistory\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Memory"), "{text}");
    assert!(text.contains("1. memory"), "{text}");
}

#[test]
fn a_bad_runner_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("diagnose.wasm");
    std::fs::write(&bad, b"not wasm").expect("write");
    let out = session()
        .args(["--type", "diagnose", "--runner"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("diagnose.wasm") && stderr.contains("not a WebAssembly file"),
        "{stderr}"
    );
}

#[test]
fn a_custom_runner_replaces_the_built_in_one() {
    let echo = guest("hazard_echo");
    let out = session()
        .args([
            "--type",
            "inspect",
            "--param",
            "plugin=cpu",
            "--param",
            "count=2",
            "--json",
            "--runner",
        ])
        .arg(&echo)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let answers: Vec<&str> = lines
        .iter()
        .filter(|l| l["stage"] == "answer")
        .filter_map(|l| l["delta"].as_str())
        .collect();
    assert_eq!(answers, ["delta 0", "delta 1"]);
    assert_eq!(
        lines.last().and_then(|l| l["report"].as_str()),
        Some("echo report: plugin=cpu target=localhost mode=inspect")
    );
}

#[test]
fn bad_limit_flags_are_refused() {
    let out = session()
        .args(["--type", "diagnose", "--max-memory", "lots"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lots") && stderr.contains("size"),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_harness_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = session();
    let mut child = cmd
        .args(["--type", "diagnose", "--json"])
        .args(["--param", "descriptions=disk full on /"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // `catpaw-agent session ... | head -1`.
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    assert!(serde_json::from_str::<Value>(&first).is_ok(), "{first}");
    drop(out);
    let result = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Either it had already finished, or the closed pipe ended it the
    // way it ends any Unix filter.
    assert!(
        result.status.success() || result.status.signal() == Some(libc::SIGPIPE),
        "{:?}\n{stderr}",
        result.status
    );
}

#[test]
fn a_guest_log_flood_is_capped_in_the_agent_log() {
    let flood = guest("hazard_log_flood");
    let out = session()
        .args(["--type", "inspect", "--param", "plugin=cpu", "--runner"])
        .arg(&flood)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Log lines are not an error: the session still ends with its report.
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("log flood finished"));
    // 100 000 lines of 1 KiB were written; 16 KiB of them (the default
    // guest_stdio budget) reach the log, plus the warnings saying so.
    let kept = stderr.lines().filter(|l| l.contains("LLLL")).count();
    assert!((1..=16).contains(&kept), "{kept} lines kept");
    assert!(stderr.len() < 64 * 1024, "{} bytes of log", stderr.len());
    assert!(stderr.contains("dropped_lines"), "{stderr}");
    assert!(
        stderr.contains("99984"),
        "the count of dropped lines: {stderr}"
    );
}

/// `[ai]` pointing at the scripted model server on `base_url`.
fn ai_home(base_url: &str) -> common::process::AgentHome {
    common::process::AgentHome::new(&format!(
        "[ai]\nenabled = true\nmodel_priority = [\"local\"]\nmax_retries = 0\nlanguage = \"en\"\n\
         [ai.models.local]\nprovider = \"openai\"\nbase_url = \"{base_url}\"\n\
         api_key = \"local-test-key-31f2\"\nmodel = \"qwen\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ai_configured_a_diagnose_is_answered_by_the_model() {
    use common::llm::{LlmServer, calls, text};
    let server = LlmServer::start(
        vec![
            calls(&[("cpu", "{}")]),
            text("## Report\n\nThe CPU is idle."),
        ],
        None,
    )
    .await;
    let home = ai_home(&server.base_url());
    let mut cmd = home.command();
    cmd.args([
        "session",
        "--type",
        "diagnose",
        "--param",
        "plugin=cpu",
        "--param",
        "descriptions=load above 8",
        "--json",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let last = lines.last().expect("lines");
    assert_eq!(last["report"], "## Report\n\nThe CPU is idle.");
    assert!(
        lines
            .iter()
            .any(|l| l["stage"] == "tool_call" && l["delta"] == "cpu({})")
    );
    assert_eq!(server.received().len(), 2);
    assert!(home.audit().iter().any(|r| r["kind"] == "llm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ai_configured_a_chat_talks_to_the_model_turn_by_turn() {
    use common::llm::{LlmServer, text};
    let server = LlmServer::start(
        vec![text("Hello from the model."), text("Still here.")],
        None,
    )
    .await;
    let home = ai_home(&server.base_url());
    let mut cmd = home.command();
    cmd.args(["session", "--type", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"hi\nare you there?\n")
            .expect("write");
        child.wait_with_output()
    })
    .await
    .expect("join")
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Hello from the model.") && stdout.contains("Still here."),
        "{stdout}"
    );
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].messages().len(),
        4,
        "the second turn carries the first"
    );
}
