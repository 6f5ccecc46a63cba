//! The replay cache on disk (PROTOCOL §9: the window holds across
//! restarts). Without it a signed `session_start` captured before a restart
//! (say a chat granted a shell) would be accepted again right after it.
//!
//! The file (`<state_dir>/replay_nonces`, see `config::StatePaths`) is a
//! journal of text lines, a header and then one line per accepted message:
//!
//! ```text
//! catpaw-replay-v1
//! <64 hex digits of the (key_id, nonce) digest> <expiry, unix seconds>
//! ```
//!
//! - **Before a message is accepted** its line is appended and synced
//!   (`fdatasync`); if that fails the message is refused, so no accepted
//!   nonce is ever missing from the disk.
//! - **At start** the live lines are loaded and the file is compacted
//!   (written anew to a temporary file, synced, renamed over). It is
//!   compacted again whenever it holds more than twice the live entries
//!   (and at least [`COMPACT_MIN`] lines), so it stays within a small
//!   multiple of the in-memory cache's bound.
//! - **Fail closed**: a journal that cannot be read, is not a regular file,
//!   or holds anything but whole well-formed lines (a torn tail included)
//!   cannot say which nonces were seen. Then every signed message is
//!   refused until one whole window (`2 × max_skew`) has passed since
//!   start, after which no message accepted before the start can still be
//!   fresh. The unreadable file is kept beside as `replay_nonces.bad` for
//!   inspection, and a fresh journal is started.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::util::hex_digest;

/// What the journal keeps of an accepted message: the SHA-256 digest of
/// its `(key_id, nonce)` (the replay cache's key).
pub(super) type ReplayId = [u8; 32];

/// First line of the file; names the format.
const HEADER: &str = "catpaw-replay-v1";
/// Fewest lines at which the journal is compacted.
const COMPACT_MIN: usize = 1024;
/// Largest journal read at start: the cache's bound (100 000 entries of 85
/// bytes) twice over, with room. A larger file is not ours: fail closed.
const MAX_FILE: u64 = 32 << 20;

/// What loading found.
pub(super) struct Loaded {
    pub journal: Journal,
    /// Unexpired entries: digest and expiry.
    pub entries: Vec<(ReplayId, i64)>,
    /// `Some(reason)` when the file could not be trusted (fail closed).
    pub distrusted: Option<String>,
}

/// The open journal, appended to under the verifier's lock.
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    /// Lines in the file after the header.
    lines: usize,
}

impl Journal {
    /// Loads the journal at `path` (creating it when absent), keeps the
    /// entries unexpired at `now` and compacts the file to them.
    pub(super) fn load(path: &Path, now: i64) -> std::io::Result<Loaded> {
        let (entries, distrusted) = match read_entries(path) {
            Ok(entries) => (entries, None),
            Err(NotLoaded::Absent) => (Vec::new(), None),
            Err(NotLoaded::Bad(why)) => {
                let aside = path.with_extension("bad");
                // Best effort: keeping the bad file is for inspection only.
                let _ = std::fs::rename(path, &aside);
                (Vec::new(), Some(why))
            }
        };
        let live: Vec<(ReplayId, i64)> = entries.into_iter().filter(|(_, e)| *e >= now).collect();
        let journal = Journal::rewrite(path, &live)?;
        Ok(Loaded {
            journal,
            entries: live,
            distrusted,
        })
    }

    /// Appends one accepted entry and syncs it to disk.
    pub(super) fn append(&mut self, id: &ReplayId, expires: i64) -> std::io::Result<()> {
        let line = line(id, expires);
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    /// Whether the file holds enough expired lines to be worth compacting.
    pub(super) fn wants_compaction(&self, live: usize) -> bool {
        self.lines >= COMPACT_MIN && self.lines > live.saturating_mul(2)
    }

    /// Replaces the file with exactly `live` (crash-safe: a temporary file,
    /// synced, renamed over, the directory synced).
    pub(super) fn compact(&mut self, live: &[(ReplayId, i64)]) -> std::io::Result<()> {
        *self = Journal::rewrite(&self.path, live)?;
        Ok(())
    }

    fn rewrite(path: &Path, live: &[(ReplayId, i64)]) -> std::io::Result<Journal> {
        let tmp = path.with_extension("tmp");
        let mut text = String::with_capacity(HEADER.len() + 1 + live.len() * 85);
        text.push_str(HEADER);
        text.push('\n');
        for (id, expires) in live {
            text.push_str(&line(id, *expires));
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The rename is durable once the directory is; where the
            // directory cannot be opened the file is still whole.
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = d.sync_all();
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            lines: live.len(),
        })
    }
}

