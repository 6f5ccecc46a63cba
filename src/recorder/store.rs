//! Where recordings live and how long: the recordings directory (mode
//! 0700), one file per session named `<started_unix_ms>-<session id>.jsonl`
//! (mode 0600), and the bounds `[recorder] max_total` (oldest first) and
//! `keep_days`, enforced when the store opens and after each recording
//! closes (then from a running tally: the directory is listed again only
//! when the tally passes a limit).
//!
//! Why the store tracks open recordings: the writer holds its file open
//! for the whole session, and a long chat can be the oldest file in the
//! directory. Deleting it would lose the one recording an operator is most
//! likely to want, and the writer would go on writing into an unlinked
//! file. So a recording is out of the limits' reach from [`Store::create`]
//! until its [`OpenRecording`] is dropped; only then is it counted as
//! closed, and the limits run again.
//!
//! Age and order come from the file name's timestamp, not from mtime: a
//! copy (`cp`, a restore) keeps the name, and the name is what a reader
//! sees. Files that do not look like recordings are never touched.
//!
//! Why one file of about 500 lines: the directory's limits, the set of
//! open recordings and the running tally are one piece of state, changed
//! together at every create and close. The spare files are in
//! `spares.rs`, the tests in `store_tests.rs`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The longest session-id part of a file name, in bytes.
const MAX_ID_IN_NAME: usize = 64;
/// The file name's extension.
const EXTENSION: &str = "jsonl";
/// One day, for `keep_days`.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The store's bounds, as plain values (`[recorder] max_total` and
/// `keep_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes all recordings may take together; the oldest closed
    /// ones go first.
    pub max_total: u64,
    /// Recordings whose name says they started longer ago than this many
    /// days go.
    pub keep_days: u64,
}

impl From<&super::RecorderOptions> for Limits {
    fn from(o: &super::RecorderOptions) -> Limits {
        Limits {
            max_total: o.max_total,
            keep_days: u64::from(o.keep_days),
        }
    }
}

/// What the recordings take now (`status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Recordings in the directory.
    pub count: u64,
    /// Their bytes together.
    pub bytes: u64,
    /// When the oldest started, unix milliseconds (None: there is none).
    pub oldest_unix_ms: Option<u64>,
}

/// What one pass of the limits removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Removed for being older than `keep_days`.
    pub expired: u64,
    /// Removed to bring the total under `max_total`.
    pub over_total: u64,
}

/// One recording file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// When it started, unix milliseconds (from its name).
    pub started_unix_ms: u64,
    /// Its size.
    pub bytes: u64,
}

/// The recordings directory. Cheap to clone: clones share the set of open
/// recordings, so one store serves every session of an agent.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    limits: Option<Limits>,
    open: Arc<Mutex<HashSet<PathBuf>>>,
    /// What the last pass of the limits left, plus what closed since.
    tally: Arc<Mutex<Option<Tally>>>,
    /// Files made ahead of time for the next recordings (the agent's
    /// store only).
    spares: Option<super::spares::Spares>,
}

/// The closed recordings' bytes and oldest start as the last pass of the
/// limits left them, with every recording closed since added (the open
/// ones are measured at each close): a close that
/// leaves both within the limits lists nothing (no `stat` of every
/// recording per session). Files removed by others only make it larger,
/// which brings the next full pass sooner.
#[derive(Debug, Clone, Copy)]
struct Tally {
    bytes: u64,
    oldest_unix_ms: Option<u64>,
}

/// `session_id` as it appears in a file name: `[A-Za-z0-9._-]` kept, any
/// other byte `_`, at most 64 bytes. A name cannot climb out of the
/// directory (no `/`), and `.` or `..` alone are not possible after the
/// timestamp prefix.
pub fn name_part(session_id: &str) -> String {
    session_id
        .bytes()
        .take(MAX_ID_IN_NAME)
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => b as char,
            _ => '_',
        })
        .collect()
}

/// The file name of a recording of `session_id` started at
/// `started_unix_ms`.
pub fn file_name(started_unix_ms: u64, session_id: &str) -> String {
    format!("{started_unix_ms}-{}.{EXTENSION}", name_part(session_id))
}

/// The start time and session-id part of a recording's file name; None for
/// a file that is not named like one.
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (ms, id) = stem.split_once('-')?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ms.parse().ok()?, id))
}

