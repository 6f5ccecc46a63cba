//! Kernel-level tools: pressure stall information, cgroups, OOM kills,
//! kernel log filters, interrupts, NUMA, thermal zones, allow-listed
//! sysctls, security modules, coredumps and VM counters. All read /proc
//! and /sys directly.

mod cgroup;
mod coredump;
mod interrupts;
mod kmsg;
mod numa;
mod oom;
mod pressure;
mod secmod;
mod sysctl;
mod thermal;
mod vmstat;

use super::tool::{NO_ARGS, Tool};

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "pressure",
        "pressure stall information (PSI): share of time tasks stalled on cpu, memory or io (avg10/60/300, some/full)",
        r#"{"type":"object","properties":{"resource":{"type":"string","enum":["all","cpu","memory","io"],"default":"all"}},"additionalProperties":false}"#,
        pressure::run,
    ),
    Tool::new(
        "cgroup_usage",
        "memory, CPU throttling, pids and OOM events of one cgroup (v1 or v2), given as a path or a systemd unit",
        r#"{"type":"object","properties":{"path":{"type":"string","description":"cgroup path under /sys/fs/cgroup, e.g. /system.slice/nginx.service","default":"/"},"unit":{"type":"string","description":"systemd unit, e.g. nginx.service (looked up under system.slice)"}},"additionalProperties":false}"#,
        cgroup::run,
    ),
    Tool::new(
        "oom_kills",
        "OOM kills from the kernel log (process, pid, uid, memory) and the kernel's OOM kill counter",
        r#"{"type":"object","properties":{"max_events":{"type":"integer","minimum":1,"maximum":50,"default":20}},"additionalProperties":false}"#,
        oom::run,
    ),
    Tool::new(
        "kernel_log_search",
        "kernel log lines at or above a level, optionally containing a text (case-insensitive), secrets masked",
        r#"{"type":"object","properties":{"level":{"type":"string","enum":["emerg","alert","crit","err","warning","notice","info","debug"],"default":"warning"},"contains":{"type":"string","maxLength":200},"lines":{"type":"integer","minimum":1,"maximum":500,"default":50}},"additionalProperties":false}"#,
        kmsg::run,
    )
    .logs(),
    Tool::new(
        "interrupts",
        "top interrupt sources by count, with how unevenly each is spread over the CPUs",
        r#"{"type":"object","properties":{"top":{"type":"integer","minimum":1,"maximum":100,"default":20}},"additionalProperties":false}"#,
        interrupts::run,
    ),
    Tool::new(
        "numa",
        "memory and allocation hits/misses per NUMA node",
        NO_ARGS,
        numa::run,
    ),
    Tool::new(
        "thermal",
        "temperature of every thermal zone and its critical trip point",
        NO_ARGS,
        thermal::run,
    ),
    Tool::new(
        "sysctl",
        "values of allow-listed kernel parameters (built-in list plus [tools] sysctl_keys); kernel.tainted decoded",
        r#"{"type":"object","properties":{"keys":{"type":"array","items":{"type":"string"},"maxItems":64,"description":"keys such as vm.swappiness; default: the whole allow-list"}},"additionalProperties":false}"#,
        sysctl::run,
    ),
    Tool::new(
        "security_modules",
        "SELinux mode (running and configured), AppArmor state and profile counts, active LSMs",
        NO_ARGS,
        secmod::run,
    ),
    Tool::new(
        "coredumps",
        "the core dump settings and the newest core files in the usual crash directories",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":100,"default":20}},"additionalProperties":false}"#,
        coredump::run,
    ),
    Tool::new(
        "vmstat",
        "paging, swapping, reclaim, compaction and OOM counters from /proc/vmstat, with per-second rates over 1 s",
        NO_ARGS,
        vmstat::run,
    ),
];
