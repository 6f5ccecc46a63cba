//! The files behind the trail, one descriptor at a time: open a regular
//! file (nothing else), lock, read the first and last lines, and the
//! append-only attribute.
//!
//! Why by descriptor: a trail that is a device (`/dev/null`), a FIFO or a
//! socket swallows records while every write succeeds. Each file is opened
//! once and its descriptor `fstat`ed; anything but a regular file is
//! refused with an error naming the path and what it is, so the agent does
//! not start on it and `verify` says it is not a trail.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read only (verify).
    Read,
    /// Read and append, created 0600 when missing (the trail's files).
    Append,
    /// Read and write in place, created 0600 when missing (the head).
    Update,
}

/// What a path is, in words, when it is not a regular file.
fn kind_of(meta: &std::fs::Metadata) -> Option<&'static str> {
    let kind = crate::fsafe::Kind::of(meta);
    (kind != crate::fsafe::Kind::Regular).then(|| kind.describe())
}

/// The error for `path` being `what`.
pub(crate) fn not_regular(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file: an audit trail must be regular files \
             (remove it, or point state_dir elsewhere)",
            path.display()
        ),
    )
}

/// Opens `path` as a regular file or fails naming what it is instead.
/// `O_NONBLOCK` keeps a FIFO from blocking the open; it does nothing to a
/// regular file.
pub(crate) fn open_regular(path: &Path, mode: Mode) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(libc::O_NONBLOCK);
    match mode {
        Mode::Read => {}
        Mode::Append => {
            o.append(true).create(true).mode(0o600);
        }
        Mode::Update => {
            o.write(true).create(true).truncate(false).mode(0o600);
        }
    }
    let f = match o.open(path) {
        Ok(f) => f,
        Err(e) => {
            // Say what the path is when that is why it failed (a
            // directory, a socket).
            if let Ok(m) = std::fs::metadata(path)
                && let Some(what) = kind_of(&m)
            {
                return Err(not_regular(path, what));
            }
            return Err(e);
        }
    };
    let meta = f.metadata()?;
    if let Some(what) = kind_of(&meta) {
        return Err(not_regular(path, what));
    }
    Ok(f)
}

/// An `flock` held on a descriptor until dropped. It keeps the raw
/// descriptor, not a borrow, so the writer can change its other fields
/// while it holds the lock; the file outlives the lock in every caller.
pub(crate) struct Lock(std::os::fd::RawFd);

impl Lock {
    /// Blocks until the lock is granted; `exclusive` for writers.
    pub(crate) fn take(f: &File, exclusive: bool) -> std::io::Result<Lock> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor we own; blocks until granted.
        if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Lock(f.as_raw_fd()))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor the caller still owns (see above).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// Whether the file of length `len` ends inside a line (a torn write).
pub(crate) fn ends_torn(f: &File, len: u64) -> std::io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// The last complete line of `f`'s first `len` bytes, without its newline
/// (a torn line after it is not a record).
pub(crate) fn last_line(f: &File, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(None);
    }
    // Records are a few KiB at most (every field is cut).
    let start = len.saturating_sub(64 * 1024);
    let mut buf = vec![0u8; (len - start) as usize];
    f.read_exact_at(&mut buf, start)?;
    if buf.last() != Some(&b'\n') {
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
    }
    while buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let from = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(buf[from..].to_vec()))
}

/// The first line of `f` (up to 64 KiB), without its newline.
pub(crate) fn first_line(f: &File) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    f.take(64 * 1024).read_to_end(&mut buf)?;
    let end = buf.iter().position(|&b| b == b'\n');
    Ok(end.map(|i| buf[..i].to_vec()))
}

/// `FS_APPEND_FL` from linux/fs.h.
const FS_APPEND_FL: libc::c_long = 0x20;

pub(crate) fn set_flag(f: &File, on: bool) -> std::io::Result<()> {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long through a
    // pointer to a live local on a descriptor we own.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let want = if on {
            flags | FS_APPEND_FL
        } else {
            flags & !FS_APPEND_FL
        };
        if want != flags && libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &want) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `f` carries the append-only attribute (None: cannot tell).
#[cfg(test)]
pub(crate) fn append_only(f: &File) -> Option<bool> {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into a live local.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    (rc == 0).then_some(flags & FS_APPEND_FL != 0)
}

/// Sets or clears the append-only attribute of `path`, best effort (only
/// root can, and only where the filesystem supports it).
pub(crate) fn set_append_only(path: &Path, on: bool) {
    if let Ok(f) = open_regular(path, Mode::Read) {
        let _ = set_flag(&f, on);
    }
}
