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

const BUILTIN_PLUGINS: [&str; 6] = ["cpu", "mem", "disk", "net", "process", "system"];

#[test]
fn the_builtin_runners_describe_themselves() {
    let sb = TestSandbox::new();
    let d = sb.builtin_diagnose();
    assert_eq!(d.version(), WitVersion::V0_2);
    let desc = d.description().expect("0.2.0 runners describe themselves");
    assert_eq!(desc.name, "catpaw-diagnose");
    let names: Vec<&str> = desc.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, BUILTIN_PLUGINS);
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
    assert_eq!(plugins, serde_json::json!(BUILTIN_PLUGINS));

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
