//! The runner platform: what a runner says about itself (`describe`),
//! components of the previous WIT version, and which role a component
//! replaces.

mod common;

use catpaw_agent::config::Config;
use catpaw_agent::link::agent::Agent;
use catpaw_agent::sandbox::WitVersion;
use catpaw_agent::session::Runners;
use common::agent::payload;
use common::agent::{config, fast};
use common::process::AgentHome;
use common::server::TestServer;
use common::{TestSandbox, guest};
use tokio_util::sync::CancellationToken;

/// The built-in diagnose runner's plugins: its one table.
fn builtin_plugins() -> Vec<&'static str> {
    catpaw_guest_common::plugin_names()
}

#[test]
fn the_builtin_runners_describe_themselves() {
    let sb = TestSandbox::new();
    let d = sb.builtin_diagnose();
    assert_eq!(d.version(), WitVersion::V0_2);
    let desc = d.description().expect("0.2.0 runners describe themselves");
    assert_eq!(desc.name, "catpaw-diagnose");
    let names: Vec<&str> = desc.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, builtin_plugins());
    for p in &desc.plugins {
        assert!(!p.description.is_empty(), "{} has a description", p.name);
    }
    let c = sb.builtin_chat();
    let desc = c.description().expect("chat describes itself");
    assert_eq!(desc.name, "catpaw-chat");
    assert!(desc.plugins.is_empty());
    assert!(desc.capabilities.iter().any(|c| c == "shell"));
}

#[test]
fn a_component_built_against_0_1_0_loads_runs_and_lists_no_plugins() {
    let sb = TestSandbox::new();
    let old = sb.load("hazard_trap");
    assert_eq!(old.version(), WitVersion::V0_1);
    assert!(old.description().is_none());
    assert!(old.plugin_names().is_empty());
    assert!(old.serves_diagnose());
}

