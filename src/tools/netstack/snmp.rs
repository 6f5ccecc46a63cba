//! /proc/net/snmp and /proc/net/netstat: pairs of lines, a header of
//! counter names then their values, each prefixed by the protocol
//! (`Tcp:`, `TcpExt:`).

use std::collections::BTreeMap;

/// `{protocol: {counter: value}}`.
pub(crate) type Counters = BTreeMap<String, BTreeMap<String, i64>>;

pub(crate) fn parse(text: &str) -> Counters {
    let mut out = Counters::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        let row = out.entry(p1.to_string()).or_default();
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse() {
                row.insert(n.to_string(), v);
            }
        }
    }
    out
}

/// Both files merged; "" for an unreadable one.
pub(crate) fn read_all() -> Counters {
    let mut c = parse(&std::fs::read_to_string("/proc/net/snmp").unwrap_or_default());
    c.extend(parse(
        &std::fs::read_to_string("/proc/net/netstat").unwrap_or_default(),
    ));
    c
}

/// One counter, 0 when absent.
pub(crate) fn get(c: &Counters, proto: &str, name: &str) -> i64 {
    c.get(proto).and_then(|r| r.get(name)).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_value_lines_pair_up() {
        let c = parse(include_str!("../fixtures/snmp"));
        assert!(get(&c, "Tcp", "OutSegs") > 0);
        assert_eq!(get(&c, "Tcp", "MaxConn"), -1);
        assert!(c.contains_key("Udp"));
        let n = parse(include_str!("../fixtures/netstat"));
        assert!(n["TcpExt"].contains_key("ListenOverflows"));
        assert_eq!(get(&n, "Nope", "x"), 0);
    }
}
