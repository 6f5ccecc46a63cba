//! The campaign's closing table: sessions by type and outcome, faults by
//! kind, reconnects, violations, the agent's resources at start and end,
//! and log and audit bytes per session.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::checks::{Checker, Usage};
use crate::ledger::{Shared, lock};
use crate::world::World;

pub struct Tally {
    seed: u64,
    faults: BTreeMap<String, u64>,
    reloads: u64,
    reconnects: u64,
    slowest_reconnect: Duration,
    sessions: BTreeMap<(String, String), u64>,
    rows: Vec<(String, String)>,
}

impl Tally {
    pub fn new(seed: u64) -> Tally {
        Tally {
            seed,
            faults: BTreeMap::new(),
            reloads: 0,
            reconnects: 0,
            slowest_reconnect: Duration::ZERO,
            sessions: BTreeMap::new(),
            rows: Vec::new(),
        }
    }

    pub fn fault(&mut self, kind: &str) {
        *self.faults.entry(kind.to_string()).or_default() += 1;
    }

    pub fn reload(&mut self) {
        self.reloads += 1;
    }

    /// A reconnect that took `took` from the fault's end.
    pub fn reconnect(&mut self, took: Duration) {
        self.reconnects += 1;
        self.slowest_reconnect = self.slowest_reconnect.max(took);
    }

    fn count_sessions(&mut self, ledger: &Shared) {
        self.sessions.clear();
        let l = lock(ledger);
        for s in l.sessions.values() {
            let kind = if s.shell { "chat+shell" } else { s.kind };
            let outcome = match (&s.ack, s.dones) {
                (None, _) => "no ack (link dropped first)".to_string(),
                (Some(Err(e)), _) => format!("refused: {e}"),
                (Some(Ok(())), 0) => "ended by a dropped link".to_string(),
                (Some(Ok(())), _) => match &s.error {
                    Some(code) => format!("done after error {code}"),
                    None if s.cancelled => "done after cancel".to_string(),
                    None => "done ok".to_string(),
                },
            };
            *self
                .sessions
                .entry((kind.to_string(), outcome))
                .or_default() += 1;
        }
    }

    /// Gathers the end figures.
    pub fn finish(
        &mut self,
        w: &World,
        ck: &Checker,
        rounds: u64,
        took: Duration,
        violations: usize,
    ) {
        self.count_sessions(&w.ledger);
        let sessions = w.sessions_started.max(1);
        let usage = |u: Option<Usage>| {
            u.map_or("-".to_string(), |u| {
                format!(
                    "{} fds, {} threads, {:.1} MiB RSS",
                    u.fds,
                    u.threads,
                    u.rss as f64 / 1048576.0
                )
            })
        };
        let pushed: usize = w.pushed.values().map(Vec::len).sum();
        let delivered = {
            let l = lock(&w.ledger);
            w.pushed
                .values()
                .flatten()
                .filter(|k| l.alerts.contains_key(*k))
                .count()
        };
        let row = |k: &str, v: String| (k.to_string(), v);
        self.rows = vec![
            row("seed", self.seed.to_string()),
            row(
                "duration",
                format!("{:.0} s, {rounds} rounds", took.as_secs_f64()),
            ),
            row("invariant violations", violations.to_string()),
            row("agent incarnations", w.incarnation.to_string()),
            row(
                "reconnects (registered links)",
                format!(
                    "{} (slowest {:.1} s after a fault ended)",
                    w.links,
                    self.slowest_reconnect.as_secs_f64()
                ),
            ),
            row("SIGHUP reloads (besides faults)", self.reloads.to_string()),
            row(
                "alerts pushed / delivered",
                format!(
                    "{pushed} / {delivered} (lost in flight on cut links: {}; in the buffers of killed agents, overwritten ones included: {})",
                    ck.lost_in_flight, ck.lost_with_agent
                ),
            ),
            row("audit verify gap reports", ck.gap_reports.to_string()),
            row("agent at start (first quiet round)", usage(ck.first)),
            row("agent at end", usage(ck.last)),
            row(
                "log bytes per session",
                (w.log_bytes() / sessions).to_string(),
            ),
            row(
                "audit bytes per session",
                (w.audit_bytes() / sessions).to_string(),
            ),
        ];
    }

    /// The table, as Markdown.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "| figure | value |\n|---|---|");
        for (k, v) in &self.rows {
            let _ = writeln!(t, "| {k} | {v} |");
        }
        let _ = writeln!(t, "\n| faults injected, by kind | count |\n|---|---|");
        for (k, n) in &self.faults {
            let _ = writeln!(t, "| {k} | {n} |");
        }
        let total: u64 = self.faults.values().sum();
        let _ = writeln!(t, "| **total** | **{total}** |");
        let _ = writeln!(t, "\n| session type | outcome | count |\n|---|---|---|");
        for ((kind, outcome), n) in &self.sessions {
            let _ = writeln!(t, "| {kind} | {outcome} | {n} |");
        }
        t
    }
}
