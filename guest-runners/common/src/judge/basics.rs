//! Judges of the first tools: cpu, memory, disks, mounts, processes,
//! interfaces, TCP, descriptors, systemd units, kernel log.

use serde_json::Value;

use super::level;
use crate::{Finding, Severity, fmt_bytes, int, list, num, text};

pub(super) fn cpu(v: &Value) -> Vec<Finding> {
    let cores = int(v, "cores").max(1) as f64;
    let usage = num(v, "usage_pct");
    let load5 = num(v, "load5");
    let per_core = load5 / cores;
    let mut f = vec![
        Finding::new(
            level(usage, 80.0, 90.0),
            "cpu",
            format!("CPU busy {usage:.1} % over {cores} cores"),
        ),
        Finding::new(
            level(per_core, 3.0, 5.0),
            "load",
            format!(
                "load {:.2} / {load5:.2} / {:.2} (1/5/15 min) = {per_core:.2} per core over 5 min",
                num(v, "load1"),
                num(v, "load15")
            ),
        ),
    ];
    let iowait = num(v, "iowait_pct");
    if iowait >= 20.0 {
        f.push(Finding::new(
            Severity::Warning,
            "cpu",
            format!("iowait {iowait:.1} %: processes wait on disk"),
        ));
    }
    let steal = num(v, "steal_pct");
    if steal >= 10.0 {
        f.push(Finding::new(
            Severity::Warning,
            "cpu",
            format!("steal {steal:.1} %: the hypervisor takes CPU time"),
        ));
    }
    f
}

pub(super) fn memory(v: &Value) -> Vec<Finding> {
    let used = num(v, "used_pct");
    let mut f = vec![Finding::new(
        level(used, 85.0, 90.0),
        "memory",
        format!(
            "memory used {used:.1} % ({} of {}, {} available)",
            fmt_bytes(int(v, "used_bytes")),
            fmt_bytes(int(v, "total_bytes")),
            fmt_bytes(int(v, "available_bytes"))
        ),
    )];
    if int(v, "swap_total_bytes") > 0 {
        let swap = num(v, "swap_used_pct");
        f.push(Finding::new(
            level(swap, 10.0, 30.0),
            "swap",
            format!(
                "swap used {swap:.1} % ({} of {})",
                fmt_bytes(int(v, "swap_used_bytes")),
                fmt_bytes(int(v, "swap_total_bytes"))
            ),
        ));
    }
    f
}

pub(super) fn disk(v: &Value) -> Vec<Finding> {
    let mut f = Vec::new();
    for fs in list(v, "filesystems") {
        let used = num(fs, "used_pct");
        let mount = text(fs, "mount_point");
        f.push(Finding::new(
            level(used, 90.0, 99.0),
            "disk",
            format!(
                "{mount} ({}) used {used:.1} % ({} free of {})",
                text(fs, "fs_type"),
                fmt_bytes(int(fs, "available_bytes")),
                fmt_bytes(int(fs, "total_bytes"))
            ),
        ));
        let inodes = num(fs, "inodes_used_pct");
        if inodes >= 90.0 {
            f.push(Finding::new(
                level(inodes, 90.0, 99.0),
                "disk",
                format!("{mount} inodes used {inodes:.1} %"),
            ));
        }
    }
    if f.is_empty() {
        f.push(Finding::new(
            Severity::Ok,
            "disk",
            "no real filesystems reported",
        ));
    }
    f
}

pub(super) fn mounts(v: &Value) -> Vec<Finding> {
    let all = list(v, "mounts");
    let real = ["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs"];
    let mut f = vec![Finding::new(
        Severity::Ok,
        "mounts",
        format!("{} mounts", all.len()),
    )];
    for m in all {
        let fs_type = text(m, "fs_type");
        if real.contains(&fs_type) && m.get("read_only").and_then(Value::as_bool) == Some(true) {
            f.push(Finding::new(
                Severity::Warning,
                "mounts",
                format!(
                    "{} ({fs_type}) is mounted read-only",
                    text(m, "mount_point")
                ),
            ));
        }
    }
    f
}

pub(super) fn top(v: &Value) -> Vec<Finding> {
    let by = text(v, "by");
    let rows: Vec<String> = list(v, "processes")
        .iter()
        .take(5)
        .map(|p| {
            format!(
                "{} (pid {}) cpu {:.1} % rss {}",
                text(p, "name"),
                int(p, "pid"),
                num(p, "cpu_pct"),
                fmt_bytes(int(p, "rss_bytes"))
            )
        })
        .collect();
    vec![Finding::new(
        Severity::Ok,
        "processes",
        format!(
            "top by {by} of {}: {}",
            int(v, "total_processes"),
            if rows.is_empty() {
                "none".to_string()
            } else {
                rows.join("; ")
            }
        ),
    )]
}

pub(super) fn interfaces(v: &Value) -> Vec<Finding> {
    let mut f = Vec::new();
    for i in list(v, "interfaces") {
        let name = text(i, "name");
        let errs = int(i, "rx_errors") + int(i, "tx_errors");
        let drops = int(i, "rx_dropped") + int(i, "tx_dropped");
        let sev = if errs + drops > 0 {
            Severity::Warning
        } else {
            Severity::Ok
        };
        f.push(Finding::new(
            sev,
            "network",
            format!(
                "{name} {}: rx {} tx {}, {errs} errors, {drops} drops",
                text(i, "oper_state"),
                fmt_bytes(int(i, "rx_bytes")),
                fmt_bytes(int(i, "tx_bytes"))
            ),
        ));
    }
    f
}

