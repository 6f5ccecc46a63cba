//! What an operator looks at, through the real binary: logs written to a
//! pipe, `status` with and without a running agent, the Prometheus
//! endpoint scraped over real HTTP, `config check` / `config example`,
//! and the systemd unit.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::process::{AgentHome, server_toml};
use common::server::TestServer;
use serde_json::{Value, json};

/// The agent with its stderr on a pipe, read to the end by a thread.
struct PipedAgent {
    child: Child,
    log: std::thread::JoinHandle<Vec<u8>>,
}

impl PipedAgent {
    fn spawn(home: &AgentHome) -> PipedAgent {
        let mut child = home
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let log = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        });
        PipedAgent { child, log }
    }

    /// SIGTERM, wait for the exit, and the whole log.
    fn stop(mut self) -> Vec<u8> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        let log = self.log.join().expect("log reader");
        assert!(
            status.success(),
            "{status:?} after SIGTERM; the log:\n{}",
            String::from_utf8_lossy(&log)
        );
        log
    }
}

/// A chat and an inspect through the agent; the log goes to a pipe.
async fn logged_sessions(format: &str) -> String {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        &format!("[log]\nformat = \"{format}\"\n"),
    ));
    let agent = PipedAgent::spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    assert!(
        c.start_session("s1", "inspect", json!({"plugin": "mem"}))
            .await
            .ok
    );
    c.session_until_done("s1").await;
    // A message of a type this agent does not know: logged at debug only.
    c.send(&catpaw_agent::proto::Envelope::new(
        "future_type",
        json!({}),
    ))
    .await;
    assert!(c.start_session("s2", "inspect", json!({})).await.ok);
    c.session_until_done("s2").await;
    let bytes = agent.stop();
    assert!(
        !bytes.contains(&0x1b),
        "an ANSI escape reached a log on a pipe:\n{}",
        String::from_utf8_lossy(&bytes)
    );
    String::from_utf8(bytes).expect("utf-8 log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_are_plain_with_one_info_line_per_session() {
    let log = logged_sessions("text").await;
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session ended"))
        .collect();
    assert_eq!(ended.len(), 2, "one line per session:\n{log}");
    let s1 = ended
        .iter()
        .find(|l| l.contains("session_id=s1"))
        .expect("s1");
    assert!(s1.contains(" INFO "), "{s1}");
    assert!(s1.contains("outcome=ok"), "{s1}");
    assert!(s1.contains("output_bytes="), "{s1}");
    assert!(s1.contains("duration_ms="), "{s1}");
    let s2 = ended
        .iter()
        .find(|l| l.contains("session_id=s2"))
        .expect("s2");
    assert!(s2.contains("outcome=missing_plugin"), "{s2}");
    assert!(
        s2.contains("error=\"plugin is required for inspect\""),
        "{s2}"
    );
    assert!(!s1.contains("error="), "no error on success: {s1}");
    // Everything else a session says is debug: not in an info log.
    for line in log.lines() {
        if line.contains("s1") || line.contains("s2") {
            assert!(
                line.contains("session ended"),
                "per-session chatter at info: {line}"
            );
        }
    }
    assert!(
        !log.contains("future_type"),
        "unknown types are debug:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let log = logged_sessions("json").await;
    let (mut ended, mut ready) = (0, 0);
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "runners ready" {
            // A comma-joined list, not a Rust Debug rendering.
            let plugins = v["fields"]["plugins"].as_str().unwrap_or("");
            assert!(plugins.starts_with("cpu, mem, "), "{line}");
            assert!(!plugins.contains('"') && !plugins.contains('['), "{line}");
            ready += 1;
        }
        if v["fields"]["message"] == "session ended" {
            ended += 1;
            assert_eq!(v["level"], "INFO", "{line}");
            assert!(v["fields"]["outcome"].is_string(), "{line}");
            assert!(v["fields"]["output_bytes"].is_u64(), "{line}");
        }
    }
    assert_eq!(ended, 2, "{log}");
    assert_eq!(ready, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_live_agent_with_a_session_running() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, Some("t"), ""));
    let _agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let agent_id = c.headers["x-agent-id"].to_str().expect("ascii").to_string();
    // A chat stays open until cancelled.
    assert!(c.start_session("chat-1", "chat", json!({})).await.ok);

    let socket = home.state().join("status.sock");
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(s["agent_id"], agent_id.as_str(), "{s}");
    assert_eq!(s["connection"]["state"], "connected", "{s}");
    assert!(
        s["connection"]["server"]
            .as_str()
            .unwrap()
            .contains(&server.addr.to_string())
    );
    assert!(s["connection"]["since_unix"].as_u64().unwrap() > 1_600_000_000);
    let sessions = s["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{s}");
    assert_eq!(sessions[0]["session_id"], "chat-1");
    assert_eq!(sessions[0]["session_type"], "chat");
    assert_eq!(sessions[0]["user"], "op");
    assert!(sessions[0]["age_ms"].is_u64(), "{s}");
    assert!(sessions[0]["figures"]["output_bytes"].is_u64(), "{s}");
    assert_eq!(
        s["alerts"],
        json!({"buffered": 0, "pushed": 0, "dropped": 0, "sent": 0})
    );
    assert_eq!(
        s["shell"],
        json!({"granted": 0, "denied": 0, "commands_run": 0, "commands_denied": 0})
    );
    assert_eq!(s["budget_breaches"]["fuel"], 0);
    let runners = s["runners"].as_array().expect("runners");
    assert_eq!(runners.len(), 2, "{s}");
    for r in runners {
        assert_eq!(r["source"], "built-in");
        let hash = r["sha256"].as_str().unwrap();
        assert!(
            hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{r}"
        );
    }

    // The text form says the same things.
    let out = home.command().arg("status").output().expect("status");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connected"), "{text}");
    assert!(text.contains("chat-1  chat  user=op"), "{text}");
    assert!(text.contains(&agent_id), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_which_runner_serves_each_role_after_the_per_role_fallback() {
    // A diagnose-only file given with --runner serves inspect/diagnose;
    // chat keeps the built-in runner, and status says exactly that.
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, Some("t"), ""));
    let echo = common::guest("hazard_echo");
    let _agent = home
        .agent()
        .args([OsStr::new("--runner"), echo.as_os_str()])
        .spawn();
    let _ = server.accept_registered().await;
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    let sha = common::process::sha256_hex;
    assert_eq!(
        common::process::status_runners(&s),
        vec![
            (
                "diagnose".to_string(),
                echo.display().to_string(),
                sha(&std::fs::read(&echo).expect("echo"))
            ),
            (
                "chat".to_string(),
                "built-in".to_string(),
                sha(catpaw_agent::embedded::CHAT)
            ),
        ],
        "{s}"
    );
}

