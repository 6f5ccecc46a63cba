//! What the recorder gives an operator and a runner author, on recordings
//! a real agent made over a loopback WebSocket: `play` shows one,
//! `status` counts them, `replay --suite` replays a directory of them
//! (table, JUnit, exit 0/1/2), and `[recorder] max_total` holds over a
//! thousand sessions.

mod common;

use std::path::{Path, PathBuf};

use common::guests::guest;
use common::process::{AgentHome, server_toml};
use common::server::{ServerConn, TestServer};
use serde_json::{Value, json};

/// An agent configured with `rest` serving what `drive` does; the home
/// (with its recordings under state/recordings) once the agent stopped.
async fn record<F, Fut>(rest: &str, drive: F) -> AgentHome
where
    F: FnOnce(ServerConn, AgentHome) -> Fut,
    Fut: std::future::Future<Output = (ServerConn, AgentHome)>,
{
    let mut server = TestServer::start().await;
    let home = AgentHome::new(&server_toml(&server, None, rest));
    let mut agent = home.agent().spawn();
    let (c, _) = server.accept_registered().await;
    let (c, home) = drive(c, home).await;
    agent.stop().await;
    drop(c);
    home
}

async fn session(c: &mut ServerConn, id: &str, kind: &str, params: Value) {
    let ack = c.start_session(id, kind, params).await;
    assert!(ack.ok, "{id}: {ack:?}");
    c.session_until_done(id).await;
}

/// Starts one inspect session per id at once and waits until every one of
/// them was accepted and sent its `done`.
async fn sessions_at_once(c: &mut ServerConn, ids: &[String], params: Value) {
    let mut starts = std::collections::HashMap::new();
    for id in ids {
        let start = catpaw_agent::proto::Envelope::new(
            catpaw_agent::proto::MSG_SESSION_START,
            json!({"session_id": id, "session_type": "inspect", "user_name": "op", "params": params}),
        );
        c.send(&start).await;
        starts.insert(start.id.clone(), id.clone());
    }
    let mut open: std::collections::HashSet<&String> = ids.iter().collect();
    let mut acked = 0;
    while acked < ids.len() || !open.is_empty() {
        let e = c.recv().await;
        let p = e.payload.clone().unwrap_or_default();
        if e.msg_type == "ack" {
            if let Some(id) = e.ref_id.as_deref().and_then(|r| starts.get(r)) {
                assert_eq!(p["ok"], true, "{id}: {p}");
                acked += 1;
            }
        } else if e.msg_type == "session_output" && p["done"] == true {
            let id = p["session_id"].as_str().unwrap_or_default().to_string();
            open.remove(&id);
        }
    }
}

/// The recording files in `dir`, by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("recordings dir")
        .map(|e| e.expect("entry").path())
        // Recordings only (`*.jsonl`).
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