pub(super) fn tcp(v: &Value) -> Vec<Finding> {
    let states = v.get("states");
    let state = |s: &str| {
        states
            .and_then(|m| m.get(s))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let tw = state("TIME_WAIT");
    let cw = state("CLOSE_WAIT");
    vec![Finding::new(
        level(tw as f64, 5000.0, 20000.0).max(level(cw as f64, 100.0, 1000.0)),
        "tcp",
        format!(
            "{} sockets: {} established, {} listening, {tw} time-wait, {cw} close-wait; {} listening ports",
            int(v, "total"),
            state("ESTABLISHED"),
            state("LISTEN"),
            list(v, "listening_ports").len()
        ),
    )]
}

pub(super) fn fds(v: &Value) -> Vec<Finding> {
    let used = num(v, "used_pct");
    let top: Vec<String> = list(v, "top")
        .iter()
        .take(3)
        .map(|p| format!("{} ({})", text(p, "name"), int(p, "open_fds")))
        .collect();
    vec![Finding::new(
        level(used, 80.0, 90.0),
        "fd",
        format!(
            "file descriptors {} of {} ({used:.1} %); most: {}",
            int(v, "allocated"),
            int(v, "max"),
            top.join(", ")
        ),
    )]
}

pub(super) fn units(v: &Value) -> Vec<Finding> {
    if v.get("available").and_then(Value::as_bool) != Some(true) {
        return vec![Finding::not_checked(
            "systemd",
            &format!("systemd not available: {}", text(v, "reason")),
            None,
        )];
    }
    let failed: Vec<&str> = list(v, "units").iter().map(|u| text(u, "unit")).collect();
    if failed.is_empty() {
        vec![Finding::new(Severity::Ok, "systemd", "no failed units")]
    } else {
        vec![Finding::new(
            Severity::Warning,
            "systemd",
            format!("{} failed units: {}", failed.len(), failed.join(", ")),
        )]
    }
}

pub(super) fn kernel(v: &Value) -> Vec<Finding> {
    let patterns = [
        "out of memory",
        "oom-kill",
        "i/o error",
        "segfault",
        "call trace",
    ];
    let hits: Vec<&str> = list(v, "lines")
        .iter()
        .filter_map(Value::as_str)
        .filter(|l| {
            let l = l.to_lowercase();
            patterns.iter().any(|p| l.contains(p))
        })
        .collect();
    if hits.is_empty() {
        vec![Finding::new(
            Severity::Ok,
            "kernel",
            format!(
                "{} recent kernel log lines, nothing alarming",
                list(v, "lines").len()
            ),
        )]
    } else {
        vec![Finding::new(
            Severity::Warning,
            "kernel",
            format!(
                "{} alarming kernel log lines, latest: {}",
                hits.len(),
                hits[hits.len() - 1]
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::judge;
    use super::*;
    use serde_json::json;

    fn worst(f: &[Finding]) -> Severity {
        f.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }

    #[test]
    fn memory_thresholds() {
        let m = |pct: f64| json!({"used_pct": pct, "total_bytes": 100, "used_bytes": 50, "available_bytes": 50});
        assert_eq!(worst(&judge("memory", &m(84.0))), Severity::Ok);
        assert_eq!(worst(&judge("memory", &m(85.0))), Severity::Warning);
        assert_eq!(worst(&judge("memory", &m(93.0))), Severity::Critical);
        let swap = |pct: f64| json!({"used_pct": 10.0, "swap_total_bytes": 100, "swap_used_bytes": 20, "swap_used_pct": pct});
        assert_eq!(worst(&judge("memory", &swap(5.0))), Severity::Ok);
        assert_eq!(worst(&judge("memory", &swap(20.0))), Severity::Warning);
        assert_eq!(worst(&judge("memory", &swap(60.0))), Severity::Critical);
    }

    #[test]
    fn load_is_judged_per_core() {
        let c = |load: f64| json!({"cores": 4, "usage_pct": 10.0, "load5": load});
        assert_eq!(worst(&judge("cpu", &c(11.0))), Severity::Ok);
        assert_eq!(worst(&judge("cpu", &c(12.0))), Severity::Warning);
        assert_eq!(worst(&judge("cpu", &c(20.0))), Severity::Critical);
    }

    #[test]
    fn disk_and_inodes() {
        let d = json!({"filesystems": [
            {"mount_point": "/", "used_pct": 99.5, "inodes_used_pct": 10.0},
            {"mount_point": "/var", "used_pct": 10.0, "inodes_used_pct": 90.0}
        ]});
        let f = judge("disk_usage", &d);
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f.iter().any(|x| x.text.contains("/var inodes")));
    }

    #[test]
    fn network_errors_and_failed_units_warn() {
        let n = json!({"interfaces": [{"name": "eth0", "rx_errors": 3}]});
        assert_eq!(worst(&judge("network_interfaces", &n)), Severity::Warning);
        let u = json!({"available": true, "units": [{"unit": "nginx.service"}]});
        assert!(judge("failed_units", &u)[0].text.contains("nginx.service"));
        let k = json!({"lines": ["[1.0] Out of memory: Killed process 42"]});
        assert_eq!(worst(&judge("kernel_log", &k)), Severity::Warning);
    }
}
