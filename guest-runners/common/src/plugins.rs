//! The inspect plugins of the built-in diagnose runner: catpaw's plugin
//! names (those that make sense read-only; `exec` and `scriptfilter` run
//! commands and are left out) plus `process` and `system`. Each is a name,
//! one line saying what it looks at, and the tools (with their JSON args)
//! it calls. This table is the one place plugins are defined: the runner
//! looks plugins up here and anything that describes the runner lists it.

/// One inspect plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugin {
    /// The name `inspect` asks for.
    pub name: &'static str,
    /// One line saying what it looks at.
    pub description: &'static str,
    /// The tools it calls, with their JSON arguments, in order.
    pub tools: &'static [(&'static str, &'static str)],
}

const fn p(
    name: &'static str,
    description: &'static str,
    tools: &'static [(&'static str, &'static str)],
) -> Plugin {
    Plugin {
        name,
        description,
        tools,
    }
}

/// Every plugin, in the order they are listed.
pub const PLUGINS: &[Plugin] = &[
    p(
        "cpu",
        "CPU use, load per core, CPU pressure and the busiest processes",
        &[
            ("cpu", "{}"),
            ("pressure", r#"{"resource":"cpu"}"#),
            ("top_processes", r#"{"by":"cpu","limit":5}"#),
        ],
    ),
    p(
        "mem",
        "memory and swap use, memory pressure, paging, OOM kills and the largest processes",
        &[
            ("memory", "{}"),
            ("pressure", r#"{"resource":"memory"}"#),
            ("vmstat", "{}"),
            ("oom_kills", "{}"),
            ("top_processes", r#"{"by":"memory","limit":5}"#),
        ],
    ),
    p(
        "disk",
        "space and inode use of every filesystem, and read-only mounts",
        &[("disk_usage", "{}"), ("inodes", "{}"), ("mounts", "{}")],
    ),
    p(
        "diskio",
        "per-disk IOPS, throughput, latency and utilisation, I/O pressure, block devices, RAID",
        &[
            ("disk_io", "{}"),
            ("pressure", r#"{"resource":"io"}"#),
            ("block_devices", "{}"),
            ("md_raid", "{}"),
        ],
    ),
    p(
        "net",
        "interfaces, TCP sockets, and connects to the allow-listed endpoints",
        &[
            ("network_interfaces", "{}"),
            ("tcp_summary", "{}"),
            ("tcp_connect", "{}"),
        ],
    ),
    p(
        "netif",
        "interface state, errors and drops, addresses, softnet drops",
        &[
            ("network_interfaces", "{}"),
            ("addresses", "{}"),
            ("softnet", "{}"),
        ],
    ),
    p(
        "mount",
        "every mount, read-only filesystems",
        &[("mounts", "{}")],
    ),
    p(
        "conntrack",
        "connection tracking table use and drops",
        &[("conntrack", "{}")],
    ),
    p(
        "sockstat",
        "socket counts, TCP memory, listen-queue overflows, retransmits",
        &[("sockstat", "{}"), ("tcp_retrans", "{}")],
    ),
    p(
        "tcpstate",
        "TCP connections by state (CLOSE_WAIT, TIME_WAIT) and by port and peer",
        &[("tcp_connections", "{}"), ("listening_sockets", "{}")],
    ),
    p(
        "neigh",
        "neighbour (ARP) table use against gc_thresh3",
        &[("neighbours", "{}")],
    ),
    p(
        "procnum",
        "process counts by name and state",
        &[("process_count", "{}")],
    ),
    p(
        "procfd",
        "processes nearest their own open-file limit",
        &[("fd_limits", "{}")],
    ),
    p(
        "filefd",
        "system-wide file descriptor use",
        &[("fd_usage", r#"{"limit":5}"#)],
    ),
    p(
        "zombie",
        "zombie processes and the parents not reaping them",
        &[("zombies", "{}")],
    ),
    p("uptime", "uptime and recent reboots", &[("uptime", "{}")]),
    p(
        "sysctl",
        "kernel parameters against recommended values, kernel taint",
        &[("sysctl", "{}")],
    ),
    p(
        "systemd",
        "failed units and service states",
        &[("failed_units", "{}"), ("unit_status", "{}")],
    ),
    p(
        "journaltail",
        "recent error lines of the systemd journal",
        &[("journal_tail", r#"{"priority":"err","lines":50}"#)],
    ),
    p(
        "logfile",
        "the operator's allow-listed log files",
        &[("log_tail", "{}")],
    ),
    p(
        "filecheck",
        "existence, mode, owner, size, mtime and hash of allow-listed files",
        &[("file_check", "{}")],
    ),
    p(
        "hostident",
        "host name, ids, OS, kernel, virtualisation, primary address",
        &[("host_identity", "{}")],
    ),
    p(
        "secmod",
        "SELinux and AppArmor state",
        &[("security_modules", "{}")],
    ),
    p(
        "cert",
        "expiry of allow-listed certificate files and TLS endpoints",
        &[("cert_files", "{}"), ("tls_cert", "{}")],
    ),
    p(
        "dns",
        "resolution of the allow-listed names",
        &[("dns_lookup", "{}")],
    ),
    p(
        "ntp",
        "clock synchronisation, offset and error",
        &[("ntp", "{}")],
    ),
    p(
        "ping",
        "packet loss and round-trip time to the allow-listed hosts",
        &[("ping", "{}")],
    ),
    p(
        "http",
        "status and response time of the allow-listed URLs",
        &[("http_check", "{}")],
    ),
    p(
        "docker",
        "container states, health and restarts",
        &[("docker", "{}")],
    ),
    p(
        "redis",
        "role, memory, clients and replication of the allow-listed Redis servers",
        &[("redis_info", "{}")],
    ),
    p(
        "redis_sentinel",
        "masters and their state as the allow-listed sentinels see them",
        &[("redis_info", r#"{"section":"sentinel"}"#)],
    ),
    p(
        "process",
        "the busiest processes by CPU and memory, and file descriptor use",
        &[
            ("top_processes", r#"{"by":"cpu","limit":5}"#),
            ("top_processes", r#"{"by":"memory","limit":5}"#),
            ("fd_usage", r#"{"limit":5}"#),
            ("zombies", "{}"),
        ],
    ),
    p(
        "system",
        "an overview: uptime, CPU, memory, pressure, disks, network, descriptors, units, kernel log",
        &[
            ("uptime", "{}"),
            ("cpu", "{}"),
            ("memory", "{}"),
            ("pressure", "{}"),
            ("disk_usage", "{}"),
            ("network_interfaces", "{}"),
            ("tcp_summary", "{}"),
            ("fd_usage", r#"{"limit":5}"#),
            ("failed_units", "{}"),
            ("kernel_log", r#"{"lines":20}"#),
        ],
    ),
];

/// Other names catpaw's `inspect` accepts for a plugin: `(alias, plugin)`.
/// catpaw inspects `local` as `system` (agent/inspect.go). (catpaw's
/// `sysdiag` is no plugin but its set of diagnostic tools; there is no
/// alias for it.)
pub const ALIASES: &[(&str, &str)] = &[("local", "system")];

/// The plugin named `name`, or that an alias in [`ALIASES`] stands for.
pub fn plugin(name: &str) -> Option<&'static Plugin> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| *real);
    PLUGINS.iter().find(|p| p.name == name)
}

/// Every plugin name, in order.
pub fn plugin_names() -> Vec<&'static str> {
    PLUGINS.iter().map(|p| p.name).collect()
}
