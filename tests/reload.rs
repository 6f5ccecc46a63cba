//! Hot reload of the runners in a running agent: SIGHUP, a watched file
//! that changes, a broken replacement, and sessions that run across the
//! swap.

mod common;

use std::path::Path;
use std::time::Duration;

use catpaw_agent::proto::{self, Envelope};
use common::guest;
use common::process::{AgentHome, AgentProcess, server_toml};
use common::server::{ServerConn, TestServer};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(30);

/// Replaces `to` with `from`'s bytes in one step (a rename), as a deploy
/// tool would, so a watcher never sees half a file.
fn install(from: &Path, to: &Path) {
    install_bytes(&std::fs::read(from).expect("read guest"), to);
}

fn install_bytes(bytes: &[u8], to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, to).expect("rename");
}

/// An agent whose diagnose and chat runners are the files `d.wasm` and
/// `c.wasm` in its home (the built-in runners to begin with), `extra`
/// added to `[sandbox]`; its log kept at info.
fn agent_with_runner_files(server: &TestServer, extra: &str) -> (AgentHome, AgentProcess) {
    agent_with_runner_files_run(server, extra, &[])
}

/// The config of [`agent_with_runner_files`]: `extra` goes in `[sandbox]`.
fn runner_files_config(server: &TestServer, extra: &str) -> String {
    server_toml(
        server,
        Some("t"),
        &format!(
            "[sandbox]\ndiagnose_runner = \"d.wasm\"\nchat_runner = \"c.wasm\"\n{extra}\n\
             [log]\nlevel = \"info\"\n"
        ),
    )
}

/// [`agent_with_runner_files`], started with `args` after `--config FILE`.
fn agent_with_runner_files_run(
    server: &TestServer,
    extra: &str,
    args: &[&str],
) -> (AgentHome, AgentProcess) {
    let home = AgentHome::new(&runner_files_config(server, extra));
    install(&guest("catpaw_diagnose"), &home.path().join("d.wasm"));
    install(&guest("catpaw_chat"), &home.path().join("c.wasm"));
    let agent = home.agent().args(args).keep_log().spawn();
    (home, agent)
}

/// The next chat turn of session `id`: (stage, delta).
async fn turn(c: &mut ServerConn, id: &str) -> (String, String) {
    loop {
        let e = c.recv().await;
        let p = e.payload.clone().unwrap_or_default();
        if p["session_id"] != id {
            continue;
        }
        assert_ne!(e.msg_type, "session_error", "{p}");
        if p["metadata"]["turn_done"] == true {
            return (
                p["stage"].as_str().unwrap_or("").to_string(),
                p["delta"].as_str().unwrap_or("").to_string(),
            );
        }
    }
}

async fn say(c: &mut ServerConn, id: &str, message: &str) {
    c.send(&Envelope::new(
        proto::MSG_SESSION_INPUT,
        json!({"session_id": id, "message": message}),
    ))
    .await;
}

/// Starts a chat whose first turn is answered; returns the answer.
async fn open_chat(c: &mut ServerConn, id: &str) -> String {
    assert!(
        c.start_session(id, "chat", json!({"message": "help"}))
            .await
            .ok
    );
    let (stage, answer) = turn(c, id).await;
    assert_eq!(stage, "answer", "{answer}");
    answer
}