#[test]
fn status_without_an_agent_exits_1_and_says_so() {
    let home = AgentHome::new("[server]\nenabled = false\n");
    let (code, _, stderr) = home.status_json();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no catpaw-agent is running"), "{stderr}");
    assert!(stderr.contains("status.sock"), "{stderr}");
}

/// A free loopback port (bound, then released for the agent).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `GET /metrics` over a real connection: the exposition text.
fn scrape_body(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    body.to_string()
}

/// `GET /metrics` over a real connection: the samples, by series.
fn scrape(port: u16) -> std::collections::BTreeMap<String, f64> {
    scrape_body(port)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Scrapes until `series` has `value` (counters move after the server has
/// seen a session's `done`), at most 10 s.
fn scrape_until(port: u16, series: &str, value: f64) -> std::collections::BTreeMap<String, f64> {
    scrape_when(port, |m| m.get(series) == Some(&value))
}

/// Scrapes until `ready` holds of the samples (10 s at most).
fn scrape_when(
    port: u16,
    ready: impl Fn(&std::collections::BTreeMap<String, f64>) -> bool,
) -> std::collections::BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(port);
        if ready(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_a_session_a_breach_a_denied_shell_and_a_dropped_alert() {
    let mut server = TestServer::start().await;
    let port = free_port();
    // The diagnose runner asks for a shell, which this agent never grants.
    let probe = common::guest("hazard_shell_probe");
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        &format!(
            "alert_buffer_size = 1\n[sandbox]\ndiagnose_runner = {:?}\n[sandbox.chat]\nfuel = 1000\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            probe.display().to_string()
        ),
    ));
    let _agent = home.spawn();
    // Two alerts into a one-event buffer before the agent is registered
    // (it waits for the register ack): the first is dropped.
    home.wait_for_socket().await;
    let two = "{\"event_time\":1,\"event_status\":\"Warning\",\"alert_key\":\"a\",\"description\":\"d\"}\n\
               {\"event_time\":2,\"event_status\":\"Warning\",\"alert_key\":\"b\",\"description\":\"d\"}\n";
    let pushed = home.write("two.ndjson", two);
    let out = home
        .command()
        .args(["alert", "--json-lines"])
        .arg(&pushed)
        .output()
        .expect("alert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = scrape(port);
    assert_eq!(before["catpaw_agent_alerts_pushed_total"], 2.0);
    assert_eq!(before["catpaw_agent_alerts_dropped_total"], 1.0);
    assert_eq!(before["catpaw_agent_alerts_sent_total"], 0.0);

    let (mut c, _) = server.accept_registered().await;
    let e = c.recv_type("alert_events").await;
    assert_eq!(e.payload.expect("payload")["events"][0]["alert_key"], "b");
    // One good session that asks for a shell (denied, and so is the one
    // command its runner asks for), one that breaks its fuel budget.
    let params = json!({"plugin": "mem", "allow_shell": true});
    assert!(c.start_session("ok-1", "inspect", params).await.ok);
    let done = c.session_until_done("ok-1").await;
    let report = done.last().unwrap().payload.as_ref().unwrap()["report"].clone();
    assert!(
        report.as_str().unwrap().starts_with("shell denied"),
        "{report}"
    );
    assert!(
        c.start_session("fuel-1", "chat", json!({"message": "hi"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("fuel-1").await;
    assert!(
        msgs.iter().any(|m| m.msg_type == "session_error"
            && m.payload.as_ref().unwrap()["code"] == "resource_exhausted"),
        "{msgs:?}"
    );

    // A session is counted as ended just after its `done` is sent.
    scrape_until(
        port,
        "catpaw_agent_sessions_ended_total{type=\"inspect\",outcome=\"ok\"}",
        1.0,
    );
    // Output is counted once its frame is written, which may come a moment
    // after the server has read it.
    let m = scrape_when(port, |m| {
        m.get("catpaw_agent_sessions_ended_total{type=\"chat\",outcome=\"resource_exhausted\"}")
            == Some(&1.0)
            && m.get("catpaw_agent_session_output_deltas_total")
                .is_some_and(|n| *n >= 2.0)
    });
    let moved: Vec<(&String, &f64)> = m
        .iter()
        .filter(|(k, v)| **v != 0.0 && !k.contains("_bucket") && !k.contains("_sum"))
        .filter(|(k, _)| !k.starts_with("catpaw_agent_register_ack_latency"))
        .filter(|(k, _)| !k.starts_with("catpaw_agent_session_output"))
        .collect();
    let want = [
        ("catpaw_agent_alerts_dropped_total", 1.0),
        ("catpaw_agent_alerts_pushed_total", 2.0),
        ("catpaw_agent_alerts_sent_total", 1.0),
        ("catpaw_agent_budget_breaches_total{kind=\"fuel\"}", 1.0),
        ("catpaw_agent_connected", 1.0),
        ("catpaw_agent_session_ack_latency_seconds_count", 2.0),
        (
            "catpaw_agent_session_duration_seconds_count{type=\"chat\"}",
            1.0,
        ),
        (
            "catpaw_agent_session_duration_seconds_count{type=\"inspect\"}",
            1.0,
        ),
        (
            "catpaw_agent_sessions_ended_total{type=\"chat\",outcome=\"resource_exhausted\"}",
            1.0,
        ),
        (
            "catpaw_agent_sessions_ended_total{type=\"inspect\",outcome=\"ok\"}",
            1.0,
        ),
        ("catpaw_agent_sessions_started_total{type=\"chat\"}", 1.0),
        ("catpaw_agent_sessions_started_total{type=\"inspect\"}", 1.0),
        (
            "catpaw_agent_shell_commands_total{decision=\"denied\"}",
            1.0,
        ),
        (
            "catpaw_agent_shell_requests_total{decision=\"denied\"}",
            1.0,
        ),
    ];
    let got: Vec<(String, f64)> = moved.iter().map(|(k, v)| ((*k).clone(), **v)).collect();
    let want: Vec<(String, f64)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want, "every counter that moved, and by how much");
    assert!(
        m["catpaw_agent_session_output_deltas_total"] >= 2.0,
        "{m:?}"
    );
    assert!(m["catpaw_agent_session_output_bytes_total"] > 0.0, "{m:?}");
    assert_eq!(m["catpaw_agent_register_ack_latency_seconds_count"], 1.0);

    // status reads the same counters.
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        s["alerts"],
        json!({"buffered": 0, "pushed": 2, "dropped": 1, "sent": 1})
    );
    assert_eq!(s["budget_breaches"]["fuel"], 1);
    assert_eq!(
        s["shell"],
        json!({"granted": 0, "denied": 1, "commands_run": 0, "commands_denied": 1})
    );
}

#[test]
fn config_check_good_and_bad() {
    let home = AgentHome::new(
        "[server]\nenabled = true\naddress = \"https://op:pw-hidden@catpaw.example.com\"\n\
         agent_token = \"tok-hidden\"\n",
    );
    std::fs::set_permissions(home.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = home
        .command()
        .args(["config", "check"])
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains("hidden") && !stderr.contains("hidden"),
        "{stdout}{stderr}"
    );
    for default in [
        "max_concurrent_sessions = 3",
        "fuel = 1000000000",
        "max_memory = \"64MiB\"",
        "alert_buffer_size = 1000",
        "level = \"info\"",
        "listen = \"\"",
    ] {
        assert!(
            stdout.contains(default),
            "default {default} not shown:\n{stdout}"
        );
    }

    let bad = [
        (
            "[server]\nenabled = true\naddress = \"ftp://x\"\n",
            "[server] address",
        ),
        ("[sandbox]\nmax_memory = \"12XB\"\n", "[sandbox] max_memory"),
        (
            "[sandbox.chat]\ntimeout = \"soon\"\n",
            "[sandbox.chat] timeout",
        ),
        ("[log]\nlevel = \"loud\"\n", "[log] level"),
        ("[metrics]\nlisten = \"everywhere\"\n", "[metrics] listen"),
        (
            "[global.labels]\nx = \"${CATPAW_TEST_UNSET_VAR}\"\n",
            "[global.labels] x",
        ),
        (
            "[sandbox]\nrunner = \"/nonexistent/r.wasm\"\n",
            "[sandbox] runner",
        ),
        ("[audit]\nkeep = 0\n", "[audit] keep"),
        ("[server]\nnot_a_key = 1\n", "not_a_key"),
        ("[server\n", "config.toml"),
    ];
    for (body, field) in bad {
        let home = AgentHome::new(body);
        let out = home
            .command()
            .args(["config", "check"])
            .output()
            .expect("check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {stderr}");
        assert!(
            stderr.contains(field),
            "{body}: the error must name {field}: {stderr}"
        );
    }
}

#[test]
fn config_example_checks_clean_and_the_cli_documents_itself() {
    let out = common::process::command()
        .args(["config", "example"])
        .output()
        .expect("example");
    assert!(out.status.success());
    let home = AgentHome::bare();
    let file = home.write("conf.d/config.toml", &out.stdout);
    let check = common::process::command()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .expect("check");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let v = common::process::command()
        .arg("--version")
        .output()
        .expect("version");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("catpaw-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let bash = common::process::command()
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.contains("complete -F") && bash.contains("status"),
        "{bash}"
    );
    let man = common::process::command()
        .arg("manpage")
        .output()
        .expect("man");
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH catpaw-agent 1") && man.contains("status"),
        "{man}"
    );
}

/// `systemd-analyze verify` on the shipped unit, with ExecStart pointing at
/// the binary under test (verify checks that it exists). Skipped, saying
/// why, where systemd-analyze is not installed.
#[test]
fn the_systemd_unit_verifies() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/catpaw-agent.service"
    ))
    .expect("packaging/catpaw-agent.service");
    for hardening in [
        "User=catpaw",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/catpaw-agent",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=CAP_SYSLOG",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(hardening)),
            "the unit lacks {hardening}"
        );
    }
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        return common::skip("systemd-analyze is not installed, the unit was not verified");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("catpaw-agent.service");
    std::fs::write(
        &unit,
        text.replace("/usr/bin/catpaw-agent", common::process::BIN),
    )
    .expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PROTOCOL §3 / the reference's `omitempty`: a successful inspect whose
