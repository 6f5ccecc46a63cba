//! Alert ring buffer (PROTOCOL §7): fixed capacity, overwrites the oldest
//! event when full, never blocks, and outlives connections.
//!
//! Events are made to fit an `alert_events` frame on their way in
//! ([`frame::fit`]) and keep their encoded size beside them, so
//! draining a frame's worth is arithmetic under the lock, not JSON.
//! Overwrites are counted and logged at most once per
//! [`OVERFLOW_LOG_EVERY`]: a flood of alerts must not become a flood of log
//! lines.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alerts::frame;
use crate::proto::AlertEvent;
use crate::ratelimit::Tally;

/// Default capacity (`[server] alert_buffer_size` ≤ 0).
pub(crate) const DEFAULT_CAPACITY: usize = 1000;

/// At most one overflow warning per this long.
pub(crate) const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// An event and its encoded size.
#[derive(Debug)]
struct Entry {
    event: AlertEvent,
    size: usize,
}

#[derive(Debug)]
struct Inner {
    events: VecDeque<Entry>,
    capacity: usize,
    dropped: u64,
    /// Overwrites not yet logged.
    overflow: Tally,
}

impl Inner {
    /// Counts `n` events lost to overflow; the count to log, when due.
    fn lose(&mut self, n: u64, now: Instant) -> Option<u64> {
        if n == 0 {
            return None;
        }
        self.dropped += n;
        self.overflow.add(n, now)
    }
}

fn log_overflow(lost: Option<u64>, total: u64, capacity: usize) {
    if let Some(n) = lost {
        tracing::warn!(
            dropped = n,
            dropped_total = total,
            capacity,
            "alert buffer full: oldest events overwritten (raise [server] alert_buffer_size, or check the server connection)"
        );
    }
}

/// Shared handle to the buffer; clones see the same events.
#[derive(Debug, Clone)]
pub struct AlertBuffer {
    inner: Arc<Mutex<Inner>>,
    /// The agent's counters (pushed, dropped).
    telemetry: Option<crate::telemetry::Telemetry>,
}

/// How many of `incoming` events fit beside `len` queued ones in
/// `capacity`, and how many must be dropped: `(keep, drop)`.
fn fit(len: usize, incoming: usize, capacity: usize) -> (usize, usize) {
    let room = capacity.saturating_sub(len);
    let keep = incoming.min(room);
    (keep, incoming - keep)
}

impl AlertBuffer {
    /// A buffer of `capacity` events (≤ 0 means [`DEFAULT_CAPACITY`]).
    pub fn new(capacity: i64) -> Self {
        let capacity = if capacity <= 0 {
            DEFAULT_CAPACITY
        } else {
            usize::try_from(capacity).unwrap_or(DEFAULT_CAPACITY)
        };
        AlertBuffer {
            inner: Arc::new(Mutex::new(Inner {
                events: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                dropped: 0,
                overflow: Tally::new(OVERFLOW_LOG_EVERY),
            })),
            telemetry: None,
        }
    }

