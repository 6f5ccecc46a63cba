//! disk_usage and mounts.
//!
//! statvfs on a network filesystem whose server is gone can block for
//! minutes; those filesystems are asked on a helper thread with a
//! deadline, and listed as `unresponsive` instead of hanging the tool.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::args::Args;
use super::procfs::{MountEntry, parse_mounts, read, round1};

/// Filesystems that hold no user data: skipped by disk_usage (any
/// `cgroup*` too). tmpfs and overlay are kept: they fill up as well.
const PSEUDO: [&str; 22] = [
    "proc",
    "sysfs",
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
    "nfsd",
    "rootfs",
];

/// Filesystem types that may hang in statvfs when their server is gone.
const REMOTE_PREFIXES: [&str; 11] = [
    "nfs",
    "cifs",
    "smb",
    "ceph",
    "glusterfs",
    "fuse",
    "9p",
    "afs",
    "lustre",
    "gpfs",
    "davfs",
];

/// Longest wait for statvfs on a remote filesystem.
const REMOTE_STATVFS_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether disk_usage skips this filesystem type.
pub(crate) fn is_pseudo_fs(fs_type: &str) -> bool {
    fs_type.starts_with("cgroup") || PSEUDO.contains(&fs_type)
}

/// Space and inode figures of one filesystem, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) total: u64,
    pub(crate) used: u64,
    pub(crate) avail: u64,
    pub(crate) inodes: u64,
    pub(crate) inodes_used: u64,
}

impl Usage {
    /// Used percent the way `df` shows it: of the space non-root users can
    /// have (used + available), as the reserved blocks are not usable.
    pub(crate) fn used_pct(&self) -> f64 {
        pct(self.used, self.used.saturating_add(self.avail))
    }

    pub(crate) fn inodes_used_pct(&self) -> f64 {
        pct(self.inodes_used, self.inodes)
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round1(part as f64 * 100.0 / whole as f64)
    }
}

fn statvfs(path: &str) -> Option<Usage> {
    let c = CString::new(path).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a live, properly
    // sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    } as u64;
    let total = (st.f_blocks as u64).saturating_mul(unit);
    let free = (st.f_bfree as u64).saturating_mul(unit);
    let avail = (st.f_bavail as u64).saturating_mul(unit);
    Some(Usage {
        total,
        used: total.saturating_sub(free),
        avail,
        inodes: st.f_files as u64,
        inodes_used: (st.f_files as u64).saturating_sub(st.f_ffree as u64),
    })
}

/// What statvfs gave for one mount.
pub(crate) enum Stat {
    Done(Option<Usage>),
    TimedOut,
}

/// statvfs, on a helper thread with a deadline for remote filesystems. A
/// thread stuck in the kernel is left behind: it cannot be cancelled, and
/// it ends when the call finally returns.
pub(crate) fn stat_mount(m: &MountEntry) -> Stat {
    if !REMOTE_PREFIXES.iter().any(|p| m.fs_type.starts_with(p)) {
        return Stat::Done(statvfs(&m.mount_point));
    }
    let (tx, rx) = mpsc::channel();
    let path = m.mount_point.clone();
    let spawned = std::thread::Builder::new()
        .name("catpaw-statvfs".into())
        .spawn(move || {
            let _ = tx.send(statvfs(&path));
        });
    if spawned.is_err() {
        return Stat::Done(None);
    }
    match rx.recv_timeout(REMOTE_STATVFS_TIMEOUT) {
        Ok(u) => Stat::Done(u),
        Err(_) => Stat::TimedOut,
    }
}

pub(crate) fn disk_usage(_args: &Args) -> Result<Value, String> {
    Ok(disk_usage_from(&read("/proc/self/mounts")?, stat_mount))
}

/// disk_usage over a mount table's text, asking `stat` for the figures.
pub(crate) fn disk_usage_from(mounts: &str, stat: impl Fn(&MountEntry) -> Stat) -> Value {
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    let mut unresponsive = Vec::new();
    for m in parse_mounts(mounts) {
        if is_pseudo_fs(&m.fs_type) || !seen.insert((m.device.clone(), m.mount_point.clone())) {
            continue;
        }
        let u = match stat(&m) {
            Stat::Done(Some(u)) if u.total > 0 => u,
            Stat::Done(_) => continue,
            Stat::TimedOut => {
                unresponsive.push(m.mount_point);
                continue;
            }
        };
        rows.push(json!({
            "mount_point": m.mount_point,
            "fs_type": m.fs_type,
            "device": m.device,
            "total_bytes": u.total,
            "used_bytes": u.used,
            "available_bytes": u.avail,
            "used_pct": u.used_pct(),
            "inodes_total": u.inodes,
            "inodes_used": u.inodes_used,
            "inodes_used_pct": u.inodes_used_pct(),
        }));
    }
    let mut out = json!({ "filesystems": rows });
    if !unresponsive.is_empty() {
        out["unresponsive"] = json!(unresponsive);
    }
    out
}

pub(crate) fn mounts(_args: &Args) -> Result<Value, String> {
    Ok(mounts_from(&read("/proc/self/mounts")?))
}

/// mounts over a mount table's text.
pub(crate) fn mounts_from(text: &str) -> Value {
    let rows: Vec<Value> = parse_mounts(text)
        .into_iter()
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
    json!({ "mounts": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_filesystems_are_recognised() {
        for t in ["proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "nsfs"] {
            assert!(is_pseudo_fs(t), "{t}");
        }
        for t in ["ext4", "xfs", "tmpfs", "overlay", "nfs4", "btrfs"] {
            assert!(!is_pseudo_fs(t), "{t}");
        }
    }

    #[test]
    fn percentages_follow_df() {
        let u = Usage {
            total: 1000,
            used: 450,
            avail: 450,
            inodes: 200,
            inodes_used: 50,
        };
        // 100 reserved blocks do not count: 450 / (450 + 450).
        assert_eq!(u.used_pct(), 50.0);
        assert_eq!(u.inodes_used_pct(), 25.0);
        let empty = Usage {
            total: 0,
            used: 0,
            avail: 0,
            inodes: 0,
            inodes_used: 0,
        };
        assert_eq!((empty.used_pct(), empty.inodes_used_pct()), (0.0, 0.0));
    }

    #[test]
    fn root_filesystem_is_measured() {
        let u = statvfs("/").expect("statvfs /");
        assert!(u.total > 0 && u.used <= u.total, "{u:?}");
        assert!(statvfs("/catpaw/no/such/dir").is_none());
        assert!(statvfs("bad\0path").is_none());
    }

    #[test]
    fn mounts_are_listed_with_read_only_flags() {
        let v = mounts(&Args::empty()).expect("mounts");
        let rows = v["mounts"].as_array().expect("rows");
        assert!(rows.iter().any(|m| m["mount_point"] == "/"), "{v}");
        for m in rows {
            let ro = m["options"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .any(|o| o == "ro");
            assert_eq!(m["read_only"], ro, "{m}");
        }
    }
}
