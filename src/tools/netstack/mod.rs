//! The network stack as the kernel sees it: TCP retransmits and states,
//! listening sockets with their owners, routes, neighbours, addresses,
//! conntrack, socket counters and softnet drops. /proc/net and /sys
//! only (no netlink, no `ss`): plain files work in any namespace.

mod addresses;
mod connections;
mod conntrack;
mod listening;
mod neighbours;
mod retrans;
mod routes;
mod snmp;
mod sockets;
mod sockstat;
mod softnet;

use super::tool::{NO_ARGS, Tool};

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "tcp_retrans",
        "TCP retransmits, timeouts, resets and listen overflows: totals since boot and per-second rates over 1 s",
        NO_ARGS,
        retrans::run,
    ),
    Tool::new(
        "tcp_connections",
        "TCP connections by state, the local ports with the most CLOSE_WAIT/TIME_WAIT, the busiest remote peers",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        connections::run,
    ),
    Tool::new(
        "listening_sockets",
        "listening TCP and bound UDP sockets with address, accept queue and owning process (all owners need root)",
        r#"{"type":"object","properties":{"port":{"type":"integer","minimum":1,"maximum":65535}},"additionalProperties":false}"#,
        listening::run,
    ),
    Tool::new(
        "routes",
        "IPv4 and IPv6 routing tables: destination, gateway, interface, metric, default routes",
        NO_ARGS,
        routes::run,
    ),
    Tool::new(
        "neighbours",
        "ARP table (IPv4 neighbours) with state, and its use against the kernel's gc_thresh3 limit",
        NO_ARGS,
        neighbours::run,
    ),
    Tool::new(
        "addresses",
        "IP addresses of every interface with prefix length and scope",
        NO_ARGS,
        addresses::run,
    ),
    Tool::new(
        "conntrack",
        "connection tracking table use (count/max) and its drop, early-drop and insert-failure counters",
        NO_ARGS,
        conntrack::run,
    ),
    Tool::new(
        "sockstat",
        "socket counts by protocol (in use, orphans, time-wait, memory) and TCP memory against its limits",
        NO_ARGS,
        sockstat::run,
    ),
    Tool::new(
        "softnet",
        "per-CPU packets processed, dropped (backlog full) and time-squeezed in the network receive path",
        NO_ARGS,
        softnet::run,
    ),
];
