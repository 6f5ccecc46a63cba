//! disk_io: /proc/diskstats sampled twice: IOPS, throughput, await and
//! utilisation per device, what `iostat -x` shows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{read, round1};

/// Cumulative counters of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) reads: u64,
    pub(crate) read_sectors: u64,
    pub(crate) read_ms: u64,
    pub(crate) writes: u64,
    pub(crate) write_sectors: u64,
    pub(crate) write_ms: u64,
    pub(crate) in_flight: u64,
    pub(crate) io_ms: u64,
}

/// /proc/diskstats: `major minor name reads merged sectors ms writes …`.
pub(crate) fn parse(text: &str) -> HashMap<String, Counters> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some((
                f[2].to_string(),
                Counters {
                    reads: n(3),
                    read_sectors: n(5),
                    read_ms: n(6),
                    writes: n(7),
                    write_sectors: n(9),
                    write_ms: n(10),
                    in_flight: n(11),
                    io_ms: n(12),
                },
            ))
        })
        .collect()
}

/// Devices worth showing: not partitions of loop/ram, and not the
/// never-used ones.
fn interesting(name: &str) -> bool {
    !(name.starts_with("ram") || name.starts_with("loop") || name.starts_with("zram"))
}

/// One device's figures between two readings `secs` apart.
pub(crate) fn rates(name: &str, a: &Counters, b: &Counters, secs: f64) -> Value {
    let d = |x: u64, y: u64| y.saturating_sub(x);
    let (r, w) = (d(a.reads, b.reads), d(a.writes, b.writes));
    let ios = r + w;
    let wait_ms = d(a.read_ms, b.read_ms) + d(a.write_ms, b.write_ms);
    let secs = secs.max(0.001);
    json!({
        "device": name,
        "read_iops": round1(r as f64 / secs),
        "write_iops": round1(w as f64 / secs),
        "read_mb_s": round1(d(a.read_sectors, b.read_sectors) as f64 * 512.0 / 1_048_576.0 / secs),
        "write_mb_s": round1(d(a.write_sectors, b.write_sectors) as f64 * 512.0 / 1_048_576.0 / secs),
        "await_ms": if ios == 0 { 0.0 } else { round1(wait_ms as f64 / ios as f64) },
        "util_pct": round1((d(a.io_ms, b.io_ms) as f64 / (secs * 1000.0) * 100.0).min(100.0)),
        "in_flight": b.in_flight,
        "rotational": rotational(name),
    })
}

/// Whether /sys says the device spins (None: unknown, e.g. a partition).
fn rotational(name: &str) -> Option<bool> {
    if name.contains('/') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational"))
        .ok()
        .map(|s| s.trim() == "1")
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let ms = args.int("sample_ms", 200, 5000, 1000)?;
    let only = args.string("device", 64)?;
    let show_idle = args.flag("show_idle", false)?;
    let a = parse(&read("/proc/diskstats")?);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    let b = parse(&read("/proc/diskstats")?);
    let secs = started.elapsed().as_secs_f64();
    if let Some(d) = &only
        && !b.contains_key(d)
    {
        let mut known: Vec<&String> = b.keys().collect();
        known.sort();
        return Err(format!(
            "no device {d:?} in /proc/diskstats (known: {})",
            known
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut names: Vec<&String> = b
        .keys()
        .filter(|n| match &only {
            Some(d) => *n == d,
            None => interesting(n),
        })
        .collect();
    names.sort();
    let rows: Vec<Value> = names
        .into_iter()
        .filter_map(|n| {
            let before = a.get(n)?;
            let after = &b[n];
            if !show_idle && only.is_none() && before == after {
                return None;
            }
            Some(rates(n, before, after, secs))
        })
        .collect();
    Ok(json!({ "sample_ms": ms, "devices": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_and_rates() {
        let m = parse(include_str!("../fixtures/diskstats"));
        let vda = m["vda"];
        assert_eq!(vda.reads, 1628613);
        assert_eq!(vda.read_sectors, 107243602);
        assert_eq!(vda.writes, 226087);
        assert_eq!(vda.io_ms, 233708);
        let mut later = vda;
        later.reads += 100;
        later.writes += 100;
        later.read_ms += 500;
        later.write_ms += 1500;
        later.read_sectors += 2048;
        later.io_ms += 250;
        let v = rates("vda", &vda, &later, 0.5);
        assert_eq!(v["read_iops"], 200.0);
        assert_eq!(v["await_ms"], 10.0);
        assert_eq!(v["read_mb_s"], 2.0);
        assert_eq!(v["util_pct"], 50.0);
        assert!(!interesting("loop0") && interesting("nvme0n1"));
    }

    #[test]
    fn live_disk_io() {
        let a = Args::of(
            r#"{"sample_ms":200,"show_idle":true}"#,
            &["sample_ms", "device", "show_idle"],
        );
        let v = run(&a).expect("disk_io");
        assert!(v["devices"].is_array(), "{v}");
        let a = Args::of(
            r#"{"device":"nosuchdisk"}"#,
            &["sample_ms", "device", "show_idle"],
        );
        assert!(run(&a).unwrap_err().contains("no device \"nosuchdisk\""));
    }
}
