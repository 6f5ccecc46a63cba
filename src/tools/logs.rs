//! kernel_log and failed_units: the two tools that may need a helper
//! command, because the kernel log may be readable only through `dmesg`
//! and unit state is only known to systemd.

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::Args;
use super::cmd::{Keep, MAX_CMD_OUTPUT, io_reason, on_path, run};
use super::mask::mask_secrets;

/// Longest a helper command may run.
pub(crate) const CMD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest /dev/kmsg is read: a log flood must not keep the tool busy.
const KMSG_BUDGET: Duration = Duration::from_secs(2);
/// syslog level names, most severe first (index = level).
pub(crate) const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Longest log line kept, in bytes.
const MAX_LINE: usize = 512;

/// A kernel log record: (level 0–7, `[secs.micros] message`).
pub(crate) type Record = (u8, String);

/// One /dev/kmsg record `pri,seq,usec,flags[,…];message\n[ KEY=value…]` →
/// (log level 0–7, `[secs.micros] message`). None for a record without
/// the header.
pub(crate) fn parse_kmsg(rec: &str) -> Option<(u8, String)> {
    let (head, msg) = rec.split_once(';')?;
    let mut fields = head.split(',');
    // The priority holds the facility too: the level is its low 3 bits.
    let level = fields.next()?.trim().parse::<u32>().ok()? & 7;
    let usec: u64 = fields.nth(1)?.trim().parse().ok()?;
    // Continuation lines hold the record's dictionary, not its text.
    let msg = msg.lines().next().unwrap_or("");
    Some((
        level as u8,
        format!("[{}.{:06}] {msg}", usec / 1_000_000, usec % 1_000_000),
    ))
}

/// One `dmesg -r` line `<pri>[ secs.micros] message` → (level, the rest).
pub(crate) fn parse_dmesg_raw(line: &str) -> Option<(u8, String)> {
    let rest = line.strip_prefix('<')?;
    let (pri, text) = rest.split_once('>')?;
    let level = pri.parse::<u32>().ok()? & 7;
    Some((level as u8, text.trim_start().to_string()))
}

/// The last `n` kernel log records with their levels: /dev/kmsg, else
/// `dmesg -r`. Ok is (source, records); Err says why neither worked.
pub(crate) fn kernel_records(n: usize) -> Result<(&'static str, Vec<Record>), String> {
    match read_kmsg(n) {
        Ok(lines) => Ok(("/dev/kmsg", lines)),
        Err(kmsg_err) => match read_dmesg(n) {
            Ok(lines) => Ok(("dmesg", lines)),
            Err(dmesg_err) => Err(format!("{kmsg_err} and {dmesg_err}")),
        },
    }
}

/// The last `n` records of the kernel ring buffer, read from /dev/kmsg
/// without blocking (a read after the newest record gives EAGAIN).
fn read_kmsg(n: usize) -> Result<Vec<(u8, String)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg is not readable ({})", io_reason(&e)))?;
    let mut lines = VecDeque::with_capacity(n);
    // One read returns one record; records are at most 8 KiB.
    let mut buf = vec![0u8; 16 * 1024];
    let started = Instant::now();
    while started.elapsed() < KMSG_BUDGET {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => {
                if let Some(line) = parse_kmsg(&String::from_utf8_lossy(&buf[..len])) {
                    if lines.len() == n {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EPIPE: older records were overwritten while reading; the next
            // read continues at the oldest one still there.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) => return Err(format!("/dev/kmsg is not readable ({})", io_reason(&e))),
        }
    }
    Ok(lines.into())
}

/// The last `n` lines of `dmesg -r` output (raw: with levels).
fn read_dmesg(n: usize) -> Result<Vec<(u8, String)>, String> {
    let text = run("dmesg", &["-r"], CMD_TIMEOUT, Keep::Tail)?;
    let mut lines: Vec<&str> = text.lines().collect();
    if text.len() >= MAX_CMD_OUTPUT && !lines.is_empty() {
        // Only the tail was kept: its first line may be cut.
        lines.remove(0);
    }
    let start = lines.len().saturating_sub(n);
    Ok(lines[start..]
        .iter()
        .map(|l| parse_dmesg_raw(l).unwrap_or((6, l.to_string())))
        .collect())
}

/// A log line masked, then cut to [`MAX_LINE`] bytes.
pub(crate) fn clip_line(line: &str) -> String {
    crate::util::truncate_utf8(&mask_secrets(line), MAX_LINE).to_string()
}

pub(crate) fn kernel_log(args: &Args) -> Result<Value, String> {
    let n = args.int("lines", 1, 500, 50)? as usize;
    let (source, lines) = kernel_records(n)?;
    // Masked before the cut, as in top_processes: the dispatcher's own
    // masking comes too late for a secret the cut has made unrecognisable.
    let lines: Vec<String> = lines.iter().map(|(_, l)| clip_line(l)).collect();
    Ok(json!({ "source": source, "lines": lines }))
}

/// One row of `systemctl --failed --plain --no-legend`:
/// `unit load active sub description…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedUnit {
    pub(crate) unit: String,
    pub(crate) load: String,
    pub(crate) active: String,
    pub(crate) sub: String,
    pub(crate) description: String,
}

/// Parses the listing; a leading status mark (`●`, `*`), which some
/// systemctl versions print even with `--plain`, is skipped.
pub(crate) fn parse_failed_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|l| {
            let mut f = l
                .split_whitespace()
                .skip_while(|w| *w == "●" || *w == "*" || *w == "×");
            let unit = f.next()?.to_string();
            let mut next = || f.next().unwrap_or("").to_string();
            let (load, active, sub) = (next(), next(), next());
            let description = f.collect::<Vec<_>>().join(" ");
            Some(FailedUnit {
                unit,
                load,
                active,
                sub,
                description,
            })
        })
        .collect()
}

