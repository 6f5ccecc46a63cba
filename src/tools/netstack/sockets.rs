//! /proc/net/{tcp,tcp6,udp,udp6} rows with decoded addresses, shared by
//! the socket tools.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One socket row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sock {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: u8,
    pub(crate) tx_queue: u64,
    pub(crate) rx_queue: u64,
    pub(crate) uid: u64,
    pub(crate) inode: u64,
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6), each 32-bit
/// word in host (little-endian) byte order.
pub(crate) fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The rows of one /proc/net socket table.
pub(crate) fn parse(text: &str) -> Vec<Sock> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (tx, rx) = f.get(4)?.split_once(':')?;
            Some(Sock {
                local: parse_addr(f.get(1)?)?,
                remote: parse_addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                tx_queue: u64::from_str_radix(tx, 16).unwrap_or(0),
                rx_queue: u64::from_str_radix(rx, 16).unwrap_or(0),
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// All rows of the given tables that could be read, with the protocol
/// name of each (`tcp`, `tcp6`, …); Err when none could.
pub(crate) fn read_tables(names: &[&'static str]) -> Result<Vec<(&'static str, Sock)>, String> {
    let mut out = Vec::new();
    let mut any = false;
    for n in names {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/net/{n}")) {
            any = true;
            out.extend(parse(&t).into_iter().map(|s| (*n, s)));
        }
    }
    if !any {
        return Err(format!(
            "cannot read /proc/net/{}",
            names.join(" or /proc/net/")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_decode() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("00000000:0016"),
            Some("0.0.0.0:22".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("127.0.0.1:80".parse().expect("addr")),
            "v4-mapped shown as v4"
        );
        assert_eq!(
            parse_addr("B80D0120000000000000000001000000:01BB"),
            Some("[2001:db8::1]:443".parse().expect("addr"))
        );
        assert_eq!(parse_addr("zz:1"), None);
    }

    #[test]
    fn tables_parse() {
        let rows = parse(include_str!("../fixtures/proc_net_tcp"));
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local.port(), 22);
        assert_eq!(rows[0].state, 0x0A);
        assert_eq!(rows[0].rx_queue, 3);
        assert_eq!(rows[0].inode, 12345);
        assert_eq!(rows[2].state, 0x08);
        assert_eq!(rows[2].remote, "10.0.0.9:5432".parse().expect("addr"));
    }
}
