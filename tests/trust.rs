//! The trust boundary, tried as a hostile server and a hostile granted
//! shell would: the real agent binary, a real WebSocket server on loopback,
//! the built-in chat guest asking for real shell commands.
//!
//! - audit: `started` on disk before a command, its outcome after cancel,
//!   turn timeout and SIGKILL (closed as `killed` by the next start); a
//!   tampered line found by `audit verify`; a full disk refuses the shell
//! - containment: no agent variable reaches a shell; `setsid` and
//!   double-forked children die on cancel and when the agent dies
//! - signed sessions (PROTOCOL §9) over the wire, each refusal string
//! - bounded input (PROTOCOL §10): oversized `session_id` / `user_name`

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use catpaw_agent::proto::{self, Envelope};
use common::process::{AgentHome, AgentProcess, alive, marked, server_toml, until};
use common::server::{ServerConn, TestServer};
use serde_json::{Value, json};

const AGENT_ID: &str = "7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a10";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A world-writable scratch dir (the shell may run as `nobody`).
fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

/// A home for an agent served by `server` with `server_rest` after the
/// `[server]` lines, a fixed agent id, and `[audit]` without the
/// append-only attribute.
fn home_with_id(server: &TestServer, token: Option<&str>, server_rest: &str) -> AgentHome {
    let home = AgentHome::new(&server_toml(
        server,
        token,
        &format!("{server_rest}[audit]\nappend_only = false\n"),
    ));
    home.write("state.d/agent_id", format!("{AGENT_ID}\n"));
    home
}

/// A home for an agent that grants remote shells (token from the
/// environment, a fixed agent id), then `extra` in `[sandbox]`.
fn shell_home(server: &TestServer, extra: &str) -> AgentHome {
    let user = if is_root() {
        "shell_user = \"nobody\"\n"
    } else {
        ""
    };
    home_with_id(
        server,
        Some("${CATPAW_TEST_TOKEN}"),
        &format!("[sandbox]\nallow_remote_shell = true\n{user}{extra}\n"),
    )
    // The shell configs read the token from the environment.
    .env("CATPAW_TEST_TOKEN", "tok-from-env-5f3a")
}

/// The agent of a [`shell_home`], with one more variable no shell may see.
fn spawn(home: &AgentHome) -> AgentProcess {
    home.agent()
        .env("CATPAW_SECRET_SAUCE", "s3cr3t-sauce-91b")
        .spawn()
}

fn shell_records(home: &AgentHome) -> Vec<Value> {
    home.audit()
        .into_iter()
        .filter(|r| r["kind"] == "shell")
        .collect()
}

/// A shell command that leaves a `setsid` daemon and a double-forked one
/// behind (their pids in `dir/a`, `dir/b`), then runs `tail`. Every
/// process of its tree carries `CATPAW_TREE=<dir>` in its environment
/// (see [`tree_of`]).
fn escaping(dir: &Path, tail: &str) -> String {
    let d = dir.display();
    format!(
        "export CATPAW_TREE={d}; \
         setsid sh -c 'echo $$ > {d}/a; exec sleep 300' >/dev/null 2>&1 & \
         (sh -c 'echo $$ > {d}/b; exec sleep 300' >/dev/null 2>&1 &) ; {tail}"
    )
}

