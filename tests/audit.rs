//! The audit trail through the real binary: `catpaw-agent audit verify`
//! says, with its exit code, whether every record is there and what is
//! missing; the agent does not start on a trail that is a device; and a
//! flood of refused starts over a real WebSocket costs a few KiB of trail.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use catpaw_agent::proto::{self, Envelope};
use common::process::{AgentHome, server_toml};
use common::server::TestServer;
use serde_json::json;

/// `audit verify` in `home`: (exit code, stdout).
fn verify(home: &AgentHome) -> (Option<i32>, String) {
    let out = home
        .command()
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One local session, which writes a few records.
fn run_session(home: &AgentHome) -> std::process::Output {
    home.command()
        .args(["session", "--type", "inspect", "--param", "plugin=system"])
        .output()
        .expect("session")
}

fn cut_last_line(path: &Path) {
    let text = std::fs::read_to_string(path).expect("trail");
    let lines: Vec<&str> = text.lines().collect();
    let kept: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).expect("cut");
}

#[test]
fn audit_verify_says_what_is_missing_with_exit_1() {
    let home = AgentHome::new("[audit]\nappend_only = false\n");
    // No trail at all: an error naming where it looked.
    let (code, said) = verify(&home);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no audit trail"), "{said}");
    assert!(said.contains(&home.state().display().to_string()), "{said}");

    let out = run_session(&home);
    assert!(out.status.success(), "{out:?}");
    let (code, said) = verify(&home);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("intact"), "{said}");

    // The last line cut.
    let trail = home.state().join("audit.jsonl");
    cut_last_line(&trail);
    let (code, said) = verify(&home);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("missing from the end"), "{said}");

    // The next start does not re-anchor on the cut trail: it records the
    // gap, which verify keeps reporting.
    let out = run_session(&home);
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("ERROR") && log.contains("audit trail damaged"),
        "{log}"
    );
    let (code, said) = verify(&home);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("the agent recorded a gap"), "{said}");
    assert!(said.contains("missing from the end"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_that_is_a_device_stops_the_agent_and_is_not_a_trail() {
    let server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, ""));
    std::fs::create_dir_all(home.state()).expect("state");
    std::os::unix::fs::symlink("/dev/null", home.state().join("audit.jsonl")).expect("symlink");
    let mut agent = home.agent().keep_log().spawn();
    let status = agent
        .wait_within(Duration::from_secs(15))
        .await
        .expect("the agent exits");
    assert!(!status.success(), "{status:?}");
    let log = agent.log();
    assert!(log.contains("is a character device"), "{log}");
    assert!(log.contains("audit.jsonl"), "{log}");
    let out = run_session(&home);
    assert!(!out.status.success(), "{out:?}");
    let (code, said) = verify(&home);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not an audit trail"), "{said}");
}

