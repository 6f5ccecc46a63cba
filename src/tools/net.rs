//! network_interfaces and tcp_summary, from /proc/net and /sys/class/net
//! (no netlink: plain files are enough and work in any namespace).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::args::Args;
use super::procfs::{parse_net_dev, parse_tcp, read, tcp_state_name};

/// Listening ports kept.
const MAX_PORTS: usize = 200;

/// A trimmed `/sys/class/net/<name>/<file>`, "" when unreadable.
fn sys(name: &str, file: &str) -> String {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return String::new();
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/{file}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn interfaces(_args: &Args) -> Result<Value, String> {
    let rows: Vec<Value> = parse_net_dev(&read("/proc/net/dev")?)
        .into_iter()
        .map(|d| {
            json!({
                "name": d.name,
                "oper_state": sys(&d.name, "operstate"),
                "mtu": sys(&d.name, "mtu").parse::<u64>().unwrap_or(0),
                "mac": sys(&d.name, "address"),
                "rx_bytes": d.rx[0], "rx_packets": d.rx[1], "rx_errors": d.rx[2], "rx_dropped": d.rx[3],
                "tx_bytes": d.tx[0], "tx_packets": d.tx[1], "tx_errors": d.tx[2], "tx_dropped": d.tx[3],
            })
        })
        .collect();
    Ok(json!({ "interfaces": rows }))
}

pub(crate) fn tcp_summary(_args: &Args) -> Result<Value, String> {
    let mut sockets = Vec::new();
    let mut readable = false;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            readable = true;
            sockets.extend(parse_tcp(&text));
        }
    }
    if !readable {
        return Err("cannot read /proc/net/tcp or /proc/net/tcp6".into());
    }
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ports = BTreeSet::new();
    for (state, port) in &sockets {
        *states.entry(tcp_state_name(*state)).or_default() += 1;
        if *state == 0x0A {
            ports.insert(*port);
        }
    }
    Ok(json!({
        "total": sockets.len(),
        "states": states,
        "listening_ports": ports.into_iter().take(MAX_PORTS).collect::<Vec<_>>(),
    }))
}
