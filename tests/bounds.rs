//! PROTOCOL §10 against a real WebSocket server on loopback: what the
//! server sends is bounded, and so is what the agent writes, including over
//! a slow link.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use catpaw_agent::proto::{AlertEvent, Envelope, EventStatus};
use common::agent::*;
use common::server::TestServer;
use common::{diagnose_runners, limits};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// PROTOCOL §10: "One `alert_events` frame carries at most 100 events
/// **and** at most 256 KiB of JSON".
const MAX_ALERT_FRAME: usize = 256 * 1024;

/// An alert whose description is `size` bytes.
fn big_alert(i: i64, size: usize) -> AlertEvent {
    AlertEvent {
        event_time: i,
        event_status: EventStatus::Warning,
        alert_key: format!("log-burst-{i}"),
        labels: [("host".to_string(), "web-1".to_string())].into(),
        attrs: Default::default(),
        description: "x".repeat(size),
        description_format: None,
    }
}

/// Waits (20 s at most) for a "reconnecting after a wait" log line past
/// the first `seen` and returns it.
async fn next_reconnect_line(log: &common::CapturedLog, seen: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = log.text();
        if let Some(line) = text
            .lines()
            .filter(|l| l.contains("reconnecting after a wait"))
            .nth(seen)
        {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no reconnect line:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PROTOCOL §10: `retry_after_sec` is clamped to 1 s … 3600 s, with the
/// agent's own policy (not a shortened one): the log says the wait, and a
/// shutdown still ends an hour's wait at once.
#[tokio::test]
async fn retry_after_is_clamped_to_one_second_through_an_hour() {
    let (_guard, log) = common::capture_log(tracing::Level::INFO);
    let mut opts = fast();
    let policy = catpaw_agent::link::reconnect::BackoffPolicy::default();
    opts.backoff.disconnect_min = policy.disconnect_min;
    opts.backoff.disconnect_max = policy.disconnect_max;
    let mut h = harness_with(|_| {}, builtin_runners, opts).await;
    let (mut c, _) = h.server.accept_registered().await;
    c.send(&Envelope::new(
        "disconnect",
        json!({"reason": "now", "retry_after_sec": i64::MIN}),
    ))
    .await;
    let line = next_reconnect_line(&log, 0).await;
    assert!(line.contains("wait=1 s"), "{line}");
    let (mut c, _) = h.server.accept_registered().await;
    c.send(&Envelope::new(
        "disconnect",
        json!({"reason": "forever", "retry_after_sec": i64::MAX}),
    ))
    .await;
    let line = next_reconnect_line(&log, 1).await;
    assert!(line.contains("wait=1 h"), "{line}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_before_the_register_ack_is_not_the_first_message() {
    let mut h = harness().await;
    let mut c = h.server.accept().await;
    let reg = c.recv().await;
    assert_eq!(reg.msg_type, "register");
    c.send_raw(Message::Ping(b"are you there".to_vec().into()))
        .await;
    c.send_raw(Message::Pong(Vec::new().into())).await;
    c.ack(&reg.id).await;
    // Registered on this connection: it serves sessions, and the agent
    // does not come back with a new attempt after the ack timeout (400 ms).
    assert!(
        c.start_session("s", "inspect", json!({"plugin": "mem"}))
            .await
            .ok
    );
    c.session_until_done("s").await;
    assert!(
        h.server.try_accept(Duration::from_secs(1)).await.is_none(),
        "the agent gave up on a registered connection"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_frames_hold_at_most_256_kib_and_nothing_is_lost() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    for i in 0..200 {
        h.agent.alerts().push(big_alert(i, 60 * 1024));
    }
    let mut times = Vec::new();
    while times.len() < 200 {
        let text = c
            .recv_text_within(Duration::from_secs(30))
            .await
            .expect("alert frames");
        let e = Envelope::parse(&text).expect("envelope");
        if e.msg_type != "alert_events" {
            continue;
        }
        assert!(
            text.len() <= MAX_ALERT_FRAME,
            "frame of {} bytes",
            text.len()
        );
        for ev in payload(&e)["events"].as_array().expect("events") {
            times.push(ev["event_time"].as_i64().expect("time"));
        }
    }
    assert_eq!(times, (0..200).collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_alert_arrives_cut_with_a_marker() {
    let mut h = harness().await;
    let (mut c, _) = h.server.accept_registered().await;
    h.agent.alerts().push(big_alert(1, 1 << 20));
    let text = loop {
        let text = c
            .recv_text_within(Duration::from_secs(10))
            .await
            .expect("a frame");
        if text.contains("\"alert_events\"") {
            break text;
        }
    };
    assert!(text.len() <= MAX_ALERT_FRAME, "{}", text.len());
    let e = Envelope::parse(&text).expect("envelope");
    let d = payload(&e)["events"][0]["description"]
        .as_str()
        .expect("description")
        .to_string();
    assert!(d.starts_with("xxxx"));
    assert!(
        d.ends_with(" bytes]") && d.contains("… [truncated by catpaw-agent: "),
        "{}",
        &d[d.len() - 60..]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_huge_delta_on_a_slow_link_does_not_hold_an_ack_back() {
    // 256 KiB/s agent → server; one 2 MiB delta takes 8 s to cross.
    let server = TestServer::start().await;
    let (link, forwarded) = common::slow_link::start_counted(server.addr, 256 * 1024).await;
    let mut h = harness_on(
        server,
        |c| c.server.address = link.to_string(),
        |sb| {
            diagnose_runners(
                &sb.load("catpaw_bench_guest"),
                limits(|l| l.max_output = 8 << 20),
            )
        },
        fast(),
    );
    let (mut c, _) = h.server.accept_registered().await;
    const BIG: usize = 2 << 20;
    let params = json!({"plugin": "emit-big", "target": BIG.to_string()});
    let before = forwarded.load(Ordering::Relaxed);
    assert!(c.start_session("big", "inspect", params).await.ok);
    // The delta is on its way once 64 KiB more have crossed the link (the
    // agent sends nothing else that big meanwhile); then a new session asks
    // to start. The link's count is polled; the deadline only keeps a delta
    // that never comes from hanging the test.
    let deadline = Instant::now() + Duration::from_secs(30);
    while forwarded.load(Ordering::Relaxed) < before + 64 * 1024 {
        assert!(Instant::now() < deadline, "the big delta never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let start = Envelope::new(
        "session_start",
        json!({"session_id": "next", "session_type": "inspect", "user_name": "op",
               "params": {"plugin": "noop", "target": "0"}}),
    );
    c.send(&start).await;
    let (mut text, mut acked) = (0usize, None);
    loop {
        let e = c
            .recv_within(Duration::from_secs(30))
            .await
            .expect("a frame");
        let p = payload(&e);
        if e.msg_type == "ack" && e.ref_id.as_deref() == Some(start.id.as_str()) {
            acked = Some(t0.elapsed());
        }
        if e.msg_type == "session_output" && p["session_id"] == "big" {
            text += p["delta"].as_str().map_or(0, str::len);
            if p["done"] == true {
                break;
            }
        }
    }
    let crossed = t0.elapsed();
    // The whole text arrived (in pieces), and the ack did not wait for it:
    // it came in the first half of the time the delta took to cross,
    // measured here (the rest of its 8 s), however slow the machine.
    assert_eq!(text, BIG);
    let acked = acked.expect("the ack came before the big session ended");
    assert!(acked * 2 < crossed, "ack after {acked:?} of {crossed:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_served_while_large_alerts_drain_over_a_slow_link() {
    // 100 KiB/s agent → server. Each alert of 200 KiB goes alone in its
    // frame, which takes two seconds to cross: longer than the write limit
    // of 1 s, so only a deadline that counts progress, not total time,
    // keeps the connection.
    let server = TestServer::start().await;
    let link = common::slow_link::start(server.addr, 100 * 1024).await;
    let mut opts = fast();
    opts.timings.write_timeout = Duration::from_secs(1);
    opts.timings.shutdown_grace = Duration::from_secs(2);
    let mut h = harness_on(
        server,
        |c| c.server.address = link.to_string(),
        builtin_runners,
        opts,
    );
    let (mut c, _) = h.server.accept_registered().await;
    for i in 0..60 {
        h.agent.alerts().push(big_alert(i, 200 * 1024));
    }
    let t0 = Instant::now();

    // The session's ack and its done arrive while the backlog drains,
    // each behind at most a frame or so of alerts.
    let start = Envelope::new(
        "session_start",
        json!({"session_id": "s", "session_type": "inspect", "user_name": "op",
               "params": {"plugin": "mem"}}),
    );
    c.send(&start).await;
    let mut acked = None;
    let mut alerts = 0;
    let mut alerts_before_ack = None;
    let alerts_before_done = loop {
        let e = c
            .recv_within(Duration::from_secs(20))
            .await
            .expect("the connection stays up and keeps delivering");
        let p = payload(&e);
        match e.msg_type.as_str() {
            "ack" if e.ref_id.as_deref() == Some(start.id.as_str()) => {
                assert_eq!(p["ok"], true, "{p}");
                acked = Some(t0.elapsed());
                alerts_before_ack = Some(alerts);
            }
            "alert_events" => alerts += p["events"].as_array().map_or(0, Vec::len),
            "session_output" if p["done"] == Value::Bool(true) => break alerts,
            _ => {}
        }
    };
    acked.expect("ack before done");
    // Counted in frames of the backlog (one alert each, two seconds of the
    // link), not in seconds, so a loaded machine does not move the bound:
    // the ack and the done each wait behind a few frames, not 60.
    let before_ack = alerts_before_ack.expect("ack before done");
    assert!(before_ack <= 5, "{before_ack} alerts went before the ack");
    assert!(
        alerts_before_done <= 7,
        "{alerts_before_done} alerts went before the done"
    );

    // Alerts keep flowing on the same connection; none was dropped for a
    // "timed out" write, or the agent would have dialed again.
    let more = loop {
        let e = c.recv().await;
        if e.msg_type == "alert_events" {
            break payload(&e)["events"].as_array().map_or(0, Vec::len);
        }
    };
    assert!(more > 0);
    assert!(
        h.server
            .try_accept(Duration::from_millis(100))
            .await
            .is_none(),
        "the agent reconnected: a write was given up"
    );

    // Shutdown with a frame in flight on the slow link does not wait for
    // the backlog: grace (2 s, no sessions left) plus the close budget (1 s).
    // Draining what is left would take over a minute and a half.
    let left = 60 - alerts - more;
    assert!(left >= 45, "{left} alerts left");
    h.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), h.task)
        .await
        .expect("the agent stops without draining the backlog")
        .expect("agent task");
}

/// PROTOCOL §11: frames of at most 1 MiB, whatever a session produces.
const MAX_OUT_FRAME: usize = 1 << 20;

/// An agent whose diagnose runner is the bench guest, with room for
/// megabytes of output.
async fn bench_agent() -> Harness {
    harness_with(
        |_| {},
        |sb| {
            diagnose_runners(
                &sb.load("catpaw_bench_guest"),
                limits(|l| l.max_output = 8 << 20),
            )
        },
        fast(),
    )
    .await
}

/// Every frame of session `id` up to its `done`, each checked against the
/// 1 MiB bound as it arrives.
async fn session_frames_within_bound(c: &mut common::server::ServerConn, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let text = c
            .recv_text_within(Duration::from_secs(30))
            .await
            .expect("session frames");
        assert!(
            text.len() <= MAX_OUT_FRAME,
            "a frame of {} bytes",
            text.len()
        );
        let e = Envelope::parse(&text).expect("envelope");
        let p = payload(&e);
        if p["session_id"] != id {
            continue;
        }
        let done = p["done"] == true;
        out.push(p);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mib_report_arrives_cut_to_768_kib_with_the_marker() {
    let mut h = bench_agent().await;
    let (mut c, _) = h.server.accept_registered().await;
    const BIG: usize = 3 << 20;
    let params = json!({"plugin": "report-big", "target": BIG.to_string()});
    assert!(c.start_session("r", "inspect", params).await.ok);
    let frames = session_frames_within_bound(&mut c, "r").await;
    let report = frames.last().expect("done")["report"]
        .as_str()
        .expect("a report")
        .to_string();
    assert!(report.len() <= 768 * 1024, "{}", report.len());
    let (kept, tail) = report
        .split_once("\n… [report truncated by catpaw-agent: ")
        .expect("the marker");
    // Cut on a char boundary of the guest's two-byte chars.
    assert!(kept.chars().all(|ch| ch == 'é'), "only whole chars kept");
    assert!(kept.len() > 700 * 1024, "{}", kept.len());
    assert_eq!(tail, format!("{} bytes]", BIG - kept.len()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_64_kib_is_not_sent_and_its_delta_is() {
    let mut h = bench_agent().await;
    let (mut c, _) = h.server.accept_registered().await;
    let params = json!({"plugin": "meta-big", "target": (100 * 1024).to_string()});
    assert!(c.start_session("m", "inspect", params).await.ok);
    let frames = session_frames_within_bound(&mut c, "m").await;
    let with_delta: Vec<&Value> = frames
        .iter()
        .filter(|p| p["delta"] == "with metadata")
        .collect();
    assert_eq!(with_delta.len(), 1, "{frames:?}");
    assert!(
        with_delta[0].get("metadata").is_none(),
        "metadata of 100 KiB was sent"
    );
    // A small one still goes.
    let params = json!({"plugin": "meta-big", "target": "1000"});
    assert!(c.start_session("small", "inspect", params).await.ok);
    let frames = session_frames_within_bound(&mut c, "small").await;
    assert!(
        frames
            .iter()
            .any(|p| p["metadata"]["blob"].as_str().map(str::len) == Some(1000)),
        "{frames:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_waits_behind_at_most_one_alert_batch_on_a_slow_link() {
    // 100 KiB/s agent → server, 200 alerts of 60 KiB (12 MB, two minutes
    // of the link) queued: an ack must not wait for what the agent wrote
    // before it, beyond the one batch in flight (about 0.6 s here).
    let server = TestServer::start().await;
    let link = common::slow_link::start(server.addr, 100 * 1024).await;
    let mut h = harness_on(
        server,
        |c| c.server.address = link.to_string(),
        builtin_runners,
        fast(),
    );
    let (mut c, _) = h.server.accept_registered().await;
    for i in 0..200 {
        h.agent.alerts().push(big_alert(i, 60 * 1024));
    }
    // The backlog is flowing.
    while c.recv().await.msg_type != "alert_events" {}
    for round in 0..3 {
        let id = format!("s{round}");
        let start = Envelope::new(
            "session_start",
            json!({"session_id": id, "session_type": "inspect", "user_name": "op",
                   "params": {"plugin": "mem"}}),
        );
        c.send(&start).await;
        // Counted in batches, not seconds: a loaded machine slows the
        // batches and the ack alike.
        let mut batches = 0;
        loop {
            let e = c
                .recv_within(Duration::from_secs(30))
                .await
                .expect("the ack");
            if e.msg_type == "ack" && e.ref_id.as_deref() == Some(start.id.as_str()) {
                break;
            }
            if e.msg_type == "alert_events" {
                batches += 1;
            }
        }
        assert!(
            batches <= 2,
            "round {round}: the ack waited behind {batches} alert batches"
        );
        // Its output waits behind at most a batch too.
        loop {
            let e = c.recv_within(Duration::from_secs(5)).await.expect("output");
            let p = payload(&e);
            if e.msg_type == "session_output" && p["session_id"] == id && p["done"] == true {
                break;
            }
        }
    }
    h.stop().await;
}
