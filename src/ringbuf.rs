//! Alert ring buffer (PROTOCOL §7): fixed capacity, overwrites the oldest
//! event when full, never blocks, and outlives connections.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::proto::AlertEvent;

/// Default capacity (`[server] alert_buffer_size` ≤ 0).
pub const DEFAULT_CAPACITY: usize = 1000;

#[derive(Debug)]
struct Inner {
    events: VecDeque<AlertEvent>,
    capacity: usize,
    dropped: u64,
}

/// Shared handle to the buffer; clones see the same events.
#[derive(Debug, Clone)]
pub struct AlertBuffer {
    inner: Arc<Mutex<Inner>>,
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
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event; when full, the oldest is overwritten (and counted).
    pub fn push(&self, event: AlertEvent) {
        let mut g = self.lock();
        if g.events.len() >= g.capacity {
            g.events.pop_front();
            g.dropped += 1;
        }
        g.events.push_back(event);
    }

    /// Takes up to `max` events, oldest first.
    pub fn drain_batch(&self, max: usize) -> Vec<AlertEvent> {
        let mut g = self.lock();
        let n = max.min(g.events.len());
        g.events.drain(..n).collect()
    }

    /// Puts an unsent batch back at the front. Events pushed meanwhile are
    /// newer and win: if not everything fits, the oldest of the batch go.
    pub fn push_front_batch(&self, batch: Vec<AlertEvent>) {
        let mut g = self.lock();
        let (keep, drop) = fit(g.events.len(), batch.len(), g.capacity);
        g.dropped += drop as u64;
        for ev in batch.into_iter().skip(drop).take(keep).rev() {
            g.events.push_front(ev);
        }
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
        assert_eq!(times(&b.drain_batch(10)), [2, 3, 4]);
    }

    #[test]
    fn drains_in_fifo_batches() {
        let b = AlertBuffer::new(0);
        assert_eq!(b.capacity(), DEFAULT_CAPACITY);
        for i in 0..250 {
            b.push(ev(i));
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let batch = b.drain_batch(100);
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
        let batch = b.drain_batch(3);
        b.push(ev(10));
        b.push(ev(11));
        b.push_front_batch(batch);
        // Room for one of the three: the newest of the batch (2) stays.
        assert_eq!(times(&b.drain_batch(10)), [2, 3, 10, 11]);
        assert_eq!(b.dropped_total(), 2);
    }

    #[test]
    fn fit_math() {
        assert_eq!(fit(0, 3, 5), (3, 0));
        assert_eq!(fit(4, 3, 5), (1, 2));
        assert_eq!(fit(5, 3, 5), (0, 3));
    }
}
