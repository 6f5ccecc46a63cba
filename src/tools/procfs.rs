//! /proc for every tool: the few calls that touch it (read a file, list
//! the pids, the sampling interval), then pure parsers over its text. Each
//! parser takes the file's text so it can be tested on fixtures; missing or
//! odd fields become zeros or are skipped, never panics.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long the cpu and top_processes tools sample.
pub(crate) const SAMPLE: Duration = Duration::from_millis(200);

/// Reads a /proc (or /sys, /etc) file; the error names the path.
pub(crate) fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Numeric entries of /proc.
pub(crate) fn pids() -> impl Iterator<Item = u64> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
}

/// Aggregate CPU jiffies from the `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) idle: u64,
    pub(crate) iowait: u64,
    pub(crate) steal: u64,
    pub(crate) total: u64,
}

impl CpuTimes {
    /// Busy, iowait and steal percent between `self` (earlier) and `later`.
    pub(crate) fn pct_until(&self, later: &CpuTimes) -> (f64, f64, f64) {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return (0.0, 0.0, 0.0);
        }
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 * 100.0 / total as f64;
        let idle = d(self.idle + self.iowait, later.idle + later.iowait);
        (
            round1(100.0 - idle),
            round1(d(self.iowait, later.iowait)),
            round1(d(self.steal, later.steal)),
        )
    }
}

/// Rounds to one decimal.
pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The aggregate `cpu` line of /proc/stat. Guest time is already part of
/// user time, so it is not added again.
pub(crate) fn parse_stat_cpu(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = (0..8).map(get).sum();
    Some(CpuTimes {
        idle: get(3),
        iowait: get(4),
        steal: get(7),
        total,
    })
}

/// Number of `cpuN` lines in /proc/stat: the CPUs online on the host,
/// whatever this process's affinity or cgroup quota.
pub(crate) fn count_stat_cpus(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("cpu"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .count() as u64
}

/// /proc/loadavg: (load1, load5, load15, runnable, total tasks).
pub(crate) fn parse_loadavg(text: &str) -> (f64, f64, f64, u64, u64) {
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let (run, total) = f
        .get(3)
        .and_then(|x| x.split_once('/'))
        .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)))
        .unwrap_or((0, 0));
    (num(0), num(1), num(2), run, total)
}

/// /proc/meminfo as bytes by key.
pub(crate) fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let mult = if parts.next() == Some("kB") { 1024 } else { 1 };
            Some((k.trim().to_string(), n.saturating_mul(mult)))
        })
        .collect()
}

/// Real uid (the first `Uid:` field) from `/proc/<pid>/status`.
pub(crate) fn parse_status_uid(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// /proc/sys/fs/file-nr `allocated unused max` → (allocated, max).
pub(crate) fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let f: Vec<u64> = text
        .split_whitespace()
        .map_while(|x| x.parse().ok())
        .collect();
    Some((*f.first()?, *f.get(2)?))
}

/// Seconds since boot: the first field of /proc/uptime.
pub(crate) fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// PRETTY_NAME from os-release text, unquoted ("" when absent).
pub(crate) fn parse_os_pretty_name(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .map(|v| {
            let v = v.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)));
            unquoted.unwrap_or(v).replace("\\\"", "\"")
        })
        .unwrap_or_default()
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub(crate) device: String,
    pub(crate) mount_point: String,
    pub(crate) fs_type: String,
    pub(crate) options: String,
}

/// Decodes the octal escapes (`\040` for a space…) the kernel uses in
/// mount fields.
pub(crate) fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// /proc/self/mounts.
pub(crate) fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(MountEntry {
                device: unescape_octal(f[0]),
                mount_point: unescape_octal(f[1]),
                fs_type: f[2].to_string(),
                options: f[3].to_string(),
            })
        })
        .collect()
}

/// Counters of one interface from /proc/net/dev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetDev {
    pub(crate) name: String,
    /// rx bytes, packets, errs, drop
    pub(crate) rx: [u64; 4],
    /// tx bytes, packets, errs, drop
    pub(crate) tx: [u64; 4],
}

/// /proc/net/dev.
pub(crate) fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 12 {
                return None;
            }
            Some(NetDev {
                name: name.trim().to_string(),
                rx: [v[0], v[1], v[2], v[3]],
                tx: [v[8], v[9], v[10], v[11]],
            })
        })
        .collect()
}

