//! ntp: the kernel's own view of clock discipline, from adjtimex(2) in
//! read-only mode (modes = 0, no privilege needed): whatever daemon
//! disciplines the clock (chronyd, ntpd, systemd-timesyncd) reports
//! through it.

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{parse_pid_stat, pids};

/// STA_UNSYNC: the clock is not synchronised.
const STA_UNSYNC: i32 = 0x0040;
/// STA_NANO: `offset` is in nanoseconds rather than microseconds.
const STA_NANO: i32 = 0x2000;
/// adjtimex's return value for an unsynchronised clock.
const TIME_ERROR: i32 = 5;

/// What adjtimex says, in the tool's terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clock {
    pub(crate) state: i32,
    pub(crate) status: i32,
    /// Raw `offset` (µs, or ns with STA_NANO).
    pub(crate) offset: i64,
    pub(crate) maxerror_us: i64,
    pub(crate) esterror_us: i64,
}

/// The JSON answer for one reading and the daemons found.
pub(crate) fn report(c: Clock, daemons: &[&str]) -> Value {
    let synced = c.state != TIME_ERROR && c.status & STA_UNSYNC == 0;
    let offset_ms = if c.status & STA_NANO != 0 {
        c.offset as f64 / 1e6
    } else {
        c.offset as f64 / 1e3
    };
    json!({
        "synchronized": synced,
        "offset_ms": (offset_ms * 1000.0).round() / 1000.0,
        "estimated_error_ms": c.esterror_us as f64 / 1e3,
        "max_error_ms": c.maxerror_us as f64 / 1e3,
        "clock_state": match c.state { 0 => "ok", 1 => "insert_leap", 2 => "delete_leap", 3 => "leap_in_progress", 4 => "leap_done", 5 => "unsynchronized", _ => "unknown" },
        "time_daemons": daemons,
    })
}

fn read_clock() -> Result<Clock, String> {
    // SAFETY: an all-zero timex is valid; modes = 0 only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a live, properly sized out-parameter.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(format!(
            "adjtimex failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Clock {
        state,
        status: tx.status,
        offset: tx.offset as i64,
        maxerror_us: tx.maxerror as i64,
        esterror_us: tx.esterror as i64,
    })
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    const DAEMONS: [&str; 5] = ["chronyd", "ntpd", "systemd-timesyn", "openntpd", "ptp4l"];
    let mut found: Vec<&str> = pids()
        .filter_map(|p| parse_pid_stat(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?))
        .filter_map(|s| DAEMONS.iter().find(|d| **d == s.name).copied())
        .collect();
    found.sort();
    found.dedup();
    Ok(report(read_clock()?, &found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_judged() {
        let synced = Clock {
            state: 0,
            status: 0x2001,
            offset: 1_500_000,
            maxerror_us: 16000,
            esterror_us: 500,
        };
        let v = report(synced, &["chronyd"]);
        assert_eq!(v["synchronized"], true);
        assert_eq!(v["offset_ms"], 1.5, "nanoseconds with STA_NANO");
        assert_eq!(v["max_error_ms"], 16.0);
        let unsynced = Clock {
            state: 5,
            status: STA_UNSYNC,
            offset: -2500,
            maxerror_us: 16_000_000,
            esterror_us: 16_000_000,
        };
        let v = report(unsynced, &[]);
        assert_eq!(v["synchronized"], false);
        assert_eq!(v["offset_ms"], -2.5, "microseconds without");
        assert_eq!(v["clock_state"], "unsynchronized");
    }

    #[test]
    fn live_clock() {
        let v = run(&Args::empty()).expect("ntp");
        assert!(v["synchronized"].is_boolean(), "{v}");
    }
}
