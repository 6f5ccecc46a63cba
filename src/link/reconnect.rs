//! Reconnect policy (PROTOCOL §6) as pure functions, and the interruptible
//! wait between attempts. The loop that runs the attempts is
//! [`crate::link::agent::Agent::run`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How one connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// Dial, TLS, upgrade or handshake failed.
    DialFailed,
    /// HTTP 401 on the upgrade.
    Unauthorized,
    /// Registered, then the connection dropped.
    DroppedAfterRegister,
    /// The server sent `disconnect`.
    ServerDisconnect {
        /// `retry_after_sec` from the payload.
        retry_after_sec: i64,
    },
    /// The agent is shutting down.
    Shutdown,
}

/// How an attempt ended, as a log line says it.
impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptOutcome::DialFailed => f.write_str("dial failed"),
            AttemptOutcome::Unauthorized => f.write_str("the server refused the token (401)"),
            AttemptOutcome::DroppedAfterRegister => {
                f.write_str("the connection dropped after register")
            }
            AttemptOutcome::ServerDisconnect { retry_after_sec } => {
                write!(f, "server asked to reconnect in {retry_after_sec} s")
            }
            AttemptOutcome::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// The waits of the policy; tests pass a shorter one.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// First wait after a failure, and the wait after a registered drop.
    pub base: Duration,
    /// Cap of the normal backoff.
    pub max: Duration,
    /// First wait after a 401.
    pub auth_min: Duration,
    /// Cap of the 401 backoff.
    pub auth_max: Duration,
    /// Smallest wait after a server `disconnect`.
    pub disconnect_min: Duration,
    /// Longest wait after a server `disconnect`, whatever `retry_after_sec`
    /// says: a server (or whoever speaks for it) must not be able to park
    /// the agent for centuries with one number (PROTOCOL §10).
    pub disconnect_max: Duration,
    /// Jitter fraction (0.25 = ±25 %).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            auth_min: Duration::from_secs(60),
            auth_max: Duration::from_secs(1800),
            disconnect_min: Duration::from_secs(1),
            disconnect_max: Duration::from_secs(3600),
            jitter: 0.25,
        }
    }
}

/// Backoff state across attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    current: Duration,
    auth_current: Duration,
}

impl Backoff {
    /// Fresh state.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            current: policy.base,
            auth_current: policy.auth_min,
            policy,
        }
    }

    /// The (un-jittered) wait before the next attempt, updating the state;
    /// `None` on shutdown.
    ///
    /// A 401 does not touch the normal backoff and a dial failure does not
    /// touch the 401 backoff: they escalate independently, and any
    /// successful registration resets both.
    pub(crate) fn next_wait(&mut self, outcome: &AttemptOutcome) -> Option<Duration> {
        let p = &self.policy;
        match outcome {
            AttemptOutcome::Shutdown => None,
            AttemptOutcome::DialFailed => {
                let wait = self.current;
                self.current = (self.current * 2).min(p.max);
                Some(wait)
            }
            AttemptOutcome::Unauthorized => {
                let wait = self.auth_current;
                self.auth_current = (self.auth_current * 2).min(p.auth_max);
                Some(wait)
            }
            AttemptOutcome::DroppedAfterRegister => {
                self.reset();
                Some(self.policy.base)
            }
            AttemptOutcome::ServerDisconnect { retry_after_sec } => {
                self.reset();
                Some(self.retry_after(*retry_after_sec))
            }
        }
    }

    /// The wait a server's `retry_after_sec` asks for, clamped to
    /// `disconnect_min ..= disconnect_max` (zero and negative ask for the
    /// minimum).
    pub fn retry_after(&self, retry_after_sec: i64) -> Duration {
        let p = &self.policy;
        let asked = Duration::from_secs(u64::try_from(retry_after_sec).unwrap_or(0));
        // max then min, so a policy whose min exceeds its max still waits
        // no longer than the max.
        asked.max(p.disconnect_min).min(p.disconnect_max)
    }

    fn reset(&mut self) {
        self.current = self.policy.base;
        self.auth_current = self.policy.auth_min;
    }

    /// The jitter fraction of the policy.
    pub(crate) fn jitter_fraction(&self) -> f64 {
        self.policy.jitter
    }

    /// The shortest wait jitter may bring an outcome's wait down to: after a
    /// 401 the agent waits *at least* `auth_min` (§6), so jitter only ever
    /// lengthens the first 401 wait; every other wait may be shortened.
    pub fn floor(&self, outcome: &AttemptOutcome) -> Duration {
        match outcome {
            AttemptOutcome::Unauthorized => self.policy.auth_min,
            _ => Duration::ZERO,
        }
    }
}

/// `d` scaled by `1 + frac·(2r − 1)` for `r` uniform in `[0, 1)`.
pub fn jitter(d: Duration, frac: f64, r: f64) -> Duration {
    let factor = 1.0 + frac * (2.0 * r.clamp(0.0, 1.0) - 1.0);
    d.mul_f64(factor.max(0.0))
}

