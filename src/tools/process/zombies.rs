//! zombies: processes in state Z and the parents that have not reaped
//! them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{PidStat, parse_pid_stat, pids};
use crate::tools::procs::cmdline_of;

/// A zombie: (pid, parent pid, name).
pub(crate) type Zombie = (u64, u64, String);

/// Zombies among (pid, stat) and, per parent pid, how many it holds.
pub(crate) fn find(procs: &[(u64, PidStat)]) -> (Vec<Zombie>, BTreeMap<u64, u64>) {
    let mut zombies = Vec::new();
    let mut by_parent = BTreeMap::new();
    for (pid, st) in procs {
        if st.state == "Z" {
            zombies.push((*pid, st.ppid, st.name.clone()));
            *by_parent.entry(st.ppid).or_insert(0) += 1;
        }
    }
    (zombies, by_parent)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 200, 50)? as usize;
    let procs: Vec<(u64, PidStat)> = pids()
        .filter_map(|p| {
            Some((
                p,
                parse_pid_stat(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?)?,
            ))
        })
        .collect();
    let (zombies, by_parent) = find(&procs);
    let name_of = |pid: u64| {
        procs
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, s)| s.name.clone())
    };
    let mut parents: Vec<(u64, u64)> = by_parent.into_iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.1));
    let parents: Vec<Value> = parents
        .into_iter()
        .take(limit)
        .map(|(ppid, n)| json!({ "pid": ppid, "name": name_of(ppid), "zombies": n, "cmdline": cmdline_of(ppid) }))
        .collect();
    let list: Vec<Value> = zombies
        .iter()
        .take(limit)
        .map(|(pid, ppid, name)| json!({ "pid": pid, "ppid": ppid, "name": name }))
        .collect();
    Ok(json!({ "count": zombies.len(), "parents": parents, "zombies": list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_are_grouped_by_parent() {
        let procs: Vec<(u64, PidStat)> = include_str!("../fixtures/pid_stats")
            .lines()
            .filter_map(|l| {
                let st = parse_pid_stat(l)?;
                Some((l.split_whitespace().next()?.parse().ok()?, st))
            })
            .collect();
        assert_eq!(procs.len(), 4);
        let (z, parents) = find(&procs);
        assert_eq!(
            z,
            vec![(201, 100, "worker".into()), (202, 100, "worker".into())]
        );
        assert_eq!(parents.get(&100), Some(&2));
    }

    #[test]
    fn a_real_zombie_is_found_with_its_parent() {
        // A child that has exited but is not yet waited for is a zombie.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = u64::from(child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = false;
        while std::time::Instant::now() < deadline {
            let v = run(&Args::empty()).expect("zombies");
            if v["zombies"]
                .as_array()
                .is_some_and(|z| z.iter().any(|r| r["pid"] == pid))
            {
                assert!(
                    v["parents"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|r| r["pid"] == std::process::id())),
                    "{v}"
                );
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait().expect("reap");
        assert!(seen, "zombie {pid} never listed");
    }
}
