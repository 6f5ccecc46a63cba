//! The agent binary as an operator runs it: config file, server connection,
//! local alert ingest, SIGTERM.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use catpaw_agent::proto::Envelope;
use common::process::{AgentHome, AgentProcess, command, server_toml};
use common::server::{ServerConn, TestServer};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A home for an agent served by `server` with token `t`, then `extra`.
fn served_by(server: &TestServer, extra: &str) -> AgentHome {
    AgentHome::new(&server_toml(server, Some("t"), extra))
}

/// SIGTERM: the server sees a normal close frame and the agent exits 0.
async fn terminate_cleanly(agent: &mut AgentProcess, c: &mut ServerConn) {
    agent.sigterm();
    assert_eq!(c.expect_close().await, CloseCode::Normal);
    let status = agent
        .wait_within(Duration::from_secs(15))
        .await
        .expect("the agent exits after its close frame");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_a_server_takes_local_alerts_and_stops_cleanly_on_sigterm() {
    let mut server = TestServer::start().await;
    // The config reads the token from the environment.
    let home = AgentHome::new(&server_toml(&server, Some("${CATPAW_TEST_TOKEN}"), ""))
        .env("CATPAW_TEST_TOKEN", "from-env");
    // Logs are not read here; a full pipe must not stall the agent.
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    assert_eq!(c.headers["x-agent-token"], "from-env");
    // state_dir defaults to state.d beside conf.d.
    assert!(home.state().join("agent_id").is_file());

    // A session works end to end through the binary.
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "mem"}))
            .await
            .ok
    );
    c.session_until_done("s").await;

    // Local alerts through the CLI.
    let sock = home.wait_for_socket().await;
    let out = home
        .command()
        .args(["alert", "--json", r#"{"event_time":1700000000,"event_status":"Critical","alert_key":"disk-full","labels":{"host":"a"},"description":"disk /"}"#])
        .output()
        .expect("alert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = c.recv_type("alert_events").await;
    let events = e.payload.expect("payload")["events"].clone();
    assert_eq!(events[0]["alert_key"], "disk-full");

    let mut child = home
        .command()
        .args(["alert", "--json-lines", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alert lines");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"event_time\":1,\"event_status\":\"Ok\",\"alert_key\":\"a\"}\n{\"event_time\":2,\"event_status\":\"Fine\",\"alert_key\":\"b\"}\n{\"event_time\":3,\"event_status\":\"Info\",\"alert_key\":\"c\"}\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("event_status"),
        "{stderr}"
    );
    let mut keys = Vec::new();
    while keys.len() < 2 {
        let e = c.recv_type("alert_events").await;
        for ev in e.payload.expect("payload")["events"]
            .as_array()
            .expect("events")
        {
            keys.push(ev["alert_key"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(keys, ["a", "c"]);

    terminate_cleanly(&mut agent, &mut c).await;
    assert!(!sock.exists(), "socket removed on exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_stream_does_not_stop_the_agent() {
    // Logs go to stderr; when whatever reads it goes away (a collector
    // restarts, a pipe closes) the agent keeps serving and still stops
    // cleanly.
    let mut server = TestServer::start().await;
    let home = served_by(&server, "[log]\nlevel = \"debug\"\n");
    // Close the read end before the agent logs anything.
    let mut agent = home.agent().close_log().spawn();
    let (mut c, _) = server.accept_registered().await;
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    c.session_until_done("s").await;
    assert!(agent.is_running(), "agent died");
    terminate_cleanly(&mut agent, &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_limits_override_the_config_for_the_agent() {
    let mut server = TestServer::start().await;
    let home = served_by(&server, "[sandbox]\nfuel = 1000000000\n");
    let mut agent = home.agent().args(["run", "--fuel", "1000"]).spawn();
    let (mut c, _) = server.accept_registered().await;
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("s").await;
    let err = msgs
        .iter()
        .find(|e| e.msg_type == "session_error")
        .and_then(|e| e.payload.clone())
        .expect("the 1000-unit budget ends the session");
    assert_eq!(err["code"], "resource_exhausted");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("1000 fuel")),
        "{err}"
    );
    terminate_cleanly(&mut agent, &mut c).await;
}

#[test]
fn a_bad_config_names_the_file_and_the_field() {
    let home = AgentHome::new("[server]\nenabled = true\naddress = \"ftp://x\"\n");
    let out = home.command().output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.toml")
            && stderr.contains("[server] address")
            && stderr.contains("ftp"),
        "{stderr}"
    );
    let missing = command()
        .args(["--config", "/nonexistent/catpaw.toml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/catpaw.toml"));
}

#[test]
fn alert_without_a_running_agent_says_so() {
    let out = AgentHome::new("")
        .command()
        .args(["alert", "--json", "{}"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is catpaw-agent running"));
}

#[test]
fn the_demo_runs_end_to_end() {
    let out = command().arg("demo").output().expect("demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "agent registered",
        "# Inspection: cpu",
        "# Diagnosis: mem",
        "## Likely cause",
        "operator> history",
        "1. how is the load?",
        "tool calls were audited",
    ] {
        assert!(text.contains(want), "demo output lacks {want:?}:\n{text}");
    }
}

#[test]
fn a_configured_runner_must_serve_its_role() {
    let echo = common::guest("hazard_echo");
    let home = AgentHome::new(&format!(
        "[sandbox]\nchat_runner = \"{}\"\n",
        echo.display()
    ));
    let out = home
        .command()
        .args(["session", "--type", "diagnose"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chat_runner") && stderr.contains("does not export catpaw:runner/chat"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_from_the_server_cannot_forge_log_lines() {
    let mut server = TestServer::start().await;
    let home = served_by(&server, "");
    // Debug: most of these frames are logged at debug only.
    let mut agent = home
        .agent()
        .env("RUST_LOG", "debug,cranelift=info,wasmtime=info")
        .keep_log()
        .spawn();
    let (mut c, _) = server.accept_registered().await;

    // Every value the agent logs from these frames carries a line break, a
    // forged log line and terminal escapes.
    let evil = "x\n2026-01-01T00:00:00.000000Z ERROR FORGED: pwned \u{1b}[31mred\u{1b}[0m\r";
    let send = |t: &str, p: serde_json::Value| Envelope::new(t, p);
    c.send(&send(
        "session_input",
        json!({"session_id": evil, "message": "hi"}),
    ))
    .await;
    c.send(&send(
        "session_cancel",
        json!({"session_id": evil, "reason": evil}),
    ))
    .await;
    c.send(&send(evil, json!({}))).await;
    let start = send(
        "session_start",
        json!({"session_id": evil, "session_type": "inspect", "user_name": evil,
               "params": {"plugin": "mem"}}),
    );
    c.send(&start).await;
    c.ack_for(&start.id).await;
    c.send(&send(
        "disconnect",
        json!({"reason": evil, "retry_after_sec": 1}),
    ))
    .await;
    // The agent comes back: everything above has been logged by then.
    let (mut c2, _) = server.accept_registered().await;
    terminate_cleanly(&mut agent, &mut c2).await;

    let bytes = agent.log_bytes();
    assert!(!bytes.contains(&0x1b), "a raw ESC reached the log");
    assert!(!bytes.contains(&b'\r'), "a raw CR reached the log");
    let text = String::from_utf8_lossy(&bytes);
    let carrying = text.lines().filter(|l| l.contains("FORGED")).count();
    assert!(carrying >= 3, "the hostile values were logged:\n{text}");
    for line in text.lines() {
        assert!(!line.starts_with("2026-01-01"), "forged line: {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_trace_level_neither_the_token_nor_the_url_password_is_logged() {
    let mut server = TestServer::start().await;
    let token = "tok-SECRET-31337";
    let home = AgentHome::new(&format!(
        "[server]\nenabled = true\naddress = \"http://agent:hunter2-pw@{}\"\nagent_token = \"{token}\"\n",
        server.addr
    ));
    // Trace for everything but the compiler, whose trace output (hundreds
    // of MB while it compiles the runners) says nothing about the wire.
    let mut agent = home
        .agent()
        .env("RUST_LOG", "trace,cranelift=info,wasmtime=info")
        .keep_log()
        .spawn();
    let (mut c, _) = server.accept_registered().await;
    assert_eq!(c.headers["x-agent-token"], token, "the token is in use");
    // A stray ack is logged at debug: proof that RUST_LOG took effect (by
    // the time the session below is done, it has been read).
    c.ack("not-a-message-of-yours").await;
    // Frames both ways at trace level.
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "mem"}))
            .await
            .ok
    );
    c.session_until_done("s").await;
    // A stray ack is logged at debug: proof that RUST_LOG took effect. The
    // SIGTERM below must not overtake it (checked after the exit).
    c.ack("not-a-message-of-yours").await;
    agent.wait_for_log(" DEBUG ", Duration::from_secs(5)).await;
    terminate_cleanly(&mut agent, &mut c).await;

    let text = agent.log();
    assert!(text.contains(" DEBUG "), "verbose logging is on:\n{text}");
    assert!(!text.contains(token), "the token was logged");
    assert!(!text.contains("hunter2-pw"), "the URL password was logged");
    assert!(
        text.contains("ws://***@127.0.0.1:"),
        "the URL is logged, without userinfo"
    );
    // The config (mode 0644, a token, plain http) earns both warnings.
    assert!(text.contains("accessible to group or others"), "{text}");
    assert!(text.contains("sent in clear text"), "{text}");
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses: utime and
    // stime are fields 14 and 15 of the line.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ingest_clients_at_a_low_fd_limit_neither_spin_the_agent_nor_flood_its_log() {
    use std::os::unix::process::CommandExt;
    /// Low enough that the agent runs out of descriptors before the
    /// ingest connection limit (64) is reached.
    const FD_LIMIT: libc::rlim_t = 48;
    let mut server = TestServer::start().await;
    let home = served_by(&server, "");
    let mut launch = home.agent().keep_log();
    // SAFETY: runs in the forked child before exec; setrlimit is
    // async-signal-safe and the closure touches nothing else.
    unsafe {
        launch.command_mut().pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut agent = launch.spawn();
    let pid = agent.pid();
    let (mut c, _) = server.accept_registered().await;
    let sock = home.wait_for_socket().await;

    // 300 clients that connect and say nothing.
    let clients: Vec<_> = (0..300)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    // The agent has run out of descriptors.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent.log().contains("ingest accept failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never hit its descriptor limit:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Over a window of about 3 s (measured, as a loaded machine may
    // stretch it), its share of one core and its log growth per second.
    let log_size = || std::fs::metadata(agent.log_path()).expect("log").len();
    let (cpu0, log0, t0) = (cpu_ticks(pid), log_size(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu1, log1, window) = (cpu_ticks(pid), log_size(), t0.elapsed());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let share = (cpu1 - cpu0) as f64 / hz / window.as_secs_f64();
    // A spinning accept loop is a whole core (1.0).
    assert!(
        share <= 0.1,
        "the agent used {:.0} % of a core over {window:?}",
        share * 100.0
    );
    let per_sec = (log1 - log0) as f64 / window.as_secs_f64();
    assert!(
        per_sec <= 1000.0,
        "the log grew {per_sec:.0} bytes a second over {window:?}"
    );

    // Once the clients are gone, the socket serves again.
    drop(clients);
    let event =
        r#"{"event_time":1700000000,"event_status":"Warning","alert_key":"after-the-storm"}"#;
    let mut accepted = false;
    for _ in 0..50 {
        let out = home
            .command()
            .args(["alert", "--json", event])
            .output()
            .expect("alert");
        if out.status.success() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "`catpaw-agent alert` never got through");
    let e = c.recv_type("alert_events").await;
    assert_eq!(
        e.payload.expect("payload")["events"][0]["alert_key"],
        "after-the-storm"
    );
    terminate_cleanly(&mut agent, &mut c).await;
}

/// Configured for a thousand sessions, the agent starts under
/// `ulimit -v 64G` and serves a hundred chats open at once: a linear
/// memory reserves what a session may use (not 4 GiB), and no instance
/// pool reserves address space for a thousand sessions up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_session_agent_serves_a_hundred_open_chats_under_ulimit_v() {
    const CHATS: usize = 100;
    let mut server = TestServer::start().await;
    let home = served_by(&server, "[sandbox]\nmax_concurrent_sessions = 1000\n");
    let mut launch = home.agent().keep_log();
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        launch.command_mut().pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 30,
                rlim_max: 64 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut agent = launch.spawn();
    let (mut c, _) = server.accept_registered().await;
    for i in 0..CHATS {
        let ack = c.start_session(&format!("c{i}"), "chat", json!({})).await;
        assert!(ack.ok, "chat {i}: {ack:?}\n{}", agent.log());
    }
    for i in 0..CHATS {
        let input = json!({"session_id": format!("c{i}"), "message": "help"});
        c.send(&Envelope::new("session_input", input)).await;
    }
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < CHATS {
        let m = c.recv_type("session_output").await;
        let p = m.payload.expect("payload");
        if p["metadata"]["turn_done"] == true {
            answered.insert(p["session_id"].as_str().expect("id").to_string());
        }
    }
    assert!(agent.is_running(), "{}", agent.log());
    terminate_cleanly(&mut agent, &mut c).await;
}

/// Puts the process about to start in a UTS namespace of its own, named
/// `name`: its host name can then change while it runs, and no other
/// process sees it.
fn own_host_name(cmd: &mut std::process::Command, name: &'static str) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only two system calls are made, on
    // memory that lives as long as the program ('static).
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUTS) != 0
                || libc::sethostname(name.as_ptr().cast(), name.len()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Renames the host in the UTS namespace of process `pid`, from a thread
/// that joins it (only that thread does) and ends.
fn rename_host_of(pid: u32, name: &'static str) {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/uts")).expect("the agent's uts ns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a descriptor we hold open; it moves this thread
        // only, which ends right after.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) },
            0,
            "setns: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a pointer and length of a 'static byte string.
        assert_eq!(
            unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) },
            0,
            "sethostname: {}",
            std::io::Error::last_os_error()
        );
    })
    .join()
    .expect("rename thread");
}

/// README: "Labels are resolved at each `register`, so an address change
/// shows after the next reconnect." The fact that changes under the
/// running agent here is its host name (its own UTS namespace, renamed
/// between two connections): the second `register` carries the new name
/// in `hostname`, `from_hostname` and a label built from
/// `${SHORT_HOSTNAME}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_resolved_at_each_register_so_a_renamed_host_shows_after_the_next_reconnect() {
    let mut probe = std::process::Command::new("true");
    own_host_name(&mut probe, "probe");
    if let Err(e) = probe.status() {
        eprintln!(
            "skipped: this test cannot give the agent a UTS namespace of its own ({e}); it \
             needs root or CAP_SYS_ADMIN"
        );
        return;
    }
    let mut server = TestServer::start().await;
    let home = served_by(
        &server,
        "[global.labels]\nrack = \"r7-${SHORT_HOSTNAME}\"\n",
    );
    let mut launch = home.agent();
    // The environment's HOSTNAME would win over the kernel's name.
    launch.command_mut().env_remove("HOSTNAME");
    own_host_name(launch.command_mut(), "web-1.example");
    let agent = launch.spawn();
    let seen = |reg: &Envelope| {
        let p = reg.payload.clone().unwrap_or_default();
        (
            p["hostname"].clone(),
            p["labels"]["from_hostname"].clone(),
            p["labels"]["rack"].clone(),
        )
    };

    let (c, reg) = server.accept_registered().await;
    assert_eq!(
        seen(&reg),
        (
            json!("web-1.example"),
            json!("web-1.example"),
            json!("r7-web-1")
        ),
        "{reg:?}"
    );
    rename_host_of(agent.pid(), "web-2.example");
    drop(c);
    let (_c, reg) = server.accept_registered().await;
    assert_eq!(
        seen(&reg),
        (
            json!("web-2.example"),
            json!("web-2.example"),
            json!("r7-web-2")
        ),
        "{reg:?}"
    );
}
