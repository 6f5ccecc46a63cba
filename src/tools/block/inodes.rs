//! inodes: inode use per filesystem, fullest first (a filesystem can be
//! "full" with free space left when small files use up its inodes).

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{MountEntry, read};
use crate::tools::storage::{Stat, disk_usage_from, stat_mount};

/// inodes over a mount table, asking `stat` for the figures.
pub(crate) fn inodes_from(mounts: &str, stat: impl Fn(&MountEntry) -> Stat, limit: usize) -> Value {
    let usage = disk_usage_from(mounts, stat);
    let mut rows: Vec<Value> = Vec::new();
    let mut without = Vec::new();
    for fs in usage["filesystems"].as_array().into_iter().flatten() {
        let total = fs["inodes_total"].as_u64().unwrap_or(0);
        let mount = fs["mount_point"].as_str().unwrap_or("").to_string();
        if total == 0 {
            // btrfs, zfs and some FUSE filesystems allocate inodes on demand.
            without.push(mount);
            continue;
        }
        let used = fs["inodes_used"].as_u64().unwrap_or(0);
        rows.push(json!({
            "mount_point": mount,
            "fs_type": fs["fs_type"],
            "inodes_total": total,
            "inodes_used": used,
            "inodes_free": total.saturating_sub(used),
            "inodes_used_pct": fs["inodes_used_pct"],
        }));
    }
    rows.sort_by(|a, b| {
        let p = |v: &Value| v["inodes_used_pct"].as_f64().unwrap_or(0.0);
        p(b).total_cmp(&p(a))
    });
    rows.truncate(limit);
    let mut out = json!({ "filesystems": rows, "dynamic_inodes": without });
    if let Some(u) = usage.get("unresponsive") {
        out["unresponsive"] = u.clone();
    }
    out
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let limit = args.int("limit", 1, 200, 50)? as usize;
    Ok(inodes_from(&read("/proc/self/mounts")?, stat_mount, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::storage::Usage;

    #[test]
    fn fullest_first_and_dynamic_filesystems_apart() {
        let mounts = include_str!("../fixtures/mounts");
        let v = inodes_from(
            mounts,
            |m| {
                let (inodes, used) = match m.mount_point.as_str() {
                    "/" => (1000, 100),
                    "/var" => (1000, 950),
                    _ => (0, 0),
                };
                Stat::Done(Some(Usage {
                    total: 10,
                    used: 1,
                    avail: 9,
                    inodes,
                    inodes_used: used,
                }))
            },
            10,
        );
        let rows = v["filesystems"].as_array().expect("rows");
        assert_eq!(rows[0]["mount_point"], "/var");
        assert_eq!(rows[0]["inodes_used_pct"], 95.0);
        assert_eq!(rows[0]["inodes_free"], 50);
        assert_eq!(rows[1]["mount_point"], "/");
        assert_eq!(v["dynamic_inodes"], json!(["/data"]));
        assert!(
            !v.to_string().contains("/proc"),
            "pseudo filesystems skipped"
        );
    }

    #[test]
    fn live_inodes() {
        let v = run(&Args::empty()).expect("inodes");
        assert!(v["filesystems"].is_array(), "{v}");
    }
}