fn run(home: &AgentHome, args: &[&str]) -> (i32, String, String) {
    let out = home.command().args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tampered(file: &Path, at_text: &[u8], into: &Path) {
    let mut bytes = std::fs::read(file).expect("read");
    let at = bytes
        .windows(at_text.len())
        .position(|w| w == at_text)
        .expect("the text to change");
    bytes[at] ^= 0x20;
    std::fs::write(into, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_status_and_the_suite_on_sessions_a_real_agent_recorded() {
    let home = record("", |mut c, home| async move {
        session(&mut c, "inspect-1", "inspect", json!({"plugin": "cpu"})).await;
        session(
            &mut c,
            "diagnose-1",
            "diagnose",
            json!({"alert": "load above 8"}),
        )
        .await;
        // The running agent counts what it recorded.
        let (code, status, err) = home.status_json();
        assert_eq!(code, 0, "{err}");
        assert_eq!(status["recorder"]["count"], 2, "{status}");
        assert!(
            status["recorder"]["bytes"].as_u64().unwrap_or(0) > 0,
            "{status}"
        );
        (c, home)
    })
    .await;
    let recordings = home.state().join("recordings");
    let all = files(&recordings);
    assert_eq!(all.len(), 2, "{all:?}");
    let diagnose = all
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-diagnose-1.jsonl"));
    let diagnose = diagnose.expect("the diagnose recording").clone();

    // play by session id, found through the config's state dir.
    let (code, out, err) = run(&home, &["play", "diagnose-1", "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "diagnose session diagnose-1 by ",
        " tool ",
        "report:\n",
        "receipt: {",
        "end: ok",
        "sealed: sha256 ",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let (code, out, _) = run(
        &home,
        &[
            "play",
            &diagnose.display().to_string(),
            "--json",
            "--no-wait",
        ],
    );
    assert_eq!(code, 0);
    let recorded: Vec<Value> = std::fs::read_to_string(&diagnose)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let shown: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    // Every line but the seal, as recorded; a frame written by reference
    // to its `host.emit` call is shown with its `raw` frame rebuilt.
    let mut by_reference = 0;
    let want: Vec<Value> = recorded[..recorded.len() - 1]
        .iter()
        .zip(&shown)
        .map(|(line, shown)| {
            let mut line = line.clone();
            if let Some(n) = line["emit"].as_u64() {
                by_reference += 1;
                let call = recorded.iter().find(|c| c["k"] == "call" && c["n"] == n);
                let raw: Value =
                    serde_json::from_str(shown["raw"].as_str().expect("raw")).expect("a frame");
                assert_eq!(raw["type"], "session_output");
                assert_eq!(
                    raw["payload"]["delta"],
                    call.expect("its call")["args"]["delta"]
                );
                line["raw"] = shown["raw"].clone();
            }
            line
        })
        .collect();
    assert_eq!(shown, want, "every line but the seal");
    assert!(by_reference > 0, "no frame was written by reference");

    // The suite, from a home with none of what the sessions used.
    let fresh = AgentHome::new("");
    let suite = fresh.path().join("suite");
    std::fs::create_dir(&suite).expect("suite dir");
    for f in &all {
        std::fs::copy(f, suite.join(f.file_name().expect("name"))).expect("copy");
    }
    let bad = suite.join("9-changed.jsonl");
    tampered(&diagnose, b"diagnose-1", &bad);
    let (code, _, err) = run(&fresh, &["play", &bad.display().to_string(), "--no-wait"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hash mismatch"), "{err}");
    let junit = fresh.path().join("junit.xml");
    let (s, j) = (suite.display().to_string(), junit.display().to_string());
    let (code, out2, err) = run(&fresh, &["replay", "--suite", &s, "--junit", &j]);
    assert_eq!(code, 2, "{out2}{err}");
    let rows: Vec<&str> = out2.lines().collect();
    assert!(rows[0].starts_with("RECORDING"), "{out2}");
    assert!(
        rows.iter()
            .any(|r| r.contains("-diagnose-1.jsonl") && r.contains("diagnose  identical")),
        "{out2}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("-inspect-1.jsonl") && r.contains("inspect   identical")),
        "{out2}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("9-changed.jsonl")
            && r.contains("could not replay")
            && r.contains("hash mismatch")),
        "{out2}"
    );
    assert!(
        out2.ends_with(&format!(
            "3 recordings in {s}: 2 identical, 0 different, 1 could not replay\n"
        )),
        "{out2}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("tests=\"3\" failures=\"0\" errors=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<error type=\"could not replay\" message=\"hash mismatch: "),
        "{xml}"
    );

    std::fs::remove_file(&bad).expect("rm");
    let (code, out, err) = run(&fresh, &["replay", "--suite", &s]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(": 2 identical, 0 different, 0 could not replay"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_runner_makes_the_suite_exit_1_with_a_junit_failure() {
    let tour = guest("hazard_tool_tour");
    let rest = format!("[sandbox]\nrunner = \"{}\"\n", tour.display());
    let home = record(&rest, |mut c, home| async move {
        session(
            &mut c,
            "tour-1",
            "diagnose",
            json!({"calls": [["cpu", "{}"]]}),
        )
        .await;
        (c, home)
    })
    .await;
    let suite = home.state().join("recordings").display().to_string();
    let (code, out, err) = run(
        &home,
        &[
            "replay",
            "--suite",
            &suite,
            "--runner",
            &tour.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let more = guest("hazard_tool_tour_more").display().to_string();
    let junit = home.path().join("junit.xml");
    let j = junit.display().to_string();
    let (code, out, err) = run(
        &home,
        &[
            "replay", "--suite", &suite, "--runner", &more, "--junit", &j,
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("diagnose  calls diverged"), "{out}");
    assert!(
        out.contains("1 recordings in ")
            && out.contains(": 0 identical, 1 different, 0 could not replay"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("tests=\"1\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\"calls diverged\""), "{xml}");

    // check-runner --recordings: the same suite as part of the check.
    let tour = tour.display().to_string();
    for (runner, ok, verdict) in [(&tour, true, "identical"), (&more, false, "calls diverged")] {
        let (_, out, err) = run(
            &home,
            &["check-runner", runner, "--recordings", &suite, "--json"],
        );
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
        let rec = &report["recordings"];
        assert_eq!(rec["ok"], ok, "{report}");
        assert_eq!(rec["rows"][0]["verdict"], verdict, "{report}");
        if !ok {
            assert_eq!(report["ok"], false, "a differing recording fails the check");
        }
    }
    let (_, out, _) = run(&home, &["check-runner", &more, "--recordings", &suite]);
    assert!(out.contains("FAIL recording  "), "{out}");
    assert!(
        out.contains(": 0 identical, 1 different, 0 could not replay"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_keep_the_recordings_under_max_total() {
    const MAX_TOTAL: u64 = 64 << 10;
    const WAVE: usize = 8;
    let rest = format!(
        "[sandbox]\nmax_concurrent_sessions = {WAVE}\n\
         [recorder]\nmax_size = \"64KiB\"\nmax_total = \"64KiB\"\n"
    );
    let home = record(&rest, |mut c, home| async move {
        let dir = home.state().join("recordings");
        for wave in 0..1000 / WAVE {
            let ids: Vec<String> = (wave * WAVE..(wave + 1) * WAVE)
                .map(|i| format!("s-{i}"))
                .collect();
            sessions_at_once(&mut c, &ids, json!({"plugin": "cpu"})).await;
            let i = (wave + 1) * WAVE - 1;
            if wave % 12 == 11 {
                let total: u64 = files(&dir)
                    .iter()
                    .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
                    .sum();
                // The last session's recording may still be closing.
                assert!(total <= MAX_TOTAL + (64 << 10), "after {i}: {total}");
            }
        }
        (c, home)
    })
    .await;
    let left = files(&home.state().join("recordings"));
    let total: u64 = left
        .iter()
        .map(|f| std::fs::metadata(f).expect("file").len())
        .sum();
    assert!(
        total <= MAX_TOTAL,
        "{total} bytes in {} recordings",
        left.len()
    );
    assert!(left.len() > 1, "{left:?}");
    assert!(
        left.iter()
            .any(|f| f.to_string_lossy().ends_with("-s-999.jsonl")),
        "the newest stays"
    );
}
