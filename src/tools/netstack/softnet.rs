//! softnet: /proc/net/softnet_stat, one hexadecimal row per CPU. Drops
//! mean the backlog queue (net.core.netdev_max_backlog) was full; time
//! squeezes that the receive softirq ran out of budget.

use serde_json::{Value, json};

use crate::tools::args::Args;

/// (processed, dropped, time_squeeze) per CPU.
pub(crate) fn parse(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map_while(|x| u64::from_str_radix(x, 16).ok())
                .collect();
            Some((*f.first()?, *f.get(1)?, *f.get(2)?))
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let rows = parse(&crate::tools::procfs::read("/proc/net/softnet_stat")?);
    let sum = |f: fn(&(u64, u64, u64)) -> u64| rows.iter().map(f).sum::<u64>();
    let busy: Vec<Value> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.1 > 0 || r.2 > 0)
        .map(
            |(cpu, r)| json!({ "cpu": cpu, "processed": r.0, "dropped": r.1, "time_squeeze": r.2 }),
        )
        .collect();
    let backlog = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Ok(json!({
        "cpus": rows.len(),
        "processed": sum(|r| r.0),
        "dropped": sum(|r| r.1),
        "time_squeeze": sum(|r| r.2),
        "netdev_max_backlog": backlog,
        "cpus_with_drops_or_squeezes": busy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_rows() {
        let r = parse(include_str!("../fixtures/softnet_stat"));
        assert!(r.len() >= 2);
        assert_eq!(r[0].0, 0x15434);
        let r = parse("0000ffff 00000002 0000000a 0\n00000001 00000000 00000000 0\n");
        assert_eq!(r, vec![(0xffff, 2, 10), (1, 0, 0)]);
    }

    #[test]
    fn live_softnet() {
        let v = run(&Args::empty()).expect("softnet");
        assert!(v["cpus"].as_u64().unwrap_or(0) >= 1, "{v}");
    }
}
