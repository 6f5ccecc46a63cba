//! `[ai] daily_token_limit`: the tokens every session together used today
//! (UTC), kept in the state directory so a restart does not reset the
//! count. One small JSON file, rewritten whole (write, then rename) after
//! each call.
//!
//! Sessions call at the same time, so a check then a charge would let
//! two calls each see room that only one has: a call instead holds the
//! most it can cost ([`DailyLedger::reserve`], under the lock that checks
//! the room) and settles at most that much when it ends ([`Hold::settle`]).
//! Held tokens count against the limit while the call runs and are given
//! back if it fails; only settled tokens are saved.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Count {
    /// Days since 1970-01-01 (UTC).
    day: u64,
    /// Tokens used that day.
    tokens: u64,
}

/// Today's token count and its limit.
#[derive(Debug)]
pub struct DailyLedger {
    path: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Settled and saved.
    count: Count,
    /// Held by calls under way (not saved: a call cut off by a crash is
    /// never settled).
    held: u64,
}

/// Tokens a running call holds of today's limit; dropped unsettled (the
/// call failed), they are given back.
#[derive(Debug)]
pub struct Hold {
    ledger: Arc<DailyLedger>,
    tokens: u64,
}

impl Hold {
    /// Charges `tokens`, at most the held amount, and gives the rest back.
    pub fn settle(mut self, tokens: u64) {
        let held = std::mem::take(&mut self.tokens);
        self.ledger.settle(held, tokens.min(held));
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.tokens > 0 {
            self.ledger.settle(self.tokens, 0);
        }
    }
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

impl DailyLedger {
    /// The ledger at `path` (created on first use); `limit` 0 means none.
    /// An unreadable file is an error: starting from zero would lift the
    /// limit (fail closed).
    pub fn open(path: PathBuf, limit: u64) -> anyhow::Result<DailyLedger> {
        let count = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} does not hold the daily LLM token count; remove it to start today's \
                     count from zero",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Count::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(DailyLedger {
            path,
            limit,
            state: Mutex::new(State { count, held: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let day = today();
        if s.count.day != day {
            s.count = Count { day, tokens: 0 };
        }
        s
    }

    /// Tokens used today (settled).
    pub fn used(&self) -> u64 {
        self.lock().count.tokens
    }

    /// Holds tokens for one call: `plan` is given what is left today (None
    /// when there is no limit; calls under way count as used) and answers
    /// how many to hold (with what it planned), or why the call is
    /// refused. The check and the hold are one step, so calls at the same
    /// time cannot share the same room.
    pub fn reserve<T, E>(
        self: &Arc<Self>,
        plan: impl FnOnce(Option<(String, u64)>) -> Result<(u64, T), E>,
    ) -> Result<(Hold, T), E> {
        let mut s = self.lock();
        let left = (self.limit > 0).then(|| {
            let used = s.count.tokens.saturating_add(s.held);
            (
                format!(
                    "the agent's [ai] daily_token_limit of {} (used {used} today; the count \
                     starts again at 00:00 UTC)",
                    self.limit
                ),
                self.limit.saturating_sub(used),
            )
        });
        let (tokens, planned) = plan(left)?;
        s.held = s.held.saturating_add(tokens);
        let hold = Hold {
            ledger: Arc::clone(self),
            tokens,
        };
        Ok((hold, planned))
    }

    /// Gives back `held` and charges `tokens` (at most `held`) to today's
    /// count, then saves it. A save that fails is logged; the count in
    /// memory still holds for this process.
    fn settle(&self, held: u64, tokens: u64) {
        let mut s = self.lock();
        s.held = s.held.saturating_sub(held);
        if tokens == 0 {
            return;
        }
        s.count.tokens = s.count.tokens.saturating_add(tokens);
        if let Err(e) = self.save(s.count) {
            tracing::error!(path = %self.path.display(), error = %format!("{e:#}"),
                "could not save the daily LLM token count");
        }
    }

    fn save(&self, c: Count) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        // Synced before the rename: after a power loss the file holds the
        // old count or the new one, never an empty one (which would stop
        // the agent from starting, see `open`).
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &serde_json::to_vec(&c)?)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path, limit: u64) -> Arc<DailyLedger> {
        Arc::new(DailyLedger::open(path.to_path_buf(), limit).unwrap())
    }

    /// Holds `n` if that much is left (or there is no limit).
    fn hold(l: &Arc<DailyLedger>, n: u64) -> Result<Hold, String> {
        let (hold, ()) = l.reserve(|left| match left {
            Some((what, left)) if left < n => Err(format!("{what}: {left} left")),
            _ => Ok((n, ())),
        })?;
        Ok(hold)
    }

    #[test]
    fn the_count_survives_a_reopen_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("llm_tokens.json");
        let l = open(&path, 100);
        hold(&l, 80).unwrap().settle(60);
        drop(l);
        let l = open(&path, 100);
        assert_eq!(l.used(), 60);
        hold(&l, 40).unwrap().settle(40);
        let e = hold(&l, 1).unwrap_err();
        assert!(
            e.contains("used 100 today") && e.contains("daily_token_limit of 100"),
            "{e}"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(DailyLedger::open(path, 100).is_err());
    }

    #[test]
    fn a_call_is_charged_at_most_what_it_held_and_holds_count_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("llm_tokens.json");
        let l = open(&path, 1_000);
        let first = hold(&l, 700).unwrap();
        // The room the first call holds is not there for a second one.
        assert!(hold(&l, 400).is_err());
        // A failed call gives its hold back and is not charged.
        drop(first);
        assert_eq!(l.used(), 0);
        // A reported usage past the hold is charged as the hold.
        hold(&l, 700).unwrap().settle(u64::MAX);
        assert_eq!(l.used(), 700);
        let saved = std::fs::read_to_string(&path).unwrap();
        assert!(saved.contains("\"tokens\":700"), "{saved}");
        // The count saturates instead of wrapping.
        let none = open(&dir.path().join("none.json"), 0);
        hold(&none, u64::MAX).unwrap().settle(u64::MAX);
        hold(&none, u64::MAX).unwrap().settle(u64::MAX);
        assert_eq!(none.used(), u64::MAX);
    }
}
