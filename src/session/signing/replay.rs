//! The bounded replay cache of signed sessions: which `(key_id, nonce)`
//! pairs were accepted, until they expire. Policy (fail closed when full)
//! is explained in the parent module's doc; its copy on disk, which makes
//! it hold across restarts, in [`super::journal`].

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use super::Unauthorized;
use super::journal::{Journal, ReplayId};

/// Digest of `(key_id, nonce)`. The nonce has no `\n`, so splitting at the
/// last `\n` recovers the pair: distinct pairs never share an input.
pub(super) fn replay_id(key_id: &str, nonce: &str) -> ReplayId {
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update(b"\n");
    h.update(nonce.as_bytes());
    h.finalize().into()
}

/// Accepted nonces until they expire; bounded, fail closed when full.
pub(super) struct ReplayCache {
    cap: usize,
    /// Digest → last second at which it still counts as seen.
    seen: HashMap<ReplayId, i64>,
    /// The same entries ordered by expiry, oldest first, for eviction.
    by_expiry: BTreeSet<(i64, ReplayId)>,
    /// The copy on disk every accepted entry is synced to first (none in
    /// tests and when signing is off).
    journal: Option<Journal>,
    /// Every message is refused before this second: the journal could not
    /// be trusted at start, so a nonce seen before it may be missing.
    blind_until: Option<i64>,
}

impl ReplayCache {
    pub(super) fn new(cap: usize) -> ReplayCache {
        ReplayCache {
            cap,
            seen: HashMap::new(),
            by_expiry: BTreeSet::new(),
            journal: None,
            blind_until: None,
        }
    }

    /// A cache that starts from `entries` (loaded from `journal`) and
    /// records every entry it admits there before admitting it. With
    /// `blind_until`, it refuses everything before that second.
    pub(super) fn persistent(
        cap: usize,
        journal: Journal,
        entries: Vec<(ReplayId, i64)>,
        blind_until: Option<i64>,
    ) -> ReplayCache {
        let mut cache = ReplayCache::new(cap);
        for (id, expires) in entries.into_iter().take(cap) {
            cache.by_expiry.insert((expires, id));
            cache.seen.insert(id, expires);
        }
        cache.journal = Some(journal);
        cache.blind_until = blind_until;
        cache
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Records `id` as seen at `now` for `keep` seconds, or refuses it as a
    /// replay (seen and unexpired) or because the cache is full.
    pub(super) fn admit(&mut self, id: ReplayId, now: i64, keep: i64) -> Result<(), Unauthorized> {
        if let Some(until) = self.blind_until {
            if now < until {
                tracing::warn!(
                    seconds_left = until - now,
                    "refusing a signed message: the replay journal could not be trusted at start, so nonces seen before it may be missing; signed messages are accepted again once one replay window has passed"
                );
                return Err(Unauthorized::ReplayedNonce);
            }
            self.blind_until = None;
        }
        self.evict_expired(now);
        if self.seen.contains_key(&id) {
            return Err(Unauthorized::ReplayedNonce);
        }
        if self.seen.len() >= self.cap {
            tracing::warn!(
                cap = self.cap,
                "signed-session replay cache is full of unexpired nonces; refusing signed messages until entries expire"
            );
            return Err(Unauthorized::ReplayedNonce);
        }
        let expires = now.saturating_add(keep);
        if let Some(journal) = &mut self.journal {
            // On disk before it counts as accepted: a nonce the journal
            // lacks could be replayed after a restart.
            if let Err(e) = journal.append(&id, expires) {
                tracing::warn!(error = %e, "refusing a signed message: cannot record its nonce in the replay journal");
                return Err(Unauthorized::ReplayedNonce);
            }
        }
        // Expiry index first: should the second insert fail to allocate,
        // the orphan is evicted in time instead of counting forever.
        self.by_expiry.insert((expires, id));
        self.seen.insert(id, expires);
        self.compact_journal();
        Ok(())
    }

    /// Rewrites the journal with the live entries once expired ones make up
    /// most of it. A failure leaves the old, complete journal in place.
    fn compact_journal(&mut self) {
        let live = self.seen.len();
        let Some(journal) = self.journal.as_mut().filter(|j| j.wants_compaction(live)) else {
            return;
        };
        let entries: Vec<(ReplayId, i64)> = self.seen.iter().map(|(id, e)| (*id, *e)).collect();
        if let Err(e) = journal.compact(&entries) {
            tracing::warn!(error = %e, "cannot compact the replay journal; it keeps growing until a compaction succeeds");
        }
    }

    /// Drops entries whose expiry lies before `now`. A clock that steps back
    /// only keeps entries longer, which errs on the refusing side.
    fn evict_expired(&mut self, now: i64) {
        while let Some(&(expires, id)) = self.by_expiry.first() {
            if expires >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_stays_bounded_under_a_flood() {
        let id = |i: u32| replay_id("ops-1", &format!("n-{i}"));
        let mut cache = ReplayCache::new(1000);
        // A flood of distinct nonces within one window: the cache fills,
        // then refuses (fail closed) rather than forget a live nonce.
        for i in 0..5000 {
            let got = cache.admit(id(i), 0, 600);
            assert_eq!(got.is_ok(), i < 1000, "nonce {i}");
            assert!(cache.len() <= 1000);
        }
        assert_eq!(
            cache.admit(id(0), 600, 600),
            Err(Unauthorized::ReplayedNonce)
        );
        // Once the window has passed, expired entries make room.
        assert_eq!(cache.admit(id(4999), 601, 600), Ok(()));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.by_expiry.len(), 1);
        // A steady stream never fills it: at one nonce a second, it holds
        // one window's worth.
        let mut cache = ReplayCache::new(100);
        for t in 0..10_000 {
            assert_eq!(cache.admit(id(t as u32), t, 20), Ok(()), "at {t}");
            assert!(cache.len() <= 21);
        }
    }
}
