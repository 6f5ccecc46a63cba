//! Session limiter: a non-blocking try-acquire with an RAII permit, so a
//! slot comes back on every path a session can end by.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Caps how many sessions run at once. Clones share the same slots.
#[derive(Debug, Clone)]
pub(crate) struct ConcurrencyLimiter {
    max: usize,
    active: Arc<AtomicUsize>,
}

/// One taken slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Permit {
    active: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyLimiter {
    /// A limiter with `max` slots (at least 1).
    pub fn new(max: usize) -> Self {
        ConcurrencyLimiter {
            max: max.max(1),
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a slot if one is free; never waits.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                active: self.active.clone(),
            })
    }

    /// Slots in use.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Total slots.
    pub fn max(&self) -> usize {
        self.max
    }

    /// True when no slot is free.
    pub(crate) fn is_full(&self) -> bool {
        self.active() >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_limited_and_released_on_drop() {
        let l = ConcurrencyLimiter::new(2);
        let a = l.try_acquire().expect("first");
        let b = l.try_acquire().expect("second");
        assert!(l.try_acquire().is_none());
        assert!(l.is_full());
        drop(a);
        assert_eq!(l.active(), 1);
        let c = l.clone().try_acquire().expect("slot came back");
        drop((b, c));
        assert_eq!(l.active(), 0);
        assert_eq!(ConcurrencyLimiter::new(0).max(), 1);
    }
}
