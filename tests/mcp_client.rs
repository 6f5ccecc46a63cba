//! The `[ai.mcp]` servers end to end: the agent built from a config file
//! starts a real MCP server (tests/fixtures/mcp_server.py, over stdio),
//! and real guests call its tools through `list-tools` / `call-tool`:
//! audited, refused outside `tools_allow` or without the `mcp`
//! capability, bounded in time, restarted when the server dies, masked,
//! with only the configured environment, as `[sandbox] shell_user`, and
//! its whole tree gone when the agent is killed.

mod common;

use std::path::Path;
use std::time::Duration;

use catpaw_agent::cli::setup::Setup;
use common::ai::{agent, ai_toml};
use common::llm::{LlmServer, calls, text};
use common::mcp::python;
use common::process::{AgentHome, alive, marked, server_toml, until};
use common::server::TestServer;
use common::{diagnose, error_of, guest, report_of};
use serde_json::{Value, json};

/// `[ai.mcp]` with the fake server `fake`, every tool but `forbidden`
/// and `whoami` allowed.
fn mcp_toml(python: &Path) -> String {
    common::mcp::mcp_toml(
        python,
        r#"FAKE_URL = "http://127.0.0.1:9", FAKE_TOKEN = "tok-1""#,
        &[
            "echo", "env", "secret", "big", "hang", "crash", "flood", "broken",
        ],
    )
}

/// An agent whose diagnose runner is the guest `runner`, waiting
/// `timeout` for each tool call.
fn runner_agent(dir: &Path, python: &Path, runner: &str, timeout: &str) -> Setup {
    let body = format!(
        "[sandbox]\ndiagnose_runner = \"{}\"\n[ai]\ntool_timeout = \"{timeout}\"\n{}",
        guest(runner).display(),
        mcp_toml(python)
    );
    agent(dir, &body)
}

/// Runs one diagnose of `hazard_mcp_tour` making `calls`; its report.
async fn tour(a: &Setup, calls: &[(&str, &str)]) -> Value {
    let calls: Vec<Value> = calls.iter().map(|(n, a)| json!([n, a])).collect();
    let events = diagnose(json!({ "calls": calls }))
        .start_with(a.runners.clone())
        .finish()
        .await;
    assert_eq!(error_of(&events), None);
    serde_json::from_str(&report_of(&events).expect("a report")).expect("JSON report")
}

