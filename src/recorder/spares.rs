//! Spare files: a recording starts in a file made ahead of time, so a
//! session's set-up does not wait for the file system to make one.
//!
//! Why: making a file allocates an inode, and on ext4 that is the slowest
//! thing a session start did. After many files were deleted (the
//! recordings `max_total` removes, or anything else on the same disk),
//! finding a free inode walks past every recently deleted one: on this
//! project's test machine 0.8 ms a file, against 18 µs to rename one. So a
//! thread of the store keeps [`KEEP`] empty files (mode 0600) in the
//! recordings directory, named `.spare-<pid>-<n>` (which no reader takes
//! for a recording), and a new recording renames one to its name, never
//! over a file that exists (`RENAME_NOREPLACE`). When none is ready (the
//! first session, or sessions started faster than files are made) the
//! store makes the file itself, as it did before.
//!
//! Spares never outlive the store: the last one of its clones removes
//! them, and the store removes those a killed agent left when it opens.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Spare files kept ready.
pub(crate) const KEEP: usize = 4;
/// A spare's name starts so.
pub(crate) const PREFIX: &str = ".spare-";
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
    /// The next spare's number.
    next: u64,
    /// The filler thread runs.
    filling: bool,
}

/// One empty file, removed when dropped unless [`Spare::place`] named it.
#[derive(Debug)]
pub(crate) struct Spare {
    file: Option<File>,
    path: PathBuf,
}

impl Spare {
    /// Renames the spare to `path`, never over a file that exists: the
    /// file, or the spare back with the error (`AlreadyExists`: `path`
    /// is taken).
    pub(crate) fn place(mut self, path: &Path) -> Result<File, (Spare, io::Error)> {
        match rename_noreplace(&self.path, path) {
            Ok(()) => Ok(self
                .file
                .take()
                .expect("a spare holds its file until placed")),
            Err(e) => Err((self, e)),
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
    };
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
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
        let mut s = self.lock();
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
            s.ready.pop()
        };
        self.start();
        self.0.wake.notify_one();
        taken
    }

    /// Spares ready now (tests).
    #[cfg(test)]
    pub(crate) fn ready(&self) -> usize {
        self.lock().ready.len()
    }
}

/// Removes the spares in `dir` (those a killed agent left).
pub(crate) fn remove_left(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.filter_map(Result::ok) {
        let is_spare = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX));
        if is_spare && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The filler: keeps [`KEEP`] spares ready while the store lives. A
/// spare it cannot make (no directory yet, a full disk) is tried again at
/// the next take.
fn fill(weak: &Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let number = {
            let mut s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.ready.len() >= KEEP {
                let (s2, _) = inner
                    .wake
                    .wait_timeout(s, IDLE)
                    .unwrap_or_else(|p| p.into_inner());
                s = s2;
                if s.ready.len() >= KEEP {
                    continue;
                }
            }
            s.next += 1;
            s.next
        };
        let path = inner
            .dir
            .join(format!("{PREFIX}{}-{number}", std::process::id()));
        match super::store::open_new(&path) {
            Ok(file) => {
                let spare = Spare {
                    file: Some(file),
                    path,
                };
                inner
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ready
                    .push(spare);
            }
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
    fn a_spare_is_placed_under_its_name_mode_0600_and_never_over_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Spares::new(dir.path());
        s.start();
        wait_ready(&s, KEEP);
        let spare = s.take().unwrap();
        let taken = dir.path().join("taken.jsonl");
        std::fs::write(&taken, "theirs").unwrap();
        let (spare, e) = spare.place(&taken).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "theirs");
        let to = dir.path().join("1-s.jsonl");
        let mut f = spare.place(&to).unwrap();
        std::io::Write::write_all(&mut f, b"line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "line\n");
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The filler made another in its place.
        wait_ready(&s, KEEP);
    }

    #[test]
    fn the_last_clone_removes_its_spares_and_a_new_store_removes_those_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spares::new(dir.path());
            let clone = s.clone();
            s.start();
            wait_ready(&s, KEEP);
            drop(s);
            assert_eq!(names(dir.path()).len(), KEEP, "a clone still holds them");
            drop(clone);
        }
        // The filler lets go within its idle wait at most.
        for _ in 0..700 {
            if names(dir.path()).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(names(dir.path()), Vec::<String>::new());
        // What a killed agent left.
        std::fs::write(dir.path().join(".spare-1-1"), "").unwrap();
        std::fs::write(dir.path().join("1-s.jsonl"), "kept").unwrap();
        remove_left(dir.path());
        assert_eq!(names(dir.path()), vec!["1-s.jsonl".to_string()]);
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
