//! The read-only tools from inside real guests: every tool answers a
//! default call with data or a plain "not available here", within the
//! output cap and audited; allow-lists hold for what a guest asks; and
//! every catpaw plugin name inspects to a report through the agent.

mod common;

use catpaw_agent::tools::{Targets, ToolConfig};
use common::agent::*;
use common::*;
use serde_json::{Value, json};

/// The rows the tool-tour guest reports.
fn tour_rows(events: &[catpaw_agent::session::SessionEvent]) -> Vec<Value> {
    assert_eq!(error_of(events), None, "{events:?}");
    let report = report_of(events).unwrap_or_default();
    serde_json::from_str::<Value>(&report)
        .unwrap_or_else(|e| panic!("tour report is not JSON ({e}): {report}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Tools that reach only what the operator allow-lists (`[tools]` files,
/// `[tools.targets]`): with nothing listed they have nothing to look at.
const ALLOW_LISTED: &[&str] = &[
    "log_tail",
    "file_check",
    "cert_files",
    "dns_lookup",
    "tcp_connect",
    "ping",
    "http_check",
    "tls_cert",
    "redis_info",
    "docker",
];

/// Tools that read only /proc: on a host with /proc mounted they answer
/// with data, never "not available".
const PROC_ONLY: &[&str] = &[
    "cpu",
    "memory",
    "uptime",
    "top_processes",
    "process_count",
    "zombies",
    "fd_usage",
    "tcp_summary",
    "sockstat",
    "vmstat",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_called_from_a_guest_answers_and_only_allow_listed_ones_may_refuse() {
    let sb = TestSandbox::new();
    let tour = sb.load("hazard_tool_tour");
    let rows = tour_rows(&inspect("tour").run_on(&tour).await);
    // README: "`list-tools` names them all; 56 today".
    assert_eq!(rows.len(), 56, "{rows:?}");
    let proc_mounted = std::path::Path::new("/proc/self/stat").exists();
    if !proc_mounted {
        eprintln!("/proc is not mounted here: the /proc tools are not required to have data");
    }
    for r in &rows {
        let tool = r["tool"].as_str().unwrap_or("");
        let text = r["text"].as_str().unwrap_or("");
        assert!(
            r["bytes"].as_u64().unwrap_or(u64::MAX) <= 32 * 1024,
            "{tool}: {} bytes",
            r["bytes"]
        );
        let allow_listed = ALLOW_LISTED.contains(&tool);
        if r["ok"] != true {
            // Only a tool with nothing allow-listed may refuse, in one line
            // that names the tool and the key the operator would set.
            assert!(allow_listed, "{tool} failed on this host: {text}");
            assert!(
                text.starts_with(&format!("tool {tool}: "))
                    && !text.contains('\n')
                    && text.contains("[tools"),
                "{tool}: {text}"
            );
            continue;
        }
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{tool} gave invalid JSON ({e}): {text}"));
        assert!(v.is_object(), "{tool}: {text}");
        if v["available"] == false {
            let why = v["reason"].as_str().unwrap_or("");
            assert!(
                !why.is_empty(),
                "{tool} says unavailable without a reason: {text}"
            );
            assert!(
                !(proc_mounted && PROC_ONLY.contains(&tool)),
                "{tool} reads only /proc, which is mounted, yet: {text}"
            );
            if allow_listed {
                assert!(why.contains("[tools"), "{tool}: {why}");
            }
        }
    }
    // One started and one outcome record per call, tied together.
    let audit = sb.audit_records();
    for r in &rows {
        let tool = r["tool"].as_str().unwrap_or("");
        let started: Vec<&Value> = audit
            .iter()
            .filter(|a| a["kind"] == "tool" && a["name"] == tool && a["event"] == "started")
            .collect();
        assert_eq!(started.len(), 1, "{tool}: {started:?}");
        let outcomes: Vec<&Value> = audit
            .iter()
            .filter(|a| {
                a["kind"] == "tool" && a["event"] == "outcome" && a["act"] == started[0]["seq"]
            })
            .collect();
        assert_eq!(outcomes.len(), 1, "{tool}: {outcomes:?}");
        let want = if r["ok"] == true { "ok" } else { "error" };
        assert_eq!(outcomes[0]["outcome"], want, "{tool}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_reach_only_what_the_operator_allow_listed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = std::fs::canonicalize(dir.path()).expect("canon");
    std::fs::write(
        logs.join("app.log"),
        "started\nERROR password=Hunter2xyz refused\n",
    )
    .expect("write");
    let sb = TestSandbox::with_tools(ToolConfig {
        log_files: vec![format!("{}/*.log", logs.display())],
        targets: Targets {
            tcp: vec![open.clone()],
            ..Targets::default()
        },
        ..ToolConfig::default()
    });
    let tour = sb.load("hazard_tool_tour");
    let log = format!("{{\"path\":\"{}/app.log\"}}", logs.display());
    let calls = json!([
        ["tcp_connect", "{}"],
        ["tcp_connect", r#"{"target":"127.0.0.1:22"}"#],
        ["log_tail", log],
        ["log_tail", r#"{"path":"/etc/shadow"}"#],
        ["file_check", r#"{"path":"/etc/shadow"}"#],
        ["cert_files", r#"{"path":"/etc/ssl/private/server.key"}"#],
        ["dns_lookup", r#"{"target":"exfil.example.com"}"#],
        [
            "http_check",
            r#"{"target":"http://169.254.169.254/latest/meta-data/"}"#
        ],
        ["tls_cert", r#"{"target":"example.com:443"}"#],
        ["redis_info", r#"{"target":"10.0.0.5:6379"}"#],
        ["ping", r#"{"target":"8.8.8.8"}"#],
        ["sysctl", r#"{"keys":["kernel.random.boot_id"]}"#],
        ["docker", "{}"],
    ]);
    let rows = tour_rows(&inspect("tour").param("calls", calls).run_on(&tour).await);
    let text = |i: usize| rows[i]["text"].as_str().unwrap_or("").to_string();
    assert_eq!(rows[0]["ok"], true, "{}", text(0));
    let connect: Value = serde_json::from_str(&text(0)).expect("json");
    assert_eq!(connect["connects"][0]["ok"], true, "{connect}");
    assert_eq!(rows[2]["ok"], true, "{}", text(2));
    assert!(text(2).contains("ERROR password=***"), "{}", text(2));
    assert!(!text(2).contains("Hunter2xyz"));
    let refusals = [
        (1, "[tools.targets] tcp"),
        (3, "[tools] log_files"),
        (4, "[tools] files is empty"),
        (5, "[tools] cert_files is empty"),
        (6, "[tools.targets] dns is empty"),
        (7, "[tools.targets] http is empty"),
        (8, "[tools.targets] tls is empty"),
        (9, "[tools.targets] redis is empty"),
        (10, "[tools.targets] ping is empty"),
        (11, "[tools] sysctl_keys"),
    ];
    for (i, key) in refusals {
        assert_eq!(
            rows[i]["ok"],
            false,
            "call {i} should be refused: {}",
            text(i)
        );
        assert!(text(i).contains(key), "call {i}: {}", text(i));
    }
    let docker: Value = serde_json::from_str(&text(12)).expect("json");
    assert_eq!(docker["available"], false);
    assert!(
        docker["reason"]
            .as_str()
            .unwrap_or("")
            .contains("[tools.targets] docker_socket")
    );
    // Refused calls are audited as errors, like any failed call.
    let audit = sb.audit_records();
    assert!(audit.iter().any(|a| {
        a["kind"] == "tool"
            && a["event"] == "outcome"
            && a["outcome"] == "error"
            && a["detail"]
                .as_str()
                .unwrap_or("")
                .contains("[tools] log_files")
    }));
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_of_every_catpaw_plugin_name_through_the_agent_produces_a_report() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    for p in catpaw_guest_common::PLUGINS {
        let id = format!("inspect-{}", p.name);
        let ack = c
            .start_session(&id, "inspect", json!({"plugin": p.name}))
            .await;
        assert!(ack.ok, "{}: {ack:?}", p.name);
        let msgs = c.session_until_done(&id).await;
        let done = payload(msgs.last().expect("done"));
        let report = done["report"].as_str().unwrap_or("");
        assert!(
            report.starts_with(&format!("# Inspection: {} on ", p.name)),
            "{}: {done}",
            p.name
        );
        for part in ["**Overall:", "## Findings", "## Thresholds"] {
            assert!(report.contains(part), "{} lacks {part}: {report}", p.name);
        }
        assert!(!report.contains("unknown tool"), "{}: {report}", p.name);
        let calls = msgs
            .iter()
            .filter(|m| payload(m)["stage"] == "tool_call")
            .count();
        assert_eq!(calls, p.tools.len(), "{}: one call per tool", p.name);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_about_an_inspect_plugin_named_in_the_message() {
    let sb = TestSandbox::new();
    let mut run =
        chat(json!({"message": "is the conntrack table full?"})).start_on(&sb.builtin_chat());
    let answer = loop {
        match run.next().await {
            catpaw_agent::session::SessionEvent::Output(p)
                if p.metadata.as_ref().and_then(|m| m.get("turn_done"))
                    == Some(&Value::Bool(true)) =>
            {
                break p.delta.clone();
            }
            _ => continue,
        }
    };
    assert!(answer.contains("connection tracking table"), "{answer}");
    assert!(answer.contains("conntrack"), "{answer}");
    run.cancel.cancel();
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_session_stops_waiting_for_is_audited_when_it_really_ends() {
    use std::time::Duration;
    // The session waits 100 ms for a tool; vmstat samples for a second.
    let sb = TestSandbox::with_tool_timeout(Duration::from_millis(100));
    let tour = sb.load("hazard_tool_tour");
    let rows = tour_rows(
        &diagnose(json!({"calls": [["vmstat", "{}"]]}))
            .run_on(&tour)
            .await,
    );
    assert_eq!(rows[0]["ok"], false);
    let text = rows[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("did not finish within"), "{text}");
    // The outcome record is written when the read has really ended, with
    // what it did, not when the session stopped waiting.
    let outcome = || {
        sb.audit_records()
            .into_iter()
            .find(|r| r["name"] == "vmstat" && r["event"] == "outcome")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rec = loop {
        if let Some(r) = outcome() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no outcome record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert!(rec["duration_ms"].as_u64().unwrap_or(0) >= 900, "{rec}");
}

/// Inspects `plugin` through the agent on `c` and returns the report.
async fn report_through_agent(c: &mut common::server::ServerConn, plugin: &str) -> String {
    let id = format!("inspect-{plugin}");
    let ack = c
        .start_session(&id, "inspect", json!({"plugin": plugin}))
        .await;
    assert!(ack.ok, "{plugin}: {ack:?}");
    let msgs = c.session_until_done(&id).await;
    let done = payload(msgs.last().expect("done"));
    done["report"].as_str().unwrap_or("").to_string()
}

/// The report's overall line.
fn overall_line(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("**Overall:"))
        .unwrap_or_else(|| panic!("no overall line in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_allow_listed_an_inspect_says_not_checked_and_what_to_allow_list() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    for (plugin, keys) in [
        ("http", &["[tools.targets] http"][..]),
        ("dns", &["[tools.targets] dns"]),
        ("ping", &["[tools.targets] ping"]),
        ("redis", &["[tools.targets] redis"]),
        ("redis_sentinel", &["[tools.targets] redis"]),
        ("docker", &["[tools.targets] docker_socket"]),
        ("logfile", &["[tools] log_files"]),
        ("filecheck", &["[tools] files"]),
        ("cert", &["[tools] cert_files", "[tools.targets] tls"]),
    ] {
        let report = report_through_agent(&mut c, plugin).await;
        let line = overall_line(&report);
        assert!(
            line.starts_with("**Overall: NOT CHECKED**"),
            "{plugin}: {line}"
        );
        for key in keys {
            assert!(line.contains(&format!("`{key}`")), "{plugin}: {line}");
        }
        assert!(!report.contains("**OK**"), "{plugin}: {report}");
        assert!(report.contains("**NOT CHECKED**"), "{plugin}: {report}");
    }
    // Checked and unchecked findings together: OK, but not plain OK.
    let report = report_through_agent(&mut c, "net").await;
    let line = overall_line(&report);
    assert!(
        line.contains("(1 not checked)") && !line.starts_with("**Overall: OK**"),
        "{line}"
    );
    h.stop().await;
}

/// A one-request-at-a-time HTTP server answering 200 until dropped.
fn http_ok_server() -> (std::net::TcpListener, String) {
    let (listener, url, _) = http_server(HTTP_OK);
    (listener, url)
}

/// A whole `200 OK` response.
const HTTP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// A one-request-at-a-time HTTP server on loopback answering `response`
/// to every request for `/health` until dropped; its URL, and how many
/// requests it has answered (counted before the answer is written).
fn http_server(
    response: &[u8],
) -> (
    std::net::TcpListener,
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/health",
        listener.local_addr().expect("addr").port()
    );
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (server, counted, response) = (
        listener.try_clone().expect("clone"),
        hits.clone(),
        response.to_vec(),
    );
    std::thread::spawn(move || {
        for mut s in server.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(&response);
        }
    });
    (listener, url, hits)
}

/// README: "http_check: one GET, redirects not followed". The server
/// answers 302 to a second listener that is allow-listed too (so only the
/// redirect rule keeps the check from following): the inspect shows the
/// 302, the first server gets one GET, and the second only the one its
/// own check makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_makes_one_get_and_does_not_follow_a_redirect() {
    let (_landing, landing_url, landing_hits) = http_server(HTTP_OK);
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: {landing_url}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let (_moved, moved_url, moved_hits) = http_server(redirect.as_bytes());
    let sb = TestSandbox::with_tools(ToolConfig {
        targets: Targets {
            http: vec![moved_url.clone(), landing_url.clone()],
            ..Targets::default()
        },
        ..ToolConfig::default()
    });
    let mut h = harness_with(|_| {}, |_| builtin_runners(&sb), fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    let report = report_through_agent(&mut c, "http").await;
    assert!(
        report.contains(&format!("{moved_url} answered 302 in ")),
        "{report}"
    );
    let hits = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hits(&moved_hits), 1, "one GET of the redirecting URL");
    assert_eq!(
        hits(&landing_hits),
        1,
        "the redirect was followed: the landing URL got more than its own check"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_target_allow_listed_the_inspect_checks_it() {
    let (_http, url) = http_ok_server();
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp = format!("127.0.0.1:{}", open.local_addr().expect("addr").port());
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = std::fs::canonicalize(dir.path()).expect("canon");
    std::fs::write(logs.join("app.log"), "started\nERROR disk on fire\n").expect("write");
    let sb = TestSandbox::with_tools(ToolConfig {
        log_files: vec![format!("{}/*.log", logs.display())],
        targets: Targets {
            http: vec![url.clone()],
            tcp: vec![tcp.clone()],
            ..Targets::default()
        },
        ..ToolConfig::default()
    });
    let mut h = harness_with(|_| {}, |_| builtin_runners(&sb), fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    let report = report_through_agent(&mut c, "http").await;
    assert_eq!(
        overall_line(&report),
        "**Overall: OK** (0 critical, 0 warning, 1 ok, 0 not checked)",
        "{report}"
    );
    assert!(report.contains(&url), "{report}");
    let report = report_through_agent(&mut c, "net").await;
    assert!(
        overall_line(&report).ends_with(", 0 not checked)"),
        "{report}"
    );
    assert!(report.contains(&tcp), "{report}");
    // A log listing is followed by reading each file.
    let report = report_through_agent(&mut c, "logfile").await;
    assert!(
        overall_line(&report).starts_with("**Overall: WARNING**"),
        "{report}"
    );
    assert!(report.contains("disk on fire"), "{report}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catpaws_local_alias_inspects_the_system_and_sysdiag_says_what_exists() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(
        c.start_session("local", "inspect", json!({"plugin": "local"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("local").await;
    let done = payload(msgs.last().expect("done"));
    let report = done["report"].as_str().unwrap_or("");
    assert!(report.starts_with("# Inspection: local on "), "{done}");
    let calls = msgs
        .iter()
        .filter(|m| payload(m)["stage"] == "tool_call")
        .count();
    let system = catpaw_guest_common::plugin("system").expect("system");
    assert_eq!(calls, system.tools.len(), "the system plugin's tools");
    let ack = c
        .start_session("sysdiag", "inspect", json!({"plugin": "sysdiag"}))
        .await;
    assert!(ack.ok, "{ack:?}");
    let msgs = c.session_until_done("sysdiag").await;
    let err = msgs
        .iter()
        .find(|m| m.msg_type == "session_error")
        .map(payload)
        .unwrap_or_else(|| panic!("no session_error: {msgs:?}"));
    let text = err["error"].as_str().unwrap_or("");
    assert!(
        text.contains("unknown plugin \"sysdiag\"") && text.contains("local = system"),
        "{err}"
    );
    h.stop().await;
}
