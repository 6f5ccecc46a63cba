//! The agent against a real WebSocket server on loopback: every row of
//! PROTOCOL.md that a server can observe.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use catpaw_agent::link::agent::Agent;
use catpaw_agent::link::proto::{self, AlertEvent, Envelope, EventStatus};
use catpaw_agent::session::Runners;
use common::agent::*;
use common::server::{ServerConn, TestServer};
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_carries_the_headers_and_fields_of_the_protocol() {
    let mut h = harness().await;
    let mut c = h.server.accept().await;
    let id = std::fs::read_to_string(h.state.path().join("agent_id")).expect("agent_id file");
    assert_eq!(c.headers["x-agent-id"], id.trim());
    assert_eq!(c.headers["x-agent-token"], "sekrit");
    assert_eq!(c.headers["x-proto-version"], "1");
    let reg = c.recv().await;
    assert_eq!(reg.msg_type, "register");
    assert!(uuid::Uuid::parse_str(&reg.id).is_ok());
    let p = payload(&reg);
    let mut keys: Vec<&str> = p
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "agent_version",
            "arch",
            "hostname",
            "ip",
            "labels",
            "os",
            "plugins",
            "uptime_sec"
        ]
    );
    assert_eq!(p["os"], "linux");
    assert_eq!(
        p["arch"],
        if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        }
    );
    assert_eq!(p["labels"], json!({"env": "test"}));
    assert_eq!(p["plugins"], json!(["cpu", "mem"]));
    assert!(p["uptime_sec"].is_u64());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_id_survives_a_restart() {
    let mut h = harness().await;
    let first = h.server.accept().await.headers["x-agent-id"].clone();
    let state = h.state.path().to_path_buf();
    let addr = h.server.addr;
    let sb = TestSandbox::new();
    let again =
        Agent::new(&config(addr, &state, |_| {}), builtin_runners(&sb), fast()).expect("agent");
    assert_eq!(again.agent_id().to_string(), first.to_str().expect("ascii"));
    h.stop().await;
}

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
async fn ack_ok_false_or_a_non_ack_first_message_fails_the_attempt() {
    let mut h = harness().await;
    let mut c = h.server.accept().await;
    let reg = c.recv().await;
    let no = proto::AckPayload {
        ok: false,
        error: Some("agent banned".into()),
        warning: None,
    };
    c.send(&Envelope::reply("ack", &reg.id, no)).await;
    let mut c2 = h.server.accept_within(Duration::from_secs(5)).await;
    c2.recv().await;
    c2.send(&Envelope::new("ping", ())).await;
    let (_c3, _) = {
        let mut c3 = h.server.accept_within(Duration::from_secs(5)).await;
        let reg = c3.recv().await;
        c3.ack(&reg.id).await;
        (c3, reg)
    };
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
async fn disconnect_waits_retry_after_then_reconnects() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    c.send(&Envelope::new(
        "disconnect",
        json!({"reason": "maintenance", "retry_after_sec": 1}),
    ))
    .await;
    let t0 = Instant::now();
    // The agent closes this connection...
    assert!(c.recv_within(Duration::from_secs(2)).await.is_none());
    // ...and comes back after about a second (±25 %), not at once.
    let _c2 = h.server.accept_within(Duration::from_secs(5)).await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_the_connection_not_the_process() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    let big = format!(
        "{{\"type\":\"ping\",\"id\":\"x\",\"payload\":{{\"pad\":\"{}\"}}}}",
        "a".repeat(2 << 20)
    );
    // The agent may reset the socket while this is still being written.
    let _ = futures_util::SinkExt::send(&mut c.ws, Message::text(big)).await;
    let (mut c2, _) = h.server.accept_registered().await;
    // The new connection works.
    let ack = c2
        .start_session("s-after", "inspect", json!({"plugin": "cpu"}))
        .await;
    assert!(ack.ok);
    c2.session_until_done("s-after").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_ignored_and_the_connection_stays_up() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    for junk in [
        "not json at all",
        "[1,2,3]",
        "{}",
        "{\"type\":\"\"}",
        "{\"type\":42}",
        "{\"type\":\"teleport\",\"id\":\"1\"}",
        "{\"type\":\"session_input\",\"id\":\"2\",\"payload\":{\"session_id\":\"nope\",\"message\":\"hi\"}}",
        "{\"type\":\"session_input\",\"id\":\"3\",\"payload\":\"wrong type\"}",
        "{\"type\":\"session_cancel\",\"id\":\"4\",\"payload\":{\"session_id\":\"nope\"}}",
        "{\"type\":\"ack\",\"id\":\"5\",\"ref_id\":\"zzz\",\"payload\":{\"ok\":true}}",
        "{\"type\":\"ping\",\"id\":\"6\"}",
    ] {
        c.send_raw(Message::text(junk)).await;
    }
    c.send_raw(Message::binary(vec![0u8, 1, 2])).await;
    let ack = c
        .start_session("s1", "inspect", json!({"plugin": "mem"}))
        .await;
    assert!(ack.ok, "{ack:?}");
    let msgs = c.session_until_done("s1").await;
    assert!(payload(msgs.last().expect("done"))["report"].is_string());
    // Still the first connection: no reconnect happened.
    assert!(
        h.server
            .try_accept(Duration::from_millis(300))
            .await
            .is_none()
    );
    h.stop().await;
}