fn audit(a: &Setup) -> Vec<Value> {
    std::fs::read_to_string(a.audit.path())
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn call_text(report: &Value, i: usize) -> (bool, String) {
    let c = &report["calls"][i];
    (
        c["ok"].as_bool().expect("ok"),
        c["text"].as_str().expect("text").to_string(),
    )
}

fn pid_of(echo: &str) -> u64 {
    let v: Value = serde_json::from_str(echo).expect("echo is JSON");
    v["pid"].as_u64().expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_tool_is_called_and_audited_and_the_rest_refused() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    let dir = tempfile::tempdir().unwrap();
    let a = runner_agent(dir.path(), &py, "hazard_mcp_tour", "20s");
    let r = tour(
        &a,
        &[
            ("mcp__fake__echo", r#"{"text":"hello"}"#),
            ("mcp__fake__forbidden", "{}"),
            ("cpu", "{}"),
        ],
    )
    .await;
    // Listed: the allowed tools only, named and described for the model;
    // no built-in tool (the runner declared `mcp` alone).
    let listed: Vec<&str> = r["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "mcp__fake__echo",
            "mcp__fake__env",
            "mcp__fake__secret",
            "mcp__fake__big",
            "mcp__fake__hang",
            "mcp__fake__crash",
            "mcp__fake__flood",
            "mcp__fake__broken"
        ]
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let short = host.trim().split('.').next().unwrap().to_string();
    let first = &r["listed"][0];
    assert_eq!(
        first["description"],
        format!("the echo tool (MCP server \"fake\"; this host: instance={short}:9100)")
    );
    assert_eq!(
        first["schema"],
        r#"{"properties":{"text":{"type":"string"}},"type":"object"}"#
    );
    let (ok, echo) = call_text(&r, 0);
    assert!(ok, "{echo}");
    let v: Value = serde_json::from_str(&echo).unwrap();
    assert_eq!(v["args"], json!({"text": "hello"}));
    let (ok, refused) = call_text(&r, 1);
    assert!(!ok);
    assert!(
        refused.contains("\"forbidden\" is not in the tools_allow"),
        "{refused}"
    );
    let (ok, cpu) = call_text(&r, 2);
    assert!(!ok);
    assert!(
        cpu.contains("tool cpu: this runner did not declare it"),
        "{cpu}"
    );

    let records = audit(&a);
    let echo_records: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "tool" && r["name"] == "mcp__fake__echo")
        .collect();
    assert_eq!(echo_records.len(), 2, "{records:?}");
    assert_eq!(echo_records[0]["event"], "started");
    assert_eq!(echo_records[0]["args"], r#"{"text":"hello"}"#);
    assert_eq!(echo_records[1]["event"], "outcome");
    assert_eq!(echo_records[1]["outcome"], "ok");
    assert!(records.iter().any(|r| r["name"] == "mcp__fake__forbidden"
        && r["outcome"] == "refused"
        && r["event"] == "outcome"));
    assert!(
        !records
            .iter()
            .any(|r| r["name"] == "mcp__fake__forbidden" && r["event"] == "started")
    );

    // The host owns the server: on shutdown its whole tree is gone.
    let pid = pid_of(&echo);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    a.mcp.as_ref().expect("servers").shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "server {pid} outlived the agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_alone_does_not_grant_mcp_tools() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    let dir = tempfile::tempdir().unwrap();
    let a = runner_agent(dir.path(), &py, "hazard_tool_tour", "20s");
    let events = diagnose(json!({"calls": [["mcp__fake__echo", "{}"]]}))
        .start_with(a.runners.clone())
        .finish()
        .await;
    let rows: Value = serde_json::from_str(&report_of(&events).unwrap()).unwrap();
    assert_eq!(rows[0]["ok"], false);
    let text = rows[0]["text"].as_str().unwrap();
    assert!(
        text.contains("this runner did not declare it (describe capabilities: tools)")
            && text.contains("add `mcp` or `mcp:fake`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_server_costs_the_call_and_is_restarted() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    let dir = tempfile::tempdir().unwrap();
    let a = runner_agent(dir.path(), &py, "hazard_mcp_tour", "3s");
    let r = tour(
        &a,
        &[
            ("mcp__fake__echo", "{}"),
            ("mcp__fake__hang", "{}"),
            ("mcp__fake__echo", "{}"),
            ("mcp__fake__crash", "{}"),
            ("mcp__fake__echo", "{}"),
            ("mcp__fake__flood", "{}"),
            ("mcp__fake__echo", "{}"),
            ("mcp__fake__broken", "{}"),
            ("mcp__fake__echo", "{}"),
        ],
    )
    .await;
    let (ok, first) = call_text(&r, 0);
    assert!(ok, "{first}");
    // A hanging tool times out; the server still answers the next call.
    let (ok, hang) = call_text(&r, 1);
    assert!(!ok);
    assert!(
        hang.contains("did not answer within 3s ([ai] tool_timeout)"),
        "{hang}"
    );
    let (ok, after_hang) = call_text(&r, 2);
    assert!(ok, "{after_hang}");
    assert_eq!(pid_of(&after_hang), pid_of(&first));
    // A crash mid-call fails that call; the next goes to a new process.
    let (ok, crash) = call_text(&r, 3);
    assert!(!ok, "{crash}");
    let (ok, after_crash) = call_text(&r, 4);
    assert!(ok, "{after_crash}");
    assert_ne!(pid_of(&after_crash), pid_of(&first));
    // A line without end past the bound ends that connection too.
    let (ok, flood) = call_text(&r, 5);
    assert!(!ok, "{flood}");
    let (ok, after_flood) = call_text(&r, 6);
    assert!(ok, "{after_flood}");
    assert_ne!(pid_of(&after_flood), pid_of(&after_crash));
    // Text that is not JSON-RPC gets the call no answer, and no more.
    let (ok, broken) = call_text(&r, 7);
    assert!(!ok, "{broken}");
    let (ok, after_broken) = call_text(&r, 8);
    assert!(ok, "{after_broken}");
    let outcomes: Vec<String> = audit(&a)
        .iter()
        .filter(|r| r["kind"] == "tool" && r["event"] == "outcome")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok", "error", "ok", "error", "ok", "error", "ok", "error", "ok"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sees_only_its_configured_environment_and_secrets_are_masked() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    let dir = tempfile::tempdir().unwrap();
    let a = runner_agent(dir.path(), &py, "hazard_mcp_tour", "20s");
    let r = tour(
        &a,
        &[
            ("mcp__fake__env", "{}"),
            ("mcp__fake__secret", "{}"),
            ("mcp__fake__big", "{}"),
        ],
    )
    .await;
    let (ok, env) = call_text(&r, 0);
    assert!(ok, "{env}");
    let env: Value = serde_json::from_str(&env).expect("env is JSON");
    let mut keys: Vec<&str> = env
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["FAKE_TOKEN", "FAKE_URL", "HOME", "LANG", "PATH"]);
    assert_eq!(env["FAKE_URL"], "http://127.0.0.1:9");
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "the agent's own env has more"
    );
    let (ok, secret) = call_text(&r, 1);
    assert!(ok, "{secret}");
    assert!(!secret.contains("s3cret"), "{secret}");
    assert!(secret.contains("--password=***"), "{secret}");
    // Cut like a built-in tool's output, and said so.
    let (ok, big) = call_text(&r, 2);
    assert!(ok, "{big}");
    assert!(big.starts_with(&"y".repeat(32 * 1024)), "{}", big.len());
    assert_eq!(big.len(), 32 * 1024 + "\n[cut at 32768 bytes]".len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ai_runner_calls_an_mcp_tool_and_the_model_sees_it_masked() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    let report = "## Finding\n\nThe fake server answered.";
    let server = LlmServer::start(
        vec![
            calls(&[("mcp__fake__secret", "{}")]),
            calls(&[("mcp__fake__echo", r#"{"text":"from the model"}"#)]),
            text(report),
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        ai_toml(&[("main", server.base_url())], "tool_timeout = \"5s\""),
        mcp_toml(&py)
    );
    let a = agent(dir.path(), &body);
    let events = common::ai::alert()
        .start_with(a.runners.clone())
        .finish()
        .await;
    assert_eq!(error_of(&events), None);
    assert_eq!(report_of(&events).as_deref(), Some(report));
    let got = server.received();
    assert_eq!(got.len(), 3);
    let offered: Vec<&str> = got[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        offered.contains(&"cpu") && offered.contains(&"mcp__fake__echo"),
        "{offered:?}"
    );
    assert!(!offered.contains(&"mcp__fake__forbidden"), "{offered:?}");
    // What the model was told of each result.
    let tool_results = |req: &common::llm::Request| -> Vec<String> {
        req.messages()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    let second = tool_results(&got[1]);
    assert_eq!(second.len(), 1);
    assert!(second[0].contains("--password=***"), "{second:?}");
    for req in &got {
        assert!(
            !req.body.to_string().contains("s3cret"),
            "the model saw a secret"
        );
    }
    let third = tool_results(&got[2]);
    assert!(third[1].contains("from the model"), "{third:?}");
    let names: Vec<String> = audit(&a)
        .iter()
        .filter(|r| r["kind"] == "tool" && r["event"] == "outcome" && r["outcome"] == "ok")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mcp__fake__secret", "mcp__fake__echo"]);
}

/// The uid and gid of `nobody` in /etc/passwd.
fn nobody() -> (u64, u64) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("a user nobody");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_as_the_shell_user() {
    let Some(py) = common::mcp::python_for_anyone() else {
        return common::skip("no python3 and fixture that nobody may run");
    };
    if !common::host::is_root() {
        return common::skip("not root: no shell_user to run the server as");
    }
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[sandbox]
diagnose_runner = \"{}\"\nshell_user = \"nobody\"\n[ai]\n\
         tool_timeout = \"20s\"\n{}",
        common::guest("hazard_mcp_tour").display(),
        common::mcp::mcp_toml(&py, "", &["whoami"])
    );
    let a = agent(dir.path(), &body);
    let r = tour(&a, &[("mcp__fake__whoami", "{}")]).await;
    let (ok, who) = call_text(&r, 0);
    assert!(ok, "{who}");
    let who: Value = serde_json::from_str(&who).expect("whoami is JSON");
    let (uid, gid) = nobody();
    assert_eq!(
        (who["uid"].as_u64(), who["gid"].as_u64()),
        (Some(uid), Some(gid)),
        "the server did not run as nobody: {who}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_agent_takes_the_server_and_its_child_along() {
    let Some(py) = python() else {
        return common::skip("no python3");
    };
    // Every process of the server's tree carries the mark in its
    // environment: the server from its `env`, its `sleep` by inheritance.
    let work = tempfile::tempdir().unwrap();
    let mark = format!("CATPAW_TREE={}", work.path().display());
    let env = format!(
        "CATPAW_TREE = \"{}\", FAKE_CHILD = \"1\"",
        work.path().display()
    );
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&format!(
        "{}{}",
        server_toml(&server, None, ""),
        common::mcp::mcp_toml(&py, &env, &["echo"])
    ));
    let mut agent = home.spawn();
    let _ = server.accept_registered().await;
    let both = |t: &[(i32, String)]| {
        t.iter().any(|(_, c)| c.contains("mcp_server.py"))
            && t.iter().any(|(_, c)| c == "sleep 300 ")
    };
    assert!(
        until(Duration::from_secs(10), || both(&marked(&mark))).await,
        "the server and its sleep never ran: {:?}",
        marked(&mark)
    );
    let tree: Vec<i32> = marked(&mark).iter().map(|(p, _)| *p).collect();
    agent.sigkill();
    assert!(
        until(Duration::from_secs(5), || tree.iter().all(|&p| !alive(p))
            && marked(&mark).is_empty())
        .await,
        "the MCP server's tree outlived the agent: {tree:?}, still running {:?}",
        marked(&mark)
    );
}
