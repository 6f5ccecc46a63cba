//! coredumps: where cores go (kernel.core_pattern, suid_dumpable) and the
//! newest core files in the directories systemd-coredump, apport and
//! abrt-style setups write to. File names only: core contents are never
//! read.

use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use crate::tools::args::Args;

/// Directories scanned for core files.
const DIRS: [&str; 3] = [
    "/var/lib/systemd/coredump",
    "/var/crash",
    "/var/lib/apport/coredump",
];
/// Directory entries looked at per directory.
const MAX_SCAN: usize = 5000;

/// systemd-coredump file names: `core.<comm>.<uid>.<boot id>.<pid>.<usec>[.zst]`
/// → (comm, uid, pid). The comm may itself hold dots, so the fields are
/// counted from the end.
pub(crate) fn parse_systemd_name(name: &str) -> Option<(String, u64, u64)> {
    let rest = name.strip_prefix("core.")?;
    let rest = [".zst", ".xz", ".lz4"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    let parts: Vec<&str> = rest.rsplitn(5, '.').collect();
    if parts.len() != 5 || parts[2].len() != 32 {
        return None;
    }
    let pid = parts[1].parse().ok()?;
    let uid = parts[3].parse().ok()?;
    Some((parts[4].to_string(), uid, pid))
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 100, 20)? as usize;
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for dir in DIRS {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let why = crate::tools::cmd::io_reason(&e);
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (listing it needs root)"
                } else {
                    ""
                };
                unreadable.push(format!("{dir}: {why}{hint}"));
                continue;
            }
        };
        for e in entries.flatten().take(MAX_SCAN) {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (comm, uid, pid) = match parse_systemd_name(&name) {
                Some((c, u, p)) => (Some(c), Some(u), Some(p)),
                None => (None, None, None),
            };
            files.push((
                mtime,
                json!({
                    "path": format!("{dir}/{name}"), "size_bytes": meta.len(), "mtime_unix": mtime,
                    "process": comm, "uid": uid, "pid": pid,
                }),
            ));
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let total = files.len();
    let newest: Vec<Value> = files.into_iter().take(limit).map(|(_, v)| v).collect();
    Ok(json!({
        "core_pattern": read("/proc/sys/kernel/core_pattern"),
        "suid_dumpable": read("/proc/sys/fs/suid_dumpable"),
        "core_files": total,
        "newest": newest,
        "unreadable_dirs": unreadable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_coredump_names() {
        let name = "core.my.app.1000.0123456789abcdef0123456789abcdef.4242.1700000000000000.zst";
        assert_eq!(
            parse_systemd_name(name),
            Some(("my.app".into(), 1000, 4242))
        );
        assert_eq!(
            parse_systemd_name("core.bash.0.0123456789abcdef0123456789abcdef.7.1700000000000000"),
            Some(("bash".into(), 0, 7))
        );
        assert_eq!(parse_systemd_name("_usr_bin_python3.1000.crash"), None);
        assert_eq!(parse_systemd_name("core.x.1.short.7.1"), None);
    }

    #[test]
    fn live_coredumps() {
        let v = run(&Args::empty()).expect("coredumps");
        assert!(v["core_pattern"].is_string(), "{v}");
        assert!(v["newest"].as_array().is_some_and(|n| n.len() <= 20), "{v}");
    }
}
