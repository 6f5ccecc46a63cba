//! Refused `session_start`s and `session_input`s, counted into the audit.
//!
//! Why counted and not one record each: a server without the signing key
//! can send refused starts as fast as the link carries them (measured:
//! 560 a second and more, 640 B a record), which pushed the whole audit
//! history out of rotation in minutes. Every refusal is still counted: one
//! `refused` record per second per cause — the `name` (empty for a start,
//! `session_input` for a chat turn) and the ack error — carrying `count`,
//! the first refusal's session (`session_id`, user, type) and
//! `last_session_id`.
//!
//! A second's record is written when a later refusal arrives, by a timer
//! just after the second ends, and at shutdown (and when the last handle
//! goes), so the tail of a burst is not lost while the agent lives; a
//! SIGKILL loses at most the current second's count. Accepted sessions and
//! acts (tools, shells) are never counted this way: each has its record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{AuditLog, Record, Who, event, kind, outcome};

/// One cause's refusals within one second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The refused frame: empty for a `session_start`, else its type.
    pub what: String,
    /// The ack error.
    pub why: String,
    /// Unix second they fell in.
    pub second: u64,
    /// Who the first of them named.
    pub first: Who,
    /// The last one's session id.
    pub last_session_id: String,
    /// How many.
    pub count: u64,
}

/// The batches being counted (pure: the caller passes the second).
#[derive(Debug, Default)]
pub(crate) struct Window {
    open: BTreeMap<(String, String), Batch>,
}

impl Window {
    /// Counts one refusal at unix second `now`; returns the batches of
    /// earlier seconds, which are due.
    pub(crate) fn add(&mut self, now: u64, what: &str, why: &str, who: Who) -> Vec<Batch> {
        let due = self.due(now);
        let b = self
            .open
            .entry((what.to_string(), why.to_string()))
            .or_insert_with(|| Batch {
                what: what.to_string(),
                why: why.to_string(),
                second: now,
                first: who.clone(),
                last_session_id: String::new(),
                count: 0,
            });
        b.count += 1;
        b.last_session_id = who.session_id;
        due
    }

