//! Pure logic shared by the built-in runners: reading tool results, judging
//! them against thresholds, and rendering findings. No host calls here, so
//! everything is unit-tested natively.

mod judge;
mod plugins;
mod summary;

pub use judge::{THRESHOLDS, judge, thresholds_for};
pub use plugins::{ALIASES, PLUGINS, Plugin, plugin, plugin_names};
pub use summary::summarize;

use serde_json::Value;

/// How bad a finding is. `NotChecked` sorts lowest but is no verdict:
/// nothing was looked at (the tool has no target allow-listed, or cannot
/// work on this host), so it never counts as OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Not looked at: no verdict either way.
    NotChecked,
    /// Informational: a number worth showing.
    Ok,
    /// Needs a look.
    Warning,
    /// Needs action.
    Critical,
}

impl Severity {
    /// Label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Severity::NotChecked => "NOT CHECKED",
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One judged fact about the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Area, e.g. `memory`.
    pub area: String,
    /// One line with the numbers behind it.
    pub text: String,
    /// For a finding not checked because nothing is allow-listed: the
    /// config key that would let it be checked, e.g. `[tools.targets] http`.
    pub configure: Option<String>,
}

impl Finding {
    /// Builds a finding.
    pub fn new(severity: Severity, area: &str, text: impl Into<String>) -> Self {
        Finding {
            severity,
            area: area.to_string(),
            text: text.into(),
            configure: None,
        }
    }

    /// A finding that could not be checked, and why; `configure` is the
    /// config key to allow-list something under, when that is the reason.
    pub fn not_checked(area: &str, reason: &str, configure: Option<&str>) -> Self {
        Finding {
            configure: configure.map(str::to_string),
            ..Finding::new(Severity::NotChecked, area, format!("not checked: {reason}"))
        }
    }
}

/// The overall line of a report over `findings`: the worst checked
/// finding, how many were not checked, and, when nothing at all was
/// checked, what to allow-list so that it can be.
pub fn overall(findings: &[Finding]) -> String {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let unchecked = count(Severity::NotChecked);
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .filter(|s| *s != Severity::NotChecked)
        .max();
    let Some(worst) = worst else {
        let mut keys: Vec<&str> = findings
            .iter()
            .filter_map(|f| f.configure.as_deref())
            .collect();
        keys.dedup();
        let what = if findings.is_empty() {
            "no findings".to_string()
        } else if keys.is_empty() {
            format!("{unchecked} not checked: none of these can be checked on this host")
        } else {
            let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "{unchecked} not checked: nothing is allow-listed; list targets in {} to check them",
                keys.join(", ")
            )
        };
        return format!("**Overall: NOT CHECKED** ({what})");
    };
    let label = if unchecked > 0 {
        format!("{} ({unchecked} not checked)", worst.label())
    } else {
        worst.label().to_string()
    };
    format!(
        "**Overall: {label}** ({} critical, {} warning, {} ok, {unchecked} not checked)",
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Ok),
    )
}

