//! routes: /proc/net/route and /proc/net/ipv6_route.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use crate::tools::args::Args;

/// Routes listed at most per family.
const MAX: usize = 500;

fn v4(hex: &str) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(
        u32::from_str_radix(hex, 16).ok()?.to_le_bytes(),
    ))
}

/// /proc/net/route rows.
pub(crate) fn parse_v4(text: &str) -> Vec<Value> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let dest = v4(f[1])?;
            let gw = v4(f[2])?;
            let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
            let mask = v4(f[7])?;
            let prefix = u32::from(mask).count_ones();
            Some(json!({
                "destination": format!("{dest}/{prefix}"),
                "gateway": if gw.is_unspecified() { None } else { Some(gw.to_string()) },
                "interface": f[0],
                "metric": f[6].parse::<u64>().unwrap_or(0),
                "up": flags & 0x1 != 0,
                "default": dest.is_unspecified() && prefix == 0,
            }))
        })
        .collect()
}

fn v6(hex: &str) -> Option<Ipv6Addr> {
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(Ipv6Addr::from(b))
}

/// /proc/net/ipv6_route rows (local and loopback table entries left out).
pub(crate) fn parse_v6(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let dest = v6(f[0])?;
            let prefix = u8::from_str_radix(f[1], 16).ok()?;
            let gw = v6(f[4])?;
            let flags = u32::from_str_radix(f[8], 16).unwrap_or(0);
            if f[9] == "lo" {
                return None;
            }
            Some(json!({
                "destination": format!("{dest}/{prefix}"),
                "gateway": if gw.is_unspecified() { None } else { Some(gw.to_string()) },
                "interface": f[9],
                "metric": u32::from_str_radix(f[5], 16).unwrap_or(0),
                "up": flags & 0x1 != 0,
                "default": dest.is_unspecified() && prefix == 0,
            }))
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut v4 = read("/proc/net/route")
        .map(|t| parse_v4(&t))
        .unwrap_or_default();
    let mut v6 = read("/proc/net/ipv6_route")
        .map(|t| parse_v6(&t))
        .unwrap_or_default();
    v4.truncate(MAX);
    v6.truncate(MAX);
    let defaults = v4
        .iter()
        .chain(v6.iter())
        .filter(|r| r["default"] == true)
        .count();
    Ok(json!({ "default_routes": defaults, "ipv4": v4, "ipv6": v6 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_tables() {
        let r = parse_v4(include_str!("../fixtures/route"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["destination"], "0.0.0.0/0");
        assert_eq!(r[0]["gateway"], "192.0.2.1");
        assert_eq!(r[0]["default"], true);
        assert_eq!(r[1]["destination"], "192.0.2.0/24");
        assert_eq!(r[1]["gateway"], Value::Null);
        let r6 = parse_v6(include_str!("../fixtures/ipv6_route"));
        assert!(r6.iter().any(|r| r["destination"] == "fd00::/64"), "{r6:?}");
        let def = r6
            .iter()
            .find(|r| r["default"] == true)
            .expect("default v6");
        assert_eq!(def["gateway"], "fd00::1");
    }
}
