//! tcp_retrans: TCP counters sampled over one second (what `nstat` and
//! `sar -n ETCP` show): retransmits against segments sent, timeouts,
//! resets, failed attempts and listen-queue overflows.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::snmp::{Counters, get, read_all};
use crate::tools::args::Args;
use crate::tools::procfs::round1;

/// (protocol, counter) reported.
const KEYS: [(&str, &str); 14] = [
    ("Tcp", "OutSegs"),
    ("Tcp", "InSegs"),
    ("Tcp", "RetransSegs"),
    ("Tcp", "InErrs"),
    ("Tcp", "OutRsts"),
    ("Tcp", "AttemptFails"),
    ("Tcp", "EstabResets"),
    ("Tcp", "CurrEstab"),
    ("TcpExt", "TCPTimeouts"),
    ("TcpExt", "TCPSynRetrans"),
    ("TcpExt", "TCPLostRetransmit"),
    ("TcpExt", "ListenOverflows"),
    ("TcpExt", "ListenDrops"),
    ("TcpExt", "TCPAbortOnTimeout"),
];

/// Totals, per-second rates and the retransmit ratio between two readings.
pub(crate) fn report(a: &Counters, b: &Counters, secs: f64) -> Value {
    let secs = secs.max(0.001);
    let mut totals = Map::new();
    let mut rates = Map::new();
    for (p, k) in KEYS {
        totals.insert(k.to_string(), json!(get(b, p, k)));
        if k != "CurrEstab" {
            let d = (get(b, p, k) - get(a, p, k)).max(0);
            rates.insert(k.to_string(), json!(round1(d as f64 / secs)));
        }
    }
    let pct = |retr: i64, out: i64| {
        if out <= 0 {
            0.0
        } else {
            round1(retr as f64 * 100.0 / out as f64)
        }
    };
    let d = |k: &str| (get(b, "Tcp", k) - get(a, "Tcp", k)).max(0);
    json!({
        "totals": totals,
        "per_sec": rates,
        "retrans_pct_now": pct(d("RetransSegs"), d("OutSegs")),
        "retrans_pct_since_boot": pct(get(b, "Tcp", "RetransSegs"), get(b, "Tcp", "OutSegs")),
    })
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let a = read_all();
    if !a.contains_key("Tcp") {
        return Err("cannot read the Tcp counters of /proc/net/snmp".into());
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let b = read_all();
    Ok(report(&a, &b, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::super::snmp::parse;
    use super::*;

    #[test]
    fn rates_and_ratios() {
        let a = parse(
            "Tcp: OutSegs RetransSegs CurrEstab\nTcp: 1000 10 5\nTcpExt: ListenOverflows\nTcpExt: 2\n",
        );
        let b = parse(
            "Tcp: OutSegs RetransSegs CurrEstab\nTcp: 1200 20 6\nTcpExt: ListenOverflows\nTcpExt: 4\n",
        );
        let v = report(&a, &b, 2.0);
        assert_eq!(v["per_sec"]["OutSegs"], 100.0);
        assert_eq!(v["per_sec"]["RetransSegs"], 5.0);
        assert_eq!(v["per_sec"]["ListenOverflows"], 1.0);
        assert_eq!(v["retrans_pct_now"], 5.0);
        assert_eq!(v["totals"]["CurrEstab"], 6);
        assert!(v["per_sec"].get("CurrEstab").is_none());
        assert_eq!(v["retrans_pct_since_boot"], round1(20.0 * 100.0 / 1200.0));
    }
}
