//! fd_limits: processes nearest their own RLIMIT_NOFILE, the limit that
//! "too many open files" hits (the system-wide limit rarely is).

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{pids, round1};

/// The soft `Max open files` of /proc/<pid>/limits.
pub(crate) fn parse_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Rows (pid, name, open, soft limit, pct), highest pct first.
pub(crate) fn rank(mut rows: Vec<(u64, String, u64, u64)>, limit: usize) -> Vec<Value> {
    let pct = |open: u64, max: u64| {
        if max == 0 {
            0.0
        } else {
            round1(open as f64 * 100.0 / max as f64)
        }
    };
    rows.sort_by(|a, b| pct(b.2, b.3).total_cmp(&pct(a.2, a.3)).then(b.2.cmp(&a.2)));
    rows.into_iter()
        .take(limit)
        .map(|(pid, name, open, max)| json!({ "pid": pid, "name": name, "open": open, "soft_limit": max, "used_pct": pct(open, max) }))
        .collect()
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 50, 10)? as usize;
    let mut unreadable = 0u64;
    let rows: Vec<(u64, String, u64, u64)> = pids()
        .filter_map(|pid| {
            let open = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
                Ok(d) => d.count() as u64,
                Err(_) => {
                    unreadable += 1;
                    return None;
                }
            };
            let max = parse_nofile(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim()
                .to_string();
            Some((pid, name, open, max))
        })
        .collect();
    let mut out = json!({ "processes": rank(rows, limit) });
    if unreadable > 0 {
        out["unreadable_processes"] = json!(unreadable);
        out["note"] = json!("processes of other users need root to be counted");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_ranking() {
        assert_eq!(
            parse_nofile(include_str!("../fixtures/proc_limits")),
            Some(1024)
        );
        assert_eq!(parse_nofile("Max processes 10 10 processes\n"), None);
        let v = rank(
            vec![
                (1, "a".into(), 100, 1000),
                (2, "b".into(), 900, 1024),
                (3, "c".into(), 5, 0),
            ],
            2,
        );
        assert_eq!(v[0]["name"], "b");
        assert_eq!(v[0]["used_pct"], 87.9);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn live_fd_limits() {
        let v = run(&Args::empty()).expect("fd_limits");
        assert!(!v["processes"].as_array().expect("rows").is_empty(), "{v}");
    }
}
