//! kernel_log and failed_units: the two tools that may need a subprocess,
//! run without stdin, with a timeout and a bounded read.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::Args;
use super::mask::mask_secrets;

/// Longest a helper command may run.
const CMD_TIMEOUT: Duration = Duration::from_secs(5);
/// Most output read from a helper command.
const CMD_OUTPUT: usize = 256 * 1024;
/// Longest log line kept.
const MAX_LINE: usize = 512;

/// Runs a command without stdin and returns its stdout (bounded), or why not.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > CMD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd} did not finish within {CMD_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {cmd}: {e}")),
        }
    };
    let mut out = Vec::new();
    if let Some(s) = child.stdout.take() {
        let _ = s.take(CMD_OUTPUT as u64).read_to_end(&mut out);
    }
    let mut err = String::new();
    if let Some(s) = child.stderr.take() {
        let _ = s.take(4096).read_to_string(&mut err);
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    if status.success() {
        Ok(out)
    } else {
        let why = if err.trim().is_empty() {
            out.trim().to_string()
        } else {
            err.trim().to_string()
        };
        Err(format!(
            "{cmd} failed ({status}): {}",
            crate::util::truncate_utf8(&why, 300)
        ))
    }
}

/// Reads the kernel ring buffer from /dev/kmsg without blocking.
fn read_kmsg() -> Result<Vec<String>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg is not readable ({e})"))?;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = format_kmsg(&rec) {
                    lines.push(line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: records were overwritten while reading; keep going.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(format!("/dev/kmsg read failed ({e})")),
        }
    }
    Ok(lines)
}

/// One /dev/kmsg record `pri,seq,usec,flags;message` → `[secs] message`.
fn format_kmsg(rec: &str) -> Option<String> {
    let (head, msg) = rec.split_once(';')?;
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    let msg = msg.lines().next().unwrap_or("");
    Some(format!("[{:.6}] {msg}", usec as f64 / 1e6))
}

pub(crate) fn kernel_log(args: &Args) -> Result<Value, String> {
    let n = args.int("lines", 1, 500, 50)? as usize;
    let (source, all) = match read_kmsg() {
        Ok(lines) => ("/dev/kmsg", lines),
        Err(kmsg_err) => match run("dmesg", &[]) {
            Ok(text) => ("dmesg", text.lines().map(str::to_string).collect()),
            Err(dmesg_err) => return Err(format!("{kmsg_err} and {dmesg_err}")),
        },
    };
    let start = all.len().saturating_sub(n);
    let lines: Vec<String> = all[start..]
        .iter()
        .map(|l| crate::util::truncate_utf8(&mask_secrets(l), MAX_LINE).to_string())
        .collect();
    Ok(json!({ "source": source, "lines": lines }))
}

/// Parses `systemctl --failed --plain --no-legend` lines.
fn parse_failed(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let unit = f.next()?;
            let load = f.next().unwrap_or("");
            let active = f.next().unwrap_or("");
            let sub = f.next().unwrap_or("");
            let description = f.collect::<Vec<_>>().join(" ");
            Some(json!({"unit": unit, "load": load, "active": active, "sub": sub, "description": description}))
        })
        .take(100)
        .collect()
}

pub(crate) fn failed_units(_args: &Args) -> Result<Value, String> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Ok(json!({"available": false, "reason": "systemd is not running on this host"}));
    }
    match run(
        "systemctl",
        &["--failed", "--plain", "--no-legend", "--no-pager"],
    ) {
        Ok(text) => Ok(json!({"available": true, "units": parse_failed(&text)})),
        Err(e) => Ok(json!({"available": false, "reason": e})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_are_formatted() {
        assert_eq!(
            format_kmsg("6,123,5000000,-;eth0: link up\n SUBSYSTEM=net").as_deref(),
            Some("[5.000000] eth0: link up")
        );
        assert_eq!(format_kmsg("garbage"), None);
    }

    #[test]
    fn failed_units_are_parsed() {
        let u = parse_failed("nginx.service loaded failed failed A high performance web server\n");
        assert_eq!(u[0]["unit"], "nginx.service");
        assert_eq!(u[0]["description"], "A high performance web server");
    }

    #[test]
    fn a_missing_command_is_a_clear_error() {
        let e = run("catpaw-no-such-command", &[]).unwrap_err();
        assert!(e.contains("cannot run catpaw-no-such-command"), "{e}");
    }
}