    /// The batches of seconds before `now`, oldest first.
    pub(crate) fn due(&mut self, now: u64) -> Vec<Batch> {
        let keys: Vec<_> = self
            .open
            .iter()
            .filter(|(_, b)| b.second < now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut due: Vec<Batch> = keys.iter().filter_map(|k| self.open.remove(k)).collect();
        due.sort_by_key(|b| b.second);
        due
    }

    /// Every batch, due or not (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<Batch> {
        let mut all: Vec<Batch> = std::mem::take(&mut self.open).into_values().collect();
        all.sort_by_key(|b| b.second);
        all
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// The `refused` record of a batch.
pub(crate) fn record(b: &Batch) -> Record {
    Record::new(&b.first, kind::SESSION, event::REFUSED, &b.what, "")
        .with_outcome(outcome::REFUSED, &b.why)
        .with_count(b.count, &b.last_session_id)
}

struct State {
    window: Window,
    /// A flush timer is running.
    timer: bool,
}

struct Inner {
    log: AuditLog,
    state: Mutex<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for b in state.window.drain() {
            self.log.note(record(&b));
        }
    }
}

/// Counts refusals into `log` (cheap to clone: one shared window).
#[derive(Clone)]
pub(crate) struct Refusals {
    inner: Arc<Inner>,
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

impl Refusals {
    pub(crate) fn new(log: AuditLog) -> Refusals {
        Refusals {
            inner: Arc::new(Inner {
                log,
                state: Mutex::new(State {
                    window: Window::default(),
                    timer: false,
                }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one refusal of `what` (see [`Batch`]) for `why`.
    pub(crate) fn note(&self, what: &str, why: &str, who: Who) {
        let now = unix_now().as_secs();
        let (due, arm) = {
            let mut s = self.state();
            let due = s.window.add(now, what, why, who);
            let arm = !s.timer;
            s.timer = true;
            (due, arm)
        };
        self.write(&due);
        if arm {
            self.arm();
        }
    }

    /// Starts the timer that writes each second's batches when it ends.
    /// Without a runtime they go out with the next refusal or at flush.
    fn arm(&self) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let me = self.clone();
                rt.spawn(async move { me.tick().await });
            }
            Err(_) => self.state().timer = false,
        }
    }

    async fn tick(self) {
        loop {
            let into = unix_now().subsec_millis() as u64;
            // Just past the second's end.
            tokio::time::sleep(Duration::from_millis(1000 - into + 20)).await;
            let (due, stop) = {
                let mut s = self.state();
                let due = s.window.due(unix_now().as_secs());
                let stop = s.window.is_empty();
                if stop {
                    s.timer = false;
                }
                (due, stop)
            };
            self.write(&due);
            if stop {
                return;
            }
        }
    }

    /// Writes every batch now, the current second's included (shutdown).
    pub(crate) fn flush(&self) {
        let all = self.state().window.drain();
        self.write(&all);
    }

    fn write(&self, batches: &[Batch]) {
        for b in batches {
            self.inner.log.note(record(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str) -> Who {
        Who {
            session_id: id.into(),
            ..Who::default()
        }
    }

    /// Refusals the trail counts so far, over all its records.
    fn counted(log: &AuditLog) -> u64 {
        std::fs::read_to_string(log.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["count"].as_u64())
            .sum()
    }
    #[test]
    fn refusals_are_counted_per_second_per_cause_and_none_is_lost() {
        let mut w = Window::default();
        let sig = "unauthorized: signature required";
        assert!(w.add(100, "", sig, who("a")).is_empty());
        for i in 0..4998 {
            assert!(w.add(100, "", sig, who(&format!("s{i}"))).is_empty());
        }
        assert!(w.add(100, "", "duplicate session_id", who("d")).is_empty());
        assert!(w.add(100, "session_input", sig, who("i")).is_empty());
        assert!(w.add(100, "", sig, who("z")).is_empty());
        assert!(w.due(100).is_empty(), "the second is not over");
        // The next second starts: the last one's batches are due, one per
        // cause, each with its count and first and last ids.
        let due = w.add(101, "", sig, who("next"));
        assert_eq!(due.len(), 3, "{due:?}");
        let starts = due
            .iter()
            .find(|b| b.what.is_empty() && b.why == sig)
            .expect("the signature batch");
        assert_eq!(starts.count, 5000);
        assert_eq!(starts.first.session_id, "a");
        assert_eq!(starts.last_session_id, "z");
        assert_eq!(due.iter().map(|b| b.count).sum::<u64>(), 5002);
        // The partial second is not lost: due on the timer, or drained.
        assert_eq!(w.due(102)[0].count, 1);
        w.add(103, "", sig, who("x"));
        assert_eq!(w.drain()[0].count, 1);
        assert!(w.drain().is_empty());
    }

    #[test]
    fn a_batch_record_carries_the_count_and_the_last_id() {
        let mut w = Window::default();
        w.add(1, "", "invalid session_id", who("a\u{1b}[31m"));
        w.add(1, "", "invalid session_id", who("b"));
        let rec = record(&w.drain()[0]);
        assert_eq!(rec.count, Some(2));
        assert_eq!(rec.last_session_id.as_deref(), Some("b"));
        assert!(!rec.session_id.contains('\u{1b}'));
        assert_eq!(rec.event, "refused");
        assert_eq!(rec.detail, "invalid session_id");
        w.add(1, "", "x", who("only"));
        let one = record(&w.drain()[0]);
        assert_eq!((one.count, one.last_session_id), (Some(1), None));
    }

    #[test]
    fn shutdown_writes_the_current_second_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).expect("open");
        let r = Refusals::new(log.clone());
        r.note("", "invalid payload", who("a"));
        r.note("", "invalid payload", who("b"));
        let counted = || counted(&log);
        r.flush();
        assert_eq!(counted(), 2);
        // The last handle going writes what is left too.
        r.note("", "invalid payload", who("c"));
        drop(r);
        assert_eq!(counted(), 3);
    }

    #[tokio::test]
    async fn the_last_partial_second_is_written_by_the_timer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).expect("open");
        let r = Refusals::new(log.clone());
        for i in 0..50 {
            r.note("", "unauthorized: bad signature", who(&format!("s{i}")));
        }
        let counted = || counted(&log);
        // The timer fires just after the second ends; 10 s is generous.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counted() < 50 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(counted(), 50);
        drop(r);
        assert_eq!(counted(), 50, "nothing written twice");
    }
}