/// report is empty ends with a `done` that has no `report` field at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_report_is_omitted_from_done() {
    let mut server = TestServer::start().await;
    let echo = common::guest("hazard_echo");
    let home = AgentHome::new(&server_toml(
        &server,
        Some("t"),
        &format!(
            "[sandbox]\ndiagnose_runner = {:?}\n",
            echo.display().to_string()
        ),
    ));
    let _agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    for (id, empty) in [("empty", true), ("full", false)] {
        let start = catpaw_agent::proto::Envelope::new(
            "session_start",
            json!({"session_id": id, "session_type": "inspect", "user_name": "op",
                   "params": {"plugin": "mem", "count": 0, "empty_report": empty}}),
        );
        c.send(&start).await;
        let done = loop {
            let text = c
                .recv_text_within(Duration::from_secs(30))
                .await
                .expect("a frame");
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["type"] == "session_output" && v["payload"]["done"] == true {
                break v;
            }
        };
        assert_eq!(done["payload"]["session_id"], id);
        let payload = done["payload"].as_object().expect("payload");
        assert_eq!(payload.contains_key("report"), !empty, "{done}");
        assert!(!payload.contains_key("metadata"), "{done}");
    }
}

/// On a terminal the log is coloured (and only there: see the pipe tests
/// above). `script` gives the agent a pseudo-terminal; skipped, saying
/// why, where it is not installed.
#[test]
fn logs_on_a_terminal_are_coloured() {
    let found = std::process::Command::new("script")
        .arg("--version")
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        return common::skip("`script` (util-linux) is not installed, no terminal to test with");
    }
    let home = AgentHome::bare();
    let typescript = home.path().join("typescript");
    let inner = format!(
        "{} session --type inspect --param plugin=mem >/dev/null",
        common::process::BIN
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &inner])
        .arg(&typescript)
        .current_dir(home.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&typescript).expect("typescript");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("runners ready"), "{text}");
    assert!(
        text.contains("\u{1b}[32m INFO\u{1b}[0m"),
        "no colour on a terminal: {text:?}"
    );
}

