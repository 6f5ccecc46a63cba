//! sockstat: /proc/net/sockstat{,6} socket counts, TCP memory against
//! tcp_mem, and the listen-queue overflow counters.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::snmp;
use crate::tools::args::Args;

/// `TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 316` lines → {TCP: {inuse: 1…}}.
pub(crate) fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    text.lines()
        .filter_map(|l| {
            let (proto, rest) = l.split_once(':')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let row = f
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.parse().ok()?)))
                .collect();
            Some((proto.trim().to_string(), row))
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let v4 = parse(&crate::tools::procfs::read("/proc/net/sockstat")?);
    let v6 = parse(&std::fs::read_to_string("/proc/net/sockstat6").unwrap_or_default());
    // tcp_mem: pages at which TCP starts pressure and its hard limit.
    let tcp_mem: Vec<u64> = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let mem = v4.get("TCP").and_then(|t| t.get("mem")).copied();
    let c = snmp::read_all();
    Ok(json!({
        "ipv4": v4,
        "ipv6": v6,
        "tcp_mem_pages": mem,
        "tcp_mem_pressure_pages": tcp_mem.get(1),
        "tcp_mem_max_pages": tcp_mem.get(2),
        "listen_overflows": snmp::get(&c, "TcpExt", "ListenOverflows"),
        "listen_drops": snmp::get(&c, "TcpExt", "ListenDrops"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_lines() {
        let s = parse(include_str!("../fixtures/sockstat"));
        assert_eq!(s["sockets"]["used"], 17);
        assert_eq!(s["TCP"]["inuse"], 1);
        assert_eq!(s["TCP"]["mem"], 316);
        assert_eq!(s["FRAG"]["memory"], 0);
        let s6 = parse("TCP6: inuse 3\nUDP6: inuse 2\n");
        assert_eq!(s6["TCP6"]["inuse"], 3);
    }
}
