//! Judges of the kernel, block and process tools.

use serde_json::Value;

use super::level;
use crate::{Finding, Severity, fmt_bytes, int, list, num, text};

pub(super) fn judge(tool: &str, v: &Value) -> Option<Vec<Finding>> {
    Some(match tool {
        "pressure" => pressure(v),
        "vmstat" => vmstat(v),
        "oom_kills" => oom(v),
        "kernel_log_search" => vec![Finding::new(
            Severity::Ok,
            "kernel",
            format!(
                "{} kernel log lines at {} or worse",
                int(v, "matched"),
                text(v, "level")
            ),
        )],
        "thermal" => thermal(v),
        "sysctl" => sysctl(v),
        "security_modules" => secmod(v),
        "coredumps" => vec![Finding::new(
            if int(v, "core_files") > 0 {
                Severity::Warning
            } else {
                Severity::Ok
            },
            "kernel",
            format!(
                "{} core files; core_pattern {}",
                int(v, "core_files"),
                text(v, "core_pattern")
            ),
        )],
        "cgroup_usage" => vec![Finding::new(
            if int(v, "oom_kills") > 0 {
                Severity::Warning
            } else {
                Severity::Ok
            },
            "oom",
            format!(
                "cgroup {}: memory {} of {}, {} OOM kills, {} throttled periods",
                text(v, "path"),
                fmt_bytes(int(v, "memory_bytes")),
                v.get("memory_max_bytes")
                    .and_then(Value::as_u64)
                    .map(fmt_bytes)
                    .unwrap_or_else(|| "no limit".into()),
                int(v, "oom_kills"),
                int(v, "cpu_throttled_periods")
            ),
        )],
        "disk_io" => diskio(v),
        "md_raid" => raid(v),
        "zombies" => zombies(v),
        "fd_limits" => fd_limits(v),
        _ => return None,
    })
}

pub(super) fn uptime(v: &Value) -> Vec<Finding> {
    let up = num(v, "uptime_sec");
    vec![Finding::new(
        if up < 600.0 {
            Severity::Critical
        } else {
            Severity::Ok
        },
        "uptime",
        format!(
            "{} up {:.1} days, kernel {}{}",
            text(v, "hostname"),
            up / 86400.0,
            text(v, "kernel_release"),
            if up < 600.0 {
                " (rebooted less than 10 minutes ago)"
            } else {
                ""
            }
        ),
    )]
}

fn pressure(v: &Value) -> Vec<Finding> {
    let mut f = Vec::new();
    if let Some(res) = v.get("resources").and_then(Value::as_object) {
        for (r, kinds) in res {
            for kind in ["some", "full"] {
                let Some(k) = kinds.get(kind) else { continue };
                let avg10 = num(k, "avg10");
                f.push(Finding::new(
                    level(avg10, 10.0, 25.0),
                    "pressure",
                    format!(
                        "{r} {kind}: {avg10:.2} % stalled (10 s), {:.2} % (60 s), {:.2} % (300 s)",
                        num(k, "avg60"),
                        num(k, "avg300")
                    ),
                ));
            }
        }
    }
    f
}

fn vmstat(v: &Value) -> Vec<Finding> {
    let r = &v["per_sec"];
    let swap = num(r, "pswpin") + num(r, "pswpout");
    vec![Finding::new(
        if swap > 0.0 {
            Severity::Warning
        } else {
            Severity::Ok
        },
        "swap",
        format!(
            "{swap:.0} pages/s swapped, {:.0} major faults/s, {:.0} direct reclaim scans/s",
            num(r, "pgmajfault"),
            num(r, "pgscan_direct")
        ),
    )]
}

fn oom(v: &Value) -> Vec<Finding> {
    let since_boot = v.get("oom_kills_since_boot").and_then(Value::as_u64);
    let events = list(v, "events");
    let mut f = vec![Finding::new(
        if since_boot.unwrap_or(events.len() as u64) > 0 {
            Severity::Warning
        } else {
            Severity::Ok
        },
        "oom",
        match since_boot {
            Some(n) => format!(
                "{n} OOM kills since boot, {} in the kernel log",
                int(v, "kills_in_log")
            ),
            None => format!("{} OOM kills in the kernel log", int(v, "kills_in_log")),
        },
    )];
    for e in events.iter().take(3) {
        f.push(Finding::new(
            Severity::Warning,
            "oom",
            format!(
                "killed {} (pid {}, uid {}) at {} with {} anon RSS",
                text(e, "name"),
                int(e, "pid"),
                int(e, "uid"),
                text(e, "time"),
                fmt_bytes(int(e, "anon_rss_kb") * 1024)
            ),
        ));
    }
    f
}