/// A home for an agent served by `server` with `/metrics` on a free
/// loopback port, and that port.
fn metrics_home(server: &TestServer) -> (AgentHome, u16) {
    let port = free_port();
    let home = AgentHome::new(&server_toml(
        server,
        None,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    ));
    (home, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_types_nobody_serves_are_counted_as_other_not_as_new_series() {
    let mut server = TestServer::start().await;
    let (home, port) = metrics_home(&server);
    let _agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    // A server's session_type is free text; each spelling as a label would
    // be a series kept for the agent's life.
    for (i, kind) in ["bogus-1", "bogus-2"].iter().enumerate() {
        let id = format!("odd-{i}");
        assert!(c.start_session(&id, kind, json!({})).await.ok);
        c.session_until_done(&id).await;
    }
    let m = scrape_until(
        port,
        "catpaw_agent_sessions_ended_total{type=\"other\",outcome=\"invalid_type\"}",
        2.0,
    );
    assert_eq!(
        m["catpaw_agent_sessions_started_total{type=\"other\"}"],
        2.0
    );
    assert!(!m.keys().any(|k| k.contains("bogus")), "{m:?}");
}

/// One of catpaw's own config files from the workspace's `shared/fixtures`
/// (read there, never copied into this repository); Err says why not, in
/// a clone that has no such folder beside it.
fn catpaw_fixture(name: &str) -> Result<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name);
    std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} cannot be read ({e}); catpaw's config files live in the \
             workspace's shared/fixtures, beside this checkout",
            path.display()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catpaws_own_config_files_load_with_one_warning_and_the_agent_serves_on_them() {
    for (name, every_section) in [
        ("catpaw-v0.24-config.toml", false),
        ("catpaw-v0.24-config-all-sections.toml", true),
    ] {
        let text = match catpaw_fixture(name) {
            Ok(text) => text,
            Err(why) => return common::skip(&why),
        };
        let mut server = TestServer::start().await;
        // Upstream's own file has no [server]: one is added after it.
        let body = if every_section {
            text.replace("PORT", &server.addr.port().to_string())
        } else {
            format!("{text}\n{}", server_toml(&server, None, ""))
        };
        let home = AgentHome::new(&body)
            .env("CATPAW_AGENT_TOKEN", "tok-fixture")
            .env("OPENAI_API_KEY", "sk-fixture")
            .env("DEEPSEEK_API_KEY", "sk-fixture")
            .env("MINIMAX_API_KEY", "sk-fixture");
        let out = home
            .command()
            .args(["config", "check"])
            .output()
            .expect("check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        let about_keys: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("warning:") && l.contains("catpaw keys without effect"))
            .collect();
        assert_eq!(about_keys.len(), 1, "{name}: {stderr}");
        let mut named = vec!["`[global] interval`", "`[notify]`"];
        if every_section {
            named.extend([
                "`[log] output`",
                "`[ai] aggregate_window`",
                "`[ai] max_concurrent_diagnoses`",
                "`[ai.models.deepseek] input_price`",
            ]);
        }
        for key in named {
            assert!(
                about_keys[0].contains(key),
                "{name}: {key} in {}",
                about_keys[0]
            );
        }
        // And the agent runs on it: registers and serves a session.
        let mut agent = home.spawn();
        let (mut c, _) = server.accept_registered().await;
        let ack = c
            .start_session("fixture-1", "inspect", json!({"plugin": "cpu"}))
            .await;
        assert!(ack.ok, "{name}: {ack:?}");
        c.session_until_done("fixture-1").await;
        agent.sigkill();
    }
}

#[test]
fn a_config_with_three_mistakes_reports_all_three_with_their_lines() {
    let home = AgentHome::new(
        "[server]\nenabled = true\naddress = \"127.0.0.1:9\"\nstate_dir = \"/x\"\n\
         [sandbox]\nmax_memory = \"lots\"\n[log]\nlevel = \"loud\"\n",
    );
    let out = home
        .command()
        .args(["config", "check"])
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for line in [
        "3 problems in",
        "config.toml:4:1 `[server] state_dir`: unknown field",
        "top-level key",
        "config.toml:6:1 `[sandbox] max_memory`",
        "config.toml:8:1 `[log] level`",
    ] {
        assert!(stderr.contains(line), "{line} in {stderr}");
    }
}

#[test]
fn without_a_config_file_the_agent_says_there_is_none_and_how_to_make_one() {
    let home = AgentHome::bare();
    let out = home.command().output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no config file: conf.d/config.toml does not exist")
            && stderr.contains("catpaw-agent config example"),
        "{stderr}"
    );
    // A state dir the agent could not create fails `config check`.
    let home = AgentHome::new("state_dir = \"/proc/self/status/state.d\"\n");
    let out = home
        .command()
        .args(["config", "check"])
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`state_dir`") && stderr.contains("not a directory"),
        "{stderr}"
    );
}

