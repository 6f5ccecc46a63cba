//! Judges of the tools that mostly describe what is there (devices,
//! sockets, addresses, routes, interrupts, NUMA, volumes, processes):
//! one informational line each, a severity only where a number has a
//! threshold (inodes).

use serde_json::Value;

use super::level;
use crate::{Finding, Severity, int, list, num, text};

pub(super) fn judge(tool: &str, v: &Value) -> Option<Vec<Finding>> {
    let info = |area: &str, t: String| vec![Finding::new(Severity::Ok, area, t)];
    Some(match tool {
        "inodes" => {
            let mut f: Vec<Finding> = list(v, "filesystems")
                .iter()
                .take(5)
                .map(|fs| {
                    let pct = num(fs, "inodes_used_pct");
                    Finding::new(
                        level(pct, 90.0, 99.0),
                        "disk",
                        format!(
                            "{} inodes used {pct:.1} % ({} free)",
                            text(fs, "mount_point"),
                            int(fs, "inodes_free")
                        ),
                    )
                })
                .collect();
            if f.is_empty() {
                f.push(Finding::new(
                    Severity::Ok,
                    "disk",
                    "no filesystem with fixed inodes",
                ));
            }
            f
        }
        "block_devices" => {
            let devs = list(v, "devices");
            let names: Vec<String> = devs
                .iter()
                .take(8)
                .map(|d| {
                    format!(
                        "{} ({}, {})",
                        text(d, "name"),
                        text(d, "type"),
                        crate::fmt_bytes(int(d, "size_bytes"))
                    )
                })
                .collect();
            info(
                "block",
                format!("{} block devices: {}", devs.len(), names.join(", ")),
            )
        }
        "lvm" => {
            let vols = list(v, "volumes");
            let vgs = list(&v["volume_groups"], "groups");
            let free: Vec<String> = vgs
                .iter()
                .map(|g| {
                    format!(
                        "{} {} free",
                        text(g, "vg"),
                        crate::fmt_bytes(int(g, "free_bytes"))
                    )
                })
                .collect();
            info(
                "block",
                format!(
                    "{} device-mapper volumes{}",
                    vols.len(),
                    if free.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", free.join(", "))
                    }
                ),
            )
        }
        "listening_sockets" => {
            let socks = list(v, "sockets");
            let ports: Vec<String> = socks
                .iter()
                .take(12)
                .map(|s| match s.get("process").and_then(Value::as_str) {
                    Some(p) => format!("{}/{} ({p})", int(s, "port"), text(s, "proto")),
                    None => format!("{}/{}", int(s, "port"), text(s, "proto")),
                })
                .collect();
            info(
                "sockets",
                format!(
                    "{} listening sockets: {}",
                    int(v, "total"),
                    ports.join(", ")
                ),
            )
        }
        "addresses" => {
            let addrs: Vec<String> = list(v, "addresses")
                .iter()
                .filter(|a| text(a, "scope") == "global")
                .map(|a| {
                    format!(
                        "{} {}/{}",
                        text(a, "interface"),
                        text(a, "address"),
                        int(a, "prefix")
                    )
                })
                .collect();
            info(
                "network",
                format!(
                    "global addresses: {}",
                    if addrs.is_empty() {
                        "none".into()
                    } else {
                        addrs.join(", ")
                    }
                ),
            )
        }
        "routes" => {
            let gws: Vec<String> = list(v, "ipv4")
                .iter()
                .chain(list(v, "ipv6"))
                .filter(|r| r["default"] == true)
                .map(|r| format!("via {} dev {}", text(r, "gateway"), text(r, "interface")))
                .collect();
            info(
                "network",
                format!(
                    "{} IPv4 and {} IPv6 routes; default: {}",
                    list(v, "ipv4").len(),
                    list(v, "ipv6").len(),
                    if gws.is_empty() {
                        "none".into()
                    } else {
                        gws.join(", ")
                    }
                ),
            )
        }
        "interrupts" => {
            let top: Vec<String> = list(v, "interrupts")
                .iter()
                .take(3)
                .map(|i| {
                    format!(
                        "{} {} ({:.0} % on CPU {})",
                        text(i, "irq"),
                        text(i, "description"),
                        num(i, "busiest_cpu_pct"),
                        int(i, "busiest_cpu")
                    )
                })
                .collect();
            info(
                "interrupts",
                format!("busiest interrupts: {}", top.join("; ")),
            )
        }
        "numa" => {
            let nodes: Vec<String> = list(v, "nodes")
                .iter()
                .map(|n| format!("{} {:.1} % misses", text(n, "node"), num(n, "miss_pct")))
                .collect();
            info(
                "numa",
                format!("{} NUMA nodes: {}", nodes.len(), nodes.join(", ")),
            )
        }
        "process_count" => match v.get("states") {
            Some(states) => {
                let d = int(states, "D");
                vec![Finding::new(
                    if d > 0 {
                        Severity::Warning
                    } else {
                        Severity::Ok
                    },
                    "processes",
                    format!(
                        "{} processes, {d} in uninterruptible sleep (D)",
                        int(v, "total")
                    ),
                )]
            }
            None => info("processes", format!("{} processes match", int(v, "count"))),
        },
        "process_threads" => info(
            "processes",
            format!(
                "{} (pid {}) has {} threads",
                text(v, "name"),
                int(v, "pid"),
                int(v, "thread_count")
            ),
        ),
        "open_files" => info(
            "processes",
            format!(
                "{} (pid {}) has {} files open (limit {})",
                text(v, "name"),
                int(v, "pid"),
                int(v, "open"),
                int(v, "soft_limit")
            ),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::judge;
    use crate::Severity;
    use serde_json::json;

    #[test]
    fn inodes_are_judged_and_the_rest_described() {
        let v = json!({"filesystems": [{"mount_point": "/var", "inodes_used_pct": 95.0, "inodes_free": 10}]});
        assert_eq!(judge("inodes", &v)[0].severity, Severity::Warning);
        let v = json!({"total": 2, "sockets": [{"port": 22, "proto": "tcp", "process": "sshd"}, {"port": 53, "proto": "udp"}]});
        assert_eq!(
            judge("listening_sockets", &v)[0].text,
            "2 listening sockets: 22/tcp (sshd), 53/udp"
        );
        let v = json!({"ipv4": [{"default": true, "gateway": "10.0.0.1", "interface": "eth0"}], "ipv6": []});
        assert!(
            judge("routes", &v)[0]
                .text
                .ends_with("default: via 10.0.0.1 dev eth0")
        );
        let v = json!({"total": 10, "states": {"D": 2}});
        assert_eq!(judge("process_count", &v)[0].severity, Severity::Warning);
    }
}
