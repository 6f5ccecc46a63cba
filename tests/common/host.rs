//! What this host can do for a test: root, the append-only attribute.
//! A test that finds it missing says so with [`super::skip`].

use std::os::fd::AsRawFd;
use std::path::Path;

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `FS_APPEND_FL` from linux/fs.h.
const FS_APPEND_FL: libc::c_long = 0x20;

/// The append-only attribute of `path` before this call, after setting
/// it to `on` when given; None when the file or its flags cannot be read.
pub fn append_only_attr(path: &Path, on: Option<bool>) -> Option<bool> {
    let f = std::fs::File::open(path).ok()?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into a live local.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return None;
    }
    if let Some(on) = on {
        let want = if on {
            flags | FS_APPEND_FL
        } else {
            flags & !FS_APPEND_FL
        };
        // SAFETY: FS_IOC_SETFLAGS reads one long from a live local.
        unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &want) };
    }
    Some(flags & FS_APPEND_FL != 0)
}

/// Whether files in `dir` can carry the append-only attribute (root on a
/// filesystem that keeps it: ext4 or xfs, not tmpfs or overlayfs), tried
/// on a probe file of its own; Err says what is missing.
pub fn append_only_supported(dir: &Path) -> Result<(), String> {
    if !is_root() {
        return Err("only root can set the append-only attribute".into());
    }
    let probe = dir.join(".append-only-probe");
    std::fs::write(&probe, b"").map_err(|e| format!("writing {}: {e}", probe.display()))?;
    append_only_attr(&probe, Some(true));
    let kept = append_only_attr(&probe, Some(false));
    let _ = std::fs::remove_file(&probe);
    match kept {
        Some(true) => Ok(()),
        _ => Err(format!(
            "the filesystem of {} does not keep the append-only attribute (chattr +a); \
             point TMPDIR at ext4 or xfs",
            dir.display()
        )),
    }
}

/// Clears the append-only attribute of every file in `dir` when dropped,
/// so the temp dir holding them can be removed, whatever the test did.
pub struct ClearAppendOnly<'a>(pub &'a Path);

impl Drop for ClearAppendOnly<'_> {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.0) {
            for e in entries.flatten() {
                append_only_attr(&e.path(), Some(false));
            }
        }
    }
}