fn ack_error(a: &proto::AckPayload) -> &str {
    assert!(!a.ok, "expected a refusal: {a:?}");
    a.error.as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_start_refusals_use_the_exact_strings_in_order() {
    let mut h = harness_with(
        |c| c.sandbox.max_concurrent_sessions = 1,
        builtin_runners,
        fast(),
    )
    .await;
    let (mut c, _) = h.server.accept_registered().await;
    // 1. payload missing / not decodable
    let bare = Envelope::new("session_start", ());
    c.send(&bare).await;
    assert_eq!(ack_error(&c.ack_for(&bare.id).await), "invalid payload");
    let wrong = Envelope::new("session_start", json!({"session_id": 7}));
    c.send(&wrong).await;
    assert_eq!(ack_error(&c.ack_for(&wrong.id).await), "invalid payload");
    // 2. missing session_id
    assert_eq!(
        ack_error(&c.start_session("", "chat", json!({})).await),
        "missing session_id"
    );
    // 4. limiter full (a chat holds the only slot), and 5. duplicate id —
    // the limiter check comes first.
    assert!(c.start_session("chat-1", "chat", json!({})).await.ok);
    assert_eq!(
        ack_error(&c.start_session("chat-2", "chat", json!({})).await),
        "max concurrent sessions reached"
    );
    assert_eq!(
        ack_error(&c.start_session("chat-1", "chat", json!({})).await),
        "max concurrent sessions reached"
    );
    // Cancel frees the slot once the session has sent its done.
    c.send(&Envelope::new(
        "session_cancel",
        json!({"session_id": "chat-1", "reason": "x"}),
    ))
    .await;
    let msgs = c.session_until_done("chat-1").await;
    assert_eq!(msgs.len(), 1, "only done after a cancel: {msgs:?}");
    let mut ok = false;
    for _ in 0..50 {
        let a = c.start_session("chat-3", "chat", json!({})).await;
        if a.ok {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was not released after cancel");
    assert_eq!(
        ack_error(&c.start_session("chat-3", "chat", json!({})).await),
        "max concurrent sessions reached"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_session_id_is_refused() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(c.start_session("dup", "chat", json!({})).await.ok);
    assert_eq!(
        ack_error(
            &c.start_session("dup", "inspect", json!({"plugin": "cpu"}))
                .await
        ),
        "duplicate session_id"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_engines_are_refused_per_type() {
    let only_diagnose = |sb: &TestSandbox| Runners {
        diagnose: Some(Arc::new(
            sb.builtin_diagnose()
                .diagnose_runner(limits(|_| {}))
                .expect("d"),
        )),
        chat: None,
    };
    let mut h = harness_with(|_| {}, only_diagnose, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert_eq!(
        ack_error(&c.start_session("c", "chat", json!({})).await),
        "chat engine not available"
    );
    h.stop().await;

    let only_chat = |sb: &TestSandbox| Runners {
        diagnose: None,
        chat: Some(Arc::new(
            sb.builtin_chat().chat_runner(limits(|_| {})).expect("c"),
        )),
    };
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

    let hazards = |sb: &TestSandbox| Runners {
        diagnose: Some(Arc::new(
            sb.load("hazard_spin")
                .diagnose_runner(limits(|l| l.fuel = 100_000_000))
                .expect("d"),
        )),
        chat: None,
    };
    let mut h = harness_with(|_| {}, hazards, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    let (code, error) = error_of_session(&mut c, "spin", "inspect", json!({"plugin": "cpu"}))
        .await
        .expect("error");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("fuel"), "{error}");
    h.stop().await;

    let trap = |sb: &TestSandbox| Runners {
        diagnose: Some(Arc::new(
            sb.load("hazard_trap")
                .diagnose_runner(limits(|_| {}))
                .expect("d"),
        )),
        chat: None,
    };
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
    let spin = |sb: &TestSandbox| Runners {
        diagnose: Some(Arc::new(
            sb.load("hazard_spin")
                .diagnose_runner(limits(|l| {
                    l.fuel = u64::MAX / 4;
                    l.timeout = Duration::from_secs(600);
                }))
                .expect("d"),
        )),
        chat: None,
    };
    let mut h = harness_with(|_| {}, spin, fast()).await;
    let (mut c, _) = h.server.accept_registered().await;
    assert!(
        c.start_session("spin", "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
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
async fn alerts_buffered_while_disconnected_flush_in_batches_with_overflow() {
    let mut h = harness_with(
        |c| c.server.alert_buffer_size = 150,
        builtin_runners,
        fast(),
    )
    .await;
    // Pushed before the agent has a connection: kept, oldest overwritten.
    for i in 0..250 {
        h.agent.alerts().push(alert(i));
    }
    let (mut c, _) = h.server.accept_registered().await;
    let mut times = Vec::new();
    let mut sizes = Vec::new();
    while times.len() < 150 {
        let e = c.recv_type("alert_events").await;
        let events = payload(&e)["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        sizes.push(events.len());
        for ev in &events {
            times.push(ev["event_time"].as_i64().unwrap_or(-1));
        }
    }
    assert_eq!(sizes, [100, 50]);
    assert_eq!(times, (100..250).collect::<Vec<_>>());
    let first = c.recv_within(Duration::from_millis(1)).await;
    assert!(first.is_none_or(|e| e.msg_type != "alert_events"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_pushed_during_a_disconnect_arrive_after_the_reconnect() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    h.agent.alerts().push(alert(1));
    let e = c.recv_type("alert_events").await;
    assert_eq!(payload(&e)["events"][0]["event_time"], 1);
    drop(c);
    // While the agent is between connections, events keep coming in.
    for i in 2..=4 {
        h.agent.alerts().push(alert(i));
    }
    let (mut c2, _) = h.server.accept_registered().await;
    let mut times = Vec::new();
    while times.len() < 3 {
        let e = c2.recv_type("alert_events").await;
        for ev in payload(&e)["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            times.push(ev["event_time"].as_i64().unwrap_or(-1));
        }
    }
    assert_eq!(times, [2, 3, 4]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_events_keep_their_wire_shape() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    h.agent.alerts().push(alert(7));
    let e = c.recv_type("alert_events").await;
    assert_eq!(
        payload(&e),
        json!({"events": [{
            "event_time": 7, "event_status": "Critical", "alert_key": "disk-full-7",
            "labels": {"host": "web-1"}, "description": "disk / above 95%",
            "description_format": "markdown"
        }]})
    );
    h.stop().await;
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
