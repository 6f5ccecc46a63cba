//! Judging tool results against thresholds. The numbers are catpaw's
//! defaults where its plugins have them (marked "catpaw" in
//! [`THRESHOLDS`]); the rest are ours.
//!
//! - `basics.rs`: cpu, memory, disks, mounts, processes, interfaces,
//!   TCP, descriptors, systemd units, kernel log
//! - `system.rs`: pressure, memory counters, OOM, disks I/O and RAID,
//!   zombies and processes, kernel parameters and modules
//! - `network.rs`: the network stack and the network-touching tools
//! - `services.rs`: units, journals, logs, files, certificates, time
//! - `inventory.rs`: devices, sockets, addresses, routes, interrupts,
//!   NUMA, volumes, process details

mod basics;
mod inventory;
mod network;
mod services;
mod system;

use serde_json::Value;

use crate::{Finding, Severity, text};

/// The thresholds the runners judge by, as shown in reports:
/// `(area, rule)`. A report lists those of the areas it has findings in.
pub const THRESHOLDS: &[(&str, &str)] = &[
    ("cpu", "usage ≥ 80 % warning, ≥ 90 % critical (catpaw)"),
    ("cpu", "iowait ≥ 20 % warning; steal ≥ 10 % warning"),
    (
        "load",
        "load5 / cores ≥ 3.0 warning, ≥ 5.0 critical (catpaw)",
    ),
    ("memory", "used ≥ 85 % warning, ≥ 90 % critical (catpaw)"),
    ("swap", "used ≥ 10 % warning, ≥ 30 % critical (catpaw)"),
    (
        "disk",
        "space or inodes used ≥ 90 % warning, ≥ 99 % critical (catpaw)",
    ),
    ("mounts", "a real filesystem mounted read-only: warning"),
    ("network", "interface errors or drops > 0: warning"),
    (
        "tcp",
        "CLOSE_WAIT ≥ 100 warning, ≥ 1000 critical; TIME_WAIT ≥ 5000 warning, ≥ 20000 critical (catpaw)",
    ),
    (
        "fd",
        "file descriptors used ≥ 80 % warning, ≥ 90 % critical (catpaw)",
    ),
    (
        "procfd",
        "a process's open files ≥ 80 % of its limit warning, ≥ 90 % critical (catpaw)",
    ),
    (
        "systemd",
        "failed units > 0: warning; the asked-for unit not active: critical (catpaw)",
    ),
    (
        "kernel",
        "OOM kills, I/O errors or segfaults in the kernel log: warning",
    ),
    (
        "pressure",
        "avg10 stall ≥ 10 % warning, ≥ 25 % critical (catpaw)",
    ),
    ("oom", "OOM kills since boot > 0: warning"),
    (
        "diskio",
        "await ≥ 50/200 ms HDD, 20/100 SSD, 10/50 NVMe warning/critical (catpaw)",
    ),
    ("raid", "a degraded array: critical"),
    ("zombie", "zombies > 0 warning, > 20 critical (catpaw)"),
    (
        "uptime",
        "up for less than 10 minutes (a reboot): critical (catpaw)",
    ),
    (
        "conntrack",
        "table used ≥ 75 % warning, ≥ 90 % critical (catpaw)",
    ),
    (
        "neigh",
        "neighbour table used ≥ 75 % of gc_thresh3 warning, ≥ 90 % critical (catpaw)",
    ),
    (
        "sockstat",
        "listen-queue overflows ≥ 1/s warning, ≥ 100/s critical (catpaw)",
    ),
    (
        "retrans",
        "retransmitted ≥ 2 % of segments sent warning, ≥ 10 % critical",
    ),
    (
        "softnet",
        "packets dropped in the receive backlog > 0: warning",
    ),
    (
        "thermal",
        "a zone ≥ 80 °C warning (catpaw), at its critical trip point critical",
    ),
    (
        "sysctl",
        "net.core.somaxconn < 65535 or vm.swappiness > 10 warning (catpaw); a tainted kernel warning",
    ),
    (
        "secmod",
        "SELinux running in another mode than configured: warning (catpaw)",
    ),
    (
        "ntp",
        "clock not synchronised critical; |offset| ≥ 100 ms warning, ≥ 500 ms critical (catpaw)",
    ),
    (
        "cert",
        "expires within 30 days warning, 7 days critical (catpaw)",
    ),
    ("dns", "a name that does not resolve: critical (catpaw)"),
    (
        "ping",
        "unreachable critical; loss ≥ 1 % warning, ≥ 50 % critical (catpaw)",
    ),
    (
        "http",
        "no answer critical (catpaw); 5xx critical, 4xx warning",
    ),
    (
        "net",
        "an endpoint that refuses or does not answer: critical (catpaw)",
    ),
    (
        "docker",
        "unhealthy critical; restarting or paused warning; restarts ≥ 3 warning, ≥ 5 critical (catpaw)",
    ),
    (
        "redis",
        "a server that does not answer: critical (catpaw); a sentinel master not ok: critical",
    ),
    (
        "logs",
        "lines with error, fatal, panic or exception: warning (catpaw)",
    ),
    ("files", "an allow-listed file missing: warning"),
];

/// The rules of the given areas, in [`THRESHOLDS`] order.
pub fn thresholds_for(areas: &[&str]) -> Vec<(&'static str, &'static str)> {
    THRESHOLDS
        .iter()
        .filter(|(a, _)| areas.contains(a))
        .copied()
        .collect()
}

pub(crate) fn level(v: f64, warn: f64, crit: f64) -> Severity {
    if v >= crit {
        Severity::Critical
    } else if v >= warn {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// Findings from one tool's parsed output.
pub fn judge(tool: &str, v: &Value) -> Vec<Finding> {
    let f = judge_only(tool, v);
    if f.is_empty() {
        vec![Finding::new(Severity::Ok, tool, crate::summarize(tool, v))]
    } else {
        f
    }
}

/// The findings a judge has for this tool (none for a tool without one).
pub(crate) fn judge_only(tool: &str, v: &Value) -> Vec<Finding> {
    if v.get("available").and_then(Value::as_bool) == Some(false) {
        // Not a verdict: nothing was looked at. `configure` names the
        // allow-list key when that is why.
        let configure = v.get("configure").and_then(Value::as_str);
        return vec![Finding::not_checked(tool, text(v, "reason"), configure)];
    }
    match tool {
        "cpu" => basics::cpu(v),
        "memory" => basics::memory(v),
        "disk_usage" => basics::disk(v),
        "mounts" => basics::mounts(v),
        "top_processes" => basics::top(v),
        "network_interfaces" => basics::interfaces(v),
        "tcp_summary" => basics::tcp(v),
        "fd_usage" => basics::fds(v),
        "failed_units" => basics::units(v),
        "kernel_log" => basics::kernel(v),
        "uptime" => system::uptime(v),
        t => system::judge(t, v)
            .or_else(|| network::judge(t, v))
            .or_else(|| services::judge(t, v))
            .or_else(|| inventory::judge(t, v))
            .unwrap_or_default(),
    }
}