/// An inspect of cpu; its report, or the error it ended with.
async fn inspect(c: &mut ServerConn, id: &str) -> Result<String, String> {
    assert!(
        c.start_session(id, "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    let msgs = c.session_until_done(id).await;
    for m in &msgs {
        if m.msg_type == "session_error" {
            return Err(m.payload.clone().unwrap_or_default()["error"].to_string());
        }
    }
    let done = msgs
        .last()
        .expect("done")
        .payload
        .clone()
        .unwrap_or_default();
    Ok(done["report"].as_str().unwrap_or("").to_string())
}

/// After a reload: the open chat `old` still answers (it runs on the
/// component it started with), a new chat gets the refusing runner, an
/// inspect gets the echo runner.
async fn assert_swapped(c: &mut ServerConn, old: &str, fresh: &str, inspect_id: &str) {
    say(c, old, "memory").await;
    let (stage, answer) = turn(c, old).await;
    assert_eq!(
        stage, "answer",
        "the old chat answers on its old runner: {answer}"
    );
    assert!(
        c.start_session(fresh, "chat", json!({"message": "hi"}))
            .await
            .ok
    );
    let msgs = c.session_until_done(fresh).await;
    let refused = msgs.iter().any(|m| {
        m.msg_type == "session_error"
            && m.payload.clone().unwrap_or_default()["error"]
                .as_str()
                .is_some_and(|e| e.contains("refuses to chat"))
    });
    assert!(refused, "a new chat gets the new runner: {msgs:?}");
    let report = inspect(c, inspect_id).await.expect("inspect");
    assert!(report.contains("echo report"), "{report}");
}

/// The SHA-256 of the diagnose and the chat runner, as `status` lists them.
fn runner_hashes(home: &AgentHome) -> [String; 2] {
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    let runners = common::process::status_runners(&s);
    let of = |role: &str| {
        runners
            .iter()
            .find(|(r, _, _)| r == role)
            .unwrap_or_else(|| panic!("no {role} runner in {s}"))
            .2
            .clone()
    };
    [of("diagnose"), of("chat")]
}

fn hash_of(path: &Path) -> String {
    common::process::sha256_hex(&std::fs::read(path).expect("read guest"))
}

fn plugins(reg: &Envelope) -> Value {
    reg.payload.clone().unwrap_or_default()["plugins"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_runners_for_new_sessions_only_and_register_follows() {
    let mut server = TestServer::start().await;
    let (home, agent) = agent_with_runner_files(&server, "");
    let (mut c, reg) = server.accept_registered().await;
    assert_eq!(
        plugins(&reg),
        json!(catpaw_guest_common::plugin_names()),
        "{reg:?}"
    );
    open_chat(&mut c, "c1").await;
    assert_eq!(
        runner_hashes(&home),
        [
            hash_of(&guest("catpaw_diagnose")),
            hash_of(&guest("catpaw_chat"))
        ]
    );

    install(&guest("hazard_echo"), &home.path().join("d.wasm"));
    install(&guest("hazard_chat_refuse"), &home.path().join("c.wasm"));
    let before = agent.log().len();
    // SAFETY: kill with a pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    assert!(agent.log().contains("reason=\"SIGHUP\""), "{}", agent.log());
    // A new file is compiled, and the log says so before and after (a
    // large runner takes a while).
    let reload_log = agent.log()[before..].to_string();
    let d = home.path().join("d.wasm").display().to_string();
    let compiling = reload_log.find(&format!("compiling {d} ("));
    let compiled = reload_log.find(&format!("compiled {d} in "));
    assert!(
        matches!((compiling, compiled), (Some(a), Some(b)) if a < b),
        "{reload_log}"
    );
    assert_swapped(&mut c, "c1", "c2", "i1").await;
    // `status` shows the runners that serve new sessions now.
    assert_eq!(
        runner_hashes(&home),
        [
            hash_of(&guest("hazard_echo")),
            hash_of(&guest("hazard_chat_refuse"))
        ]
    );

    // The next connection's register lists the new diagnose runner's
    // plugins (hazard-echo describes none).
    drop(c);
    let (_c, reg) = server.accept_registered().await;
    assert_eq!(plugins(&reg), json!([]), "{reg:?}");
}

/// The receipt in session `id`'s `ended` audit record, once it is there.
async fn ended_receipt(home: &AgentHome, id: &str) -> Value {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let ended = home
            .audit()
            .into_iter()
            .find(|r| r["event"] == "ended" && r["session_id"] == id);
        if let Some(r) = ended {
            return r["receipt"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ended record of {id}: {:?}",
            home.audit()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `session_error` among `msgs`, if any: (code, error).
fn session_error(msgs: &[Envelope]) -> Option<(String, String)> {
    msgs.iter()
        .find(|m| m.msg_type == "session_error")
        .map(|m| {
            let p = m.payload.clone().unwrap_or_default();
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (field("code"), field("error"))
        })
}

/// README: "SIGHUP reloads the runner files and `[sandbox]` budgets;
/// running sessions finish on their runner". The budget here is
/// `max_host_calls` (docs/runners.md: 256 by default, per run or chat
/// turn): an inspect of cpu and a chat turn about the network each make
/// two tool calls, so under a budget of 1 they end `resource_exhausted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_sandbox_budgets_for_new_sessions_and_running_ones_keep_theirs() {
    let mut server = TestServer::start().await;
    let (mut home, agent) = agent_with_runner_files(&server, "");
    let (mut c, _) = server.accept_registered().await;
    inspect(&mut c, "i0")
        .await
        .expect("under the default budget");
    let before = ended_receipt(&home, "i0").await;
    assert_eq!(before["host_calls_limit"], 256, "{before}");
    assert!(
        before["host_calls_max_run"].as_u64().unwrap_or(0) >= 2,
        "an inspect of cpu makes two tool calls or more: {before}"
    );
    open_chat(&mut c, "c1").await;

    home.configure(&runner_files_config(&server, "max_host_calls = 1"));
    // SAFETY: kill with a pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    agent.expect_log_count("runners reloaded", 1, SOON).await;

    // A new inspect runs under the new budget: its second tool call ends it.
    assert!(
        c.start_session("i1", "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("i1").await;
    let (code, error) = session_error(&msgs)
        .unwrap_or_else(|| panic!("the inspect ran past a budget of 1 host call: {msgs:?}"));
    assert_eq!(code, "resource_exhausted", "{error}");
    let after = ended_receipt(&home, "i1").await;
    assert_eq!(after["host_calls_limit"], 1, "{after}");

    // The chat that was running keeps the budget it started with: a turn
    // of two tool calls still answers.
    say(&mut c, "c1", "network").await;
    let (stage, answer) = turn(&mut c, "c1").await;
    assert_eq!(stage, "answer", "{answer}");
    c.send(&Envelope::new(
        proto::MSG_SESSION_CANCEL,
        json!({"session_id": "c1", "reason": "test over"}),
    ))
    .await;
    let kept = ended_receipt(&home, "c1").await;
    assert_eq!(kept["host_calls_limit"], 256, "{kept}");
    assert!(
        kept["host_calls_max_run"].as_u64().unwrap_or(0) >= 2,
        "{kept}"
    );

    // A chat opened after the reload runs under the new budget.
    assert!(
        c.start_session("c2", "chat", json!({"message": "network"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("c2").await;
    let (code, error) = session_error(&msgs)
        .unwrap_or_else(|| panic!("the new chat ran past a budget of 1 host call: {msgs:?}"));
    assert_eq!(code, "resource_exhausted", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_change_reloads_and_a_broken_one_is_refused() {
    let mut server = TestServer::start().await;
    let (home, agent) = agent_with_runner_files(&server, "watch_runners = true");
    let (mut c, _) = server.accept_registered().await;
    open_chat(&mut c, "c1").await;

    // A broken replacement is refused and the old runner stays.
    install_bytes(b"not a component at all", &home.path().join("d.wasm"));
    agent
        .expect_log_count("runner reload refused", 1, SOON)
        .await;
    let log = agent.log();
    let refused = log
        .lines()
        .find(|l| l.contains("runner reload refused"))
        .expect("line");
    assert!(
        refused.contains("d.wasm") && refused.contains("not a WebAssembly file"),
        "{refused}"
    );
    let report = inspect(&mut c, "i0").await.expect("the old runner serves");
    assert!(report.contains("# Inspection: cpu"), "{report}");
    // `status` says the last reload was refused and why, beside the
    // runners that stayed in service.
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    let last = &s["last_reload"];
    assert_eq!(last["ok"], false, "{s}");
    let result = last["result"].as_str().unwrap_or("");
    assert!(
        result.starts_with("refused: ") && result.contains("not a WebAssembly file"),
        "{last}"
    );
    assert!(
        last["trigger"].as_str().unwrap_or("").contains("d.wasm"),
        "{last}"
    );
    assert!(last["at_unix"].as_u64().unwrap_or(0) > 0, "{last}");
    let out = home.command().arg("status").output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("reload:"))
        .unwrap_or_else(|| panic!("no reload line: {text}"));
    assert!(
        line.contains("refused: ") && line.contains("stay in service"),
        "{line}"
    );

    // A good replacement (both files, in one reload or two) is taken.
    install(&guest("hazard_chat_refuse"), &home.path().join("c.wasm"));
    install(&guest("hazard_echo"), &home.path().join("d.wasm"));
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let log = agent.log();
        let reloads: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("runners reloaded"))
            .collect();
        if reloads.iter().any(|l| l.contains("d.wasm"))
            && reloads.iter().any(|l| l.contains("c.wasm"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_swapped(&mut c, "c1", "c2", "i1").await;
    // The good reload is the last one now.
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let (_, s, _) = home.status_json();
        if s["last_reload"]["result"] == "ok" {
            assert_eq!(s["last_reload"]["ok"], true, "{s}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `run --watch`, as the unit's `ExecStart` (which ends in `run`) takes an
/// added flag: the config does not ask to watch, the flag does, and a
/// changed runner file is reloaded without a SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_watch_reloads_a_changed_runner_file() {
    let mut server = TestServer::start().await;
    let (home, agent) = agent_with_runner_files_run(&server, "", &["run", "--watch"]);
    let (mut c, _) = server.accept_registered().await;
    let report = inspect(&mut c, "i0").await.expect("the built-in runner");
    assert!(report.contains("# Inspection: cpu"), "{report}");

    install(&guest("hazard_echo"), &home.path().join("d.wasm"));
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    assert!(
        !agent.log().contains("reason=\"SIGHUP\""),
        "{}",
        agent.log()
    );
    let report = inspect(&mut c, "i1").await.expect("the new runner");
    assert!(report.contains("echo report"), "{report}");
}

/// What is put in place of a watched runner file.
#[derive(Clone, Copy, Debug)]
enum Hazard {
    /// A FIFO nobody writes to: a read waits forever.
    Fifo,
    /// A link to /dev/zero: a read never ends.
    DevZero,
    /// A 200 MiB sparse file: free on disk, 200 MiB in memory if read.
    Sparse,
}

const HAZARDS: [Hazard; 3] = [Hazard::Fifo, Hazard::DevZero, Hazard::Sparse];

impl Hazard {
    /// Puts it at `to` in one step (made beside it, then renamed), as a
    /// deploy would put a runner.
    fn put(self, to: &Path) {
        let tmp = to.with_extension("hazard");
        match self {
            Hazard::Fifo => {
                let c = std::ffi::CString::new(tmp.to_string_lossy().as_bytes()).expect("cstring");
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
            }
            Hazard::DevZero => std::os::unix::fs::symlink("/dev/zero", &tmp).expect("symlink"),
            Hazard::Sparse => std::fs::File::create(&tmp)
                .and_then(|f| f.set_len(200 << 20))
                .expect("sparse file"),
        }
        std::fs::rename(&tmp, to).expect("rename");
    }

    /// What the refusal says it is.
    fn refusal(self) -> &'static str {
        match self {
            Hazard::Fifo => "d.wasm is a FIFO, not a regular file",
            Hazard::DevZero => "d.wasm is a character device, not a regular file",
            Hazard::Sparse => "d.wasm is too large: 209715200 bytes > 67108864 bytes",
        }
    }
}

/// Waits until one line of the log holds every one of `needles`.
async fn log_line(agent: &AgentProcess, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let log = agent.log();
        if let Some(l) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line held all of {needles:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent still serves: a session gets its ack and its done, from the
/// runner in service; `status` answers; the agent holds under 100 MB.
async fn assert_serving(c: &mut ServerConn, home: &AgentHome, agent: &AgentProcess, id: &str) {
    let report = inspect(c, id).await.expect("the runner in service serves");
    assert!(report.contains("# Inspection: cpu"), "{report}");
    let (code, status, stderr) = home.status_json();
    assert_eq!(code, 0, "status answers: {stderr}");
    assert!(status["runners"].is_array(), "{status}");
    let rss = agent.memory("VmRSS");
    assert!(rss < 100 << 20, "VmRSS {rss} bytes");
}

/// A heartbeat, the next the agent sends (it sends one 30 s after the
/// connection opened); other messages are passed over.
async fn next_heartbeat(c: &mut ServerConn) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = c.recv_within(left).await.expect("a heartbeat within 45 s");
        if e.msg_type == "heartbeat" {
            return;
        }
    }
}

/// Puts `hazard` where a watched runner was, and checks the agent serves
/// on, refusing it with a warning that says what it is, for as long as
/// the connection's first heartbeat takes.
async fn a_watched_runner_replaced_by(hazard: Hazard) {
    let mut server = TestServer::start().await;
    let (home, agent) = agent_with_runner_files(&server, "watch_runners = true");
    let (mut c, _) = server.accept_registered().await;
    hazard.put(&home.path().join("d.wasm"));
    let refused = log_line(&agent, &["runner reload refused", hazard.refusal()]).await;
    assert!(refused.contains("WARN"), "{refused}");
    assert_serving(&mut c, &home, &agent, "i1").await;
    next_heartbeat(&mut c).await;
    assert_serving(&mut c, &home, &agent, "i2").await;
    let peak = agent.memory("VmHWM");
    assert!(peak < 100 << 20, "VmHWM {peak} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_place_of_a_watched_runner_is_refused_and_the_agent_serves_on() {
    a_watched_runner_replaced_by(Hazard::Fifo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_dev_zero_in_place_of_a_watched_runner_is_refused_and_the_agent_serves_on() {
    a_watched_runner_replaced_by(Hazard::DevZero).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_file_in_place_of_a_watched_runner_is_refused_and_the_agent_serves_on() {
    a_watched_runner_replaced_by(Hazard::Sparse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_a_fifo_a_device_or_a_huge_runner_fails_naming_it() {
    let server = TestServer::start().await;
    for hazard in HAZARDS {
        let home = AgentHome::new(&server_toml(
            &server,
            Some("t"),
            "[sandbox]\ndiagnose_runner = \"d.wasm\"\n",
        ));
        hazard.put(&home.path().join("d.wasm"));
        let mut agent = home.agent().keep_log().spawn();
        let exit = agent.wait_within(SOON).await;
        let log = agent.log();
        assert_eq!(exit.and_then(|s| s.code()), Some(2), "{hazard:?}: {log}");
        assert!(log.contains(hazard.refusal()), "{hazard:?}: {log}");
        if let Hazard::Sparse = hazard {
            assert!(log.contains("`[sandbox] max_runner_size`"), "{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_path_linked_to_a_versioned_file_loads_and_follows_the_link() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        "[sandbox]\ndiagnose_runner = \"d.wasm\"\nwatch_runners = true\n[log]\nlevel = \"info\"\n",
    ));
    install(&guest("catpaw_diagnose"), &home.path().join("d-v1.wasm"));
    install(&guest("hazard_echo"), &home.path().join("d-v2.wasm"));
    let link = home.path().join("d.wasm");
    std::os::unix::fs::symlink("d-v1.wasm", &link).expect("symlink");
    let agent = home.agent().keep_log().spawn();
    let (mut c, _) = server.accept_registered().await;
    let report = inspect(&mut c, "i1").await.expect("v1 serves");
    assert!(report.contains("# Inspection: cpu"), "{report}");
    // The deploy points the link at the next version, in one step.
    let tmp = home.path().join("d.wasm.new");
    std::os::unix::fs::symlink("d-v2.wasm", &tmp).expect("symlink");
    std::fs::rename(&tmp, &link).expect("rename");
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    let report = inspect(&mut c, "i2").await.expect("v2 serves");
    assert!(report.contains("echo report"), "{report}");
}

/// The report of an inspect that asks for a shell.
async fn inspect_asking_for_a_shell(c: &mut ServerConn, id: &str) -> String {
    let ack = c
        .start_session(id, "inspect", json!({"plugin": "cpu", "allow_shell": true}))
        .await;
    assert!(ack.ok, "{ack:?}");
    let msgs = c.session_until_done(id).await;
    let done = msgs
        .last()
        .expect("done")
        .payload
        .clone()
        .unwrap_or_default();
    assert_ne!(
        msgs.last().expect("done").msg_type,
        "session_error",
        "{done}"
    );
    done["report"].as_str().unwrap_or("").to_string()
}

/// The audit records of session `id`.
fn records_of(home: &AgentHome, id: &str) -> Vec<Value> {
    home.audit()
        .into_iter()
        .filter(|r| r["session_id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_calls_are_refused_and_audited_and_a_policy_narrows_the_next_session_on_sighup()
{
    let mut server = TestServer::start().await;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root {
        "shell_user = \"nobody\"\n"
    } else {
        ""
    };
    let sandbox = format!(
        "[sandbox]\ndiagnose_runner = \"d.wasm\"\nchat_runner = \"c.wasm\"\n\
         allow_remote_shell = true\n{user}"
    );
    let head = server_toml(&server, Some("${CATPAW_TEST_TOKEN}"), "");
    let config = |rest: &str| format!("{head}{sandbox}{rest}[log]\nlevel = \"info\"\n");
    let mut home = AgentHome::new(&config("")).env("CATPAW_TEST_TOKEN", "tok-caps-7d1e");
    // The probe declares `tools:cpu` and `tools:uptime`, no shell, no llm.
    let probe = guest("hazard_caps_probe");
    install(&probe, &home.path().join("d.wasm"));
    install(&guest("catpaw_chat"), &home.path().join("c.wasm"));
    let agent = home.agent().keep_log().spawn();
    let (mut c, _) = server.accept_registered().await;

    // Operator and session both allow a shell; the runner did not declare
    // one, nor `memory`, nor the model.
    let report = inspect_asking_for_a_shell(&mut c, "i1").await;
    let declared = "(describe capabilities: tools:cpu,uptime)";
    for line in [
        "listed: cpu,uptime\n".to_string(),
        "cpu: ok\n".to_string(),
        "uptime: ok\n".to_string(),
        format!(
            "memory: refused: tool memory: this runner did not declare it {declared}; \
             add `tools` or `tools:memory`\n"
        ),
        format!("shell: denied: shell: this runner did not declare it {declared}; add `shell`\n"),
        format!(
            "llm: LlmError::NotConfigured(\"llm: this runner did not declare it {declared}; add `llm`\")\n"
        ),
    ] {
        assert!(report.contains(&line), "no {line:?} in:\n{report}");
    }
    let audit = records_of(&home, "i1");
    let accepted = audit
        .iter()
        .find(|r| r["event"] == "accepted")
        .expect("accepted");
    assert_eq!(accepted["runner_sha256"], hash_of(&probe), "{accepted}");
    assert_eq!(accepted["capabilities"], "tools:cpu,uptime", "{accepted}");
    let refused: Vec<(String, String)> = audit
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .map(|r| {
            (
                r["kind"].as_str().unwrap().into(),
                r["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("tool".into(), "memory".into()),
            ("shell".into(), "echo catpaw-shell-ok".into()),
            ("llm".into(), "complete".into())
        ],
        "{audit:?}"
    );
    // No shell command ran: nothing was started for it.
    assert!(
        !audit
            .iter()
            .any(|r| r["kind"] == "shell" && r["event"] == "started")
    );
    let ended = audit.iter().find(|r| r["event"] == "ended").expect("ended");
    assert_eq!(ended["receipt"]["fuel_limit"], 1_000_000_000u64, "{ended}");
    let (_, s, _) = home.status_json();
    assert_eq!(s["runners"][0]["capabilities"], "tools:cpu,uptime", "{s}");

    // A policy by the runner's describe name narrows its tools and fuel;
    // it applies from the next session after a SIGHUP.
    home.configure(&config(
        "[sandbox.policy.hazard-caps-probe]\ntools = [\"cpu\", \"memory\"]\n\
         fuel = 300000000\n",
    ));
    // SAFETY: kill with a pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    let report = inspect_asking_for_a_shell(&mut c, "i2").await;
    assert!(report.contains("listed: cpu\n"), "{report}");
    assert!(report.contains("cpu: ok\n"), "{report}");
    assert!(
        report.contains(
            "uptime: refused: tool uptime: the operator's policy for this runner does not \
             grant it"
        ),
        "{report}"
    );
    // The policy cannot add what the runner did not declare.
    assert!(report.contains("memory: refused: tool memory: this runner did not declare"));
    let audit = records_of(&home, "i2");
    let accepted = audit
        .iter()
        .find(|r| r["event"] == "accepted")
        .expect("accepted");
    assert_eq!(accepted["capabilities"], "tools:cpu", "{accepted}");
    let ended = audit.iter().find(|r| r["event"] == "ended").expect("ended");
    assert_eq!(ended["receipt"]["fuel_limit"], 300_000_000u64, "{ended}");
    let (_, s, _) = home.status_json();
    assert_eq!(s["runners"][0]["capabilities"], "tools:cpu", "{s}");

    // Under require_declared_capabilities a runner that declares nothing
    // (a 0.1.0 component) is refused on reload, and the old one stays.
    home.configure(&config("require_declared_capabilities = true\n"));
    install(&guest("hazard_file_probe"), &home.path().join("d.wasm"));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    agent
        .expect_log_count("runner reload refused", 1, SOON)
        .await;
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("runner reload refused"))
        .expect("line");
    assert!(
        line.contains("d.wasm declares no capabilities")
            && line.contains("require_declared_capabilities = true"),
        "{line}"
    );
    let report = inspect_asking_for_a_shell(&mut c, "i3").await;
    assert!(
        report.contains("listed: cpu\n"),
        "the narrowed probe stays: {report}"
    );

    // Without the requirement it loads, with one warning naming it, and
    // keeps everything the operator allows.
    home.configure(&config(""));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    agent.expect_log_count("runners reloaded", 2, SOON).await;
    let warnings: Vec<String> = agent
        .log()
        .lines()
        .filter(|l| l.contains("runner declares no capabilities"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("d.wasm"), "{warnings:?}");
    let (_, s, _) = home.status_json();
    assert_eq!(
        s["runners"][0]["capabilities"], "tools shell llm mcp",
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_runner_is_refused_at_start_when_declarations_are_required() {
    let server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        "[sandbox]\nrunner = \"r.wasm\"\nrequire_declared_capabilities = true\n",
    ));
    install(&guest("hazard_file_probe"), &home.path().join("r.wasm"));
    let mut agent = home.agent().keep_log().spawn();
    let status = agent.wait_within(SOON).await.expect("the agent exits");
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains("r.wasm declares no capabilities")
            && log.contains("refused because [sandbox] require_declared_capabilities = true"),
        "{log}"
    );
}