    /// Counts pushed and dropped events into `telemetry`.
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn count(&self, pushed: u64, dropped: u64) {
        if let Some(t) = &self.telemetry {
            t.alerts_pushed(pushed);
            t.alerts_dropped(dropped);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event, cut to fit a frame on its own if it is that big;
    /// when full, the oldest is overwritten (and counted). An event that no
    /// cut can make fit (giant keys) is refused and counted as dropped.
    pub fn push(&self, mut event: AlertEvent) {
        let Some(size) = frame::fit(&mut event, frame::events_budget()) else {
            let mut g = self.lock();
            g.dropped += 1;
            drop(g);
            self.count(0, 1);
            tracing::warn!(
                alert_key = %crate::util::truncate_utf8(&event.alert_key, 200),
                "alert event dropped: its keys alone exceed the 256 KiB alert frame"
            );
            return;
        };
        let mut g = self.lock();
        let evicted = if g.events.len() >= g.capacity {
            g.events.pop_front()
        } else {
            None
        };
        g.events.push_back(Entry { event, size });
        let Some(evicted) = evicted else {
            drop(g);
            self.count(1, 0);
            return;
        };
        let report = g.lose(1, Instant::now());
        let (total, capacity) = (g.dropped, g.capacity);
        drop(g);
        // The overwritten event is freed outside the lock.
        drop(evicted);
        self.count(1, 1);
        log_overflow(report, total, capacity);
    }

    /// Takes the next `alert_events` frame's worth: at most
    /// [`frame::MAX_EVENTS`] events and
    /// [`frame::MAX_FRAME_BYTES`] of frame, oldest first.
    pub fn drain_frame(&self) -> Vec<AlertEvent> {
        self.drain_batch(frame::MAX_EVENTS, frame::events_budget())
    }

    /// Takes up to `max` events, oldest first, whose JSON (with the commas
    /// between them) stays within `max_bytes`; at least one when any waits.
    /// Also reports overwrites whose warning was held back, so the tail of
    /// a burst is logged too.
    pub(crate) fn drain_batch(&self, max: usize, max_bytes: usize) -> Vec<AlertEvent> {
        let mut g = self.lock();
        let n = frame::batch_len(g.events.iter().map(|e| e.size), max, max_bytes);
        let batch = g.events.drain(..n).map(|e| e.event).collect();
        let report = g.overflow.due(Instant::now());
        let (total, capacity) = (g.dropped, g.capacity);
        drop(g);
        log_overflow(report, total, capacity);
        batch
    }

    /// Puts an unsent batch back at the front. Events pushed meanwhile are
    /// newer and win: if not everything fits, the oldest of the batch go.
    pub(crate) fn push_front_batch(&self, batch: Vec<AlertEvent>) {
        // Sizes outside the lock; these events were fitted on the way in.
        let sized: Vec<Entry> = batch
            .into_iter()
            .map(|event| Entry {
                size: frame::encoded_len(&event),
                event,
            })
            .collect();
        let mut g = self.lock();
        let (keep, drop_n) = fit(g.events.len(), sized.len(), g.capacity);
        for e in sized.into_iter().skip(drop_n).take(keep).rev() {
            g.events.push_front(e);
        }
        let report = g.lose(drop_n as u64, Instant::now());
        let (total, capacity) = (g.dropped, g.capacity);
        drop(g);
        self.count(0, drop_n as u64);
        log_overflow(report, total, capacity);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in events.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Events lost to overflow since start.
    pub fn dropped_total(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::EventStatus;

    fn ev(i: i64) -> AlertEvent {
        AlertEvent {
            event_time: i,
            event_status: EventStatus::Warning,
            alert_key: format!("k{i}"),
            labels: Default::default(),
            attrs: Default::default(),
            description: String::new(),
            description_format: None,
        }
    }

    fn times(v: &[AlertEvent]) -> Vec<i64> {
        v.iter().map(|e| e.event_time).collect()
    }

    #[test]
    fn overflow_overwrites_the_oldest() {
        let b = AlertBuffer::new(3);
        for i in 0..5 {
            b.push(ev(i));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped_total(), 2);
        assert_eq!(times(&b.drain_batch(10, usize::MAX)), [2, 3, 4]);
    }

    #[test]
    fn drains_in_fifo_batches() {
        let b = AlertBuffer::new(0);
        assert_eq!(b.capacity(), DEFAULT_CAPACITY);
        for i in 0..250 {
            b.push(ev(i));
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let batch = b.drain_batch(100, usize::MAX);
            (!batch.is_empty()).then_some(batch.len())
        })
        .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn an_unsent_batch_goes_back_in_front_without_losing_newer_events() {
        let b = AlertBuffer::new(4);
        for i in 0..4 {
            b.push(ev(i));
        }
        let batch = b.drain_batch(3, usize::MAX);
        b.push(ev(10));
        b.push(ev(11));
        b.push_front_batch(batch);
        // Room for one of the three: the newest of the batch (2) stays.
        assert_eq!(times(&b.drain_batch(10, usize::MAX)), [2, 3, 10, 11]);
        assert_eq!(b.dropped_total(), 2);
    }

    #[test]
    fn overflow_is_counted_and_its_warning_rate_limited() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let b = AlertBuffer::new(2);
        let mut g = b.lock();
        // The first loss is reported at once; a burst within 10 s is held
        // back and reported, summed, with the next line.
        assert_eq!(g.lose(1, at(0)), Some(1));
        for _ in 0..500 {
            assert_eq!(g.lose(1, at(3)), None);
        }
        assert_eq!(g.overflow.due(at(9)), None);
        assert_eq!(g.overflow.due(at(10)), Some(500));
        assert_eq!(g.lose(0, at(30)), None, "no loss, no line");
        assert_eq!(g.dropped, 501, "every loss counted");
        drop(g);
        // Through the public path: every overwrite counts.
        for i in 0..1000 {
            b.push(ev(i));
        }
        assert_eq!(b.dropped_total(), 501 + 998);
    }

    #[test]
    fn frames_hold_at_most_100_events_and_256_kib() {
        let b = AlertBuffer::new(1000);
        for i in 0..200 {
            let mut e = ev(i);
            e.description = "d".repeat(60 * 1024);
            b.push(e);
        }
        let mut seen = Vec::new();
        loop {
            let batch = b.drain_frame();
            if batch.is_empty() {
                break;
            }
            let frame = crate::proto::Envelope::new(
                crate::proto::MSG_ALERT_EVENTS,
                crate::proto::AlertEventsPayload {
                    events: batch.clone(),
                },
            )
            .to_json();
            assert!(frame.len() <= frame::MAX_FRAME_BYTES, "{}", frame.len());
            assert_eq!(batch.len(), 4, "four 60 KiB events per frame");
            seen.extend(times(&batch));
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "nothing lost");

        for i in 0..250 {
            b.push(ev(i));
        }
        assert_eq!(b.drain_frame().len(), frame::MAX_EVENTS);
    }

    #[test]
    fn a_giant_event_is_cut_on_the_way_in() {
        let b = AlertBuffer::new(10);
        let mut e = ev(1);
        e.description = "x".repeat(1 << 20);
        b.push(e);
        let got = b.drain_frame();
        assert_eq!(got.len(), 1);
        assert!(frame::encoded_len(&got[0]) <= frame::events_budget());
        assert!(got[0].description.contains("[truncated by catpaw-agent: "));
    }

    #[test]
    fn fit_math() {
        assert_eq!(fit(0, 3, 5), (3, 0));
        assert_eq!(fit(4, 3, 5), (1, 2));
        assert_eq!(fit(5, 3, 5), (0, 3));
    }
}
