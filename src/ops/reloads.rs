//! The outcome of the last runner reload, for `status`. A refused reload
//! leaves the runners in service, so `status` would otherwise show the old
//! hash beside a file whose bytes changed with nothing saying why: the
//! reloader records each outcome here and `status` shows the last one.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One reload's outcome as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// When it ended, unix seconds.
    pub at_unix: u64,
    /// What set it off: `SIGHUP`, or the runner files that changed.
    pub trigger: String,
    /// Whether the new runners were taken.
    pub ok: bool,
    /// `ok`, or `refused: ` and why (the runners in service stayed).
    pub result: String,
}

/// Where the reloader records outcomes and `status` reads the last one;
/// every clone shares it.
#[derive(Debug, Clone, Default)]
pub struct LastReload(Arc<Mutex<Option<ReloadRecord>>>);

impl LastReload {
    /// Records a reload set off by `trigger` that ended with `outcome`
    /// (Err: why it was refused).
    pub fn record(&self, trigger: &str, outcome: Result<(), String>) {
        let (ok, result) = match outcome {
            Ok(()) => (true, "ok".to_string()),
            Err(why) => (false, format!("refused: {why}")),
        };
        let rec = ReloadRecord {
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            trigger: trigger.to_string(),
            ok,
            result,
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec);
    }

    /// The last reload's outcome; None when there was none since start.
    pub fn get(&self) -> Option<ReloadRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_outcome_with_its_reason() {
        let last = LastReload::default();
        assert_eq!(last.get(), None);
        let shared = last.clone();
        shared.record("SIGHUP", Err("d.wasm: not a WebAssembly file".into()));
        let r = last.get().expect("recorded");
        assert!(!r.ok);
        assert_eq!(r.result, "refused: d.wasm: not a WebAssembly file");
        assert_eq!(r.trigger, "SIGHUP");
        shared.record("changed: d.wasm", Ok(()));
        assert_eq!(last.get().expect("recorded").result, "ok");
    }
}
