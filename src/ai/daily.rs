//! `[ai] daily_token_limit`: the tokens every session together used today
//! (UTC), kept in the state directory so a restart does not reset the
//! count. One small JSON file, rewritten whole (write, then rename) after
//! each call.

use std::path::PathBuf;
use std::sync::Mutex;
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
    count: Mutex<Count>,
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
            count: Mutex::new(count),
        })
    }

    /// Tokens used today.
    pub fn used(&self) -> u64 {
        let c = *self.count.lock().unwrap_or_else(|p| p.into_inner());
        if c.day == today() { c.tokens } else { 0 }
    }

    /// Ok while today's tokens are under the limit.
    pub fn check(&self) -> Result<(), String> {
        let used = self.used();
        if self.limit > 0 && used >= self.limit {
            return Err(format!(
                "the agent used {used} LLM tokens today, its [ai] daily_token_limit is {}; \
                 the count starts again at 00:00 UTC",
                self.limit
            ));
        }
        Ok(())
    }

    /// Adds `tokens` to today's count and saves it. A save that fails is
    /// logged; the count in memory still holds for this process.
    pub fn add(&self, tokens: u64) {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let day = today();
        if c.day != day {
            *c = Count { day, tokens: 0 };
        }
        c.tokens = c.tokens.saturating_add(tokens);
        if let Err(e) = self.save(*c) {
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

    #[test]
    fn the_count_survives_a_reopen_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("llm_tokens.json");
        let l = DailyLedger::open(path.clone(), 100).unwrap();
        l.check().unwrap();
        l.add(60);
        l.check().unwrap();
        drop(l);
        let l = DailyLedger::open(path.clone(), 100).unwrap();
        assert_eq!(l.used(), 60);
        l.add(50);
        let e = l.check().unwrap_err();
        assert!(e.contains("110") && e.contains("daily_token_limit"), "{e}");
        std::fs::write(&path, "garbage").unwrap();
        assert!(DailyLedger::open(path, 100).is_err());
    }
}