/// `GET /metrics` over tokio; the whole response (empty when the endpoint
/// closed the connection without answering).
async fn scrape_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text).await;
    String::from_utf8_lossy(&text).into_owned()
}

/// README: "A client has 2 s to send its whole request head; clients that
/// trickle theirs in are dropped and do not keep scrapes out."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_do_not_keep_scrapes_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = TestServer::start().await;
    let (home, port) = metrics_home(&server);
    let _agent = home.spawn();
    let _registered = server.accept_registered().await;
    assert!(scrape_text(port).await.starts_with("HTTP/1.1 200 OK"));

    // 40 slowloris clients on one address: a byte of head every 0.5 s,
    // never the blank line that ends it. That pace is the attack (each byte
    // well inside 2 s, the head never done), not a wait for anything. Each
    // client counts the times the endpoint dropped it (its read sees the
    // end) and comes back at once.
    const SLOW: usize = 40;
    // Every client is dropped this often before the scrapes stop, so they
    // run while the clients hold on, are dropped and come back.
    const ROUNDS: usize = 2;
    let stop = tokio_util::sync::CancellationToken::new();
    let drops: Arc<Vec<AtomicUsize>> = Arc::new((0..SLOW).map(|_| AtomicUsize::new(0)).collect());
    let dropped = Arc::new(tokio::sync::Notify::new());
    let (holding, mut held) = tokio::sync::mpsc::channel::<()>(SLOW);
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..SLOW {
        let (holding, stop, drops, dropped) = (
            holding.clone(),
            stop.clone(),
            drops.clone(),
            dropped.clone(),
        );
        slow.spawn(async move {
            let mut told = false;
            loop {
                let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("a slow client connects");
                let (mut r, mut w) = s.into_split();
                let trickle = async {
                    let mut head = b"GET /metrics HTTP/1.1\r\nX-Slow: "
                        .iter()
                        .chain(std::iter::repeat(&b'a'));
                    loop {
                        let byte = *head.next().expect("endless");
                        if w.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        if !told {
                            told = true;
                            let _ = holding.send(()).await;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                };
                let closed = async {
                    let mut buf = [0u8; 512];
                    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = trickle => {}
                    _ = closed => {}
                }
                drops[i].fetch_add(1, Ordering::SeqCst);
                dropped.notify_one();
            }
        });
    }
    drop(holding);
    for _ in 0..SLOW {
        held.recv().await.expect("a slow client connected");
    }

    // Honest scrapes, each answered: 24 back to back while every slow
    // client holds on, then one after each drop until every client has been
    // dropped ROUNDS times. The deadline only keeps clients that are never
    // dropped from hanging the test (the first drops are due after 2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut failed = Vec::new();
    let mut scrapes = 0;
    loop {
        let text = tokio::time::timeout(Duration::from_secs(5), scrape_text(port))
            .await
            .unwrap_or_default();
        if !text.starts_with("HTTP/1.1 200 OK") {
            failed.push((scrapes, text.lines().next().unwrap_or("").to_string()));
        }
        scrapes += 1;
        let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::SeqCst)).collect();
        if scrapes >= 24 && counts.iter().all(|&n| n >= ROUNDS) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow clients not dropped {ROUNDS} times each within 60 s: {counts:?}"
        );
        if scrapes >= 24 {
            let _ = tokio::time::timeout_at(deadline, dropped.notified()).await;
        }
    }
    stop.cancel();
    assert!(failed.is_empty(), "scrapes not answered: {failed:?}");
    slow.shutdown().await;
}