/// Name of a TCP state code from /proc/net/tcp.
pub(crate) fn tcp_state_name(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// (state code, local port) of every socket in /proc/net/tcp or tcp6.
pub(crate) fn parse_tcp(text: &str) -> Vec<(u8, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some((state, port))
        })
        .collect()
}

/// Fields of `/proc/<pid>/stat` that the tools use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidStat {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) ppid: u64,
    /// utime + stime, in clock ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) threads: u64,
    pub(crate) rss_pages: u64,
}

/// `/proc/<pid>/stat`. The command name is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state).
    let num = |field: usize| -> u64 {
        rest.get(field - 3)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0)
    };
    Some(PidStat {
        name,
        state: rest.first()?.to_string(),
        ppid: num(4),
        cpu_ticks: num(14) + num(15),
        threads: num(20),
        rss_pages: num(24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_and_percentages() {
        let a = parse_stat_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n").expect("cpu");
        let b = parse_stat_cpu("cpu  150 0 150 750 150 0 0 0 0 0\n").expect("cpu");
        assert_eq!(a.total, 1000);
        // 200 jiffies elapsed: 100 busy, 50 idle, 50 iowait.
        assert_eq!(a.pct_until(&b), (50.0, 25.0, 0.0));
        assert_eq!(a.pct_until(&a), (0.0, 0.0, 0.0));
        assert!(parse_stat_cpu("intr 1 2").is_none());
    }

    #[test]
    fn stat_cpu_count() {
        let text = "cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\ncpu12 0\ncpux 1\nintr 5\n";
        assert_eq!(count_stat_cpus(text), 3);
        assert_eq!(count_stat_cpus(""), 0);
    }

    #[test]
    fn status_file_nr_uptime_os_release() {
        let status = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t0\n";
        assert_eq!(parse_status_uid(status), Some(1000));
        assert_eq!(parse_status_uid("Name: x\n"), None);
        assert_eq!(
            parse_file_nr("1312\t0\t9223372036854775807\n"),
            Some((1312, 9223372036854775807))
        );
        assert_eq!(parse_file_nr("12 0"), None);
        assert_eq!(parse_uptime("12345.67 54321.00\n"), Some(12345.67));
        assert_eq!(parse_uptime("x"), None);
        assert_eq!(parse_uptime("-1 0"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_pretty_name(os), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(parse_os_pretty_name("PRETTY_NAME='Alpine'\n"), "Alpine");
        assert_eq!(parse_os_pretty_name("PRETTY_NAME=Plain\n"), "Plain");
        assert_eq!(parse_os_pretty_name("NAME=x\n"), "");
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 3/456 789\n"),
            (0.5, 1.25, 2.0, 3, 456)
        );
        assert_eq!(parse_loadavg(""), (0.0, 0.0, 0.0, 0, 0));
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo("MemTotal:       2048 kB\nHugePages_Total:       3\nbad line\n");
        assert_eq!(m["MemTotal"], 2048 * 1024);
        assert_eq!(m["HugePages_Total"], 3);
    }

    #[test]
    fn mounts_decode_octal_escapes() {
        let m = parse_mounts("/dev/sda1 /mnt/my\\040disk ext4 rw,relatime 0 0\nshort line\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert_eq!(unescape_octal("a\\011b\\\\c\\9"), "a\tb\\\\c\\9");
    }

    #[test]
    fn net_dev_counters() {
        let text = "Inter-|   Receive\n face |bytes\n  eth0: 100 2 3 4 0 0 0 0 200 5 6 7 0 0 0 0\n";
        let d = parse_net_dev(text);
        assert_eq!(d[0].name, "eth0");
        assert_eq!(d[0].rx, [100, 2, 3, 4]);
        assert_eq!(d[0].tx, [200, 5, 6, 7]);
    }

    #[test]
    fn tcp_states_and_ports() {
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:C350 0100007F:1F90 01 0\n";
        assert_eq!(parse_tcp(text), vec![(0x0A, 8080), (0x01, 50000)]);
        assert_eq!(tcp_state_name(0x06), "TIME_WAIT");
    }

    #[test]
    fn pid_stat_with_odd_names() {
        let text =
            "42 (my (odd) proc) S 1 42 42 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 5 0 100 1000 250 rest";
        let s = parse_pid_stat(text).expect("stat");
        assert_eq!(s.name, "my (odd) proc");
        assert_eq!(s.state, "S");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.threads, 5);
        assert_eq!(s.rss_pages, 250);
        assert!(parse_pid_stat("garbage").is_none());
    }
}
