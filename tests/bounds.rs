//! PROTOCOL §10 against a real WebSocket server on loopback: what the
//! server sends is bounded.

mod common;

use std::time::{Duration, Instant};

use catpaw_agent::proto::Envelope;
use common::agent::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_is_clamped_and_the_agent_comes_back() {
    let mut opts = fast();
    // The production clamp is an hour; the policy is the same.
    opts.backoff.disconnect_max = Duration::from_millis(300);
    let mut h = harness_with(|_| {}, builtin_runners, opts).await;
    let (mut c, _) = h.server.accept_registered().await;
    c.send(&Envelope::new(
        "disconnect",
        json!({"reason": "forever", "retry_after_sec": i64::MAX}),
    ))
    .await;
    let t0 = Instant::now();
    let (_c2, _) = h.server.accept_registered().await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    h.stop().await;
}
