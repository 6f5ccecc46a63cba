//! The invariants, checked after every fault once the agent is back and
//! its sessions drained (issue 25, PROTOCOL §5, §6, §7):
//!
//! - every accepted session ends with exactly one `done` on a link that
//!   stayed up; on a link that dropped, at most one (§5: "while the
//!   connection is up"), and never output after it; the session table is
//!   empty afterwards;
//! - no process of a shell outlives its session or the agent;
//! - `audit verify` passes, or reports only a gap the agent recorded after
//!   a fault that can make one (a kill, a full disk); every act the trail
//!   shows started has its outcome;
//! - alerts: what the agent took is what its counters say it pushed, and
//!   pushed = sent + dropped + buffered; what the server got of them is
//!   everything sent, except bytes a fault cut in flight (a proxy that
//!   acknowledged and then dropped them, out of the agent's sight); nothing
//!   arrives that was never pushed;
//! - the agent is back and registered within the reconnect policy (in the
//!   driver, which knows when the fault was undone);
//! - its fds, threads and RSS come back to the incarnation's baseline.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::process::until;
use crate::faults::Aftermath;
use crate::ledger::lock;
use crate::world::World;

/// Fds, threads and resident bytes of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fds: u64,
    pub threads: u64,
    pub rss: u64,
}

pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        fds,
        threads: field("Threads")?,
        rss: field("VmRSS")? * 1024,
    })
}

/// Allowed above the baseline once the agent is quiet again.
const FD_SLACK: u64 = 2;
const THREAD_SLACK: u64 = 4;
const RSS_SLACK: u64 = 64 << 20;

/// What the checks carry from one round to the next.
#[derive(Default)]
pub struct Checker {
    baselines: HashMap<u64, Usage>,
    /// Per incarnation: (missing, dropped, sent) at the last check.
    alerts: HashMap<u64, (u64, u64, u64)>,
    /// A kill or a full disk happened: the agent may have recorded a gap.
    pub gaps_allowed: bool,
    pub first: Option<Usage>,
    pub last: Option<Usage>,
    /// Alerts lost in flight on cut links, and with killed agents.
    pub lost_in_flight: u64,
    pub lost_with_agent: u64,
    pub gap_reports: u64,
}

impl Checker {
    /// All the invariants; the first that fails, in words.
    pub async fn check(&mut self, w: &mut World, after: &Aftermath) -> Result<(), String> {
        if after.killed {
            self.gaps_allowed = true;
        }
        if let Some(v) = &after.violation {
            return Err(v.clone());
        }
        self.sessions(w).await?;
        self.shells(w).await?;
        self.audit(w)?;
        self.alerts(w, after).await?;
        self.resources(w).await
    }

    async fn sessions(&mut self, w: &mut World) -> Result<(), String> {
        {
            let l = lock(&w.ledger);
            if let Some(p) = l.problems.first() {
                return Err(p.clone());
            }
            let up = w.link.as_ref().map(|k| k.no);
            for (sid, s) in &l.sessions {
                if Some(s.link) != up || l.is_closed(s.link) {
                    continue;
                }
                match &s.ack {
                    None => {
                        return Err(format!(
                            "session {sid} ({}) got no ack on a link that stayed up",
                            s.kind
                        ));
                    }
                    Some(Ok(())) if s.dones != 1 => {
                        return Err(format!(
                            "session {sid} ({}) ended with {} done on a link that stayed up",
                            s.kind, s.dones
                        ));
                    }
                    Some(Err(_)) if s.dones != 0 => {
                        return Err(format!("refused session {sid} sent a done"));
                    }
                    _ => {}
                }
            }
        }
        let mut left = Vec::new();
        let empty = until(Duration::from_secs(20), || match w.status() {
            Some(s) => {
                left = s["sessions"].as_array().cloned().unwrap_or_default();
                left.is_empty()
            }
            None => false,
        })
        .await;
        if !empty {
            return Err(format!("sessions still in the agent's table: {left:?}"));
        }
        Ok(())
    }

    async fn shells(&mut self, w: &World) -> Result<(), String> {
        if !until(Duration::from_secs(10), || w.shell_processes().is_empty()).await {
            return Err(format!(
                "shell processes outlived their sessions: {:?}",
                w.shell_processes()
            ));
        }
        Ok(())
    }

