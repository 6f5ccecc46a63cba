//! Spare files: a recording starts in a file made ahead of time, so a
//! session's set-up does not wait for the file system to make one.
//!
//! Why: making a file allocates an inode, and that was the slowest thing a
//! session start did. On an ext4 file system without a journal (this
//! project's test machine), finding a free inode walks past every inode
//! deleted in the last 30 seconds: 0.8 ms a file after a busy minute,
//! against 18 µs to give an existing file a name. So a thread of the store
//! keeps [`KEEP`] unnamed files ready (`O_TMPFILE` in the recordings
//! directory, mode 0600), and a new recording links one in under its name
//! (`linkat`, which never replaces a file that exists). Unnamed, they are
//! not in the directory at all: no reader sees them, and they vanish with
//! the process however it ends. Why not named spares renamed into place: a
//! rename waits for the directory's lock, which a create being made in the
//! same directory holds for as long as its inode search takes.
//!
//! When none is ready (the first session, sessions started faster than
//! files are made, or a file system without `O_TMPFILE`), the store makes
//! the file itself, as it did before.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Spare files kept ready.
pub(crate) const KEEP: usize = 4;
/// How long the filler waits for a take before it looks whether its
/// store is still there.
const IDLE: Duration = Duration::from_secs(5);

/// The spare files of one recordings directory; clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Spares(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    ready: Vec<Spare>,
    /// The filler thread runs.
    filling: bool,
}

/// One empty unnamed file in the recordings directory.
#[derive(Debug)]
pub(crate) struct Spare(File);

impl Spare {
    /// Links the spare in at `path`, never over a file that exists: the
    /// file, or the spare back with the error (`AlreadyExists`: `path` is
    /// taken).
    pub(crate) fn place(self, path: &Path) -> Result<File, (Spare, io::Error)> {
        match link_at(&self.0, path) {
            Ok(()) => Ok(self.0),
            Err(e) => Err((self, e)),
        }
    }
}

/// An unnamed file (`O_TMPFILE`) in `dir`, mode 0600.
fn open_unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
}

/// Gives the unnamed `file` the name `to` (through `/proc/self/fd`, which
/// needs no capability); fails with `AlreadyExists` when `to` exists,
/// symlinks included.
fn link_at(file: &File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = format!("/proc/self/fd/{}", file.as_raw_fd());
    let cstr = |b: &[u8]| {
        std::ffi::CString::new(b)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
    };
    let (from, to) = (cstr(from.as_bytes())?, cstr(to.as_os_str().as_bytes())?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Spares {
    /// Spares for the recordings in `dir`; nothing is made before the
    /// first [`Spares::start`] or [`Spares::take`].
    pub(crate) fn new(dir: &Path) -> Spares {
        Spares(Arc::new(Inner {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the filler, once.
    pub(crate) fn start(&self) {
        self.start_locked(&mut self.lock());
    }

    fn start_locked(&self, s: &mut State) {
        if s.filling {
            return;
        }
        let weak = Arc::downgrade(&self.0);
        let spawned = std::thread::Builder::new()
            .name("recorder-spares".into())
            .spawn(move || fill(&weak));
        match spawned {
            Ok(_) => s.filling = true,
            Err(e) => {
                tracing::debug!(error = %e, "no spare-file thread; recordings make their files")
            }
        }
    }

    /// A spare, when one is ready; the filler makes the next.
    pub(crate) fn take(&self) -> Option<Spare> {
        let taken = {
            let mut s = self.lock();
            self.start_locked(&mut s);
            s.ready.pop()
        };
        self.0.wake.notify_one();
        taken
    }

    /// Spares ready now (tests).
    #[cfg(test)]
    pub(crate) fn ready(&self) -> usize {
        self.lock().ready.len()
    }
}

/// The filler: keeps [`KEEP`] spares ready while the store lives. A
/// spare it cannot make (no directory yet, a full disk) is tried again at
/// the next take.
fn fill(weak: &Weak<Inner>) {
    // Only when a CPU is otherwise idle: making a file can take the kernel
    // most of a millisecond, and a session starting at that moment must
    // not wait for it.
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: 0 is this thread; the parameter lives across the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "the spare-file thread runs at normal priority");
    }
    loop {
        let Some(inner) = weak.upgrade() else { return };
        {
            let s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.ready.len() >= KEEP {
                let (s, _) = inner
                    .wake
                    .wait_timeout(s, IDLE)
                    .unwrap_or_else(|p| p.into_inner());
                if s.ready.len() >= KEEP {
                    continue;
                }
            }
        }
        match open_unnamed(&inner.dir) {
            Ok(file) => inner
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ready
                .push(Spare(file)),
            Err(e) => {
                tracing::debug!(dir = %inner.dir.display(), error = %e,
                    "cannot make a spare recording file; the next recording makes its own");
                // Wait for the next take before trying again.
                let s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
                let _ = inner.wake.wait_timeout(s, IDLE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_ready(s: &Spares, n: usize) {
        for _ in 0..500 {
            if s.ready() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {n} spares ready");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_spare_is_unseen_until_linked_in_mode_0600_and_never_over_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Spares::new(dir.path());
        s.start();
        wait_ready(&s, KEEP);
        assert_eq!(
            names(dir.path()),
            Vec::<String>::new(),
            "spares have no name"
        );
        let spare = s.take().unwrap();
        let taken = dir.path().join("taken.jsonl");
        std::fs::write(&taken, "theirs").unwrap();
        let (spare, e) = spare.place(&taken).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "theirs");
        // Nor through a symlink.
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let (spare, e) = spare.place(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("elsewhere").exists());
        let to = dir.path().join("1-s.jsonl");
        let mut f = spare.place(&to).unwrap();
        std::io::Write::write_all(&mut f, b"line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "line\n");
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The filler made another in its place.
        wait_ready(&s, KEEP);
        assert_eq!(
            names(dir.path()),
            ["1-s.jsonl", "link.jsonl", "taken.jsonl"]
        );
    }

    #[test]
    fn without_a_directory_there_is_no_spare_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("not-yet");
        let s = Spares::new(&gone);
        assert!(s.take().is_none());
        std::thread::sleep(Duration::from_millis(100));
        assert!(s.take().is_none());
        assert!(!gone.exists());
    }
}
