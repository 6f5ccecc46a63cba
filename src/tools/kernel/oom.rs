//! oom_kills: OOM kill records of the kernel log, plus the kernel's own
//! count of them since boot (/proc/vmstat `oom_kill`, Linux 4.13+).

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::{clip_line, kernel_records};

/// Kernel log records scanned.
const SCAN: usize = 5000;

/// One "Killed process" record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OomKill {
    pub(crate) time: String,
    pub(crate) pid: u64,
    pub(crate) name: String,
    pub(crate) total_vm_kb: u64,
    pub(crate) anon_rss_kb: u64,
    pub(crate) uid: Option<u64>,
    pub(crate) oom_score_adj: Option<i64>,
}

/// `[t] Out of memory: Killed process 4242 (java) total-vm:9000kB,
/// anon-rss:8000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:…
/// oom_score_adj:0` (older kernels: "Kill process … score …" without
/// the figures: those give zeros).
pub(crate) fn parse_kill(line: &str) -> Option<OomKill> {
    let at = line.find("Killed process ")?;
    let time = line
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(t, _)| t.trim().to_string())
        .unwrap_or_default();
    let rest = &line[at + "Killed process ".len()..];
    let (pid, rest) = rest.split_once(' ')?;
    let pid = pid.parse().ok()?;
    let open = rest.find('(')?;
    let close = rest.rfind(')')?;
    let name = rest.get(open + 1..close)?.to_string();
    let field = |key: &str| -> Option<&str> {
        let i = rest.find(key)? + key.len();
        rest[i..].split([',', ' ']).next()
    };
    let kb = |key: &str| field(key).and_then(|v| v.trim_end_matches("kB").parse().ok());
    Some(OomKill {
        time,
        pid,
        name,
        total_vm_kb: kb("total-vm:").unwrap_or(0),
        anon_rss_kb: kb("anon-rss:").unwrap_or(0),
        uid: field("UID:").and_then(|v| v.parse().ok()),
        oom_score_adj: field("oom_score_adj:").and_then(|v| v.parse().ok()),
    })
}

/// `oom_kill N` of /proc/vmstat.
pub(crate) fn vmstat_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let max = args.int("max_events", 1, 50, 20)? as usize;
    let counter = std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|t| vmstat_oom_kills(&t));
    let (source, records) = match kernel_records(SCAN) {
        Ok(r) => r,
        Err(e) => {
            return Ok(json!({
                "oom_kills_since_boot": counter,
                "log_available": false,
                "reason": e,
            }));
        }
    };
    let mut kills: Vec<OomKill> = records.iter().filter_map(|(_, l)| parse_kill(l)).collect();
    let constrained = records
        .iter()
        .filter(|(_, l)| l.contains("Memory cgroup out of memory"))
        .count();
    let total = kills.len();
    // Newest first.
    kills.reverse();
    kills.truncate(max);
    let events: Vec<Value> = kills
        .into_iter()
        .map(|k| {
            json!({
                "time": k.time, "pid": k.pid, "name": clip_line(&k.name),
                "total_vm_kb": k.total_vm_kb, "anon_rss_kb": k.anon_rss_kb,
                "uid": k.uid, "oom_score_adj": k.oom_score_adj,
            })
        })
        .collect();
    Ok(json!({
        "oom_kills_since_boot": counter,
        "log_available": true,
        "source": source,
        "kills_in_log": total,
        "cgroup_limit_kills": constrained,
        "events": events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_records_are_parsed() {
        let text = include_str!("../fixtures/oom_dmesg");
        let kills: Vec<OomKill> = text.lines().filter_map(parse_kill).collect();
        assert_eq!(kills.len(), 2, "{kills:?}");
        assert_eq!(kills[0].pid, 4242);
        assert_eq!(kills[0].name, "java (worker)");
        assert_eq!(kills[0].total_vm_kb, 9_871_234);
        assert_eq!(kills[0].anon_rss_kb, 7_654_321);
        assert_eq!(kills[0].uid, Some(1000));
        assert_eq!(kills[0].oom_score_adj, Some(0));
        assert_eq!(kills[0].time, "12345.678901");
        assert_eq!(kills[1].name, "stress");
        assert_eq!(kills[1].uid, None, "old format");
        assert_eq!(vmstat_oom_kills("pgfault 1\noom_kill 7\n"), Some(7));
        assert_eq!(vmstat_oom_kills("pgfault 1\n"), None);
    }

    #[test]
    fn live_oom_kills_answer() {
        let v = run(&Args::empty()).expect("oom_kills");
        assert!(v["log_available"].is_boolean(), "{v}");
    }
}