fn thermal(v: &Value) -> Vec<Finding> {
    list(v, "zones")
        .iter()
        .filter_map(|z| {
            let t = z.get("temp_c")?.as_f64()?;
            let crit = z
                .get("critical_c")
                .and_then(Value::as_f64)
                .unwrap_or(f64::INFINITY);
            Some(Finding::new(
                level(t, 80.0, crit),
                "thermal",
                format!("{} ({}) at {t:.1} °C", text(z, "zone"), text(z, "type")),
            ))
        })
        .collect()
}

fn sysctl(v: &Value) -> Vec<Finding> {
    let val = |k: &str| {
        v["values"]
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok())
    };
    let mut f = Vec::new();
    if let Some(n) = val("net.core.somaxconn") {
        f.push(Finding::new(
            if n < 65535 {
                Severity::Warning
            } else {
                Severity::Ok
            },
            "sysctl",
            format!("net.core.somaxconn = {n} (recommended ≥ 65535)"),
        ));
    }
    if let Some(n) = val("vm.swappiness") {
        f.push(Finding::new(
            if n > 10 {
                Severity::Warning
            } else {
                Severity::Ok
            },
            "sysctl",
            format!("vm.swappiness = {n} (recommended ≤ 10)"),
        ));
    }
    let taint: Vec<&str> = list(v, "taint").iter().filter_map(Value::as_str).collect();
    if !taint.is_empty() {
        f.push(Finding::new(
            Severity::Warning,
            "sysctl",
            format!("kernel tainted: {}", taint.join("; ")),
        ));
    }
    f
}

fn secmod(v: &Value) -> Vec<Finding> {
    let mode = v["selinux"]["mode"].as_str().unwrap_or("");
    let configured = v["selinux"]["configured"].as_str();
    let aa = &v["apparmor"];
    let mismatch =
        configured.is_some_and(|c| c != mode && !(c == "disabled" && mode == "disabled"));
    vec![Finding::new(
        if mismatch {
            Severity::Warning
        } else {
            Severity::Ok
        },
        "secmod",
        format!(
            "SELinux {mode}{}; AppArmor {}",
            configured
                .map(|c| format!(" (configured {c})"))
                .unwrap_or_default(),
            if aa["present"] == true {
                format!(
                    "enabled={}, {} profiles enforcing",
                    aa["enabled"],
                    int(aa, "profiles_enforce")
                )
            } else {
                "absent".into()
            }
        ),
    )]
}

fn diskio(v: &Value) -> Vec<Finding> {
    let mut f = Vec::new();
    for d in list(v, "devices") {
        let name = text(d, "device");
        let (kind, warn, crit) = if name.starts_with("nvme") {
            ("NVMe", 10.0, 50.0)
        } else {
            match d.get("rotational").and_then(Value::as_bool) {
                Some(true) => ("HDD", 50.0, 200.0),
                Some(false) => ("SSD", 20.0, 100.0),
                None => ("unknown", 100.0, 500.0),
            }
        };
        let aw = num(d, "await_ms");
        f.push(Finding::new(
            level(aw, warn, crit),
            "diskio",
            format!(
                "{name} ({kind}): await {aw:.1} ms, util {:.1} %, {:.0} r/s {:.0} w/s, {:.1} MB/s read {:.1} MB/s written",
                num(d, "util_pct"),
                num(d, "read_iops"),
                num(d, "write_iops"),
                num(d, "read_mb_s"),
                num(d, "write_mb_s")
            ),
        ));
    }
    if f.is_empty() {
        f.push(Finding::new(
            Severity::Ok,
            "diskio",
            "no disk did any I/O during the sample",
        ));
    }
    f
}

fn raid(v: &Value) -> Vec<Finding> {
    let arrays = list(v, "arrays");
    if arrays.is_empty() {
        return vec![Finding::new(
            Severity::Ok,
            "raid",
            "no software RAID arrays",
        )];
    }
    arrays
        .iter()
        .map(|a| {
            let degraded = a["degraded"] == true;
            Finding::new(
                if degraded {
                    Severity::Critical
                } else {
                    Severity::Ok
                },
                "raid",
                format!(
                    "{} {} [{}]{}",
                    text(a, "array"),
                    text(a, "level"),
                    text(a, "status"),
                    if degraded { " degraded" } else { "" }
                ),
            )
        })
        .collect()
}

