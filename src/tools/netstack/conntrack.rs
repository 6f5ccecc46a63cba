//! conntrack: connection tracking table use and the kernel's per-CPU
//! statistics (/proc/net/stat/nf_conntrack, hexadecimal).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::unavailable;
use crate::tools::procfs::round1;

/// Sums the per-CPU rows of /proc/net/stat/nf_conntrack by column name.
pub(crate) fn parse_stat(text: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines
        .next()
        .map(|h| h.split_whitespace().collect())
        .unwrap_or_default();
    let mut sums = BTreeMap::new();
    for l in lines {
        for (n, v) in names.iter().zip(l.split_whitespace()) {
            if *n == "entries" {
                continue;
            }
            *sums.entry(n.to_string()).or_insert(0) += u64::from_str_radix(v, 16).unwrap_or(0);
        }
    }
    sums
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let (Some(count), Some(max)) = (
        read("/proc/sys/net/netfilter/nf_conntrack_count"),
        read("/proc/sys/net/netfilter/nf_conntrack_max"),
    ) else {
        return Ok(unavailable(
            "/proc/sys/net/netfilter/nf_conntrack_count is missing: the nf_conntrack module is not loaded (no connection tracking)",
        ));
    };
    let stat = std::fs::read_to_string("/proc/net/stat/nf_conntrack")
        .map(|t| parse_stat(&t))
        .unwrap_or_default();
    let pick = |k: &str| stat.get(k).copied();
    Ok(json!({
        "available": true,
        "count": count,
        "max": max,
        "used_pct": if max == 0 { 0.0 } else { round1(count as f64 * 100.0 / max as f64) },
        "buckets": read("/proc/sys/net/netfilter/nf_conntrack_buckets"),
        "drop": pick("drop"),
        "early_drop": pick("early_drop"),
        "insert_failed": pick("insert_failed"),
        "invalid": pick("invalid"),
        "search_restart": pick("search_restart"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_rows_are_summed() {
        let s = parse_stat(include_str!("../fixtures/nf_conntrack_stat"));
        assert_eq!(s["drop"], 0);
        let text = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop\n\
                    00000010 00000000 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000001 00000002 00000003\n\
                    00000010 00000000 00000000 00000000 00000006 00000000 00000000 00000000 00000000 00000001 000000ff 00000000\n";
        let s = parse_stat(text);
        assert_eq!(s["invalid"], 16);
        assert_eq!(s["insert_failed"], 2);
        assert_eq!(s["drop"], 257);
        assert_eq!(s["early_drop"], 3);
        assert!(!s.contains_key("entries"), "a gauge, not a counter");
    }

    #[test]
    fn live_conntrack() {
        let v = run(&Args::empty()).expect("conntrack");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
