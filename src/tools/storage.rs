//! disk_usage and mounts.

use std::collections::BTreeSet;
use std::ffi::CString;

use serde_json::{Value, json};

use super::args::Args;
use super::procfs::{parse_mounts, round1};
use super::system::read;

/// Filesystems that hold no user data: skipped by disk_usage.
const PSEUDO: [&str; 22] = [
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "devtmpfs",
    "efivarfs",
    "selinuxfs",
    "ramfs",
];

/// Rows kept, so the output stays well under the tool output cap.
const MAX_ROWS: usize = 150;

struct Usage {
    total: u64,
    used: u64,
    avail: u64,
    inodes: u64,
    inodes_used: u64,
}

fn statvfs(path: &str) -> Option<Usage> {
    let c = CString::new(path).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly
    // sized, zero-initialised out-parameter that statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Some(Usage {
        total,
        used: total.saturating_sub(free),
        avail,
        inodes: st.f_files as u64,
        inodes_used: (st.f_files as u64).saturating_sub(st.f_ffree as u64),
    })
}

pub(crate) fn disk_usage(_args: &Args) -> Result<Value, String> {
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for m in parse_mounts(&read("/proc/self/mounts")?) {
        if PSEUDO.contains(&m.fs_type.as_str())
            || !seen.insert((m.device.clone(), m.mount_point.clone()))
        {
            continue;
        }
        let Some(u) = statvfs(&m.mount_point) else {
            continue;
        };
        if u.total == 0 {
            continue;
        }
        let denom = u.used + u.avail;
        rows.push(json!({
            "mount_point": m.mount_point,
            "fs_type": m.fs_type,
            "device": m.device,
            "total_bytes": u.total,
            "used_bytes": u.used,
            "available_bytes": u.avail,
            "used_pct": if denom == 0 { 0.0 } else { round1(u.used as f64 * 100.0 / denom as f64) },
            "inodes_total": u.inodes,
            "inodes_used": u.inodes_used,
            "inodes_used_pct": if u.inodes == 0 { 0.0 } else { round1(u.inodes_used as f64 * 100.0 / u.inodes as f64) },
        }));
        if rows.len() >= MAX_ROWS {
            break;
        }
    }
    Ok(json!({ "filesystems": rows }))
}

pub(crate) fn mounts(_args: &Args) -> Result<Value, String> {
    let all = parse_mounts(&read("/proc/self/mounts")?);
    let rows: Vec<Value> = all
        .iter()
        .take(MAX_ROWS)
        .map(|m| {
            json!({
                "device": m.device,
                "mount_point": m.mount_point,
                "fs_type": m.fs_type,
                "read_only": m.options.split(',').any(|o| o == "ro"),
                "options": m.options,
            })
        })
        .collect();
    Ok(json!({ "mounts": rows, "total": all.len() }))
}