    fn audit(&mut self, w: &World) -> Result<(), String> {
        let out = w
            .home
            .command()
            .args(["audit", "verify"])
            .output()
            .map_err(|e| format!("audit verify: {e}"))?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(1) if self.gaps_allowed && said.contains("the agent recorded a gap") => {
                self.gap_reports += 1;
            }
            _ => return Err(format!("audit verify: {:?}: {said}", out.status.code())),
        }
        // Every act started has its outcome (a killed agent's are closed
        // as `killed` by the next start).
        let recs = w.audit_all();
        for r in recs.iter().filter(|r| r["event"] == "started") {
            let closed = recs
                .iter()
                .any(|o| o["event"] == "outcome" && o["act"] == r["seq"]);
            if !closed {
                return Err(format!("an act started with no outcome: {r}"));
            }
        }
        Ok(())
    }

    async fn alerts(&mut self, w: &World, after: &Aftermath) -> Result<(), String> {
        let l = lock(&w.ledger).alerts.clone();
        if let Some(k) = l
            .keys()
            .find(|k| !(k.starts_with("a-") || k.starts_with("ingest-")))
        {
            return Err(format!("the server got an alert nobody pushed: {k:?}"));
        }
        if after.killed {
            // The buffer of the agent that died went with it.
            let inc = w.incarnation - 1;
            let lost = w.pushed.get(&inc).map_or(0, |keys| {
                keys.iter().filter(|k| !l.contains_key(*k)).count() as u64
            });
            let before = self.alerts.get(&inc).map_or(0, |a| a.0);
            self.lost_with_agent += lost.saturating_sub(before);
        }
        if !w.link_up() {
            return Ok(());
        }
        let mut s = serde_json::Value::Null;
        // Drained, and the batch taken from the buffer last written (while
        // it is being written it is neither buffered nor sent).
        let drained = until(Duration::from_secs(20), || match w.status() {
            Some(v) => {
                s = v;
                let a = &s["alerts"];
                let n = |k: &str| a[k].as_u64().unwrap_or(0);
                n("buffered") == 0 && n("sent") + n("dropped") == n("pushed")
            }
            None => false,
        })
        .await;
        if !drained {
            return Err(format!(
                "alerts neither sent nor dropped on a live link after 20 s: {}",
                s["alerts"]
            ));
        }
        let a = s["alerts"].clone();
        let n = |k: &str| a[k].as_u64().unwrap_or(0);
        let keys = w.pushed.get(&w.incarnation).cloned().unwrap_or_default();
        if n("pushed") != keys.len() as u64 {
            return Err(format!(
                "the agent took {} alerts but counts {} pushed: {a}",
                keys.len(),
                n("pushed")
            ));
        }
        if n("sent") + n("dropped") + n("buffered") != n("pushed") {
            return Err(format!("alerts vanished inside the agent: {a}"));
        }
        let (m0, d0, s0) = self.alerts.get(&w.incarnation).copied().unwrap_or_default();
        let (dropped, sent) = (
            n("dropped").saturating_sub(d0),
            n("sent").saturating_sub(s0),
        );
        // What was sent is on its way: give it time to arrive (all of it,
        // unless a cut lost some).
        let missing_now = || {
            let l = lock(&w.ledger);
            keys.iter().filter(|k| !l.alerts.contains_key(*k)).count() as u64
        };
        let mut missing = missing_now();
        until(Duration::from_secs(5), || {
            missing = missing_now();
            missing.saturating_sub(m0) <= dropped
        })
        .await;
        let allowed = dropped + if after.cut { sent } else { 0 };
        let more = missing.saturating_sub(m0);
        if more > allowed {
            return Err(format!(
                "{} alerts vanished: {more} more missing at the server, {dropped} more reported \
                 dropped, link cut: {} ({a})",
                more - allowed,
                after.cut
            ));
        }
        self.lost_in_flight += more.saturating_sub(dropped);
        self.alerts
            .insert(w.incarnation, (missing, n("dropped"), n("sent")));
        Ok(())
    }

    async fn resources(&mut self, w: &World) -> Result<(), String> {
        let pid = w.agent.pid();
        let Some(now) = usage(pid) else {
            return Err(format!("the agent (pid {pid}) is gone"));
        };
        let Some(&base) = self.baselines.get(&w.incarnation) else {
            self.baselines.insert(w.incarnation, now);
            self.first.get_or_insert(now);
            self.last = Some(now);
            return Ok(());
        };
        let mut seen = now;
        let back = until(Duration::from_secs(20), || {
            seen = usage(pid).unwrap_or(seen);
            seen.fds <= base.fds + FD_SLACK
                && seen.threads <= base.threads + THREAD_SLACK
                && seen.rss <= base.rss + RSS_SLACK
        })
        .await;
        self.last = Some(seen);
        if !back {
            return Err(format!(
                "the agent did not come back to its baseline: {seen:?}, baseline {base:?}"
            ));
        }
        Ok(())
    }
}