/// A new file at `path`, mode 0600, never one that exists, never
/// through a symlink.
pub(crate) fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Recordings that started before this (unix ms) are past `keep_days`.
fn horizon(now: SystemTime, keep_days: u64) -> u64 {
    DAY.checked_mul(u32::try_from(keep_days).unwrap_or(u32::MAX))
        .and_then(|keep| now.checked_sub(keep))
        .map_or(0, unix_ms)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Store {
    /// The store of the agent, bounded by `limits`. Nothing is touched
    /// until [`Store::prepare`] or the first [`Store::create`].
    pub fn new(dir: &Path, limits: Limits) -> Store {
        Store {
            dir: dir.to_path_buf(),
            limits: Some(limits),
            open: Arc::default(),
            tally: Arc::default(),
            spares: Some(super::spares::Spares::new(dir)),
        }
    }

    /// At agent start: creates the directory (mode 0700; an existing one
    /// open to others is narrowed to 0700), then removes what the limits
    /// say must go.
    pub fn prepare(&self) -> anyhow::Result<Pruned> {
        let dir = &self.dir;
        self.make_dir()?;
        let meta =
            std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!(
                "the recordings dir {} is not a directory (remove it, or set [recorder] dir)",
                dir.display()
            );
        }
        if meta.permissions().mode() & 0o077 != 0 {
            // Recordings hold tool output and model answers: owner only.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 {}", dir.display()))?;
            tracing::warn!(dir = %dir.display(), "the recordings dir was open to others; it is now mode 0700");
        }
        if let Some(spares) = &self.spares {
            spares.start();
        }
        Ok(self.enforce())
    }

    fn make_dir(&self) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| {
                format!(
                    "creating the recordings dir {} (check the permissions of its parent, or \
                     set [recorder] dir)",
                    self.dir.display()
                )
            })
    }

    /// A store that only reads `dir` (`play`, `replay`, `status` without an
    /// agent): it creates nothing and removes nothing.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
            limits: None,
            open: Arc::default(),
            tally: Arc::default(),
            spares: None,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the recording of `session_id`, started at `started`: a new
    /// file (mode 0600, never one that exists, never through a symlink),
    /// held out of the limits' reach until the returned value is dropped.
    /// Two recordings named alike (the same id in the same millisecond)
    /// get the next free millisecond.
    pub fn create(&self, started: SystemTime, session_id: &str) -> anyhow::Result<OpenRecording> {
        let first = unix_ms(started);
        let mut last_error = None;
        let mut spare = self.spares.as_ref().and_then(super::spares::Spares::take);
        for ms in first..first.saturating_add(1000) {
            let path = self.dir.join(file_name(ms, session_id));
            let mut opened = match spare.take().map(|s| s.place(&path)) {
                Some(Ok(file)) => Ok(file),
                Some(Err((s, e))) if e.kind() == io::ErrorKind::AlreadyExists => {
                    spare = Some(s);
                    Err(e)
                }
                // Any other failure (no /proc to link through): the spare
                // is dropped and the file made here.
                Some(Err(_)) | None => open_new(&path),
            };
            // The directory is made (mode 0700) only when it is missing:
            // no `mkdir` per session once it exists.
            if matches!(&opened, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                self.make_dir()?;
                opened = open_new(&path);
            }
            match opened {
                Ok(file) => {
                    self.lock_open().insert(path.clone());
                    return Ok(OpenRecording {
                        file,
                        path,
                        store: self.clone(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "creating the recording {} (check the recordings dir's owner and \
                             mode)",
                            path.display()
                        )
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free name"))).with_context(|| {
            format!(
                "no free file name for a recording of {session_id:?} in {}",
                self.dir.display()
            )
        })
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        // A panic while holding the set leaves it consistent (inserts and
        // removes are single operations).
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tally(&self) -> std::sync::MutexGuard<'_, Option<Tally>> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recording at `path` (`bytes` long) closed: counted into the
    /// tally, and the limits applied again when the tally passes them (or
    /// when there is none yet).
    fn closed(&self, path: &Path, bytes: u64) {
        self.lock_open().remove(path);
        let Some(limits) = self.limits else {
            return;
        };
        let now = SystemTime::now();
        let started = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_name)
            .map(|(ms, _)| ms);
        // Recordings still open count too (a `stat` each: one per session
        // going on).
        let open: u64 = self
            .lock_open()
            .clone()
            .iter()
            .map(|p| std::fs::metadata(p).map_or(u64::MAX, |m| m.len()))
            .fold(0, u64::saturating_add);
        let within = match self.lock_tally().as_mut() {
            Some(t) => {
                t.bytes = t.bytes.saturating_add(bytes);
                t.oldest_unix_ms = match (t.oldest_unix_ms, started) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                t.bytes.saturating_add(open) <= limits.max_total
                    && t.oldest_unix_ms
                        .is_none_or(|o| o >= horizon(now, limits.keep_days))
            }
            None => false,
        };
        if !within {
            self.enforce_at(now);
        }
    }

    /// Whether `path` is a recording being written now.
    pub fn is_open(&self, path: &Path) -> bool {
        self.lock_open().contains(path)
    }

    /// Every recording in the directory, oldest first (by the name's
    /// timestamp, then name). Only regular files named like recordings;
    /// an unreadable or missing directory lists none.
    pub fn list(&self) -> Vec<Entry> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = read
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let (ms, _) = parse_name(name.to_str()?)?;
                // DirEntry::metadata does not follow symlinks.
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| Entry {
                    path: e.path(),
                    started_unix_ms: ms,
                    bytes: meta.len(),
                })
            })
            .collect();
        entries.sort_by(|a, b| (a.started_unix_ms, &a.path).cmp(&(b.started_unix_ms, &b.path)));
        entries
    }

    /// What the recordings take now.
    pub fn usage(&self) -> Usage {
        let entries = self.list();
        Usage {
            count: entries.len() as u64,
            bytes: entries.iter().map(|e| e.bytes).sum(),
            oldest_unix_ms: entries.first().map(|e| e.started_unix_ms),
        }
    }

    /// Removes the closed recordings older than `keep_days`, then the
    /// oldest closed ones until all together fit `max_total`. Open ones are
    /// counted but never removed. A store made by [`Store::at`] removes
    /// nothing. A file that cannot be removed is logged and skipped.
    pub fn enforce(&self) -> Pruned {
        self.enforce_at(SystemTime::now())
    }

    fn enforce_at(&self, now: SystemTime) -> Pruned {
        let mut pruned = Pruned::default();
        let Some(limits) = self.limits else {
            return pruned;
        };
        let horizon = horizon(now, limits.keep_days);
        let open = self.lock_open().clone();
        let mut kept = Vec::new();
        for entry in self.list() {
            if entry.started_unix_ms < horizon
                && !open.contains(&entry.path)
                && self.remove(&entry, "older than [recorder] keep_days")
            {
                pruned.expired += 1;
                continue;
            }
            kept.push(entry);
        }
        let mut total: u64 = kept.iter().map(|e| e.bytes).sum();
        let (mut oldest, mut open_bytes) = (None, 0u64);
        for entry in &kept {
            if total > limits.max_total
                && !open.contains(&entry.path)
                && self.remove(entry, "over [recorder] max_total")
            {
                total -= entry.bytes;
                pruned.over_total += 1;
                continue;
            }
            if open.contains(&entry.path) {
                // Counted when it closes.
                open_bytes += entry.bytes;
            } else {
                oldest = oldest.or(Some(entry.started_unix_ms));
            }
        }
        *self.lock_tally() = Some(Tally {
            bytes: total.saturating_sub(open_bytes),
            oldest_unix_ms: oldest,
        });
        pruned
    }

    fn remove(&self, entry: &Entry, why: &str) -> bool {
        match std::fs::remove_file(&entry.path) {
            Ok(()) => {
                tracing::debug!(path = %entry.path.display(), why, "recording removed");
                true
            }
            // Someone else removed it first: it is gone either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                tracing::warn!(path = %entry.path.display(), error = %e, why,
                    "cannot remove a recording; it stays");
                false
            }
        }
    }

    /// The recording `id_or_path` names: a path to a file (anything with a
    /// `/`, or a file that exists), or a session id, whose newest recording
    /// in the directory is taken.
    pub fn resolve(&self, id_or_path: &str) -> anyhow::Result<PathBuf> {
        let as_path = Path::new(id_or_path);
        if id_or_path.contains('/') || as_path.is_file() {
            if !as_path.exists() {
                anyhow::bail!("recording {id_or_path}: no such file");
            }
            return Ok(as_path.to_path_buf());
        }
        let wanted = name_part(id_or_path);
        self.list()
            .into_iter()
            .rev()
            .find(|e| {
                e.path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_name)
                    .is_some_and(|(_, id)| id == wanted)
            })
            .map(|e| e.path)
            .with_context(|| {
                format!(
                    "no recording of session {id_or_path:?} in {} (give the recording's file \
                     path, or the --config whose state_dir / [recorder] dir holds it)",
                    self.dir.display()
                )
            })
    }
}

/// A recording being written: the file, and its place in the store's set
/// of open recordings. Dropping it closes the file, takes it out of that
/// set and applies the limits again.
#[derive(Debug)]
pub struct OpenRecording {
    file: File,
    path: PathBuf,
    store: Store,
}

impl OpenRecording {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, for the writer.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }
}

impl Write for OpenRecording {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OpenRecording {
    fn drop(&mut self) {
        // Unknown size: counted as over the limits, so they are applied.
        let bytes = self.file.metadata().map_or(u64::MAX, |m| m.len());
        self.store.closed(&self.path, bytes);
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