fn zombies(v: &Value) -> Vec<Finding> {
    let n = int(v, "count");
    let parents: Vec<String> = list(v, "parents")
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{} (pid {}) holds {}",
                text(p, "name"),
                int(p, "pid"),
                int(p, "zombies")
            )
        })
        .collect();
    vec![Finding::new(
        if n > 20 {
            Severity::Critical
        } else if n > 0 {
            Severity::Warning
        } else {
            Severity::Ok
        },
        "zombie",
        if n == 0 {
            "no zombie processes".to_string()
        } else {
            format!("{n} zombie processes; {}", parents.join(", "))
        },
    )]
}

fn fd_limits(v: &Value) -> Vec<Finding> {
    list(v, "processes")
        .iter()
        .take(3)
        .map(|p| {
            let pct = num(p, "used_pct");
            Finding::new(
                level(pct, 80.0, 90.0),
                "procfd",
                format!(
                    "{} (pid {}) has {} of {} files open ({pct:.1} %)",
                    text(p, "name"),
                    int(p, "pid"),
                    int(p, "open"),
                    int(p, "soft_limit")
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::judge;
    use crate::Severity;
    use serde_json::json;

    fn worst(tool: &str, v: serde_json::Value) -> Severity {
        judge(tool, &v)
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    #[test]
    fn reference_thresholds() {
        let psi = |a: f64| json!({"resources": {"io": {"some": {"avg10": a}}}});
        assert_eq!(worst("pressure", psi(9.9)), Severity::Ok);
        assert_eq!(worst("pressure", psi(10.0)), Severity::Warning);
        assert_eq!(worst("pressure", psi(25.0)), Severity::Critical);
        assert_eq!(worst("zombies", json!({"count": 0})), Severity::Ok);
        assert_eq!(worst("zombies", json!({"count": 1})), Severity::Warning);
        assert_eq!(worst("zombies", json!({"count": 21})), Severity::Critical);
        assert_eq!(
            worst("uptime", json!({"uptime_sec": 120.0})),
            Severity::Critical
        );
        assert_eq!(worst("uptime", json!({"uptime_sec": 7200.0})), Severity::Ok);
        let dev = |name: &str, rot: serde_json::Value, aw: f64| json!({"devices": [{"device": name, "rotational": rot, "await_ms": aw}]});
        assert_eq!(
            worst("disk_io", dev("nvme0n1", json!(false), 12.0)),
            Severity::Warning
        );
        assert_eq!(
            worst("disk_io", dev("sda", json!(false), 12.0)),
            Severity::Ok
        );
        assert_eq!(
            worst("disk_io", dev("sda", json!(true), 250.0)),
            Severity::Critical
        );
        let fdl = |pct: f64| json!({"processes": [{"name": "java", "used_pct": pct}]});
        assert_eq!(worst("fd_limits", fdl(85.0)), Severity::Warning);
        assert_eq!(worst("fd_limits", fdl(95.0)), Severity::Critical);
        let raid = json!({"arrays": [{"array": "md0", "degraded": true}]});
        assert_eq!(worst("md_raid", raid), Severity::Critical);
        let sys =
            json!({"values": {"net.core.somaxconn": "4096", "vm.swappiness": "60"}, "taint": []});
        assert_eq!(
            judge("sysctl", &sys)
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
            2
        );
        let th = json!({"zones": [{"zone": "z0", "temp_c": 85.0, "critical_c": 100.0}]});
        assert_eq!(worst("thermal", th), Severity::Warning);
        let oom = json!({"oom_kills_since_boot": 2, "kills_in_log": 1, "events": [{"name": "java", "pid": 1}]});
        assert_eq!(worst("oom_kills", oom), Severity::Warning);
        let na = judge("numa", &json!({"available": false, "reason": "no NUMA"}));
        assert_eq!(na[0].text, "not checked: no NUMA");
        assert_eq!(na[0].severity, Severity::NotChecked);
        let http = judge(
            "http_check",
            &json!({"available": false, "reason": "no targets", "configure": "[tools.targets] http"}),
        );
        assert_eq!(http[0].severity, Severity::NotChecked);
        assert_eq!(http[0].configure.as_deref(), Some("[tools.targets] http"));
    }
}