/// Sleeps `d` with jitter (never below `floor`), or returns false at once on
/// shutdown.
pub async fn wait(d: Duration, frac: f64, floor: Duration, shutdown: &CancellationToken) -> bool {
    let d = jitter(d, frac, rand::random::<f64>()).max(floor);
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words_in_the_log() {
        let d = AttemptOutcome::ServerDisconnect { retry_after_sec: 2 };
        assert_eq!(d.to_string(), "server asked to reconnect in 2 s");
        assert_eq!(AttemptOutcome::DialFailed.to_string(), "dial failed");
    }

    fn secs(v: &[u64]) -> Vec<Option<Duration>> {
        v.iter().map(|s| Some(Duration::from_secs(*s))).collect()
    }

    #[test]
    fn dial_failures_double_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let got: Vec<_> = (0..11)
            .map(|_| b.next_wait(&AttemptOutcome::DialFailed))
            .collect();
        assert_eq!(got, secs(&[1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]));
    }

    #[test]
    fn a_registered_drop_resets_the_backoff() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..5 {
            b.next_wait(&AttemptOutcome::DialFailed);
        }
        assert_eq!(
            b.next_wait(&AttemptOutcome::DroppedAfterRegister),
            secs(&[1])[0]
        );
        assert_eq!(b.next_wait(&AttemptOutcome::DialFailed), secs(&[1])[0]);
    }

    #[test]
    fn unauthorized_is_slow_and_separate() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let got: Vec<_> = (0..7)
            .map(|_| b.next_wait(&AttemptOutcome::Unauthorized))
            .collect();
        assert_eq!(got, secs(&[60, 120, 240, 480, 960, 1800, 1800]));
        assert_eq!(b.next_wait(&AttemptOutcome::DialFailed), secs(&[1])[0]);
    }

    #[test]
    fn server_disconnect_waits_at_least_a_second_and_resets() {
        let mut b = Backoff::new(BackoffPolicy::default());
        b.next_wait(&AttemptOutcome::DialFailed);
        b.next_wait(&AttemptOutcome::DialFailed);
        let d = |s| AttemptOutcome::ServerDisconnect { retry_after_sec: s };
        assert_eq!(b.next_wait(&d(0)), secs(&[1])[0]);
        assert_eq!(b.next_wait(&d(-5)), secs(&[1])[0]);
        assert_eq!(b.next_wait(&d(7)), secs(&[7])[0]);
        assert_eq!(b.next_wait(&AttemptOutcome::DialFailed), secs(&[1])[0]);
        assert_eq!(b.next_wait(&AttemptOutcome::Shutdown), None);
    }

    #[test]
    fn retry_after_is_clamped_to_one_second_through_an_hour() {
        let b = Backoff::new(BackoffPolicy::default());
        let cases = [
            (i64::MIN, 1),
            (-1, 1),
            (0, 1),
            (1, 1),
            (90, 90),
            (3600, 3600),
            (3601, 3600),
            (i64::MAX, 3600),
        ];
        for (asked, want) in cases {
            assert_eq!(
                b.retry_after(asked),
                Duration::from_secs(want),
                "retry_after_sec = {asked}"
            );
        }
        // The clamp holds through next_wait, and jitter stays within ±25 %
        // of it.
        let mut b = Backoff::new(BackoffPolicy::default());
        let d = b
            .next_wait(&AttemptOutcome::ServerDisconnect {
                retry_after_sec: 9_223_372_036_854_775_807,
            })
            .expect("a wait");
        assert_eq!(d, Duration::from_secs(3600));
        assert!(jitter(d, 0.25, 0.999_999) <= Duration::from_secs(4500));
    }

    #[test]
    fn jitter_never_brings_a_401_wait_under_the_minimum() {
        let b = Backoff::new(BackoffPolicy::default());
        let floor = b.floor(&AttemptOutcome::Unauthorized);
        assert_eq!(floor, Duration::from_secs(60));
        let lowest = jitter(Duration::from_secs(60), 0.25, 0.0).max(floor);
        assert_eq!(lowest, Duration::from_secs(60));
        // Later 401 waits still jitter both ways around their nominal value.
        let later = jitter(Duration::from_secs(120), 0.25, 0.0).max(floor);
        assert_eq!(later, Duration::from_secs(90));
        assert_eq!(b.floor(&AttemptOutcome::DialFailed), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_secs(100);
        assert_eq!(jitter(d, 0.25, 0.0), Duration::from_secs(75));
        assert_eq!(jitter(d, 0.25, 0.5), Duration::from_secs(100));
        assert!(jitter(d, 0.25, 0.999_999) <= Duration::from_secs(125));
        assert!(jitter(d, 0.25, 0.999_999) > Duration::from_millis(124_999));
    }
}
