//! cpu, memory, uptime and fd_usage, plus the CPU/memory figures the
//! agent's heartbeat reports (kept here so both read /proc the same way).

use std::sync::Mutex;

use serde_json::{Value, json};

use super::args::Args;
use super::procfs::{
    CpuTimes, SAMPLE, count_stat_cpus, parse_file_nr, parse_loadavg, parse_meminfo,
    parse_os_pretty_name, parse_stat_cpu, parse_uptime, pids, read, round1,
};

/// /proc/stat text and its aggregate CPU times.
fn cpu_times() -> Result<(String, CpuTimes), String> {
    let text = read("/proc/stat")?;
    let times = parse_stat_cpu(&text).ok_or("/proc/stat has no cpu line")?;
    Ok((text, times))
}

/// CPUs online on the host (usage and load are host-wide, so the core
/// count is too, not this process's affinity or quota).
fn cores(stat: &str) -> u64 {
    match count_stat_cpus(stat) {
        0 => std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        n => n,
    }
}

pub(crate) fn cpu(_args: &Args) -> Result<Value, String> {
    let (_, a) = cpu_times()?;
    std::thread::sleep(SAMPLE);
    let (stat, b) = cpu_times()?;
    let (busy, iowait, steal) = a.pct_until(&b);
    let (l1, l5, l15, run, total) = parse_loadavg(&read("/proc/loadavg")?);
    Ok(json!({
        "cores": cores(&stat),
        "usage_pct": busy,
        "iowait_pct": iowait,
        "steal_pct": steal,
        "load1": l1,
        "load5": l5,
        "load15": l15,
        "runnable": run,
        "total_tasks": total,
    }))
}

pub(crate) fn memory(_args: &Args) -> Result<Value, String> {
    let m = parse_meminfo(&read("/proc/meminfo")?);
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    let total = get("MemTotal");
    if total == 0 {
        return Err("/proc/meminfo has no MemTotal".into());
    }
    let available = get("MemAvailable");
    let used = total.saturating_sub(available);
    let swap_total = get("SwapTotal");
    let swap_used = swap_total.saturating_sub(get("SwapFree"));
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            round1(a as f64 * 100.0 / b as f64)
        }
    };
    Ok(json!({
        "total_bytes": total,
        "available_bytes": available,
        "used_bytes": used,
        "used_pct": pct(used, total),
        "free_bytes": get("MemFree"),
        "buffers_bytes": get("Buffers"),
        "cached_bytes": get("Cached"),
        "swap_total_bytes": swap_total,
        "swap_used_bytes": swap_used,
        "swap_used_pct": pct(swap_used, swap_total),
    }))
}

pub(crate) fn uptime(_args: &Args) -> Result<Value, String> {
    let up = parse_uptime(&read("/proc/uptime")?).ok_or("/proc/uptime is malformed")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let os = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_pretty_name(&t))
        .unwrap_or_default();
    Ok(json!({
        "uptime_sec": round1(up),
        "boot_time_unix": (now - up).max(0.0).round() as i64,
        "hostname": read("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        "kernel_release": read("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "os_pretty_name": os,
    }))
}

pub(crate) fn fd_usage(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 50, 10)? as usize;
    let (allocated, max) =
        parse_file_nr(&read("/proc/sys/fs/file-nr")?).ok_or("/proc/sys/fs/file-nr is malformed")?;
    // Processes whose fd directory cannot be listed (other users' without
    // privileges, or gone) are left out.
    let mut top: Vec<(u64, String, u64)> = pids()
        .filter_map(|pid| {
            let n = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
            let name = read(&format!("/proc/{pid}/comm")).ok()?.trim().to_string();
            Some((pid, name, n))
        })
        .collect();
    top.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    top.truncate(limit);
    let top: Vec<Value> = top
        .into_iter()
        .map(|(pid, name, n)| json!({"pid": pid, "name": name, "open_fds": n}))
        .collect();
    Ok(json!({
        "allocated": allocated,
        "max": max,
        "used_pct": if max == 0 { 0.0 } else { round1(allocated as f64 * 100.0 / max as f64) },
        "top": top,
    }))
}

/// Host CPU busy percent since the previous call in this process (the
/// first call measures since boot). `None` when /proc/stat is unreadable.
pub(crate) fn cpu_busy_pct_since_last() -> Option<f64> {
    static LAST: Mutex<Option<CpuTimes>> = Mutex::new(None);
    let (_, now) = cpu_times().ok()?;
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let prev = last.replace(now).unwrap_or_default();
    Some(prev.pct_until(&now).0)
}

/// Memory used percent ((MemTotal − MemAvailable) / MemTotal).
pub(crate) fn mem_used_pct() -> Option<f64> {
    let m = parse_meminfo(&read("/proc/meminfo").ok()?);
    let total = *m.get("MemTotal")?;
    let avail = *m.get("MemAvailable")?;
    if total == 0 {
        return None;
    }
    Some(round1(
        total.saturating_sub(avail) as f64 * 100.0 / total as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_figures_are_percentages() {
        let c = cpu_busy_pct_since_last().expect("cpu");
        assert!((0.0..=100.0).contains(&c), "{c}");
        let m = mem_used_pct().expect("mem");
        assert!(m > 0.0 && m <= 100.0, "{m}");
    }
}
