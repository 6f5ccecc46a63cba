//! numa: per-node memory and allocation statistics from
//! /sys/devices/system/node.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::unavailable;
use crate::tools::procfs::round1;

const BASE: &str = "/sys/devices/system/node";

/// `numastat`: `key value` lines.
pub(crate) fn parse_numastat(text: &str) -> BTreeMap<String, u64> {
    super::cgroup::parse_keyed(text)
}

/// A node's `meminfo`: `Node 0 MemTotal:  123 kB` → bytes by key.
pub(crate) fn parse_node_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (head, rest) = l.split_once(':')?;
            let key = head.split_whitespace().nth(2)?;
            let mut f = rest.split_whitespace();
            let n: u64 = f.next()?.parse().ok()?;
            let mult = if f.next() == Some("kB") { 1024 } else { 1 };
            Some((key.to_string(), n.saturating_mul(mult)))
        })
        .collect()
}

/// One node's row.
pub(crate) fn node_row(node: &str, numastat: &str, meminfo: &str) -> Value {
    let s = parse_numastat(numastat);
    let m = parse_node_meminfo(meminfo);
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    let (hit, miss) = (get("numa_hit"), get("numa_miss"));
    json!({
        "node": node,
        "mem_total_bytes": m.get("MemTotal").copied().unwrap_or(0),
        "mem_free_bytes": m.get("MemFree").copied().unwrap_or(0),
        "numa_hit": hit,
        "numa_miss": miss,
        "numa_foreign": get("numa_foreign"),
        "other_node": get("other_node"),
        "miss_pct": if hit + miss == 0 { 0.0 } else { round1(miss as f64 * 100.0 / (hit + miss) as f64) },
    })
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let Ok(dir) = std::fs::read_dir(BASE) else {
        return Ok(unavailable(format!(
            "{BASE} is missing: the kernel has no NUMA support"
        )));
    };
    let mut nodes: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("node")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    nodes.sort_by_key(|n| n[4..].parse::<u64>().unwrap_or(0));
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let f = |file: &str| {
                std::fs::read_to_string(format!("{BASE}/{n}/{file}")).unwrap_or_default()
            };
            node_row(n, &f("numastat"), &f("meminfo"))
        })
        .collect();
    Ok(json!({ "available": true, "node_count": rows.len(), "nodes": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rows() {
        let meminfo = "Node 0 MemTotal:       16384 kB\nNode 0 MemFree:         4096 kB\nNode 0 HugePages_Total:     0\n";
        let v = node_row("node0", include_str!("../fixtures/numastat"), meminfo);
        assert_eq!(v["numa_hit"], 333847769u64);
        assert_eq!(v["miss_pct"], 0.0);
        assert_eq!(v["mem_total_bytes"], 16384 * 1024);
        assert_eq!(v["mem_free_bytes"], 4096 * 1024);
        let v = node_row("node1", "numa_hit 300\nnuma_miss 100\n", "");
        assert_eq!(v["miss_pct"], 25.0);
    }

    #[test]
    fn live_numa() {
        let v = run(&Args::empty()).expect("numa");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
