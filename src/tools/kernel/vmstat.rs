//! vmstat: memory pressure counters of /proc/vmstat (major faults,
//! swapping, reclaim, compaction, OOM kills), totals since boot and
//! per-second rates sampled over one second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{read, round1};

/// Counters reported (those that exist on this kernel).
const KEYS: [&str; 14] = [
    "pgfault",
    "pgmajfault",
    "pswpin",
    "pswpout",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "allocstall_normal",
    "allocstall_movable",
    "compact_stall",
    "compact_fail",
    "oom_kill",
    "thp_fault_fallback",
];

/// /proc/vmstat `name value` lines.
pub(crate) fn parse(text: &str) -> BTreeMap<String, u64> {
    super::cgroup::parse_keyed(text)
}

/// Rates per second of `KEYS` between two readings `secs` apart.
pub(crate) fn rates(
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
    secs: f64,
) -> Map<String, Value> {
    KEYS.iter()
        .filter_map(|k| {
            let (x, y) = (a.get(*k)?, b.get(*k)?);
            Some((
                k.to_string(),
                json!(round1(y.saturating_sub(*x) as f64 / secs.max(0.001))),
            ))
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let a = parse(&read("/proc/vmstat")?);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let b = parse(&read("/proc/vmstat")?);
    let totals: Map<String, Value> = KEYS
        .iter()
        .filter_map(|k| Some((k.to_string(), json!(b.get(*k)?))))
        .collect();
    Ok(json!({ "totals": totals, "per_sec": rates(&a, &b, started.elapsed().as_secs_f64()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_rates() {
        let a = parse(include_str!("../fixtures/vmstat"));
        assert_eq!(a["pgmajfault"], 1200);
        assert_eq!(a["oom_kill"], 3);
        let mut b = a.clone();
        b.insert("pswpout".into(), a["pswpout"] + 500);
        let r = rates(&a, &b, 0.5);
        assert_eq!(r["pswpout"], 1000.0);
        assert_eq!(r["pgmajfault"], 0.0);
        assert!(
            !r.contains_key("allocstall_movable"),
            "absent counters are left out"
        );
    }
}