/// The metric names README lists (`{a,b}` spelled out), with their
/// label names.
fn readme_metrics() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut out = Vec::new();
    for quoted in readme.split('`').skip(1).step_by(2) {
        let Some(rest) = quoted.strip_prefix("catpaw_agent_") else {
            continue;
        };
        let (name, labels) = match rest.split_once('{') {
            Some((n, l)) if !n.ends_with('_') => (n.to_string(), l.trim_end_matches('}')),
            _ => (rest.to_string(), ""),
        };
        let labels: Vec<String> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        // `alerts_{pushed,dropped,sent}_total`: one name per alternative.
        if let Some((head, tail)) = name.split_once('{') {
            let (alts, tail) = tail.split_once('}').expect("closing brace");
            for a in alts.split(',') {
                out.push((format!("{head}{a}{tail}"), labels.clone()));
            }
        } else {
            out.push((name, labels));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_exports_every_metric_family_readme_lists() {
    let server = TestServer::start().await;
    let (home, port) = metrics_home(&server);
    let _agent = home.spawn();
    // The endpoint is up once it accepts; nothing has happened by then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "/metrics never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = scrape_body(port);
    let listed = readme_metrics();
    assert!(listed.len() >= 15, "README lists {listed:?}");
    for (name, labels) in &listed {
        // Counters are exposed as `<family>_total` under `# TYPE <family>`.
        let family = name.strip_suffix("_total").unwrap_or(name);
        let typed = format!("# TYPE catpaw_agent_{family} ");
        assert!(
            text.contains(&typed),
            "no {typed:?} before any event:\n{text}"
        );
        // A labelled family has its series at zero, each label present.
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("catpaw_agent_{name}")) && !l.starts_with('#'))
            .collect();
        assert!(!series.is_empty(), "{name} has no series:\n{text}");
        for l in &series {
            for label in labels {
                assert!(l.contains(&format!("{label}=\"")), "{l} lacks {label}");
            }
            let value: f64 = l
                .rsplit_once(' ')
                .and_then(|(_, v)| v.parse().ok())
                .expect(l);
            if *name != "connected" {
                assert_eq!(value, 0.0, "{l}");
            }
        }
    }
    // The closed label sets are there from the start.
    for line in [
        "catpaw_agent_budget_breaches_total{kind=\"fuel\"} 0",
        "catpaw_agent_shell_requests_total{decision=\"granted\"} 0",
        "catpaw_agent_shell_commands_total{decision=\"run\"} 0",
        "catpaw_agent_reconnects_total{cause=\"dial_failed\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_the_start_says_which_files_are_append_only_and_how_to_lift_it() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, "[audit]\nappend_only = true\n"));
    // Asked of a probe file: a trail the agent failed to mark fails the
    // test rather than skipping it.
    let supported = common::host::append_only_supported(home.path());
    let agent = PipedAgent::spawn(&home);
    server.accept_registered().await;
    let bytes = agent.stop();
    let log = String::from_utf8_lossy(&bytes);
    let trail = home.state().join("audit.jsonl");
    let set = common::host::append_only_attr(&trail, Some(false));
    if let Err(why) = supported {
        assert!(!log.contains("append-only: these files"), "{log}");
        return common::skip(&why);
    }
    assert_eq!(
        set,
        Some(true),
        "the agent did not mark {}",
        trail.display()
    );
    let line = log
        .lines()
        .find(|l| l.contains("the audit trail is append-only"))
        .unwrap_or_else(|| panic!("no append-only line:\n{log}"));
    assert!(line.contains(&trail.display().to_string()), "{line}");
    assert!(
        line.contains("chattr -a FILE") && line.contains("[audit] append_only = false"),
        "{line}"
    );
    // Once lifted, the state dir goes.
    std::fs::remove_dir_all(home.state()).expect("removable once lifted");
}

/// The ```sh block of README's "Install as a service".
fn readme_install_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## Install as a service")
        .nth(1)
        .expect("README has an install section");
    let block = section.split("```sh\n").nth(1).expect("an sh block");
    block.split("```").next().expect("its end").to_string()
}

/// `install -m MODE [-o U -g G] SRC DEST` lines of the install block (not
/// `install -d`): DEST → MODE.
fn readme_installs(block: &str) -> std::collections::BTreeMap<String, u32> {
    block
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split('#').next()?.split_whitespace().collect();
            if words.first() != Some(&"install") || words.contains(&"-d") {
                return None;
            }
            let mode = words.iter().position(|w| *w == "-m")?;
            let mode = u32::from_str_radix(words[mode + 1], 8).expect("octal mode");
            Some((words.last()?.to_string(), mode))
        })
        .collect()
}

