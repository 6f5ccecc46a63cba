//! Tests of `ai/mod.rs`: the retry backoff and which errors are retried.

use super::*;

#[test]
fn backoff_doubles_and_is_capped() {
    let b = Duration::from_secs(2);
    let first = backoff(b, 1);
    assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
    let third = backoff(b, 3);
    assert!(third >= Duration::from_secs(6) && third <= Duration::from_secs(10));
    assert!(backoff(b, 12) <= MAX_BACKOFF.mul_f64(1.25));
}

#[test]
fn only_429_and_5xx_are_transient_never_a_redirect() {
    assert!(!Failure::Redirect(307, String::new()).transient());
    assert!(Failure::Status(429, String::new()).transient());
    assert!(Failure::Status(503, String::new()).transient());
    assert!(!Failure::Status(401, String::new()).transient());
    assert!(!Failure::Status(400, String::new()).transient());
    assert!(Failure::Timeout(String::new()).transient());
}