const PUBLIC: &str = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_refused_starts_add_a_few_kib_to_the_trail() {
    let mut server = TestServer::start().await;
    let signing = format!("[server.signing]\nkeys = {{ \"ops-1\" = \"{PUBLIC}\" }}\n");
    let home = AgentHome::new(&server_toml(&server, None, &signing));
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let trail = home.state().join("audit.jsonl");
    let size = || std::fs::metadata(&trail).map_or(0, |m| m.len());
    let before = size();
    let started = Instant::now();
    const N: u64 = 5000;
    for i in 0..N {
        let start = Envelope::new(
            proto::MSG_SESSION_START,
            json!({"session_id": format!("flood-{i}"), "session_type": "chat",
                   "user_name": "op", "params": {}}),
        );
        c.send(&start).await;
    }
    for _ in 0..N {
        let ack = common::agent::payload(&c.recv_type("ack").await);
        assert_eq!(ack["error"], "unauthorized: signature required", "{ack}");
    }
    let seconds = started.elapsed().as_secs() + 1;
    // Every refusal is counted: the last second's batch comes on the timer.
    let counted = || -> (u64, u64) {
        let refused: Vec<_> = home
            .audit()
            .into_iter()
            .filter(|r| r["event"] == "refused")
            .collect();
        let n = refused.iter().filter_map(|r| r["count"].as_u64()).sum();
        (n, refused.len() as u64)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted().0 < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (n, records) = counted();
    assert_eq!(n, N, "every refusal is counted");
    assert!(
        records <= seconds + 1,
        "{records} records for {seconds} s of refusals"
    );
    let grown = size() - before;
    assert!(grown < 8 * 1024, "the trail grew by {grown} bytes");
    let first = home
        .audit()
        .into_iter()
        .find(|r| r["event"] == "refused")
        .expect("a refused record");
    assert_eq!(first["session_id"], "flood-0");
    agent.sigkill();
    let (code, said) = verify(&home);
    assert_eq!(code, Some(0), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_logs_the_head_at_start_and_at_rotation() {
    use catpaw_agent::audit::{AuditLog, Record, Who};
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(
        &server,
        None,
        "[audit]\nmax_size = \"64KiB\"\nappend_only = false\n",
    ));
    // A trail past 64 KiB, so the agent's first record rotates it.
    let trail = home.state().join("audit.jsonl");
    let log = AuditLog::open(&trail).expect("open");
    let who = Who::default();
    for i in 0..200 {
        log.note(Record::new(
            &who,
            "tool",
            &format!("t{i}"),
            &"x".repeat(400),
            "",
        ));
    }
    drop(log);
    let text = std::fs::read_to_string(&trail).expect("trail");
    let last = text.lines().last().expect("a record");
    let hash = common::process::sha256_hex(last.as_bytes());
    let mut agent = home.agent().keep_log().spawn();
    let (mut c, _) = server.accept_registered().await;
    let opened = agent.log();
    let line = opened
        .lines()
        .find(|l| l.contains("audit trail opened"))
        .unwrap_or_else(|| panic!("no head at start: {opened}"));
    assert!(line.contains("seq=200") && line.contains(&hash), "{line}");
    let ack = c
        .start_session("s-1", "inspect", json!({"plugin": "cpu"}))
        .await;
    assert!(ack.ok, "{ack:?}");
    assert!(
        agent
            .wait_for_log("audit trail rotated", Duration::from_secs(10))
            .await,
        "{}",
        agent.log()
    );
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("audit trail rotated"))
        .expect("the rotation line");
    assert!(line.contains("seq=200") && line.contains(&hash), "{line}");
    c.session_until_done("s-1").await;
    agent.sigkill();
    let (code, said) = verify(&home);
    assert_eq!(code, Some(0), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_a_granted_shell_cannot_truncate_rewrite_or_remove_the_append_only_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(why) = common::host::append_only_supported(dir.path()) {
        return common::skip(&why);
    }
    let state = dir.path().join("state.d");
    let _clear = common::host::ClearAppendOnly(&state);
    // The agent as `catpaw-agent run` builds it, with the attribute on.
    let a = common::ai::agent(dir.path(), "[audit]\nappend_only = true\n");
    let trail = state.join("audit.jsonl");
    assert_eq!(
        common::host::append_only_attr(&trail, None),
        Some(true),
        "the agent did not mark {}",
        trail.display()
    );
    // A shell with the agent's own rights (root, as a local --allow-shell
    // gets): its mode bits do not stop it, only the attribute does.
    let t = trail.display();
    let attack = format!(
        "id -u; true > {t}; truncate -s 0 {t}; sed -i 1d {t}; mv {t} {t}.old; rm -f {t}; wc -c < {t}"
    );
    let events = common::chat(json!({ "message": format!("run {attack}") }))
        .allow_shell()
        .start_with(a.runners.clone())
        .finish()
        .await;
    let answer: String = events
        .iter()
        .filter_map(|e| match e {
            catpaw_agent::session::SessionEvent::Output(p) if p.stage == "answer" => {
                Some(p.delta.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        answer.contains("```\n0\n"),
        "the shell ran as root: {answer}"
    );
    // Each attempt was refused by the kernel, not skipped.
    assert!(
        answer.matches("Operation not permitted").count() >= 4,
        "{answer}"
    );
    assert!(!state.join("audit.jsonl.old").exists(), "{answer}");
    let kept = std::fs::read_to_string(&trail).expect("the trail is still there");
    assert!(kept.contains("\"kind\":\"shell\""), "{kept}");
    drop(a);
    let out = std::process::Command::new(common::process::BIN)
        .arg("--config")
        .arg(dir.path().join("conf.d/config.toml"))
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "audit verify after the shell: {}{}\nthe shell said: {answer}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