fn pids(dir: &Path) -> Vec<i32> {
    ["a", "b"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

/// The live processes of the tree [`escaping`] started for `dir`: every
/// process in /proc whose environment holds its `CATPAW_TREE`, with its
/// command line (a zombie has neither, and is no survivor).
fn tree_of(dir: &Path) -> Vec<(i32, String)> {
    marked(&format!("CATPAW_TREE={}", dir.display()))
}

/// Starts a chat with a shell that runs `command`; returns the session id.
async fn chat_running(c: &mut ServerConn, id: &str, command: &str) {
    let ack = c
        .start_session(
            id,
            "chat",
            json!({"allow_shell": true, "message": format!("run {command}")}),
        )
        .await;
    assert!(ack.ok, "{ack:?}");
}

/// Starts a chat whose shell leaves a `setsid` and a double-forked
/// daemon behind and then sleeps; returns once both daemons are up.
async fn escaping_chat(c: &mut ServerConn, id: &str, work: &Path) {
    chat_running(c, id, &escaping(work, "sleep 60")).await;
    assert!(until(Duration::from_secs(10), || pids(work).len() == 2).await);
}

/// Asserts that no process of the tree of [`escaping_chat`] is left
/// within 5 s: neither daemon (by pid) nor anything else that carries
/// the tree's mark.
async fn assert_tree_gone(work: &Path, after: &str) {
    let p = pids(work);
    assert_eq!(p.len(), 2, "both daemons wrote their pids: {p:?}");
    assert!(
        until(Duration::from_secs(5), || p.iter().all(|&p| !alive(p))
            && tree_of(work).is_empty())
        .await,
        "processes of the command's tree outlived {after}: daemons {p:?}, still running {:?}",
        tree_of(work)
    );
}

/// The text of the next chat answer of session `id`.
async fn answer_of(c: &mut ServerConn, id: &str) -> String {
    loop {
        let e = c.recv().await;
        let p = e.payload.clone().unwrap_or_default();
        if p["session_id"] == id && p["stage"] == "answer" {
            return p["delta"].as_str().unwrap_or_default().to_string();
        }
    }
}

async fn cancel(c: &mut ServerConn, id: &str) {
    c.send(&Envelope::new(
        proto::MSG_SESSION_CANCEL,
        json!({"session_id": id, "reason": "test"}),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_command_leaves_started_then_cancelled_and_kills_the_tree() {
    let work = scratch();
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    escaping_chat(&mut c, "s-cancel", work.path()).await;
    // The command runs: its started record is already on disk.
    let recs = shell_records(&home);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["event"], "started");
    assert_eq!(recs[0]["session_id"], "s-cancel");
    cancel(&mut c, "s-cancel").await;
    c.session_until_done("s-cancel").await;
    let recs = shell_records(&home);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["event"], "outcome");
    assert_eq!(recs[1]["outcome"], "cancelled");
    assert_eq!(recs[1]["act"], recs[0]["seq"]);
    assert_tree_gone(work.path(), "the cancel").await;
    agent.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_mid_command_records_cancelled() {
    let work = scratch();
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    escaping_chat(&mut c, "s-drop", work.path()).await;
    drop(c);
    let outcome = || {
        shell_records(&home)
            .iter()
            .any(|r| r["event"] == "outcome" && r["outcome"] == "cancelled")
    };
    assert!(until(Duration::from_secs(10), outcome).await);
    assert_tree_gone(work.path(), "the connection").await;
    agent.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_shell_cannot_touch_the_audit_trail() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !is_root() {
        // Without root there is no shell_user: the shell is the agent's
        // own user, which SECURITY.md names as out of reach of this rule.
        return common::skip("not root: no shell_user to run the shell as");
    }
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    // The shipped unit makes the state dir 0700 (StateDirectoryMode), which
    // alone would keep `nobody` out. Open the home and the state dir to
    // 0755, root's and not writable by others as SECURITY.md asks of
    // `state_dir`, so the shell reaches the trail and what stops it is the
    // trail itself: root's, mode 0600. The append-only attribute is off
    // here (tests/audit.rs tries it where the filesystem keeps it), and it
    // would not stop `>>` anyway.
    for dir in [home.path().to_path_buf(), home.state()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // With umask 0 the trail's mode is the agent's own choice, not one
    // its parent's umask happens to narrow.
    let mut launch = home.agent().env("CATPAW_SECRET_SAUCE", "s3cr3t-sauce-91b");
    // SAFETY: runs in the forked child before exec; umask is
    // async-signal-safe and the closure touches nothing else.
    unsafe {
        launch.command_mut().pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut agent = launch.spawn();
    let (mut c, _) = server.accept_registered().await;
    let trail = home.state().join("audit.jsonl");
    let attack = format!(
        "id -u; stat -c 'reached %n' {t}; sed -i 1d {t}; echo forged >> {t}; rm -f {t}",
        t = trail.display()
    );
    chat_running(&mut c, "s-forge", &attack).await;
    let answer = answer_of(&mut c, "s-forge").await;
    assert!(
        !answer.contains("```\n0\n"),
        "the shell ran as root: {answer}"
    );
    assert!(
        answer.contains(&format!("reached {}", trail.display())),
        "the shell could not even reach the trail, so its refusals prove nothing: {answer}"
    );
    cancel(&mut c, "s-forge").await;
    c.session_until_done("s-forge").await;
    agent.sigkill();
    let out = home
        .command()
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    assert!(out.status.success(), "{out:?} after {answer}");
    let recs = shell_records(&home);
    assert_eq!(recs[0]["event"], "started", "{recs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_timeout_mid_command_records_the_outcome_and_kills_the_whole_tree() {
    let work = scratch();
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "[sandbox.chat]\ntimeout = \"3s\"\n");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    escaping_chat(&mut c, "s-slow", work.path()).await;
    // Both daemons and the `sleep 60` (which the shell may have become
    // by exec), all running: the shell starts the `sleep 60` after both
    // daemons wrote their pids, so it is awaited.
    let whole = |tree: &[(i32, String)]| {
        tree.iter()
            .filter(|(_, c)| c.starts_with("sleep 300"))
            .count()
            == 2
            && tree.iter().any(|(_, c)| c.starts_with("sleep 60"))
    };
    assert!(
        until(Duration::from_secs(10), || whole(&tree_of(work.path()))).await,
        "the command's tree before the timeout: {:?}",
        tree_of(work.path())
    );
    let msgs = c.session_until_done("s-slow").await;
    assert!(
        msgs.iter().any(|m| m
            .payload
            .as_ref()
            .is_some_and(|p| p["code"] == "resource_exhausted")),
        "{msgs:?}"
    );
    let recs = shell_records(&home);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["event"], "started");
    assert_eq!(recs[1]["outcome"], "cancelled");
    assert_tree_gone(work.path(), "the turn timeout").await;
    agent.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_command_leaves_started_kills_the_tree_and_the_next_start_closes_it() {
    let work = scratch();
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    escaping_chat(&mut c, "s-kill", work.path()).await;
    agent.sigkill();
    assert_tree_gone(work.path(), "the agent").await;
    let recs = shell_records(&home);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["event"], "started");

    // The next start writes the outcome the killed agent could not.
    let mut again = spawn(&home);
    let _ = server.accept_registered().await;
    let recs = shell_records(&home);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["outcome"], "killed");
    assert_eq!(recs[1]["act"], recs[0]["seq"]);
    again.sigkill();
    let out = home
        .command()
        .args(["audit", "verify"])
        .output()
        .expect("verify");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_exiting_takes_a_running_command_tree_along() {
    let work = scratch();
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    escaping_chat(&mut c, "s-exit", work.path()).await;
    let status = agent.stop().await;
    assert!(status.success(), "{status:?}");
    assert_tree_gone(work.path(), "the agent").await;
    let recs = shell_records(&home);
    assert_eq!(recs.last().expect("records")["outcome"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_shell_sees_none_of_the_agent_environment() {
    let mut server = TestServer::start().await;
    let home = shell_home(&server, "");
    let mut agent = spawn(&home);
    let (mut c, _) = server.accept_registered().await;
    chat_running(&mut c, "s-env", "env").await;
    let answer = answer_of(&mut c, "s-env").await;
    assert!(answer.contains("PATH="), "{answer}");
    for secret in ["tok-from-env-5f3a", "s3cr3t-sauce-91b", "CATPAW_"] {
        assert!(!answer.contains(secret), "{secret} leaked: {answer}");
    }
    agent.sigkill();
}

#[test]
fn audit_verify_finds_a_tampered_line() {
    let home = AgentHome::new("[audit]\nappend_only = false\n");
    let out = home
        .command()
        .args(["session", "--type", "inspect", "--param", "plugin=system"])
        .output()
        .expect("session");
    assert!(out.status.success(), "{out:?}");
    let verify = || {
        home.command()
            .args(["audit", "verify"])
            .output()
            .expect("verify")
    };
    let ok = verify();
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("intact"),
        "{ok:?}"
    );
    let path = home.state().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("audit");
    let n = text.lines().count();
    assert!(n >= 4, "{text}");
    // Someone rewrites the third record's tool name.
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                l.replacen("\"name\":\"", "\"name\":\"x", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("tamper");
    let bad = verify();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(said.contains("audit.jsonl:4"), "{said}");
}

#[test]
fn a_full_disk_refuses_the_shell() {
    use std::os::unix::process::CommandExt;
    let work = scratch();
    let home = AgentHome::new("[audit]\nappend_only = false\n");
    // A first run fills the trail (and the compile cache) to some size...
    let out = home
        .command()
        .args(["session", "--type", "inspect", "--param", "plugin=system"])
        .output()
        .expect("session");
    assert!(out.status.success(), "{out:?}");
    let full = std::fs::metadata(home.state().join("audit.jsonl"))
        .expect("trail")
        .len();
    let marker = work.path().join("ran");
    let mut cmd = home.command();
    cmd.args(["session", "--type", "chat", "--allow-shell", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ...past which this run cannot write: a disk that is full for the
    // trail (EFBIG, as ENOSPC would be; SIGXFSZ ignored so it is an error).
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: full,
                rlim_max: full,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("session");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "run touch {}", marker.display()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("audit unavailable"), "{said}");
    assert!(!marker.exists(), "the command ran without an audit record");
}

// ---- signed sessions (PROTOCOL §9) ----

const SEED: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];
const PUBLIC: &str = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A signed `session_start` frame, written out by hand from §9.
fn signed_start(id: &str, params: &str, ts: i64, nonce: &str, key: &str, agent: &str) -> String {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let text = [
        "catpaw-session-v1",
        "session_start",
        agent,
        id,
        "chat",
        "op",
        &ts.to_string(),
        nonce,
        &hex_sha256(params.as_bytes()),
    ]
    .join("\n");
    let sig = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(text.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    format!(
        "{{\"type\":\"session_start\",\"id\":\"{}\",\"payload\":{{\"session_id\":\"{id}\",\"session_type\":\"chat\",\"user_name\":\"op\",\"params\":{params},\"timestamp\":{ts},\"nonce\":\"{nonce}\",\"key_id\":\"{key}\",\"signature\":\"{sig}\"}}}}",
        uuid::Uuid::new_v4()
    )
}

async fn ack_of_raw(c: &mut ServerConn, frame: String) -> (bool, Option<String>) {
    let id = serde_json::from_str::<Value>(&frame).expect("frame")["id"]
        .as_str()
        .expect("id")
        .to_string();
    c.send_raw(tokio_tungstenite::tungstenite::Message::text(frame))
        .await;
    let a = c.ack_for(&id).await;
    (a.ok, a.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sessions_are_checked_over_the_wire() {
    let mut server = TestServer::start().await;
    let home = home_with_id(
        &server,
        None,
        &format!("[server.signing]\nkeys = {{ \"ops-1\" = \"{PUBLIC}\" }}\n"),
    );
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let params = r#"{"message": "help"}"#;

    // Unsigned: refused before anything else.
    let ack = c.start_session("u-1", "chat", json!({})).await;
    assert_eq!(
        ack.error.as_deref(),
        Some("unauthorized: signature required")
    );

    let t = now();
    let good = signed_start("g-1", params, t, "n-1", "ops-1", AGENT_ID);
    assert_eq!(ack_of_raw(&mut c, good.clone()).await, (true, None));
    // Its first turn is answered.
    loop {
        let e = c.recv().await;
        let p = e.payload.clone().unwrap_or_default();
        if p["session_id"] == "g-1" && p["metadata"]["turn_done"] == true {
            break;
        }
    }
    // The exact same frame again.
    let replay = ack_of_raw(&mut c, good.replace("\"id\":\"", "\"id\":\"r")).await;
    assert_eq!(replay.1.as_deref(), Some("unauthorized: replayed nonce"));
    // One byte of params changed (a space).
    let tampered = signed_start("g-2", params, t, "n-2", "ops-1", AGENT_ID)
        .replace(r#"{"message": "help"}"#, r#"{"message":  "help"}"#);
    assert_eq!(
        ack_of_raw(&mut c, tampered).await.1.as_deref(),
        Some("unauthorized: bad signature")
    );
    // Signed for another agent.
    let other = signed_start(
        "g-3",
        params,
        t,
        "n-3",
        "ops-1",
        "00000000-0000-4000-8000-000000000000",
    );
    assert_eq!(
        ack_of_raw(&mut c, other).await.1.as_deref(),
        Some("unauthorized: bad signature")
    );
    let unknown = signed_start("g-4", params, t, "n-4", "ops-2", AGENT_ID);
    assert_eq!(
        ack_of_raw(&mut c, unknown).await.1.as_deref(),
        Some("unauthorized: unknown key")
    );
    let stale = signed_start("g-5", params, t - 3600, "n-5", "ops-1", AGENT_ID);
    assert_eq!(
        ack_of_raw(&mut c, stale).await.1.as_deref(),
        Some("unauthorized: stale timestamp")
    );

    // An unsigned chat turn for the signed session is dropped: after the
    // answer to its signed first message, the session says nothing more.
    // The agent has dealt with the turn once its refusal is on record
    // (refusals are written a second at a time, on a timer).
    c.send(&Envelope::new(
        proto::MSG_SESSION_INPUT,
        json!({"session_id": "g-1", "message": "help"}),
    ))
    .await;
    let input_refused = || {
        home.audit().iter().any(|r| {
            r["event"] == "refused" && r["name"] == "session_input" && r["session_id"] == "g-1"
        })
    };
    assert!(
        until(Duration::from_secs(20), input_refused).await,
        "the unsigned chat turn was not refused on record"
    );
    cancel(&mut c, "g-1").await;
    let msgs = c.session_until_done("g-1").await;
    assert_eq!(msgs.len(), 1, "only the done may follow: {msgs:?}");
    // The session's `ended` record follows its done.
    let ended = || {
        home.audit()
            .iter()
            .any(|r| r["event"] == "ended" && r["session_id"] == "g-1")
    };
    assert!(until(Duration::from_secs(5), ended).await);

    // Refusals are counted per second and cause; the last second's come
    // on a timer just after it ends.
    let refused_count = |recs: &[Value]| -> u64 {
        recs.iter()
            .filter(|r| r["event"] == "refused")
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(until(Duration::from_secs(5), || refused_count(&home.audit()) == 7).await);
    agent.sigkill();
    let recs = home.audit();
    let accepted: Vec<_> = recs.iter().filter(|r| r["event"] == "accepted").collect();
    assert_eq!(accepted.len(), 1, "{recs:?}");
    assert_eq!(accepted[0]["key_id"], "ops-1");
    assert_eq!(refused_count(&recs), 7, "6 starts and 1 input: {recs:?}");
    let refused: Vec<_> = recs.iter().filter(|r| r["event"] == "refused").collect();
    // The unsigned chat turn is audited too (PROTOCOL §9: every refusal).
    let input: Vec<_> = refused
        .iter()
        .filter(|r| r["name"] == "session_input")
        .collect();
    assert_eq!(input.len(), 1, "{recs:?}");
    assert_eq!(input[0]["session_id"], "g-1");
    let detail = input[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("signature required"), "{detail}");
}

/// A home whose agent requires signatures by the §9 test key.
fn signing_home(server: &TestServer) -> AgentHome {
    home_with_id(
        server,
        None,
        &format!("[server.signing]\nkeys = {{ \"ops-1\" = \"{PUBLIC}\" }}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_start_accepted_before_a_restart_is_refused_after_it() {
    let mut server = TestServer::start().await;
    let home = signing_home(&server);
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let params = r#"{"message": "help", "allow_shell": true}"#;
    let good = signed_start("k-1", params, now(), "n-keep-1", "ops-1", AGENT_ID);
    assert_eq!(ack_of_raw(&mut c, good.clone()).await, (true, None));
    // Killed at once: nothing but what was synced before the ack survives.
    agent.sigkill();
    drop(c);

    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let replay = ack_of_raw(&mut c, good.replace("\"id\":\"", "\"id\":\"r")).await;
    assert_eq!(replay, (false, Some("unauthorized: replayed nonce".into())));
    // A fresh nonce is still welcome.
    let fresh = signed_start("k-2", params, now(), "n-keep-2", "ops-1", AGENT_ID);
    assert_eq!(ack_of_raw(&mut c, fresh).await, (true, None));
    agent.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_replay_journal_refuses_signed_starts_for_one_window() {
    let mut server = TestServer::start().await;
    let home = signing_home(&server);
    // The header and half a line: a crash mid-write, or tampering.
    home.write("state.d/replay_nonces", "catpaw-replay-v1\nab12");
    let mut agent = home.agent().keep_log().spawn();
    let (mut c, _) = server.accept_registered().await;
    let start = signed_start(
        "t-1",
        r#"{"message": "help"}"#,
        now(),
        "n-t-1",
        "ops-1",
        AGENT_ID,
    );
    assert_eq!(
        ack_of_raw(&mut c, start).await,
        (false, Some("unauthorized: replayed nonce".into()))
    );
    // Unsigned starts are refused as ever; nothing else is affected.
    let ack = c.start_session("u-1", "chat", json!({})).await;
    assert_eq!(
        ack.error.as_deref(),
        Some("unauthorized: signature required")
    );
    agent.sigkill();
    let log = String::from_utf8_lossy(&agent.log_bytes()).into_owned();
    assert!(log.contains("replay journal cannot be trusted"), "{log}");
    assert!(home.state().join("replay_nonces.bad").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_state_dir_exits_2_naming_the_first() {
    let mut server = TestServer::start().await;
    let home = home_with_id(&server, None, "");
    let mut first = home.spawn();
    let conn = server.accept_registered().await;
    let mut second = home.agent().keep_log().spawn();
    let status = second
        .wait_within(Duration::from_secs(20))
        .await
        .expect("the second agent exits");
    assert_eq!(status.code(), Some(2));
    let log = String::from_utf8_lossy(&second.log_bytes()).into_owned();
    assert!(
        log.contains("is in use by another catpaw-agent")
            && log.contains(&format!("pid {}", first.pid())),
        "{log}"
    );
    // The first one serves on; once it is gone, the dir is free again.
    assert!(first.is_running());
    drop(conn);
    first.sigkill();
    let mut third = home.spawn();
    let _again = server.accept_registered().await;
    assert!(third.is_running());
    third.sigkill();
}

// ---- bounded input (PROTOCOL §10) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ids_and_user_names_are_refused_and_stay_out_of_the_audit() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, ""));
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    let huge = "x".repeat(1_000_000);
    let ack = c
        .start_session(&huge, "inspect", json!({"plugin": "cpu"}))
        .await;
    assert_eq!(ack.error.as_deref(), Some("invalid session_id"));
    let ack = c
        .start_session("ok\u{1b}[31m\nforged", "inspect", json!({"plugin": "cpu"}))
        .await;
    assert_eq!(ack.error.as_deref(), Some("invalid session_id"));
    // Trojan Source: a bidi override, an isolate, a zero-width space and a
    // line separator would reorder or hide text in a log or the audit.
    for spoof in [
        "invoice\u{202e}fdp.exe",
        "a\u{2066}b",
        "a\u{200b}b",
        "a\u{2028}b",
    ] {
        let ack = c
            .start_session(spoof, "inspect", json!({"plugin": "cpu"}))
            .await;
        assert_eq!(
            ack.error.as_deref(),
            Some("invalid session_id"),
            "{spoof:?}"
        );
    }
    let start = Envelope::new(
        proto::MSG_SESSION_START,
        json!({"session_id": "s", "session_type": "inspect", "user_name": "u".repeat(300), "params": {"plugin": "cpu"}}),
    );
    c.send(&start).await;
    assert_eq!(
        c.ack_for(&start.id).await.error.as_deref(),
        Some("invalid user_name")
    );
    // The connection is still good.
    let ack = c
        .start_session("fine", "inspect", json!({"plugin": "cpu"}))
        .await;
    assert!(ack.ok, "{ack:?}");
    c.session_until_done("fine").await;
    agent.sigkill();
    let trail = home.state().join("audit.jsonl");
    let size = std::fs::metadata(&trail).expect("audit").len();
    assert!(size < 64 * 1024, "audit grew to {size} bytes");
    let text = std::fs::read_to_string(&trail).expect("audit");
    assert!(!text.contains('\u{1b}'));
    assert!(!text.contains('\u{202e}') && !text.contains('\u{2066}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_url_with_a_token_for_password_is_masked_and_the_agent_serves_on() {
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, ""));
    let mut agent = home.spawn();
    let (mut c, _) = server.accept_registered().await;
    // A chat user pastes a clone URL whose password is a deploy token.
    let token = "glpat-abcdefghijklmnopqrstuvwx";
    let message = format!("why does git clone https://oauth2:{token}@gitlab.example/g/r.git hang?");
    let ack = c
        .start_session("paste", "chat", json!({"message": message}))
        .await;
    assert!(ack.ok, "{ack:?}");
    // The agent lives on and serves the next session, whose alert text
    // holds a command with its password.
    let descriptions = "replication broke after: mysql -uroot -pS3cr3tPw -h db1";
    let ack = c
        .start_session(
            "next",
            "diagnose",
            json!({"plugin": "cpu", "descriptions": descriptions}),
        )
        .await;
    assert!(ack.ok, "{ack:?}");
    c.session_until_done("next").await;
    assert!(agent.is_running(), "the agent is still up");
    let trail = std::fs::read_to_string(home.state().join("audit.jsonl")).expect("audit");
    assert!(trail.contains("oauth2:***@gitlab.example"), "{trail}");
    assert!(!trail.contains(token), "{trail}");
    assert!(trail.contains("-p***"), "{trail}");
    assert!(!trail.contains("S3cr3tPw"), "{trail}");
}