/// Signs in systemctl's error that systemd is not the init system here.
pub(crate) const NO_SYSTEMD: [&str; 3] = [
    "not been booted with systemd",
    "Failed to connect to bus",
    "Failed to get D-Bus connection",
];

/// Why systemd's tool `bin` cannot answer here, if it cannot: not on
/// PATH, or systemd is not the running init.
pub(crate) fn systemd_missing(bin: &str) -> Option<String> {
    if !on_path(bin) {
        return Some(format!("{bin} is not on PATH"));
    }
    // What sd_booted(3) checks: systemd creates this directory at boot.
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Some(
            "systemd is not running (System has not been booted with systemd; e.g. in a container)"
                .into(),
        );
    }
    None
}

/// The `{"available": false, "reason": …}` answer of a tool that cannot
/// work on this host.
pub(crate) fn unavailable(reason: impl Into<String>) -> Value {
    json!({ "available": false, "reason": reason.into() })
}

/// The answer of a tool with nothing allow-listed to look at: unavailable,
/// with `configure` naming the config key (e.g. `[tools.targets] http`) so
/// a report can say the check was not made and what would let it be.
pub(crate) fn not_configured(reason: impl Into<String>, key: &str) -> Value {
    json!({ "available": false, "reason": reason.into(), "configure": key })
}

pub(crate) fn failed_units(_args: &Args) -> Result<Value, String> {
    let unavailable = |reason: &str| Ok(json!({ "available": false, "reason": reason }));
    if let Some(why) = systemd_missing("systemctl") {
        return unavailable(&why);
    }
    let args = ["--failed", "--plain", "--no-legend", "--no-pager"];
    match run("systemctl", &args, CMD_TIMEOUT, Keep::Head) {
        Ok(text) => {
            let units: Vec<Value> = parse_failed_units(&text)
                .into_iter()
                .map(|u| {
                    json!({
                        "unit": u.unit,
                        "load": u.load,
                        "active": u.active,
                        "sub": u.sub,
                        "description": u.description,
                    })
                })
                .collect();
            Ok(json!({ "available": true, "units": units }))
        }
        Err(e) if NO_SYSTEMD.iter().any(|s| e.contains(s)) => unavailable(&e),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_are_formatted() {
        let cases = [
            (
                "6,123,5000000,-;eth0: link up\n SUBSYSTEM=net\n",
                Some("[5.000000] eth0: link up"),
            ),
            (
                "4,9,1274559,-,caller=T69;drop_caches: 3\n",
                Some("[1.274559] drop_caches: 3"),
            ),
            ("6,1,0,-;", Some("[0.000000] ")),
            ("garbage", None),
            ("6,1,notanumber,-;x", None),
            ("6,1;x", None),
        ];
        for (rec, want) in cases {
            assert_eq!(parse_kmsg(rec).map(|r| r.1).as_deref(), want, "{rec:?}");
        }
    }

    #[test]
    fn kmsg_levels_and_raw_dmesg_lines() {
        assert_eq!(
            parse_kmsg("3,7,2000000,-;disk error\n"),
            Some((3, "[2.000000] disk error".into()))
        );
        // Facility 3 (daemon) priority 30 is level 6.
        assert_eq!(parse_kmsg("30,1,0,-;x").map(|r| r.0), Some(6));
        assert_eq!(
            parse_dmesg_raw("<4>[   12.345678] eth0: link down"),
            Some((4, "[   12.345678] eth0: link down".into()))
        );
        assert_eq!(parse_dmesg_raw("no level"), None);
    }

    #[test]
    fn failed_units_are_parsed() {
        let text = "nginx.service loaded failed failed A high performance web server\n\
                    ● ssh.service  loaded failed failed OpenBSD Secure Shell server\n\
                    \n\
                    odd.service\n";
        let u = parse_failed_units(text);
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].unit, "nginx.service");
        assert_eq!(
            (u[0].load.as_str(), u[0].active.as_str(), u[0].sub.as_str()),
            ("loaded", "failed", "failed")
        );
        assert_eq!(u[0].description, "A high performance web server");
        assert_eq!(u[1].unit, "ssh.service");
        assert_eq!(u[2].unit, "odd.service");
        assert_eq!(u[2].description, "");
        assert!(parse_failed_units("").is_empty());
    }

    #[test]
    fn failed_units_on_this_host_is_available_or_says_why() {
        let v = failed_units(&Args::empty()).expect("failed_units");
        match v["available"].as_bool() {
            Some(true) => assert!(v["units"].is_array(), "{v}"),
            Some(false) => assert!(!v["reason"].as_str().unwrap_or("").is_empty(), "{v}"),
            None => panic!("no available flag: {v}"),
        }
    }

    #[test]
    fn kernel_log_reads_a_source_or_explains_both_failures() {
        let args = Args::parse("kernel_log", r#"{"lines":3}"#, &["lines".into()]).expect("args");
        match kernel_log(&args) {
            Ok(v) => {
                assert!(
                    ["/dev/kmsg", "dmesg"].contains(&v["source"].as_str().unwrap_or("")),
                    "{v}"
                );
                let lines = v["lines"].as_array().expect("lines");
                assert!(lines.len() <= 3, "{v}");
                assert!(
                    lines
                        .iter()
                        .all(|l| l.as_str().is_some_and(|s| s.len() <= MAX_LINE))
                );
            }
            Err(e) => assert!(
                e.starts_with("/dev/kmsg is not readable") && e.contains(" and "),
                "{e}"
            ),
        }
    }
}