/// The `register` an agent serving `runners` sends, with `plugins` unset
/// in its config.
async fn registered_plugins(runners: impl FnOnce(&TestSandbox) -> Runners) -> serde_json::Value {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("tempdir");
    let sb = TestSandbox::new();
    let cfg: Config = config(server.addr, state.path(), |c| c.plugins.clear());
    let agent = Agent::new(&cfg, runners(&sb), fast()).expect("agent");
    let stop = CancellationToken::new();
    let task = {
        let (a, s) = (agent.clone(), stop.clone());
        tokio::spawn(async move { a.run(s).await })
    };
    let (_conn, reg) = server.accept_registered().await;
    stop.cancel();
    let _ = task.await;
    payload(&reg)["plugins"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_lists_the_plugins_the_diagnose_runner_describes() {
    let plugins = registered_plugins(common::agent::builtin_runners).await;
    assert_eq!(plugins, serde_json::json!(builtin_plugins()));

    let plugins = registered_plugins(|sb| {
        let old = sb.load("hazard_trap");
        Runners {
            plugins: old.plugin_names(),
            ..common::diagnose_runners(&old, common::limits(|_| {}))
        }
    })
    .await;
    assert_eq!(plugins, serde_json::json!([]), "a 0.1.0 runner lists none");
}

/// Runs `catpaw-agent --runner FILE session ARGS…` and returns (success,
/// stdout, stderr).
fn session_with_runner(runner: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = AgentHome::bare().into_command();
    cmd.arg("--runner")
        .arg(guest(runner))
        .arg("session")
        .args(args);
    let out = cmd.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kept_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("runner is kept"))
        .collect()
}

#[test]
fn a_diagnose_only_runner_replaces_diagnose_and_chat_keeps_the_builtin() {
    // Diagnose goes to the file …
    let (ok, out, err) = session_with_runner(
        "hazard_echo",
        &["--type", "inspect", "--param", "plugin=cpu", "--json"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("echo report: plugin=cpu"), "{out}");
    let kept = kept_lines(&err);
    assert_eq!(kept.len(), 1, "one warning line: {err}");
    assert!(
        kept[0].contains("hazard_echo.wasm") && kept[0].contains("does not serve chat"),
        "{err}"
    );
    // … and chat still works, on the built-in runner.
    let (ok, out, err) = session_with_runner(
        "hazard_echo",
        &["--type", "chat", "--param", "message=help", "--json"],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("chat engine not available"), "{out}");
    assert!(out.contains("turn_done"), "{out}");
}

#[test]
fn a_chat_only_runner_replaces_chat_and_diagnose_keeps_the_builtin() {
    let (ok, out, err) = session_with_runner(
        "hazard_chat_refuse",
        &["--type", "chat", "--param", "message=hi", "--json"],
    );
    assert!(!ok, "the file's chat refuses: {out}");
    assert!(out.contains("this runner refuses to chat"), "{out}");
    let kept = kept_lines(&err);
    assert_eq!(kept.len(), 1, "one warning line: {err}");
    assert!(kept[0].contains("does not serve inspect/diagnose"), "{err}");

    let (ok, out, err) = session_with_runner(
        "hazard_chat_refuse",
        &["--type", "inspect", "--param", "plugin=mem", "--json"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("memory used"),
        "built-in diagnose report: {out}"
    );
}

#[test]
fn a_runner_that_serves_no_role_is_refused_at_start() {
    let home = AgentHome::bare();
    let empty = home.write("empty.wasm", b"\0asm\x0d\x00\x01\x00");
    let mut cmd = home.into_command();
    cmd.arg("--runner")
        .arg(&empty)
        .args(["session", "--type", "chat"]);
    let out = cmd.output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exports neither"), "{err}");
    assert!(err.contains("empty.wasm"), "{err}");
}

/// The numbers of a receipt that must hold whatever the session did.
fn assert_plausible(r: &catpaw_agent::runner::Receipt, what: &str) {
    assert!(r.runs >= 1, "{what}: {r:?}");
    assert!(r.fuel_used > 0, "{what}: {r:?}");
    assert!(r.fuel_max_run <= r.fuel_limit, "{what}: {r:?}");
    assert!(
        r.peak_memory > 0 && r.peak_memory <= r.memory_limit,
        "{what}: {r:?}"
    );
    assert!(r.output_bytes <= r.output_limit, "{what}: {r:?}");
    assert!(r.host_calls_max_run <= r.host_calls_limit, "{what}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_kind_ends_with_a_receipt_within_its_budgets() {
    use common::{chat, diagnose, inspect};
    let sb = TestSandbox::new();
    let d = sb.builtin_diagnose();
    let (_, end) = inspect("mem").start_on(&d).finish_with_end().await;
    assert_eq!(end.outcome, "ok");
    let r = end.receipt.expect("an inspect has a receipt");
    assert_plausible(&r, "inspect");
    assert_eq!(r.runs, 1);
    assert!(
        r.tool_calls >= 2,
        "mem calls memory and top_processes: {r:?}"
    );
    let (_, end) = diagnose(serde_json::json!({"descriptions": "cpu load high"}))
        .start_on(&d)
        .finish_with_end()
        .await;
    assert_plausible(&end.receipt.expect("a diagnose has a receipt"), "diagnose");

    let c = sb.builtin_chat();
    let run = chat(serde_json::json!({"message": "memory"})).start_on(&c);
    run.say("disk").await;
    let (_, end) = run.finish_with_end().await;
    let r = end.receipt.expect("a chat has a receipt");
    assert_plausible(&r, "chat");
    assert_eq!(r.runs, 3, "the start and two turns: {r:?}");
    assert!(
        r.fuel_used > r.fuel_max_run,
        "fuel adds up across turns: {r:?}"
    );

    // A session that breaks its fuel budget still gets a receipt, which
    // shows the budget spent.
    let spin = sb.load("hazard_spin");
    let (_, end) = inspect("cpu")
        .budget(|b| b.fuel = 50_000_000)
        .start_on(&spin)
        .finish_with_end()
        .await;
    assert_eq!(end.outcome, "resource_exhausted");
    let r = end.receipt.expect("a failed session has a receipt");
    assert_eq!(r.fuel_used, 50_000_000, "{r:?}");
    assert_eq!(r.fuel_limit, 50_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_writes_the_receipt_in_its_log_line_and_the_ended_audit_record() {
    use common::process::server_toml;
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        "[log]\nlevel = \"info\"\n",
    ));
    let agent = home.agent().keep_log().spawn();
    let (mut c, _) = server.accept_registered().await;
    assert!(
        c.start_session("r-1", "inspect", serde_json::json!({"plugin": "cpu"}))
            .await
            .ok
    );
    c.session_until_done("r-1").await;
    let ended = || {
        home.audit()
            .into_iter()
            .find(|r| r["event"] == "ended" && r["session_id"] == "r-1")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        if let Some(r) = ended() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no ended record");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(record["outcome"], "ok");
    let receipt = &record["receipt"];
    assert!(
        receipt["fuel_used"].as_u64().is_some_and(|f| f > 0),
        "{record}"
    );
    assert!(
        receipt["tool_calls"].as_u64().is_some_and(|n| n >= 2),
        "{record}"
    );
    assert!(
        agent
            .wait_for_log("session ended", std::time::Duration::from_secs(10))
            .await
    );
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("session ended") && l.contains("r-1"))
        .expect("the session-end line");
    assert!(
        line.contains("receipt=") && line.contains("memory peak"),
        "{line}"
    );
    // The audit trail still verifies with the new field in it.
    let out = home
        .command()
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_whose_start_fails_still_ends_with_a_receipt() {
    let sb = TestSandbox::new();
    let refuse = sb.load("hazard_chat_refuse");
    let (_, end) = common::chat(serde_json::json!({"message": "hi"}))
        .start_on(&refuse)
        .finish_with_end()
        .await;
    assert_eq!(end.outcome, "chat_init_failed");
    let r = end.receipt.expect("the failed start's receipt");
    assert_eq!(r.runs, 1);
    assert_plausible(&r, "refused chat");
}