/// The unit's `Key=Value` settings, comments left out (a key set twice
/// keeps its last value).
fn unit_settings(unit: &str) -> std::collections::BTreeMap<String, String> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An `EnvironmentFile=` as systemd reads it: `KEY=VALUE` lines, `#`
/// comments and blank lines skipped.
fn read_env_file(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("env file")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// README's install, as far as a test can go without root's useradd and
/// systemctl: the files at the README's paths and modes below a temp root,
/// the config made from `config example` with the README's edits and the
/// token in the env file. The unit's paths are README's; its
/// `ExecStartPre` with the env file loaded says nothing and exits 0, its
/// `ExecStart` connects with the env file's token. A token written into
/// the 0640 file gets one warning that points to the env file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_install_checks_quietly_and_the_unit_serves_with_the_env_files_token() {
    use catpaw_agent::cli::manpage::{UNIT_CONFIG_FILE, UNIT_STATE_DIR};
    use catpaw_agent::config::UNIT_ENV_FILE;

    let block = readme_install_block();
    let installs = readme_installs(&block);
    assert_eq!(installs.get(UNIT_CONFIG_FILE), Some(&0o640), "{block}");
    assert_eq!(installs.get(UNIT_ENV_FILE), Some(&0o600), "{block}");
    assert!(
        block.contains(&format!("state_dir = \"{UNIT_STATE_DIR}\""))
            && block.contains("agent_token = \"${CATPAW_TOKEN}\"")
            && block.contains("CATPAW_TOKEN="),
        "{block}"
    );

    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/catpaw-agent.service"
    ))
    .expect("unit");
    let set = unit_settings(&unit);
    assert_eq!(set["EnvironmentFile"], format!("-{UNIT_ENV_FILE}"));
    assert_eq!(
        format!("/var/lib/{}", set["StateDirectory"]),
        UNIT_STATE_DIR
    );
    assert_eq!(set["ReadWritePaths"], UNIT_STATE_DIR);
    let pre: Vec<&str> = set["ExecStartPre"].split_whitespace().collect();
    let start: Vec<&str> = set["ExecStart"].split_whitespace().collect();
    assert_eq!(
        pre[1..],
        ["--config", UNIT_CONFIG_FILE, "config", "check", "--quiet"]
    );
    assert_eq!(start[1..], ["--config", UNIT_CONFIG_FILE, "run"]);
    assert!(installs.contains_key(pre[0]), "the unit runs {}", pre[0]);
    // The docs name no other layout.
    for doc in ["README.md", "SECURITY.md"] {
        let text =
            std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).expect("doc");
        for (prefix, want) in [
            ("/etc/catpaw", "/etc/catpaw-agent"),
            ("/var/lib/catpaw", UNIT_STATE_DIR),
        ] {
            for (at, _) in text.match_indices(prefix) {
                let name_goes_on = |rest: &str| {
                    rest.starts_with(|c: char| c.is_alphanumeric() || "-_.".contains(c))
                };
                assert!(
                    text[at..]
                        .strip_prefix(want)
                        .is_some_and(|rest| !name_goes_on(rest)),
                    "{doc}: {} is not under {want}",
                    text[at..].split_whitespace().next().unwrap_or_default()
                );
            }
        }
    }

    // The layout below a temp root.
    let root = tempfile::tempdir().expect("tempdir");
    let under = |p: &str| root.path().join(p.trim_start_matches('/'));
    let example = common::process::command()
        .args(["config", "example"])
        .output()
        .expect("example");
    let mut server = TestServer::start().await;
    let mut config = String::from_utf8(example.stdout).expect("utf-8");
    for (from, to) in [
        ("enabled = false", "enabled = true".to_string()),
        (
            "address = \"\"",
            "address = \"https://catpaw.example.com\"".into(),
        ),
        (
            "agent_token = \"\"",
            "agent_token = \"${CATPAW_TOKEN}\"".into(),
        ),
        (
            "# state_dir = \"/var/lib/catpaw-agent\"",
            format!("state_dir = \"{}\"", under(UNIT_STATE_DIR).display()),
        ),
        // Root in a test must not leave an append-only file behind.
        ("append_only = true", "append_only = false".into()),
    ] {
        assert!(config.contains(from), "config example lacks {from}");
        config = config.replacen(from, &to, 1);
    }
    let put = |path: &str, body: &str| {
        let file = under(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, body).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(installs[path]))
            .expect("chmod");
    };
    put(UNIT_CONFIG_FILE, &config);
    put(UNIT_ENV_FILE, "CATPAW_TOKEN=tok-from-the-env-file\n");
    let env = read_env_file(&under(UNIT_ENV_FILE));
    let command = |line: &[&str], with_env: bool| {
        let mut cmd = std::process::Command::new(common::process::BIN);
        cmd.env_remove("CATPAW_TOKEN");
        for arg in &line[1..] {
            cmd.arg(if arg.starts_with('/') {
                under(arg).into_os_string()
            } else {
                arg.into()
            });
        }
        if with_env {
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    };

    let out = command(&pre, true).output().expect("ExecStartPre");
    assert_eq!(
        (
            out.status.code(),
            out.stdout.as_slice(),
            out.stderr.as_slice()
        ),
        (Some(0), &b""[..], &b""[..]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&pre, false).output().expect("ExecStartPre");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CATPAW_TOKEN is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The agent against the loopback server (plain http://, so its log
    // warns of clear text: not the point here).
    put(
        UNIT_CONFIG_FILE,
        &config.replacen("https://catpaw.example.com", &server.url(), 1),
    );
    let mut agent = command(&start, true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ExecStart");
    let (conn, _) = server.accept_registered().await;
    assert_eq!(conn.headers["x-agent-token"], "tok-from-the-env-file");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().expect("wait").success());

    // The token in the (group-readable) file instead: one warning, which
    // sends it to the env file and, for root, suggests no chmod.
    put(
        UNIT_CONFIG_FILE,
        &config.replacen(
            "agent_token = \"${CATPAW_TOKEN}\"",
            "agent_token = \"tok-in-the-file\"",
            1,
        ),
    );
    let out = command(&pre, false).output().expect("ExecStartPre");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains("mode 0640")
            && stderr.contains(UNIT_ENV_FILE)
            && !stderr.contains("tok-in-the-file"),
        "{stderr}"
    );
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert!(!stderr.contains("chmod"), "{stderr}");
    }
}

/// `catpaw-agent manpage` is one page: every command inline, EXIT STATUS,
/// SIGNALS and FILES (the whole state dir layout), and no reference to
/// another page (none is generated).
#[test]
fn the_man_page_is_one_complete_page() {
    let out = common::process::command()
        .arg("manpage")
        .output()
        .expect("manpage");
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).expect("utf-8");
    for heading in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        ".SH FILES",
    ] {
        assert!(man.contains(heading), "no {heading}:\n{man}");
    }
    for command in [
        "run",
        "demo",
        "session",
        "alert",
        "audit verify",
        "check-runner",
        "runner new",
        "config check",
        "config example",
        "status",
        "completions",
        "manpage",
    ] {
        assert!(
            man.contains(&format!(".SS \"catpaw-agent {command}\"")),
            "{command} is not on the page"
        );
    }
    // `(1)`, `(5)`, `(8)`…: a reference to a page; none but the title's.
    let body = man.split_once(".SH NAME").expect("NAME").1;
    let refs: Vec<&str> = body
        .match_indices('(')
        .map(|(at, _)| &body[at..(at + 3).min(body.len())])
        .filter(|r| r.as_bytes().get(1).is_some_and(u8::is_ascii_digit) && r.ends_with(')'))
        .collect();
    assert!(refs.is_empty(), "references to other pages: {refs:?}");
    assert!(!man.contains("catpaw\\-agent\\-run"), "{man}");

    let section = |name: &str| -> String {
        man.split(name)
            .nth(1)
            .and_then(|s| s.split("\n.SH ").next())
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let exit = section(".SH \"EXIT STATUS\"");
    for code in ["\\fB0\\fR", "\\fB1\\fR", "\\fB2\\fR"] {
        assert!(exit.contains(code), "{exit}");
    }
    let signals = section(".SH SIGNALS");
    assert!(
        signals.contains("SIGHUP") && signals.contains("SIGTERM, SIGINT"),
        "{signals}"
    );
    let files = section(".SH FILES");
    let state = catpaw_agent::config::StatePaths::new("STATE_DIR");
    for path in [
        state.agent_id(),
        state.audit_trail(),
        state.audit_trail().with_extension("head"),
        state.root().join("cache"),
        state.ingest_socket(),
        state.status_socket(),
        state.llm_daily_tokens(),
        state.replay_nonces(),
        state.agent_lock(),
    ] {
        let shown = path.display().to_string().replace('-', "\\-");
        assert!(files.contains(&shown), "FILES lacks {shown}:\n{files}");
    }
    for path in [
        catpaw_agent::config::DEFAULT_PATH,
        catpaw_agent::cli::manpage::UNIT_CONFIG_FILE,
        catpaw_agent::config::UNIT_ENV_FILE,
    ] {
        assert!(
            files.contains(&path.replace('-', "\\-")),
            "FILES lacks {path}"
        );
    }
    // The page formats without a complaint where groff is installed.
    let mut groff = match std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(g) => g,
        Err(e) => {
            return common::skip(&format!(
                "groff cannot run ({e}): the page was not formatted"
            ));
        }
    };
    groff
        .stdin
        .take()
        .expect("stdin")
        .write_all(man.as_bytes())
        .expect("write");
    let out = groff.wait_with_output().expect("groff");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// README: "The endpoint has no authentication; a non-loopback `listen`
