//! Counting repeated events while logging them rarely.
//!
//! Some events can repeat as fast as the machine runs: an `accept` that
//! fails with EMFILE, alerts overwritten in a full buffer. One log line per
//! occurrence turns a local problem into a disk-filling one, while no line
//! at all hides it. A [`Tally`] counts every occurrence and lets a line out
//! at most once per interval, carrying the count since the previous line.

use std::time::{Duration, Instant};

/// Counts occurrences; says when a line is due and how many it covers.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    every: Duration,
    last_line: Option<Instant>,
    pending: u64,
}

impl Tally {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        Tally {
            every,
            last_line: None,
            pending: 0,
        }
    }

    /// Counts `n` occurrences at `now`; returns the count to log when a line
    /// is due. The first occurrence ever is logged at once, so a problem is
    /// seen when it starts.
    pub fn add(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.pending = self.pending.saturating_add(n);
        self.due(now)
    }

    /// The count not yet logged, when a line is due at `now`; for callers
    /// that flush periodically so that the tail of a burst is reported too.
    pub(crate) fn due(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        if self
            .last_line
            .is_some_and(|l| now.saturating_duration_since(l) < self.every)
        {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carrying_the_count_since_the_last() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tally::new(Duration::from_secs(10));
        assert_eq!(t.due(at(0)), None, "nothing counted, nothing due");
        assert_eq!(t.add(1, at(0)), Some(1), "the first is logged at once");
        for ms in 1..1000 {
            assert_eq!(t.add(1, at(ms)), None, "suppressed at {ms} ms");
        }
        assert_eq!(t.due(at(9_999)), None);
        assert_eq!(t.due(at(10_000)), Some(999), "the burst's tail");
        assert_eq!(t.due(at(30_000)), None, "nothing new");
        assert_eq!(t.add(5, at(30_001)), Some(5), "a quiet spell ends at once");
        assert_eq!(t.add(2, at(30_002)), None);
        assert_eq!(t.add(1, at(40_001)), Some(3));
    }
}
