//! process_count: how many processes match a name or command-line text
//! (is the daemon running? how many workers?), or, with neither, the
//! most common names and the count per state.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{parse_pid_stat, pids};
use crate::tools::procs::cmdline_of;

/// Tallies (name, state) pairs: counts per state and the `limit` most
/// common names.
pub(crate) fn tally(
    procs: &[(String, String)],
    limit: usize,
) -> (BTreeMap<String, u64>, Vec<(String, u64)>) {
    let mut states = BTreeMap::new();
    let mut names: HashMap<&str, u64> = HashMap::new();
    for (name, state) in procs {
        *states.entry(state.clone()).or_insert(0) += 1;
        *names.entry(name).or_insert(0) += 1;
    }
    let mut top: Vec<(String, u64)> = names.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(limit);
    (states, top)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let name = args.string("name", 128)?;
    let contains = args.string("cmdline_contains", 256)?;
    let limit = args.int("limit", 1, 100, 20)? as usize;
    let procs: Vec<(u64, String, String)> = pids()
        .filter_map(|p| {
            let st = parse_pid_stat(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?)?;
            Some((p, st.name, st.state))
        })
        .collect();
    if name.is_none() && contains.is_none() {
        let pairs: Vec<(String, String)> = procs
            .iter()
            .map(|(_, n, s)| (n.clone(), s.clone()))
            .collect();
        let (states, top) = tally(&pairs, limit);
        let top: Vec<Value> = top
            .into_iter()
            .map(|(n, c)| json!({ "name": n, "count": c }))
            .collect();
        return Ok(json!({ "total": procs.len(), "states": states, "top_names": top }));
    }
    let me = u64::from(std::process::id());
    let matches: Vec<(u64, String, String)> = procs
        .into_iter()
        .filter(|(pid, n, _)| {
            *pid != me
                && name.as_ref().is_none_or(|want| n == want)
                && contains
                    .as_ref()
                    .is_none_or(|c| cmdline_of(*pid).is_some_and(|l| l.contains(c.as_str())))
        })
        .collect();
    let list: Vec<Value> = matches
        .iter()
        .take(limit)
        .map(
            |(pid, n, s)| json!({ "pid": pid, "name": n, "state": s, "cmdline": cmdline_of(*pid) }),
        )
        .collect();
    Ok(
        json!({ "name": name, "cmdline_contains": contains, "count": matches.len(), "processes": list }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies() {
        let p: Vec<(String, String)> = [
            ("nginx", "S"),
            ("nginx", "S"),
            ("bash", "R"),
            ("nginx", "D"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let (states, top) = tally(&p, 1);
        assert_eq!(states["S"], 2);
        assert_eq!(states["D"], 1);
        assert_eq!(top, vec![("nginx".to_string(), 3)]);
    }

    #[test]
    fn a_sleeping_child_is_counted_and_its_secret_masked() {
        // `; true` keeps the shell from exec-ing sleep, so its own
        // command line (with the secret) stays.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 30; true",
                "catpaw-count-probe",
                "--password=Hunter2secret",
            ])
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let a = Args::of(
            r#"{"cmdline_contains":"catpaw-count-probe"}"#,
            &["name", "cmdline_contains", "limit"],
        );
        let v = run(&a).expect("count");
        child.kill().ok();
        child.wait().ok();
        assert_eq!(v["count"], 1, "{v}");
        assert_eq!(v["processes"][0]["pid"], child.id(), "{v}");
        let out = crate::tools::output::finish(v, false);
        assert!(!out.contains("Hunter2secret"), "{out}");
    }
}