/// Human-readable bytes: `512 B`, `3.4 KiB`, `1.2 GiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Number field `key` of `v` (0 when missing).
pub fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Integer field `key` of `v` (0 when missing).
pub fn int(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// String field `key` of `v` ("" when missing).
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Array field `key` of `v` (empty when missing).
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Parses a tool's output; a cut (truncated) or otherwise broken result is
/// an error that says so.
pub fn parse_tool_output(tool: &str, raw: &str) -> Result<Value, String> {
    serde_json::from_str(raw).map_err(|e| {
        if raw.contains("[truncated") {
            format!("{tool} output was truncated by the host and could not be read")
        } else {
            format!("{tool} output is not valid JSON: {e}")
        }
    })
}

/// Which tools (with their JSON args) a plugin calls.
pub fn tools_for_plugin(name: &str) -> Option<Vec<(&'static str, &'static str)>> {
    plugin(name).map(|p| p.tools.to_vec())
}

/// Extra tools an alert text points at, by keyword.
pub fn tools_for_alert(text: &str) -> Vec<(&'static str, &'static str)> {
    let t = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    let mut tools = Vec::new();
    if has(&["memory", "mem ", "oom", "swap", "ram"]) {
        tools.push(("memory", "{}"));
        tools.push(("top_processes", r#"{"by":"memory","limit":5}"#));
    }
    if has(&["oom", "out of memory", "killed process"]) {
        tools.push(("oom_kills", "{}"));
    }
    if has(&["i/o", "iowait", "latency", "await", "iops", "diskio"]) {
        tools.push(("disk_io", "{}"));
        tools.push(("pressure", r#"{"resource":"io"}"#));
    }
    if has(&["conntrack"]) {
        tools.push(("conntrack", "{}"));
    }
    if has(&["zombie"]) {
        tools.push(("zombies", "{}"));
    }
    if has(&["ntp", "clock", "time sync", "offset"]) {
        tools.push(("ntp", "{}"));
    }
    if has(&["cert", "ssl", "tls"]) {
        tools.push(("cert_files", "{}"));
        tools.push(("tls_cert", "{}"));
    }
    if has(&["reboot", "uptime"]) {
        tools.push(("uptime", "{}"));
    }
    if has(&["retrans", "packet loss", "drop"]) {
        tools.push(("tcp_retrans", "{}"));
        tools.push(("softnet", "{}"));
    }
    if has(&["close_wait", "time_wait", "close-wait", "time-wait"]) {
        tools.push(("tcp_connections", "{}"));
    }
    if has(&["too many open files", "file descriptor", "fd "]) {
        tools.push(("fd_limits", "{}"));
    }
    if has(&["disk", "space", "inode", "filesystem", "mount"]) {
        tools.push(("disk_usage", "{}"));
    }
    if has(&["cpu", "load", "iowait"]) {
        tools.push(("cpu", "{}"));
        tools.push(("top_processes", r#"{"by":"cpu","limit":5}"#));
    }
    if has(&[
        "network",
        "tcp",
        "connection",
        "socket",
        "port",
        "interface",
    ]) {
        tools.push(("network_interfaces", "{}"));
        tools.push(("tcp_summary", "{}"));
    }
    tools
}

/// The compute-bound kernel of the sandbox benchmark: xorshift updates over
/// a 1024-entry table, `rounds` times. The benchmark runs this very function
/// natively and inside the `bench` guest to price the sandbox.
pub fn bench_kernel(rounds: u32) -> u64 {
    let mut table = [0u32; 1024];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        for slot in table.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *slot = slot.wrapping_add(x as u32);
        }
    }
    table
        .iter()
        .fold(0u64, |a, &v| a.wrapping_mul(31).wrapping_add(u64::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(1023), "1023 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn every_plugin_has_tools_and_unknown_has_none() {
        for p in PLUGINS {
            assert!(
                tools_for_plugin(p.name).is_some_and(|t| !t.is_empty()),
                "{}",
                p.name
            );
            assert!(!p.description.is_empty() && !p.description.contains('\n'));
            for (tool, args) in p.tools {
                let v: Value = serde_json::from_str(args).expect("args are JSON");
                assert!(v.is_object(), "{}: {tool} {args}", p.name);
            }
        }
        let names = plugin_names();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // catpaw's read-only plugin names, all inspectable.
        for name in [
            "cpu",
            "mem",
            "disk",
            "diskio",
            "net",
            "netif",
            "mount",
            "conntrack",
            "sockstat",
            "tcpstate",
            "neigh",
            "procnum",
            "procfd",
            "filefd",
            "zombie",
            "uptime",
            "sysctl",
            "systemd",
            "journaltail",
            "logfile",
            "filecheck",
            "hostident",
            "secmod",
            "cert",
            "dns",
            "ntp",
            "ping",
            "http",
            "docker",
            "redis",
            "redis_sentinel",
        ] {
            assert!(plugin(name).is_some(), "{name}");
        }
        assert!(tools_for_plugin("toaster").is_none());
        // catpaw's alias of `system`.
        assert_eq!(plugin("local"), plugin("system"));
        assert!(
            plugin("sysdiag").is_none(),
            "catpaw's tool set, not a plugin"
        );
        assert!(
            plugin("exec").is_none(),
            "exec runs commands: not read-only"
        );
    }

    #[test]
    fn alert_keywords_pick_tools() {
        let names = |t: &str| {
            tools_for_alert(t)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("OOM killer fired"),
            ["memory", "top_processes", "oom_kills"]
        );
        assert!(names("disk await 300ms on sdb").contains(&"disk_io"));
        assert!(names("NTP clock offset 2s").contains(&"ntp"));
        assert!(names("too many open files in java").contains(&"fd_limits"));
        assert_eq!(names("Disk space low on /"), ["disk_usage"]);
        assert_eq!(names("high load average"), ["cpu", "top_processes"]);
        assert!(names("TCP connection storm").contains(&"tcp_summary"));
        assert!(names("something else").is_empty());
    }

    #[test]
    fn the_overall_line_never_calls_unchecked_ok() {
        let ok = Finding::new(Severity::Ok, "cpu", "fine");
        let warn = Finding::new(Severity::Warning, "disk", "full");
        let http = Finding::not_checked("http_check", "no targets", Some("[tools.targets] http"));
        let numa = Finding::not_checked("numa", "no NUMA", None);
        assert_eq!(
            overall(std::slice::from_ref(&http)),
            "**Overall: NOT CHECKED** (1 not checked: nothing is allow-listed; list targets in \
             `[tools.targets] http` to check them)"
        );
        assert!(
            overall(std::slice::from_ref(&numa))
                .starts_with("**Overall: NOT CHECKED** (1 not checked: none")
        );
        assert_eq!(
            overall(&[ok.clone(), ok.clone(), http.clone(), numa]),
            "**Overall: OK (2 not checked)** (0 critical, 0 warning, 2 ok, 2 not checked)"
        );
        assert_eq!(
            overall(&[ok.clone(), warn]),
            "**Overall: WARNING** (0 critical, 1 warning, 1 ok, 0 not checked)"
        );
        assert!(overall(&[]).starts_with("**Overall: NOT CHECKED**"));
        assert!(Severity::NotChecked < Severity::Ok);
    }

    #[test]
    fn truncated_output_is_reported_as_such() {
        let e = parse_tool_output(
            "mounts",
            "{\"mounts\":[\n…[truncated: output exceeded 32768 bytes]",
        )
        .unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(parse_tool_output("cpu", "{\"cores\":2}").is_ok());
    }
}
