//! The agent in-process against a real WebSocket server on loopback: what
//! the black-box `conformance.rs` cannot reach. Shortened timers (ack, read
//! and heartbeat timeouts, the growth of the 401 backoff), runners of the
//! test's choosing (missing engines, hazard guests over the wire), the
//! built-in runners' own text, buffered alerts counted by the heartbeat, and
//! the session table. What a server sees of the binary with its default
//! timers is asserted there, not here.

mod common;

use std::time::{Duration, Instant};

use catpaw_agent::proto::{self, AlertEvent, Envelope, EventStatus};
use catpaw_agent::session::Runners;
use common::agent::*;
use common::server::{ServerConn, TestServer};
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_within_the_timeout_means_a_new_attempt() {
    let mut h = harness().await;
    let mut c = h.server.accept().await;
    assert_eq!(c.recv().await.msg_type, "register");
    // Say nothing: the agent must give up after ack_timeout and come back.
    let t0 = Instant::now();
    let _c2 = h.server.accept_within(Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_backs_off_slowly() {
    let server = TestServer::start().await;
    server
        .reject_401
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut h = harness_on(server, |_| {}, builtin_runners, fast());
    let a = h
        .server
        .next_attempt(Duration::from_secs(5))
        .await
        .expect("first attempt");
    let b = h
        .server
        .next_attempt(Duration::from_secs(5))
        .await
        .expect("second attempt");
    let c = h
        .server
        .next_attempt(Duration::from_secs(8))
        .await
        .expect("third attempt");
    // auth_min 800 ms is a floor that jitter never undercuts, then 1600 ms
    // ±25 %; the normal base is 50 ms.
    assert!(b - a >= Duration::from_millis(800), "{:?}", b - a);
    assert!(c - b >= Duration::from_millis(1200), "{:?}", c - b);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_past_the_read_timeout_drops_the_connection() {
    let mut opts = fast();
    opts.timings.read_timeout = Duration::from_millis(300);
    let mut h = harness_with(|_| {}, builtin_runners, opts).await;
    let (_c, _) = h.server.accept_registered().await;
    let t0 = Instant::now();
    let _c2 = h.server.accept_within(Duration::from_secs(5)).await;
    assert!(t0.elapsed() >= Duration::from_millis(250));
    h.stop().await;
}

fn ack_error(a: &proto::AckPayload) -> &str {
    assert!(!a.ok, "expected a refusal: {a:?}");
    a.error.as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_engines_are_refused_per_type() {
    let only_diagnose = |sb: &TestSandbox| diagnose_runners(&sb.builtin_diagnose(), limits(|_| {}));
    let mut h = harness_with(|_| {}, only_diagnose, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert_eq!(
        ack_error(&c.start_session("c", "chat", json!({})).await),
        "chat engine not available"
    );
    h.stop().await;

    let only_chat = |sb: &TestSandbox| chat_runners(&sb.builtin_chat(), limits(|_| {}));
    let mut h = harness_with(|_| {}, only_chat, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert_eq!(
        ack_error(
            &c.start_session("i", "inspect", json!({"plugin": "cpu"}))
                .await
        ),
        "diagnose engine not available"
    );
    assert_eq!(
        ack_error(&c.start_session("d", "diagnose", json!({})).await),
        "diagnose engine not available"
    );
    h.stop().await;

    let mut h = harness_with(|_| {}, |_| Runners::default(), fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert_eq!(
        ack_error(&c.start_session("u", "teleport", json!({})).await),
        "diagnose engine not available"
    );
    h.stop().await;
}

/// Runs one session and returns its session_error (code, error), checking
/// that exactly one done follows.
async fn error_of_session(
    c: &mut ServerConn,
    id: &str,
    kind: &str,
    params: Value,
) -> Option<(String, String)> {
    let ack = c.start_session(id, kind, params).await;
    assert!(ack.ok, "{ack:?}");
    let msgs = c.session_until_done(id).await;
    let dones = msgs
        .iter()
        .filter(|m| m.msg_type == "session_output" && payload(m)["done"] == true)
        .count();
    assert_eq!(dones, 1);
    let errs: Vec<_> = msgs
        .iter()
        .filter(|m| m.msg_type == "session_error")
        .collect();
    assert!(errs.len() <= 1);
    errs.first().map(|e| {
        let p = payload(e);
        (
            p["code"].as_str().unwrap_or("").to_string(),
            p["error"].as_str().unwrap_or("").to_string(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_error_code_reaches_the_server() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert_eq!(
        error_of_session(&mut c, "e1", "inspect", json!({})).await,
        Some((
            "missing_plugin".into(),
            "plugin is required for inspect".into()
        ))
    );
    assert_eq!(
        error_of_session(&mut c, "e2", "teleport", json!({})).await,
        Some((
            "invalid_type".into(),
            "unknown session type: teleport".into()
        ))
    );
    let (code, _) = error_of_session(&mut c, "e3", "inspect", json!({"plugin": "toaster"}))
        .await
        .expect("error");
    assert_eq!(code, "diagnose_failed");
    assert_eq!(
        error_of_session(&mut c, "ok", "diagnose", json!({})).await,
        None
    );
    h.stop().await;

    let hazards = |sb: &TestSandbox| {
        diagnose_runners(&sb.load("hazard_spin"), limits(|l| l.fuel = 100_000_000))
    };
    let mut h = harness_with(|_| {}, hazards, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    let (code, error) = error_of_session(&mut c, "spin", "inspect", json!({"plugin": "cpu"}))
        .await
        .expect("error");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("fuel"), "{error}");
    h.stop().await;

    let trap = |sb: &TestSandbox| diagnose_runners(&sb.load("hazard_trap"), limits(|_| {}));
    let mut h = harness_with(|_| {}, trap, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    let (code, _) = error_of_session(&mut c, "trap", "inspect", json!({"plugin": "cpu"}))
        .await
        .expect("error");
    assert_eq!(code, "runner_trapped");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_streams_deltas_then_one_done_with_the_report() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "disk"}))
            .await
            .ok
    );
    let msgs = c.session_until_done("s").await;
    let stages: Vec<String> = msgs[..msgs.len() - 1]
        .iter()
        .map(|m| payload(m)["stage"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(stages.first().map(String::as_str), Some("thinking"));
    assert!(
        stages
            .iter()
            .all(|s| ["thinking", "tool_call", "tool_result"].contains(&s.as_str())),
        "{stages:?}"
    );
    for m in &msgs[..msgs.len() - 1] {
        assert_eq!(payload(m)["done"], false);
        assert!(uuid::Uuid::parse_str(&m.id).is_ok());
    }
    let done = payload(msgs.last().expect("done"));
    assert_eq!(done["delta"], "");
    assert_eq!(done["stage"], "");
    assert!(done["report"].as_str().unwrap_or("").contains("Findings"));
    h.stop().await;
}

/// A guest that streams faster than the socket takes frames gets its
/// deltas merged on the wire: fewer frames, each under 16 KiB, the same
/// text in the same order, then the one `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_deltas_arrives_merged_with_the_same_text() {
    const DELTAS: usize = 20_000;
    let mut h = harness_with(
        |_| {},
        |sb| {
            diagnose_runners(
                &sb.load("catpaw_bench_guest"),
                limits(|l| l.max_output = 64 << 20),
            )
        },
        fast(),
    )
    .await;
    let (mut c, _) = h.server.accept_registered().await;
    let params = json!({"plugin": "emit", "target": DELTAS.to_string()});
    assert!(c.start_session("flood", "inspect", params).await.ok);
    let msgs = c.session_until_done("flood").await;
    let (done, deltas) = msgs.split_last().expect("done");
    let text: String = deltas
        .iter()
        .map(|m| payload(m)["delta"].as_str().expect("delta").to_string())
        .collect();
    assert_eq!(text, "0123456789abcdef".repeat(DELTAS));
    assert!(
        deltas.len() < DELTAS,
        "{} frames for {DELTAS} deltas: nothing was merged",
        deltas.len()
    );
    for m in deltas {
        let p = payload(m);
        assert!(p["delta"].as_str().expect("delta").len() <= 16 * 1024);
        assert_eq!(
            (p["done"].clone(), p["stage"].clone()),
            (json!(false), json!("answer"))
        );
    }
    assert_eq!(payload(done)["done"], true);
    h.stop().await;
}

/// The next chat turn reply (`turn_done`), skipping streamed deltas.
async fn turn(c: &mut ServerConn) -> Value {
    loop {
        let p = payload(&c.recv_type("session_output").await);
        if p["metadata"]["turn_done"] == true {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turns_come_from_session_input() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(
        c.start_session("chat", "chat", json!({"message": "memory"}))
            .await
            .ok
    );
    let first = turn(&mut c).await;
    assert_eq!(first["stage"], "answer");
    assert!(first["delta"].as_str().unwrap_or("").contains("Memory"));
    c.send(&Envelope::new(
        "session_input",
        json!({"session_id": "chat", "message": ""}),
    ))
    .await;
    c.send(&Envelope::new(
        "session_input",
        json!({"session_id": "chat", "message": "history"}),
    ))
    .await;
    let second = turn(&mut c).await;
    assert!(
        second["delta"].as_str().unwrap_or("").contains("1. memory"),
        "{second}"
    );
    c.send(&Envelope::new(
        "session_cancel",
        json!({"session_id": "chat", "reason": "bye"}),
    ))
    .await;
    let rest = c.session_until_done("chat").await;
    assert_eq!(rest.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_spinning_guest_within_two_seconds() {
    let spin = |sb: &TestSandbox| {
        let endless = limits(|l| {
            l.fuel = u64::MAX / 4;
            l.timeout = Duration::from_secs(600);
        });
        diagnose_runners(&sb.load("hazard_spin"), endless)
    };
    let mut h = harness_with(|_| {}, spin, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(
        c.start_session("spin", "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    // The guest streams `spinning` right before its endless loop.
    let first = c.recv_type("session_output").await;
    let p = first.payload.clone().unwrap_or_default();
    assert_eq!(
        (&p["session_id"], &p["delta"]),
        (&json!("spin"), &json!("spinning")),
        "{first:?}"
    );
    let t0 = Instant::now();
    c.send(&Envelope::new(
        "session_cancel",
        json!({"session_id": "spin", "reason": "operator"}),
    ))
    .await;
    let msgs = c.session_until_done("spin").await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        msgs.len(),
        1,
        "a cancelled session sends only its done: {msgs:?}"
    );
    assert_eq!(h.agent.sessions().active(), 0);
    h.stop().await;
}

fn alert(i: i64) -> AlertEvent {
    AlertEvent {
        event_time: i,
        event_status: EventStatus::Critical,
        alert_key: format!("disk-full-{i}"),
        labels: [("host".to_string(), "web-1".to_string())].into(),
        attrs: Default::default(),
        description: "disk / above 95%".into(),
        description_format: Some("markdown".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_report_sessions_alerts_and_load() {
    let mut opts = fast();
    opts.timings.heartbeat = Duration::from_millis(200);
    opts.timings.alert_flush = Duration::from_secs(60);
    let mut h = harness_with(|_| {}, builtin_runners, opts).await;
    let (mut c, _) = h.server.accept_registered().await;
    h.agent.alerts().push(alert(1));
    h.agent.alerts().push(alert(2));
    assert!(c.start_session("chat", "chat", json!({})).await.ok);
    let hb = loop {
        let hb = payload(&c.recv_type("heartbeat").await);
        if hb["active_sessions"] == 1 {
            break hb;
        }
    };
    assert_eq!(hb["active_alerts"], 2);
    assert!(
        hb.get("mem_pct")
            .is_some_and(|v| v.as_f64().unwrap_or(0.0) > 0.0),
        "{hb}"
    );
    for k in hb.as_object().expect("object").keys() {
        assert!(
            ["active_sessions", "active_alerts", "cpu_pct", "mem_pct"].contains(&k.as_str()),
            "{k}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_streaming_without_pause_does_not_stop_heartbeats_or_alerts() {
    let mut opts = fast();
    opts.timings.heartbeat = Duration::from_millis(200);
    let mut h = harness_with(
        |_| {},
        |sb| {
            diagnose_runners(
                &sb.load("catpaw_bench_guest"),
                limits(|l| {
                    l.fuel = u64::MAX / 4;
                    l.max_output = u64::MAX;
                    l.timeout = Duration::from_secs(600);
                }),
            )
        },
        opts,
    )
    .await;
    let (mut c, _) = h.server.accept_registered().await;
    // Streams with no end, so there is always output waiting to be sent.
    let params = json!({"plugin": "emit", "target": "4000000000"});
    for id in ["flood-1", "flood-2", "flood-3"] {
        assert!(c.start_session(id, "inspect", params.clone()).await.ok);
    }
    // A server that reads slowly: the output backs up into the socket and
    // the agent's queue, so session output is always waiting to be sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.agent.alerts().push(alert(7));
    let (mut heartbeats, mut alerts, mut deltas) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (heartbeats < 2 || alerts < 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let e = c.recv().await;
        match e.msg_type.as_str() {
            "heartbeat" => heartbeats += 1,
            "alert_events" => alerts += 1,
            "session_output" => {
                assert_ne!(payload(&e)["done"], true, "the stream has no end");
                deltas += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        heartbeats >= 2 && alerts == 1,
        "{heartbeats} heartbeats and {alerts} alert frames among {deltas} outputs"
    );
    for id in ["flood-1", "flood-2", "flood-3"] {
        c.send(&Envelope::new(
            proto::MSG_SESSION_CANCEL,
            json!({"session_id": id}),
        ))
        .await;
    }
    // Each ends with its done (read in one pass: they interleave).
    let mut done = 0;
    while done < 3 {
        let e = c.recv().await;
        if e.msg_type == "session_output" && payload(&e)["done"] == true {
            done += 1;
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_done_for_running_sessions_then_a_normal_close() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(c.start_session("chat", "chat", json!({})).await.ok);
    h.shutdown.cancel();
    let msgs = c.session_until_done("chat").await;
    assert_eq!(msgs.len(), 1);
    let code = c.expect_close().await;
    assert_eq!(
        code,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal
    );
    tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .expect("agent exits")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_cancels_sessions_and_reconnects_fast() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(c.start_session("chat", "chat", json!({})).await.ok);
    drop(c);
    let (_c2, _) = h.server.accept_registered().await;
    let sessions = h.agent.sessions();
    assert!(
        sessions.wait_idle(Duration::from_secs(5)).await,
        "session survived the drop"
    );
    h.stop().await;
}

/// A diagnose runner with a bug: it streams a line, then panics.
struct Buggy;

#[async_trait::async_trait]
impl catpaw_agent::runner::DiagnoseRunner for Buggy {
    async fn run(
        &self,
        _info: &catpaw_agent::runner::SessionInfo,
        _req: catpaw_agent::runner::DiagnoseRequest,
        sink: std::sync::Arc<dyn catpaw_agent::runner::StreamSink>,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> Result<String, catpaw_agent::runner::RunError> {
        use catpaw_agent::runner::{Output, Stage};
        sink.send(Output::delta("looking", Stage::Thinking, None))
            .await;
        let empty: Vec<u8> = Vec::new();
        panic!(
            "index out of bounds: the len is {} but the index is 3",
            empty.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_in_a_session_ends_it_with_an_error_and_done_and_frees_its_slot_at_once() {
    let buggy = |_: &TestSandbox| Runners {
        diagnose: Some(std::sync::Arc::new(Buggy)),
        chat: None,
        plugins: Vec::new(),
        files: Vec::new(),
    };
    let mut h = harness_with(|c| c.sandbox.max_concurrent_sessions = 1, buggy, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    // One slot: the next session is admitted the moment the last `done`
    // arrives, so the slot was free before it was sent.
    for id in ["bug-1", "bug-2", "bug-3"] {
        let ack = c
            .start_session(id, "inspect", json!({"plugin": "cpu"}))
            .await;
        assert!(ack.ok, "{id}: {ack:?}");
        let msgs = c.session_until_done(id).await;
        let error = msgs
            .iter()
            .find(|m| m.msg_type == "session_error")
            .and_then(|m| m.payload.clone())
            .expect("a session_error");
        assert_eq!(error["code"], "diagnose_failed");
        let text = error["error"].as_str().unwrap_or_default();
        assert!(
            text.contains("internal error") && text.contains("index out of bounds"),
            "{text}"
        );
        assert_eq!(msgs.last().unwrap().payload.as_ref().unwrap()["done"], true);
    }
    h.stop().await;
}
