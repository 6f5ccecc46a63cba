//! listening_sockets: listening TCP and bound UDP sockets with their
//! owners. The owner is found by matching the socket's inode against the
//! `socket:[inode]` links in /proc/<pid>/fd, which only root can read for
//! other users' processes: without root, some owners stay unknown and
//! the answer says so.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::sockets::{Sock, read_tables};
use crate::tools::args::Args;
use crate::tools::procfs::pids;

/// Sockets listed at most.
const MAX: usize = 500;

/// `socket:[12345]` → 12345.
pub(crate) fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inode → (pid, process name) over every fd this process may read.
fn owners() -> HashMap<u64, (u64, String)> {
    let mut map = HashMap::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut name: Option<String> = None;
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(&link.to_string_lossy()) else {
                continue;
            };
            let n = name.get_or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            });
            map.entry(inode).or_insert((pid, n.clone()));
        }
    }
    map
}

/// The listening rows: TCP in LISTEN, UDP with no remote peer.
pub(crate) fn listening(
    rows: &[(&'static str, Sock)],
    port: Option<u16>,
) -> Vec<(&'static str, Sock)> {
    let mut v: Vec<(&'static str, Sock)> = rows
        .iter()
        .filter(|(proto, s)| {
            let listens = if proto.starts_with("tcp") {
                s.state == 0x0A
            } else {
                s.remote.port() == 0
            };
            listens && port.is_none_or(|p| s.local.port() == p)
        })
        .cloned()
        .collect();
    v.sort_by_key(|(proto, s)| (s.local.port(), *proto, s.local));
    v
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let port = args.opt_int("port", 1, 65535)?.map(|p| p as u16);
    let rows = read_tables(&["tcp", "tcp6", "udp", "udp6"])?;
    let socks = listening(&rows, port);
    let owners = owners();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let total = socks.len();
    let list: Vec<Value> = socks
        .into_iter()
        .take(MAX)
        .map(|(proto, s)| {
            let owner = owners.get(&s.inode);
            json!({
                "proto": proto,
                "address": s.local.ip().to_string(),
                "port": s.local.port(),
                "accept_queue": if proto.starts_with("tcp") { Some(s.rx_queue) } else { None },
                "uid": s.uid,
                "pid": owner.map(|o| o.0),
                "process": owner.map(|o| o.1.clone()),
            })
        })
        .collect();
    let mut out = json!({ "total": total, "sockets": list });
    if !root {
        out["owners_note"] =
            json!("not running as root: owners of other users' sockets are unknown");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::sockets::parse;
    use super::*;

    #[test]
    fn listeners_are_picked_and_sorted() {
        let rows: Vec<(&'static str, Sock)> = parse(include_str!("../fixtures/proc_net_tcp"))
            .into_iter()
            .map(|s| ("tcp", s))
            .collect();
        let l = listening(&rows, None);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].1.local.port(), 22);
        assert_eq!(l[1].1.local.port(), 8080);
        assert_eq!(listening(&rows, Some(8080)).len(), 1);
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[1]"), None);
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let a = Args::of(&format!(r#"{{"port":{port}}}"#), &["port"]);
        let v = run(&a).expect("listening_sockets");
        let s = &v["sockets"][0];
        assert_eq!(s["port"], port, "{v}");
        assert_eq!(s["address"], "127.0.0.1");
        assert_eq!(s["pid"], std::process::id(), "{v}");
    }
}
