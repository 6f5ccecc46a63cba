//! addresses: every interface's IP addresses, from getifaddrs(3) (the
//! kernel offers IPv4 addresses in no /proc file; IPv6 ones also get
//! their scope from /proc/net/if_inet6).

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use crate::tools::args::Args;

/// Addresses listed at most.
const MAX: usize = 1000;

/// The address in a sockaddr (IPv4 and IPv6 only).
///
/// # Safety
/// `sa` must be null or point to a valid sockaddr of its family's size.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null and valid per the contract.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a = unsafe { &*(sa as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a = unsafe { &*(sa as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// (interface, address, prefix length) of every IP address.
fn getifaddrs() -> Result<Vec<(String, IpAddr, u32)>, String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(format!(
            "getifaddrs failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        // SAFETY: address fields are null or valid sockaddrs; the name is a C string.
        let (addr, mask) = unsafe { (ip_of(ifa.ifa_addr), ip_of(ifa.ifa_netmask)) };
        if let Some(addr) = addr {
            // SAFETY: ifa_name is a valid NUL-terminated string for the node's life.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            let prefix = match mask {
                Some(IpAddr::V4(m)) => u32::from(m).count_ones(),
                Some(IpAddr::V6(m)) => u128::from(m).count_ones(),
                None => 0,
            };
            out.push((name, addr, prefix));
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// /proc/net/if_inet6 → address → scope name.
pub(crate) fn inet6_scopes(text: &str) -> BTreeMap<Ipv6Addr, &'static str> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = f.first()?;
            let mut b = [0u8; 16];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
            }
            let scope = match u8::from_str_radix(f.get(3)?, 16).ok()? {
                0x00 => "global",
                0x10 => "host",
                0x20 => "link",
                0x40 => "site",
                _ => "other",
            };
            Some((Ipv6Addr::from(b), scope))
        })
        .collect()
}

fn scope_v4(a: Ipv4Addr) -> &'static str {
    if a.is_loopback() {
        "host"
    } else if a.is_link_local() {
        "link"
    } else {
        "global"
    }
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let scopes = inet6_scopes(&std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default());
    let mut rows: Vec<Value> = getifaddrs()?
        .into_iter()
        .map(|(iface, ip, prefix)| {
            let (family, scope) = match ip {
                IpAddr::V4(a) => ("inet", scope_v4(a)),
                IpAddr::V6(a) => ("inet6", scopes.get(&a).copied().unwrap_or("other")),
            };
            json!({ "interface": iface, "family": family, "address": ip.to_string(), "prefix": prefix, "scope": scope })
        })
        .collect();
    rows.truncate(MAX);
    Ok(json!({ "addresses": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet6_scopes_parse() {
        let s = inet6_scopes(include_str!("../fixtures/if_inet6"));
        assert_eq!(s[&"fd00::2".parse::<Ipv6Addr>().expect("ip")], "global");
        assert_eq!(
            s[&"fe80::fc:ff:fe00:1".parse::<Ipv6Addr>().expect("ip")],
            "link"
        );
        assert_eq!(s[&Ipv6Addr::LOCALHOST], "host");
    }

    #[test]
    fn loopback_is_listed() {
        let v = run(&Args::empty()).expect("addresses");
        let rows = v["addresses"].as_array().expect("rows");
        assert!(
            rows.iter()
                .any(|r| r["address"] == "127.0.0.1" && r["prefix"] == 8 && r["scope"] == "host"),
            "{v}"
        );
    }
}