/// gets a warning at start." An agent listening on every address warns
/// once, naming the setting (and serves, loopback included); one on
/// 127.0.0.1 says nothing of it. The warning is written before the agent
/// dials, so by its `register` it is there or it never will be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_metrics_listen_gets_a_warning_at_start_and_a_loopback_one_none() {
    let mut server = TestServer::start().await;
    for (host, warned) in [("0.0.0.0", true), ("127.0.0.1", false)] {
        let port = free_port();
        let home = AgentHome::new(&server_toml(
            &server,
            None,
            &format!("[metrics]\nlisten = \"{host}:{port}\"\n"),
        ));
        let agent = home.agent().keep_log().spawn();
        let _conn = server.accept_registered().await;
        assert!(
            scrape(port).contains_key("catpaw_agent_connected"),
            "{host}: /metrics serves"
        );
        let log = agent.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("[metrics] listen"))
            .collect();
        if warned {
            assert_eq!(warnings.len(), 1, "{log}");
            let line = warnings[0];
            assert!(
                line.contains("WARN")
                    && line.contains(&format!("\"{host}:{port}\""))
                    && line.contains("no authentication"),
                "{line}"
            );
        } else {
            assert!(warnings.is_empty(), "{log}");
        }
    }
}

/// README: "The unit runs `config check --quiet` before each start: it
/// writes nothing on success, warnings if there are any, and a bad config
/// stops the service with the field named". The shipped unit's
/// `ExecStartPre`, run word for word (only the binary and the config file
/// are the test's), on a good config, one with a warning and a bad one;
/// its exit status is what systemd judges, and the line has no `-` prefix
/// that would make systemd ignore a failure.
#[test]
fn the_units_exec_start_pre_is_silent_on_a_good_config_warns_and_fails_a_bad_one_naming_the_field()
{
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/catpaw-agent.service"
    ))
    .expect("unit");
    let line = unit_settings(&unit)["ExecStartPre"].clone();
    assert!(
        !line.starts_with(['-', '@', ':', '+', '!']),
        "ExecStartPre={line}: a prefix changes how systemd runs or judges it"
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "/usr/bin/catpaw-agent", "{line}");
    let config_at = words
        .iter()
        .position(|w| *w == "--config")
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("ExecStartPre={line} names no --config"));
    let pre = |body: &str| {
        let home = AgentHome::bare();
        let config = common::write_config(home.path(), body);
        let mut cmd = std::process::Command::new(common::process::BIN);
        for (i, w) in words.iter().enumerate().skip(1) {
            if i == config_at {
                cmd.arg(&config);
            } else {
                cmd.arg(w);
            }
        }
        let out = cmd.current_dir(home.path()).output().expect("ExecStartPre");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = "[server]\nenabled = true\naddress = \"https://catpaw.example.com\"\n";
    assert_eq!(pre(good), (Some(0), String::new(), String::new()));

    let (code, stdout, stderr) = pre(&format!("{good}[metrics]\nlisten = \"0.0.0.0:9464\"\n"));
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: ") && stderr.contains("[metrics] listen"),
        "{stderr}"
    );

    let (code, stdout, stderr) = pre(&format!("{good}[sandbox]\nmax_memory = \"12XB\"\n"));
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "{stderr}");
    assert!(stderr.contains("[sandbox] max_memory"), "{stderr}");
}

/// Resident KiB of `pid`'s clean file mappings (its executable, shared
/// libraries and compiled runners: not writable, no anonymous page).
fn clean_file_kib(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    // Per mapping: (a read-only file mapping, Rss KiB, Anonymous KiB).
    let mut maps: Vec<(bool, u64, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        let kib: u64 = f.clone().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match (first, maps.last_mut()) {
            ("Rss:", Some(m)) => m.1 = kib,
            ("Anonymous:", Some(m)) => m.2 = kib,
            // A mapping's header: range, perms, offset, device, inode, path.
            (range, _) if !range.ends_with(':') => {
                let perms = f.next().unwrap_or("");
                let path = f.nth(3).unwrap_or("");
                maps.push((path.starts_with('/') && !perms.contains('w'), 0, 0));
            }
            _ => {}
        }
    }
    maps.iter()
        .filter(|&&(file, _, anon)| file && anon == 0)
        .map(|m| m.1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_hands_back_the_code_pages_connecting_faulted_in() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, Some("t"), ""));
    let agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let connected = clean_file_kib(agent.pid());
    // The first idle look is 5 s after start.
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(t0.elapsed())).await;
    let idle = clean_file_kib(agent.pid());
    // Measured: about 19.5 → 10 MiB in this debug build (9.5 → 4 MiB in a
    // release one, BENCHMARKS.md "Footprint").
    assert!(
        idle + 4096 < connected,
        "clean file pages resident: {connected} KiB connected, {idle} KiB idle"
    );
    // Still serving, on the code it faults back in.
    assert!(
        c.start_session("s1", "inspect", json!({"plugin": "mem"}))
            .await
            .ok
    );
    let done = c.session_until_done("s1").await;
    assert!(
        done.iter()
            .any(|m| m.payload.as_ref().is_some_and(|p| p["done"] == true)),
        "{done:?}"
    );
}