fn line(id: &ReplayId, expires: i64) -> String {
    format!("{} {expires}\n", hex_digest(id))
}

/// Why the journal could not be read.
enum NotLoaded {
    /// There is none: a first start (or signing just switched on).
    Absent,
    /// There is one, and it cannot be trusted.
    Bad(String),
}

fn read_entries(path: &Path) -> Result<Vec<(ReplayId, i64)>, NotLoaded> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NotLoaded::Absent),
        Err(e) => return Err(NotLoaded::Bad(format!("cannot open it: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| NotLoaded::Bad(format!("cannot stat it: {e}")))?;
    let kind = crate::fsafe::Kind::of(&meta);
    if kind != crate::fsafe::Kind::Regular {
        return Err(NotLoaded::Bad(format!("it is {}", kind.describe())));
    }
    if meta.len() > MAX_FILE {
        return Err(NotLoaded::Bad(format!(
            "it is {} bytes, more than the {MAX_FILE} a journal can hold",
            meta.len()
        )));
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| NotLoaded::Bad(format!("cannot read it: {e}")))?;
    parse(&text).map_err(NotLoaded::Bad)
}

/// Parses the whole file; any line that is not whole and well formed makes
/// it untrustworthy.
fn parse(text: &str) -> Result<Vec<(ReplayId, i64)>, String> {
    let Some(body) = text.strip_prefix(HEADER).and_then(|t| t.strip_prefix('\n')) else {
        return Err(format!("it does not start with the line `{HEADER}`"));
    };
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("its last line is torn (no line end)".into());
    }
    body.lines()
        .enumerate()
        .map(|(i, l)| parse_line(l).ok_or_else(|| format!("line {} is malformed", i + 2)))
        .collect()
}

fn parse_line(l: &str) -> Option<(ReplayId, i64)> {
    let (hex, expires) = l.split_once(' ')?;
    if hex.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((id, expires.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ReplayId {
        [n; 32]
    }

    #[test]
    fn entries_survive_a_reload_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay_nonces");
        let mut loaded = Journal::load(&path, 100).unwrap();
        assert!(loaded.entries.is_empty() && loaded.distrusted.is_none());
        loaded.journal.append(&id(1), 150).unwrap();
        loaded.journal.append(&id(2), 300).unwrap();
        let again = Journal::load(&path, 200).unwrap();
        assert_eq!(again.entries, vec![(id(2), 300)]);
        assert!(again.distrusted.is_none());
        // Compacted at load: the expired line is gone from the file.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_torn_or_foreign_file_is_distrusted_and_kept_aside() {
        for bad in [
            format!("{HEADER}\n{} 5", "ab".repeat(32)),
            format!("{HEADER}\nzz 5\n"),
            "something else\n".to_string(),
            String::new(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("replay_nonces");
            std::fs::write(&path, &bad).unwrap();
            let loaded = Journal::load(&path, 0).unwrap();
            assert!(loaded.distrusted.is_some(), "{bad:?}");
            assert!(loaded.entries.is_empty());
            assert_eq!(
                std::fs::read(path.with_extension("bad")).unwrap(),
                bad.as_bytes()
            );
            // A fresh, well-formed journal took its place.
            assert!(Journal::load(&path, 0).unwrap().distrusted.is_none());
        }
    }

    #[test]
    fn a_directory_or_fifo_in_its_place_is_distrusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay_nonces");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opened non-blocking: a FIFO nobody writes to cannot hang the load.
        let loaded = Journal::load(&path, 0).unwrap();
        assert_eq!(loaded.distrusted.as_deref(), Some("it is a FIFO"));
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay_nonces");
        let mut j = Journal::load(&path, 0).unwrap().journal;
        for n in 0..(COMPACT_MIN as u32) {
            j.append(&id((n % 250) as u8), i64::from(n)).unwrap();
        }
        assert!(j.wants_compaction(10));
        j.compact(&[(id(9), 5000)]).unwrap();
        assert!(!j.wants_compaction(1));
        assert_eq!(
            Journal::load(&path, 0).unwrap().entries,
            vec![(id(9), 5000)]
        );
    }
}
