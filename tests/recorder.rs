//! The flight recorder end to end: a real agent serving real sessions
//! over a loopback WebSocket records each one; `catpaw-agent replay`, run
//! from a fresh home (no tools allowed, no shell, the model's endpoint
//! counting requests), re-executes each from its recording alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use catpaw_agent::proto::Envelope;
use common::guests::guest;
use common::llm::{LlmServer, calls, text};
use common::process::{AgentHome, server_toml};
use common::server::TestServer;
use serde_json::{Value, json};

/// A chat input holding a secret the masking table covers.
const SECRET: &str = "hunter2-0f9e8d7c";

/// One agent configured with `rest`, serving the sessions `drive` starts;
/// returns the recordings it wrote (by session id) and its audit trail.
async fn record<F, Fut>(rest: &str, drive: F) -> (AgentHome, Vec<(String, PathBuf)>)
where
    F: FnOnce(common::server::ServerConn) -> Fut,
    Fut: std::future::Future<Output = common::server::ServerConn>,
{
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, rest));
    let mut agent = home.agent().keep_log().spawn();
    let (c, _) = server.accept_registered().await;
    let c = drive(c).await;
    agent.stop().await;
    drop(c);
    let dir = home.state().join("recordings");
    // Nothing but recordings is left: the spare files the agent keeps
    // ready are unnamed (docs/recordings.md).
    let others: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| p.extension().is_none_or(|x| x != "jsonl"))
        .collect();
    assert_eq!(others, Vec::<PathBuf>::new(), "files other than recordings");
    let recs = recordings(&dir);
    (home, recs)
}

/// The recordings in `dir`, with the session id each names.
fn recordings(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|p: PathBuf| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let id = name
                .split_once('-')
                .unwrap()
                .1
                .trim_end_matches(".jsonl")
                .to_string();
            (id, p)
        })
        .collect();
    out.sort();
    out
}

async fn session(
    c: &mut common::server::ServerConn,
    id: &str,
    kind: &str,
    params: Value,
) -> Vec<Envelope> {
    let ack = c.start_session(id, kind, params).await;
    assert!(ack.ok, "{id}: {ack:?}");
    c.session_until_done(id).await
}

/// A home that has nothing a recorded session used: no server, no tools
/// allow-listed, no shell, and `[ai]` pointing at `model` (when given) so
/// a request would be seen.
fn fresh_home(model: Option<&LlmServer>) -> AgentHome {
    let ai = model.map_or(String::new(), |m| {
        common::ai::ai_toml(&[("main", m.base_url())], "")
    });
    AgentHome::new(&ai)
}

