//! neighbours: the ARP table and its use against gc_thresh3, past which
//! the kernel refuses new neighbours ("neighbour table overflow").

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::round1;

/// Entries listed at most.
const MAX: usize = 500;

/// ARP flags → state.
fn state(flags: u32) -> &'static str {
    if flags & 0x4 != 0 {
        "permanent"
    } else if flags & 0x2 != 0 {
        "reachable"
    } else {
        "incomplete"
    }
}

/// /proc/net/arp rows.
pub(crate) fn parse_arp(text: &str) -> Vec<Value> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
            Some(json!({ "ip": f[0], "mac": f[3], "interface": f[5], "state": state(flags) }))
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let text = crate::tools::procfs::read("/proc/net/arp")?;
    let mut rows = parse_arp(&text);
    let count = rows.len();
    let thresh = |n: u8| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/neigh/default/gc_thresh{n}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let max = thresh(3);
    let incomplete = rows.iter().filter(|r| r["state"] == "incomplete").count();
    rows.truncate(MAX);
    Ok(json!({
        "count": count,
        "incomplete": incomplete,
        "gc_thresh3": max,
        "used_pct": max.filter(|m| *m > 0).map(|m| round1(count as f64 * 100.0 / m as f64)),
        "entries": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_rows() {
        let r = parse_arp(include_str!("../fixtures/arp"));
        assert_eq!(
            r,
            vec![
                json!({"ip": "192.0.2.1", "mac": "02:fc:00:00:00:05", "interface": "eth0", "state": "reachable"})
            ]
        );
        let r = parse_arp(
            "h\n10.0.0.7 0x1 0x0 00:00:00:00:00:00 * eth1\n10.0.0.8 0x1 0x6 aa:bb:cc:dd:ee:ff * eth1\n",
        );
        assert_eq!(r[0]["state"], "incomplete");
        assert_eq!(r[1]["state"], "permanent");
    }

    #[test]
    fn live_neighbours() {
        let v = run(&Args::empty()).expect("neighbours");
        assert!(v["count"].is_u64(), "{v}");
    }
}
