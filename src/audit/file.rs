//! The files behind the trail: append, sync, rotate, lock, and the
//! append-only attribute.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::chain::{GENESIS, line_hash};
use super::{AuditOptions, Record, event, rotated};

/// One trail, as one process sees it.
pub(super) struct Trail {
    path: PathBuf,
    opts: AuditOptions,
    /// The open current file (`None` after a failed write: reopened next
    /// time, as the disk may be back).
    file: Option<File>,
    /// Inode and size of the current file after our last write: when
    /// they differ at the next append, another process wrote (or rotated)
    /// and the chain is picked up from the file again.
    seen: (u64, u64),
    /// `seq` and hash of the last line.
    seq: u64,
    prev: String,
    /// Warn once when the append-only attribute cannot be set.
    attr_warned: bool,
}

impl Trail {
    pub(super) fn open(path: &Path, opts: AuditOptions) -> anyhow::Result<Trail> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state dir {}", dir.display()))?;
        let mut t = Trail {
            path: path.to_path_buf(),
            opts,
            file: None,
            seen: (0, 0),
            seq: 0,
            prev: GENESIS.to_string(),
            attr_warned: false,
        };
        let mut head = t.lock()?;
        t.reopen()
            .and_then(|()| t.load_head_from_file())
            .with_context(|| format!("opening audit log {}", t.path.display()))?;
        write_head(&mut head, t.seq, &t.prev);
        Ok(t)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated(&self.path, n)
    }

    /// Exclusive lock on `audit.head` (the trail's name with the extension
    /// `.head`), shared with other processes using this trail. The file holds the chain head (`seq hash`) as the
    /// last writer left it.
    fn lock(&self) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(self.path.with_extension("head"))?;
        // SAFETY: flock on a descriptor we own; blocks until granted.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f)
    }

    /// Opens the current file (after a rotation or a failed write).
    fn reopen(&mut self) -> std::io::Result<()> {
        let f = open_append(&self.path)?;
        self.protect(&f);
        let meta = f.metadata()?;
        self.seen = (meta.ino(), meta.len());
        self.file = Some(f);
        Ok(())
    }

    /// At start: the chain head is the last line on disk (of the current
    /// file, or of the newest rotated one when the current is empty).
    fn load_head_from_file(&mut self) -> std::io::Result<()> {
        let mut f = File::open(&self.path)?;
        let last = match last_line(&mut f)? {
            Some(l) => Some(l),
            None => match File::open(self.rotated(1)) {
                Ok(mut old) => last_line(&mut old)?,
                Err(_) => None,
            },
        };
        if let Some(line) = last {
            self.prev = line_hash(&line);
            self.seq = serde_json::from_slice::<Record>(&line)
                .map(|r| r.seq)
                .unwrap_or(0);
        }
        Ok(())
    }

    /// Appends one record, filling in `seq` and `prev`.
    ///
    /// The record chains to the head this process (or another agent
    /// process, through `audit.head`) wrote last, never to whatever the
    /// file ends with now: a line someone else appended is thereby exposed
    /// by `verify` at this record.
    pub(super) fn append(&mut self, rec: &mut Record, sync: bool) -> std::io::Result<u64> {
        let mut head = self.lock()?;
        if let Some((seq, prev)) = read_head(&mut head) {
            self.seq = seq;
            self.prev = prev;
        }
        let current = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.len()));
        if self.file.is_none() || current.map(|c| c.0) != Some(self.seen.0) {
            self.reopen()?;
        } else if let Some((_, len)) = current {
            self.seen.1 = len;
        }
        rec.seq = self.seq.saturating_add(1);
        rec.prev = self.prev.clone();
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        let full = self.seen.1 > 0 && self.seen.1 + line.len() as u64 + 1 > self.opts.max_size;
        if full && let Err(e) = self.rotate() {
            tracing::error!(path = %self.path.display(), error = %e,
                "audit rotation failed; the current file keeps growing");
            if self.file.is_none() {
                self.reopen()?;
            }
        }
        let hash = line_hash(&line);
        line.push(b'\n');
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("audit file is not open"));
        };
        // A write that failed or a process that died mid-line can leave a
        // torn line the append-only attribute keeps. The record starts on a
        // line of its own, so the torn one stays one bad line (which
        // `verify` reports) instead of swallowing this record.
        if ends_torn(f, self.seen.1)? {
            line.insert(0, b'\n');
        }
        let result = f
            .write_all(&line)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
        if let Err(e) = result {
            // A torn line would poison the next one: cut it off where the
            // append-only attribute allows; otherwise verify reports it.
            let _ = f.set_len(self.seen.1);
            self.file = None;
            return Err(e);
        }
        self.seq = rec.seq;
        self.prev = hash;
        self.seen.1 += line.len() as u64;
        write_head(&mut head, self.seq, &self.prev);
        Ok(rec.seq)
    }

    /// `audit.jsonl` → `.1` → … → `.keep`; the oldest goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let oldest = self.rotated(self.opts.keep.max(1));
        if oldest.exists() {
            set_append_only(&oldest, false);
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..self.opts.keep.max(1)).rev() {
            let from = self.rotated(n);
            if from.exists() {
                set_append_only(&from, false);
                std::fs::rename(&from, self.rotated(n + 1))?;
                self.protect_path(&self.rotated(n + 1));
            }
        }
        set_append_only(&self.path, false);
        std::fs::rename(&self.path, self.rotated(1))?;
        self.protect_path(&self.rotated(1));
        let f = open_append(&self.path)?;
        self.protect(&f);
        self.seen = (f.metadata()?.ino(), 0);
        self.file = Some(f);
        Ok(())
    }

    fn protect_path(&mut self, path: &Path) {
        if let Ok(f) = File::open(path) {
            self.protect(&f);
        }
    }

    /// Sets the append-only attribute when asked to and running as root;
    /// warns once when the filesystem or the capabilities refuse.
    fn protect(&mut self, f: &File) {
        // SAFETY: geteuid has no preconditions.
        if !self.opts.append_only || unsafe { libc::geteuid() } != 0 {
            return;
        }
        if let Err(e) = set_flag(f, true)
            && !self.attr_warned
        {
            self.attr_warned = true;
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot set the append-only attribute on the audit log (filesystem or \
                 capabilities do not allow it); the hash chain still shows tampering");
        }
    }

    /// `started` records of the current and the previous file that have no
    /// outcome yet.
    pub(super) fn open_acts(&self) -> Vec<Record> {
        let mut open: BTreeMap<u64, Record> = BTreeMap::new();
        for path in [self.rotated(1), self.path.clone()] {
            // Only regular files, and no more than rotation allows: the
            // trail may sit on a device or be bloated by someone else.
            let regular = std::fs::metadata(&path)
                .is_ok_and(|m| m.is_file() && m.len() <= self.opts.max_size.saturating_mul(2));
            if !regular {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            for line in text.split(|&b| b == b'\n') {
                // Cheap filter first: most lines are neither.
                let started = contains(line, b"\"event\":\"started\"");
                if !started && !contains(line, b"\"event\":\"outcome\"") {
                    continue;
                }
                let Ok(rec) = serde_json::from_slice::<Record>(line) else {
                    continue;
                };
                if rec.event == event::STARTED {
                    open.insert(rec.seq, rec);
                } else if let Some(act) = rec.act {
                    open.remove(&act);
                }
            }
        }
        open.into_values().collect()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// Whether the file of length `len` ends inside a line (a torn write).
fn ends_torn(f: &File, len: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// The last complete line of `f`, without its newline (a torn line after
/// it is not a record).
fn last_line(f: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Records are a few KiB at most (every field is cut).
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
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

/// The chain head another writer left in `audit.head`.
fn read_head(f: &mut File) -> Option<(u64, String)> {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut text).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_string()))
}

/// Records the chain head for the other writers (best effort: at worst a
/// later writer in another process chains to the file's state at its own
/// start).
fn write_head(f: &mut File, seq: u64, hash: &str) {
    let text = format!("{seq} {hash}\n");
    let _ = f
        .set_len(0)
        .and_then(|()| f.seek(SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| f.write_all(text.as_bytes()));
}

/// `FS_APPEND_FL` from linux/fs.h.
const FS_APPEND_FL: libc::c_long = 0x20;

fn set_flag(f: &File, on: bool) -> std::io::Result<()> {
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
    if let Ok(f) = File::open(path) {
        let _ = set_flag(&f, on);
    }
}
