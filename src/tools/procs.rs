//! top_processes: the busiest processes by CPU (sampled) or by memory.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::args::Args;
use super::mask::mask_secrets;
use super::procfs::{
    PidStat, SAMPLE, parse_meminfo, parse_pid_stat, parse_status_uid, pids, read, round1,
};

/// Longest command line shown.
const MAX_CMDLINE: usize = 256;

fn stat_of(pid: u64) -> Option<PidStat> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn snapshot() -> HashMap<u64, PidStat> {
    pids().filter_map(|p| Some((p, stat_of(p)?))).collect()
}

/// Real uid from `/proc/<pid>/status`; None when the process is gone.
fn uid_of(pid: u64) -> Option<u64> {
    parse_status_uid(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The command line, arguments joined by spaces, secrets masked, at most
/// [`MAX_CMDLINE`] chars. Empty for kernel threads; None when gone.
pub(crate) fn cmdline_of(pid: u64) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // Masked here, before the cut, although the dispatcher masks every
    // output: cut first, a secret may no longer be recognisable (a JWT or
    // an AWS key id cut short) and its prefix would go out.
    Some(mask_secrets(&text).chars().take(MAX_CMDLINE).collect())
}

pub(crate) fn top_processes(args: &Args) -> Result<Value, String> {
    let by = args.choice("by", &["cpu", "memory"], "cpu")?;
    let limit = args.int("limit", 1, 50, 10)? as usize;
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    let mem_total = parse_meminfo(&read("/proc/meminfo")?)
        .get("MemTotal")
        .copied()
        .unwrap_or(0);

    let first = snapshot();
    let started = std::time::Instant::now();
    std::thread::sleep(SAMPLE);
    let second = snapshot();
    let secs = started.elapsed().as_secs_f64().max(0.001);

    let mut rows: Vec<(u64, PidStat, f64)> = second
        .into_iter()
        .map(|(pid, st)| {
            let before = first.get(&pid).map(|s| s.cpu_ticks).unwrap_or(st.cpu_ticks);
            let cpu = st.cpu_ticks.saturating_sub(before) as f64 / ticks / secs * 100.0;
            (pid, st, cpu)
        })
        .collect();
    let total = rows.len();
    match by {
        "memory" => rows.sort_by_key(|r| std::cmp::Reverse(r.1.rss_pages)),
        _ => rows.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.rss_pages.cmp(&a.1.rss_pages))),
    }
    // Rows are filled in best first; one whose process is gone by now is
    // skipped and the next one takes its place.
    let procs: Vec<Value> = rows
        .into_iter()
        .filter_map(|(pid, st, cpu)| {
            let uid = uid_of(pid)?;
            let cmdline = cmdline_of(pid)?;
            let rss = st.rss_pages.saturating_mul(page);
            Some(json!({
                "pid": pid,
                "ppid": st.ppid,
                "name": st.name,
                "state": st.state,
                "uid": uid,
                "threads": st.threads,
                "cpu_pct": round1(cpu),
                "rss_bytes": rss,
                "mem_pct": if mem_total == 0 { 0.0 } else { round1(rss as f64 * 100.0 / mem_total as f64) },
                "cmdline": cmdline,
            }))
        })
        .take(limit)
        .collect();
    Ok(json!({ "by": by, "total_processes": total, "processes": procs }))
}