/// `catpaw-agent replay FILE [--runner R]` from `home`, with the file
/// copied into it first.
fn replay(home: &AgentHome, file: &Path, runner: Option<&Path>) -> (i32, String) {
    let copy = home.state().join("copied").join(file.file_name().unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(file, &copy).unwrap();
    let mut cmd = home.command();
    cmd.arg("replay").arg(&copy);
    if let Some(r) = runner {
        cmd.arg("--runner").arg(r);
    }
    let out: Output = cmd.output().expect("replay runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), said)
}

/// [`replay`] under `strace -f`, which logs every program the replay
/// and anything it starts executes: (exit code, what it said, the
/// programs executed after the replay's own).
fn replay_traced(
    home: &AgentHome,
    file: &Path,
    runner: Option<&Path>,
) -> (i32, String, Vec<String>) {
    let copy = home.state().join("copied").join(file.file_name().unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(file, &copy).unwrap();
    let log = home.path().join("execs.log");
    let inner = home.command();
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=execve,execveat",
        "-e",
        "signal=none",
        "-o",
    ])
    .arg(&log)
    .arg(inner.get_program())
    .args(inner.get_args())
    .arg("replay")
    .arg(&copy)
    .current_dir(home.path());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(r) = runner {
        cmd.arg("--runner").arg(r);
    }
    let out: Output = cmd
        .output()
        .expect("strace runs (the test needs strace installed)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let traced = std::fs::read_to_string(&log).expect("strace's log");
    let execs: Vec<String> = traced
        .lines()
        .filter(|l| l.contains("execve(") || l.contains("execveat("))
        .map(str::to_string)
        .collect();
    assert!(
        execs.first().is_some_and(|l| l.contains("catpaw-agent")),
        "strace saw the replay start: {traced}"
    );
    (out.status.code().unwrap_or(-1), said, execs[1..].to_vec())
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn calls_of(file: &Path) -> Vec<String> {
    lines(file)
        .iter()
        .filter(|l| l["k"] == "call")
        .map(|l| l["fn"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_sessions_are_recorded_sealed_audited_and_replay_identical_offline() {
    let (home, recs) = record("", |mut c| async move {
        session(&mut c, "inspect-1", "inspect", json!({"plugin": "cpu"})).await;
        session(
            &mut c,
            "diagnose-1",
            "diagnose",
            json!({"alert": "load average above 8"}),
        )
        .await;
        let ack = c
            .start_session("chat-1", "chat", json!({"message": "help"}))
            .await;
        assert!(ack.ok);
        let mut turns = 0;
        let inputs = [format!("my password={SECRET} fails"), "uptime".to_string()];
        while turns < 3 {
            let m = c.recv_type("session_output").await;
            let p = m.payload.unwrap();
            if p["session_id"] == "chat-1" && p["metadata"]["turn_done"] == true {
                if let Some(next) = inputs.get(turns) {
                    let input = json!({"session_id": "chat-1", "message": next});
                    c.send(&Envelope::new("session_input", input)).await;
                }
                turns += 1;
            }
        }
        c.send(&Envelope::new(
            "session_cancel",
            json!({"session_id": "chat-1"}),
        ))
        .await;
        c.session_until_done("chat-1").await;
        c
    })
    .await;
    let ids: Vec<&str> = recs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["chat-1", "diagnose-1", "inspect-1"]);
    let audit = home.audit();
    for (id, file) in &recs {
        let bytes = std::fs::read(file).unwrap();
        // The audit's ended record names the file and its hash.
        let ended = audit
            .iter()
            .find(|r| r["event"] == "ended" && r["session_id"] == id.as_str())
            .expect("ended record");
        assert_eq!(
            ended["recording"],
            file.file_name().unwrap().to_string_lossy().as_ref()
        );
        assert_eq!(
            ended["recording_sha256"],
            common::process::sha256_hex(&bytes)
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains(SECRET), "{id}: the secret was recorded");
        let l = lines(file);
        assert_eq!(l[0]["k"], "header");
        assert_eq!(l[1]["k"], "start");
        assert_eq!(l.last().unwrap()["k"], "seal");
    }
    let chat = &recs[0].1;
    let inputs: Vec<Value> = lines(chat)
        .into_iter()
        .filter(|l| l["k"] == "input")
        .collect();
    assert_eq!(inputs.len(), 3, "{inputs:?}");
    assert!(inputs[1]["text"].as_str().unwrap().contains("password=***"));
    assert_eq!(inputs[1]["masked"], true);
    let diag = calls_of(&recs[1].1);
    assert!(
        diag.iter().filter(|f| *f == "host.call-tool").count() >= 2,
        "{diag:?}"
    );

    let fresh = fresh_home(None);
    for (id, file) in &recs {
        let (code, said, spawned) = replay_traced(&fresh, file, None);
        assert_eq!(code, 0, "{id}: {said}");
        assert!(said.contains("identical"), "{id}: {said}");
        assert_eq!(spawned, Vec::<String>::new(), "{id}: the replay spawned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_backed_diagnose_replays_without_a_request_to_the_model() {
    let model = LlmServer::start(
        vec![calls(&[("cpu", "{}")]), text("## CPU\n\nLoad is fine.")],
        None,
    )
    .await;
    let ai = common::ai::ai_toml(&[("main", model.base_url())], "");
    let (_home, recs) = record(&ai, |mut c| async move {
        session(
            &mut c,
            "ai-1",
            "diagnose",
            json!({"alert": "load average above 8"}),
        )
        .await;
        c
    })
    .await;
    assert_eq!(model.received().len(), 2);
    let file = &recs[0].1;
    let made = calls_of(file);
    assert!(made.contains(&"llm.complete".to_string()), "{made:?}");
    let fresh = fresh_home(Some(&model));
    let (code, said, spawned) = replay_traced(&fresh, file, None);
    assert_eq!(code, 0, "{said}");
    assert_eq!(model.received().len(), 2, "the replay asked the model");
    assert_eq!(spawned, Vec::<String>::new(), "the replay spawned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_model_content_the_model_calls_hold_sizes_play_says_so_and_replay_names_the_call() {
    // The model's first answer asks for a tool by a call id no other
    // part of the session repeats as text.
    let model = LlmServer::start(
        vec![calls(&[("cpu", "{}")]), text("## CPU\n\nLoad is fine.")],
        None,
    )
    .await;
    let ai = format!(
        "{}[recorder]\nrecord_model_content = false\n",
        common::ai::ai_toml(&[("main", model.base_url())], "")
    );
    let (home, recs) = record(&ai, |mut c| async move {
        session(
            &mut c,
            "ai-1",
            "diagnose",
            json!({"alert": "load average above 8"}),
        )
        .await;
        c
    })
    .await;
    let asked = model.received();
    assert_eq!(asked.len(), 2);
    let file = &recs[0].1;
    let text = std::fs::read_to_string(file).unwrap();
    // What the model was told: the system prompt, and the tool result the
    // second request carried back to it.
    let system = asked[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.len() > 40, "{system}");
    assert!(!text.contains(&system[..40]), "the prompt was recorded");
    let all = lines(file);
    assert_eq!(all[0]["record_model_content"], false);
    let model_calls: Vec<&Value> = all.iter().filter(|l| l["fn"] == "llm.complete").collect();
    assert_eq!(model_calls.len(), 2, "{model_calls:?}");
    for l in &model_calls {
        assert_eq!(l["args"]["omitted"], "record_model_content = false", "{l}");
        assert_eq!(l["ret"]["omitted"], "record_model_content = false", "{l}");
        assert!(l["args"]["bytes"].as_u64().unwrap() > 0, "{l}");
        assert!(l.get("streamed").is_none(), "{l}");
        let line = l.to_string();
        assert!(
            !line.contains("Load is fine") && !line.contains("cpu"),
            "{line}"
        );
    }

    let out = home
        .command()
        .arg("play")
        .arg(file)
        .arg("--no-wait")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("model content not recorded"), "{shown}");
    assert!(
        shown.contains("model asked") && shown.contains("record_model_content = false"),
        "{shown}"
    );

    let fresh = fresh_home(Some(&model));
    let (code, said, spawned) = replay_traced(&fresh, file, None);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("calls diverged"), "{said}");
    assert!(
        said.contains("llm.complete: the recording omits the model's content"),
        "{said}"
    );
    assert_eq!(model.received().len(), 2, "the replay asked the model");
    assert_eq!(spawned, Vec::<String>::new(), "the replay spawned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_shell_a_fuel_breach_and_a_trap_replay_as_they_ended() {
    let mut all = Vec::new();
    for (runner, params, extra) in [
        (
            "hazard_shell_probe",
            json!({"allow_shell": true}),
            "allow_remote_shell = true\nshell_user = \"nobody\"\n",
        ),
        ("hazard_spin", json!({}), "fuel = 20000000\n"),
        ("hazard_trap", json!({}), ""),
    ] {
        let path = guest(runner);
        let rest = format!("[sandbox]\nrunner = \"{}\"\n{extra}", path.display());
        let (_h, recs) = record(&rest, |mut c| async move {
            session(&mut c, "s-1", "diagnose", params).await;
            c
        })
        .await;
        let file = recs[0].1.clone();
        // Kept past the home that wrote it.
        let kept =
            std::env::temp_dir().join(format!("catpaw-rec-{runner}-{}.jsonl", std::process::id()));
        std::fs::copy(&file, &kept).unwrap();
        all.push((runner, path, kept));
    }
    let end = |f: &Path| lines(f).into_iter().find(|l| l["k"] == "end").unwrap()["outcome"].clone();
    assert_eq!(end(&all[0].2), "ok");
    let shell: Vec<Value> = lines(&all[0].2)
        .into_iter()
        .filter(|l| l["fn"] == "host.request-shell")
        .collect();
    assert_eq!(shell.len(), 1);
    assert!(
        shell[0]["ret"]["ok"]["stdout"]
            .as_str()
            .unwrap()
            .contains("catpaw-shell-ok"),
        "{shell:?}"
    );
    assert_eq!(end(&all[1].2), "resource_exhausted");
    assert_eq!(end(&all[2].2), "runner_trapped");
    let fresh = fresh_home(None);
    for (runner, path, file) in &all {
        let (code, said, spawned) = replay_traced(&fresh, file, Some(path));
        assert_eq!(code, 0, "{runner}: {said}");
        // The granted shell's command is answered from the recording:
        // the replay executes no program at all.
        assert_eq!(
            spawned,
            Vec::<String>::new(),
            "{runner}: the replay spawned"
        );
        std::fs::remove_file(file).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_runner_names_its_extra_call_and_a_changed_byte_is_a_hash_mismatch() {
    let tour = guest("hazard_tool_tour");
    let rest = format!("[sandbox]\nrunner = \"{}\"\n", tour.display());
    let (_home, recs) = record(&rest, |mut c| async move {
        let params = json!({"calls": [["cpu", "{}"]]});
        session(&mut c, "tour-1", "diagnose", params).await;
        c
    })
    .await;
    let file = &recs[0].1;
    let fresh = fresh_home(None);
    let (code, said) = replay(&fresh, file, Some(&tour));
    assert_eq!(code, 0, "{said}");
    let more = guest("hazard_tool_tour_more");
    let (code, said) = replay(&fresh, file, Some(&more));
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("calls diverged"), "{said}");
    assert!(
        said.contains("no answer for host.call-tool") && said.contains("uptime"),
        "{said}"
    );
    assert!(said.contains("+ checked uptime too"), "{said}");

    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.windows(6).position(|w| w == b"tour-1").unwrap();
    bytes[at] = b'T';
    let tampered = fresh.path().join("tampered.jsonl");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, said) = replay(&fresh, &tampered, Some(&tour));
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("hash mismatch"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_be_written_fails_nothing_and_is_counted_and_audited() {
    let metrics = free_port();
    let rest = format!(
        "[recorder]\ndir = \"/proc/catpaw-recordings\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    );
    let (home, recs) = record(&rest, |mut c| async move {
        let got = session(&mut c, "s-1", "inspect", json!({"plugin": "cpu"})).await;
        let done = got.last().unwrap().payload.clone().unwrap();
        assert!(done["report"].as_str().is_some_and(|r| !r.is_empty()));
        let body = scrape(metrics).await;
        assert!(
            body.contains("catpaw_agent_recording_failures_total 1"),
            "{body}"
        );
        c
    })
    .await;
    assert!(recs.is_empty());
    let ended = home
        .audit()
        .into_iter()
        .find(|r| r["event"] == "ended")
        .expect("ended");
    assert_eq!(ended["outcome"], "ok");
    let said = ended["recording"].as_str().unwrap();
    assert!(
        said.starts_with("failed: creating the recordings dir /proc/catpaw-recordings"),
        "{said}"
    );
}

/// A free loopback port (bound, then released for the agent).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`: the whole response.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text).await;
    String::from_utf8_lossy(&text).into_owned()
}
