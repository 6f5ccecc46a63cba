//! The memory bomb: its own test binary, so no other test's allocations
//! blur the process-wide memory figures.

mod common;

use common::*;

/// Peak resident set size of this process so far (VmHWM).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_at_the_cap() {
    let sb = TestSandbox::new();
    let membomb = sb.load("hazard_membomb");
    let normal = sb.builtin_diagnose();
    let cap: u64 = 32 << 20;
    let before = peak_rss_bytes();
    let bomb = inspect("cpu")
        .budget(|b| b.max_memory = cap)
        .start_on(&membomb);
    let beside = inspect("disk").start_on(&normal);
    let (b, n) = tokio::join!(bomb.finish(), beside.finish());
    let peak_growth = peak_rss_bytes().saturating_sub(before);
    let (code, error) = error_of(&b).expect("bomb must fail");
    assert_eq!(code, "resource_exhausted");
    assert!(error.contains("memory"), "{error}");
    assert_eq!(error_of(&n), None);
    assert!(report_of(&n).is_some());
    // The bomb touched at most `cap` bytes of guest memory; everything else
    // the host allocated is small. Allow 24 MiB for the host side.
    assert!(
        peak_growth < cap + (24 << 20),
        "process grew by {peak_growth} bytes with a {cap}-byte cap"
    );
}
