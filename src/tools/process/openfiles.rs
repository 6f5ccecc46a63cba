//! open_files: the file descriptors of one process and what they point
//! at (files, sockets, pipes, anonymous inodes), counted by kind.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{busiest, check_pid};
use crate::tools::args::Args;

/// The kind of an fd link target.
pub(crate) fn kind(target: &str) -> &'static str {
    if target.starts_with("socket:") {
        "socket"
    } else if target.starts_with("pipe:") {
        "pipe"
    } else if target.starts_with("anon_inode:") {
        "anon_inode"
    } else if target.starts_with("/dev/") {
        "device"
    } else if target.ends_with(" (deleted)") {
        "deleted_file"
    } else if target.starts_with('/') {
        "file"
    } else {
        "other"
    }
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 500, 100)? as usize;
    let pid = match args.opt_int("pid", 1, u64::from(u32::MAX))? {
        Some(p) => p,
        None => busiest("fd").ok_or("no process whose fds this agent may read")?,
    };
    check_pid(pid)?;
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| {
        format!(
            "cannot list /proc/{pid}/fd: {} (reading another user's fds needs root)",
            crate::tools::cmd::io_reason(&e)
        )
    })?;
    let mut fds: Vec<(u64, String)> = dir
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let t = std::fs::read_link(e.path()).ok()?;
            Some((fd, t.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, t) in &fds {
        *kinds.entry(kind(t)).or_default() += 1;
    }
    let limit_nofile = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|t| super::fdlimits::parse_nofile(&t));
    let list: Vec<Value> = fds
        .iter()
        .take(limit)
        .map(|(fd, t)| json!({ "fd": fd, "target": t, "kind": kind(t) }))
        .collect();
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Ok(json!({
        "pid": pid, "name": name.trim(), "open": fds.len(), "soft_limit": limit_nofile,
        "by_kind": kinds, "fds": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_targets() {
        assert_eq!(kind("socket:[123]"), "socket");
        assert_eq!(kind("pipe:[9]"), "pipe");
        assert_eq!(kind("anon_inode:[eventpoll]"), "anon_inode");
        assert_eq!(kind("/dev/null"), "device");
        assert_eq!(kind("/var/log/app.log (deleted)"), "deleted_file");
        assert_eq!(kind("/etc/hosts"), "file");
    }

    #[test]
    fn a_file_this_process_holds_is_listed() {
        let f = tempfile::NamedTempFile::new().expect("tmp");
        let path = std::fs::canonicalize(f.path()).expect("canon");
        let me = std::process::id();
        let a = Args::of(&format!(r#"{{"pid":{me},"limit":500}}"#), &["pid", "limit"]);
        let v = run(&a).expect("open_files");
        let targets: Vec<&str> = v["fds"]
            .as_array()
            .expect("fds")
            .iter()
            .filter_map(|f| f["target"].as_str())
            .collect();
        assert!(
            targets.contains(&path.to_string_lossy().as_ref()),
            "{targets:?}"
        );
        assert!(v["soft_limit"].is_u64(), "{v}");
    }
}
