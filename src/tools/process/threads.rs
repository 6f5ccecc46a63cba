//! process_threads: the threads of one process from /proc/<pid>/task,
//! busiest first, with the kernel function each sleeps in (wchan): a
//! thread stuck in D state shows where.

use serde_json::{Value, json};

use super::{busiest, check_pid};
use crate::tools::args::Args;
use crate::tools::procfs::parse_pid_stat;

/// Thread rows: (tid, name, state, cpu ticks, wchan), busiest first.
pub(crate) fn rows(pid: u64) -> Vec<(u64, String, String, u64, String)> {
    let mut v: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let tid: u64 = e.file_name().to_str()?.parse().ok()?;
            let st = parse_pid_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)?;
            let wchan = std::fs::read_to_string(e.path().join("wchan")).unwrap_or_default();
            let wchan = if wchan == "0" { String::new() } else { wchan };
            Some((tid, st.name, st.state, st.cpu_ticks, wchan))
        })
        .collect();
    v.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
    v
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 200, 50)? as usize;
    let pid = match args.opt_int("pid", 1, u64::from(u32::MAX))? {
        Some(p) => p,
        None => busiest("task").ok_or("no readable process in /proc")?,
    };
    check_pid(pid)?;
    let all = rows(pid);
    let mut states = std::collections::BTreeMap::<String, u64>::new();
    for r in &all {
        *states.entry(r.2.clone()).or_default() += 1;
    }
    let threads: Vec<Value> = all
        .iter()
        .take(limit)
        .map(|(tid, name, state, ticks, wchan)| json!({ "tid": tid, "name": name, "state": state, "cpu_ticks": ticks, "wchan": wchan }))
        .collect();
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Ok(
        json!({ "pid": pid, "name": name.trim(), "thread_count": all.len(), "states": states, "threads": threads }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_of_this_process() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("catpaw-probe".into())
            .spawn(move || {
                let _ = up_tx.send(());
                let _ = rx.recv();
            })
            .expect("thread");
        up_rx.recv().expect("thread started");
        let me = std::process::id();
        let a = Args::of(&format!(r#"{{"pid":{me},"limit":200}}"#), &["pid", "limit"]);
        let v = run(&a).expect("threads");
        assert_eq!(v["pid"], me);
        let names: Vec<&str> = v["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"catpaw-probe"), "{names:?}");
        drop(tx);
        h.join().expect("join");
        let a = Args::of(r#"{"pid":4294967295}"#, &["pid", "limit"]);
        assert_eq!(run(&a).unwrap_err(), "no process with pid 4294967295");
        let v = run(&Args::empty()).expect("default");
        assert!(v["thread_count"].as_u64().unwrap_or(0) >= 1, "{v}");
    }
}
