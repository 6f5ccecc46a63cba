//! tcp_connections: TCP connections by state, the local ports holding the
//! most CLOSE_WAIT (an application not closing) and TIME_WAIT (churn), and
//! the busiest remote peers.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde_json::{Value, json};

use super::sockets::{Sock, read_tables};
use crate::tools::args::Args;
use crate::tools::procfs::tcp_state_name;

fn top<K: ToString>(counts: HashMap<K, u64>, limit: usize, key: &str) -> Vec<Value> {
    let mut v: Vec<(K, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    v.into_iter()
        .take(limit)
        .map(|(k, n)| json!({ key: k.to_string(), "count": n }))
        .collect()
}

pub(crate) fn summarize(socks: &[Sock], limit: usize) -> Value {
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    let mut close_wait: HashMap<u16, u64> = HashMap::new();
    let mut time_wait: HashMap<u16, u64> = HashMap::new();
    let mut peers: HashMap<IpAddr, u64> = HashMap::new();
    for s in socks {
        *states.entry(tcp_state_name(s.state)).or_default() += 1;
        match s.state {
            0x08 => *close_wait.entry(s.local.port()).or_default() += 1,
            0x06 => *time_wait.entry(s.local.port()).or_default() += 1,
            0x01 => *peers.entry(s.remote.ip()).or_default() += 1,
            _ => {}
        }
    }
    json!({
        "total": socks.len(),
        "states": states,
        "close_wait_by_local_port": top(close_wait, limit, "port"),
        "time_wait_by_local_port": top(time_wait, limit, "port"),
        "established_by_peer": top(peers, limit, "peer"),
    })
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 50, 10)? as usize;
    let socks: Vec<Sock> = read_tables(&["tcp", "tcp6"])?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    Ok(summarize(&socks, limit))
}

#[cfg(test)]
mod tests {
    use super::super::sockets::parse;
    use super::*;

    #[test]
    fn states_ports_and_peers() {
        let socks = parse(include_str!("../fixtures/proc_net_tcp"));
        let v = summarize(&socks, 5);
        assert_eq!(v["total"], 4);
        assert_eq!(v["states"]["LISTEN"], 2);
        assert_eq!(v["states"]["CLOSE_WAIT"], 1);
        assert_eq!(
            v["close_wait_by_local_port"],
            json!([{"port": "50000", "count": 1}])
        );
        assert_eq!(
            v["established_by_peer"],
            json!([{"peer": "10.0.0.9", "count": 1}])
        );
    }

    #[test]
    fn live_connections() {
        let v = run(&Args::empty()).expect("tcp_connections");
        assert!(v["states"].is_object(), "{v}");
    }
}
