//! The trail as one process writes it: append, sync, rotate, and anchor
//! each record in `audit.head` (see `head` for why and how).
//!
//! Every append, under an exclusive `flock` on `audit.head` (several
//! processes may share a state dir: the agent and a `session` harness):
//!
//! 1. read the head: another process may have written since;
//! 2. check that the current file is still the one the head names and no
//!    shorter: a removed, replaced or cut `audit.jsonl` is written down as
//!    an `audit_gap` record (and an error log line) before anything else;
//! 3. rotate when full, moving the head's first `seq` past a dropped file;
//! 4. write the record (synced when asked), then overwrite the head in
//!    place (synced with it).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::chain::{GENESIS, line_hash};
use super::file::{self, Lock, Mode};
use super::head::{self, Head, HeadState};
use super::{AuditOptions, Record, event, kind, rotated, scan};

/// A gap found in the trail: written as an `audit_gap` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gap {
    /// What is missing or wrong, in words.
    pub detail: String,
    /// The `seq` range known to be missing.
    pub missing: Option<[u64; 2]>,
}

/// One trail, as one process sees it.
pub(super) struct Trail {
    path: PathBuf,
    opts: AuditOptions,
    /// `audit.head`, open for the trail's life.
    head_file: File,
    /// The open current file (`None` after a failed write: reopened next
    /// time, as the disk may be back).
    file: Option<File>,
    /// Device and inode of `file`, so that checking the path names it
    /// takes one `stat` of the path and none of the descriptor.
    file_id: (u64, u64),
    /// Length of `file` just after this process's last record in it, which
    /// ended in a newline: at that length the file cannot end torn, and
    /// the next record skips reading its last byte.
    clean_end: Option<u64>,
    /// The head as this process last wrote or read it: the chain's end.
    head: Head,
    /// Warn once when the append-only attribute cannot be set.
    attr_warned: bool,
}

/// Device and inode of `meta`.
fn id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Trail {
    /// Opens the trail (creating it and its dir if needed). A gap between
    /// the head and the trail on disk is returned for the caller to record.
    pub(super) fn open(path: &Path, opts: AuditOptions) -> anyhow::Result<(Trail, Option<Gap>)> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state dir {}", dir.display()))?;
        let head_path = path.with_extension("head");
        let head_file = file::open_regular(&head_path, Mode::Update)
            .with_context(|| format!("opening audit head {}", head_path.display()))?;
        let mut t = Trail {
            path: path.to_path_buf(),
            opts,
            head_file,
            file: None,
            file_id: (0, 0),
            clean_end: None,
            head: Head {
                seq: 0,
                hash: GENESIS.to_string(),
                first: 1,
                cur: 1,
                len: 0,
                dev: 0,
                ino: 0,
            },
            attr_warned: false,
        };
        let gap = t
            .load()
            .with_context(|| format!("opening audit log {}", t.path.display()))?;
        Ok((t, gap))
    }

    /// At open: the head against the trail's end on disk.
    fn load(&mut self) -> std::io::Result<Option<Gap>> {
        let _lock = Lock::take(&self.head_file, true)?;
        let state = head::read(&self.head_file)?;
        let f = file::open_regular(&self.path, Mode::Append)?;
        self.protect(&f);
        let meta = f.metadata()?;
        self.file = Some(f);
        self.file_id = id(&meta);
        let end = scan::disk_end(&self.path, self.opts.keep)?;
        let (dev, ino) = id(&meta);
        let derived_first =
            || scan::first_on_disk(&self.path, self.opts.keep).map(|f| f.unwrap_or(1));
        let (seq, first, cur, mismatch, lost) = match &state {
            HeadState::Valid(h) => {
                let m = head::compare(h.seq, &h.hash, h.first, end.as_ref());
                (h.seq, h.first, Some(h), m, None)
            }
            HeadState::Legacy { seq, hash } => {
                tracing::info!(path = %self.path.display(),
                    "upgrading audit.head to the format that anchors the trail's start and file");
                let m = head::compare(*seq, hash, 1, end.as_ref());
                (*seq, derived_first()?, None, m, None)
            }
            HeadState::Empty if end.is_none() => (0, 1, None, None, None),
            HeadState::Empty => (0, derived_first()?, None, None, Some("missing")),
            HeadState::Torn(why) => (0, derived_first()?, None, None, Some(why.as_str())),
        };
        let cur = match cur {
            Some(h) if (h.dev, h.ino) == (dev, ino) => h.cur,
            _ => scan::first_seq(&self.path)?.unwrap_or(0),
        };
        let end_seq = end.as_ref().map_or(0, |e| e.seq);
        self.head = Head {
            seq: seq.max(end_seq),
            hash: end
                .as_ref()
                .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone()),
            first,
            cur: if cur == 0 { seq.max(end_seq) + 1 } else { cur },
            len: meta.len(),
            dev,
            ino,
        };
        let gap = match (mismatch, lost) {
            (Some(m), _) => Some(Gap {
                detail: format!("at agent start: {m}"),
                missing: m.missing(),
            }),
            (None, Some(why)) => Some(Gap {
                detail: format!(
                    "at agent start: audit.head is {why}; the trail's end (seq {end_seq}) \
                     could not be checked against it and records cut from the end would not show"
                ),
                missing: None,
            }),
            (None, None) => None,
        };
        // Written under the same lock as the check, before anything else.
        match &gap {
            Some(g) => {
                self.write(&mut gap_record(g.clone()), true, None)?;
            }
            None => head::write(&self.head_file, &self.head, true)?,
        }
        // The head, for a log shipped off the host: a later rewrite of
        // trail and head together cannot change what was logged here.
        tracing::info!(path = %self.path.display(), seq = self.head.seq,
            hash = %self.head.hash, first = self.head.first, "audit trail opened");
        Ok(gap)
    }

    /// `started` records of the current and the previous file that have
    /// no outcome yet.
    pub(super) fn open_acts(&self) -> Vec<Record> {
        scan::open_acts(&self.path, self.opts.max_size)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated(&self.path, n)
    }

    /// Appends one record, filling in `seq` and `prev`.
    ///
    /// The record chains to the head this process (or another agent
    /// process, through `audit.head`) wrote last, never to whatever the
    /// file ends with now: a line someone else appended is thereby exposed
    /// by `verify` at this record.
    pub(super) fn append(&mut self, rec: &mut Record, sync: bool) -> std::io::Result<u64> {
        let _lock = Lock::take(&self.head_file, true)?;
        match head::read(&self.head_file)? {
            HeadState::Valid(h) => self.head = h,
            other => tracing::error!(path = %self.path.display(), state = ?other,
                "audit.head is not a whole head; this agent rewrites it from what it wrote last"),
        }
        match self.check_current()? {
            Ok(len) => self.write(rec, sync, Some(len)),
            Err(gap) => {
                tracing::error!(path = %self.path.display(), detail = %gap.detail,
                    "audit trail damaged while the agent ran; recording the gap");
                self.write(&mut gap_record(gap), true, None)?;
                self.write(rec, sync, None)
            }
        }
    }

    /// Whether the current file is still the one the head names, whole:
    /// Ok(its length), or the gap to record. One `stat` of the path when
    /// it is.
    fn check_current(&mut self) -> std::io::Result<Result<u64, Gap>> {
        let at_path = match std::fs::metadata(&self.path) {
            Ok(m) => Some((id(&m), m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let named = (self.head.dev, self.head.ino);
        if let Some((at, len)) = at_path
            && at == named
        {
            if self.file.is_none() || self.file_id != named {
                // Another writer rotated (or this one failed a write).
                self.reopen()?;
            }
            // The path names the file this process has open: its length
            // is the file's.
            if len >= self.head.len {
                return Ok(Ok(len));
            }
            let end = scan::disk_end(&self.path, self.opts.keep)?;
            let kept = end.as_ref().map_or(0, |e| e.seq);
            let was = self.head.len;
            self.head.hash = end.map_or_else(|| GENESIS.to_string(), |e| e.hash);
            self.head.len = len;
            return Ok(Err(Gap {
                detail: format!(
                    "{} shrank from {was} to {len} bytes while the agent ran: records seq {}..{} \
                     were cut from its end",
                    self.path.display(),
                    kept + 1,
                    self.head.seq
                ),
                missing: Some([kept + 1, self.head.seq]),
            }));
        }
        // Removed, or replaced by a file no agent wrote.
        let what = if at_path.is_none() {
            "removed"
        } else {
            "replaced"
        };
        let (from, to) = (self.head.cur, self.head.seq);
        self.file = None;
        self.reopen()?;
        let end = scan::disk_end(&self.path, self.opts.keep)?;
        self.head.hash = end.map_or_else(|| GENESIS.to_string(), |e| e.hash);
        self.head.cur = self.head.seq + 1;
        let held = if to >= from {
            format!("its records seq {from}..{to} are gone")
        } else {
            "it held no records".to_string()
        };
        Ok(Err(Gap {
            detail: format!(
                "{} was {what} while the agent ran: {held}",
                self.path.display()
            ),
            missing: (to >= from).then_some([from, to]),
        }))
    }

    fn current(&self) -> std::io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("audit file is not open"))
    }

    /// Opens the current file (after a rotation or a failed write) and
    /// names it in the head.
    fn reopen(&mut self) -> std::io::Result<()> {
        let f = file::open_regular(&self.path, Mode::Append)?;
        self.protect(&f);
        let meta = f.metadata()?;
        (self.head.dev, self.head.ino) = id(&meta);
        self.file_id = id(&meta);
        self.clean_end = None;
        self.head.len = meta.len();
        if meta.len() == 0 {
            self.head.cur = self.head.seq + 1;
        }
        self.file = Some(f);
        Ok(())
    }

    /// Writes one record at the end of the current file, then the head.
    /// `known_len`: the current file's length, when the caller just read it.
    fn write(
        &mut self,
        rec: &mut Record,
        sync: bool,
        known_len: Option<u64>,
    ) -> std::io::Result<u64> {
        rec.seq = self.head.seq.saturating_add(1);
        rec.prev = self.head.hash.clone();
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        let mut len = match known_len {
            Some(len) => len,
            None => self.current()?.metadata()?.len(),
        };
        let full = len > 0 && len + line.len() as u64 + 1 > self.opts.max_size;
        if full {
            if let Err(e) = self.rotate() {
                tracing::error!(path = %self.path.display(), error = %e,
                    "audit rotation failed; the current file keeps growing");
                if self.file.is_none() {
                    self.reopen()?;
                }
            }
            len = self.current()?.metadata()?.len();
        }
        let hash = line_hash(&line);
        line.push(b'\n');
        let result = {
            let mut f = self.current()?;
            // A write that failed or a process that died mid-line can leave
            // a torn line the append-only attribute keeps. The record starts
            // on a line of its own, so the torn one stays one bad line (which
            // `verify` reports) instead of swallowing this record.
            if self.clean_end != Some(len) && file::ends_torn(f, len)? {
                line.insert(0, b'\n');
            }
            let r = std::io::Write::write_all(&mut f, &line)
                .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
            if r.is_err() {
                // A torn line would poison the next one: cut it off where
                // the append-only attribute allows; otherwise verify
                // reports it.
                let _ = f.set_len(len);
            }
            r
        };
        if let Err(e) = result {
            self.file = None;
            self.clean_end = None;
            return Err(e);
        }
        self.head.seq = rec.seq;
        self.head.hash = hash;
        self.head.len = len + line.len() as u64;
        self.clean_end = Some(self.head.len);
        head::write(&self.head_file, &self.head, sync)?;
        Ok(rec.seq)
    }

    /// `audit.jsonl` → `.1` → … → `.keep`; the oldest goes, and the head's
    /// first `seq` moves past it (so `verify` knows it went by policy).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        self.clean_end = None;
        let keep = self.opts.keep.max(1);
        let oldest = self.rotated(keep);
        if oldest.exists() {
            let dropped_last = scan::last_seq(&oldest)?;
            file::set_append_only(&oldest, false);
            std::fs::remove_file(&oldest)?;
            let before = self.head.first;
            self.head.first = match dropped_last {
                Some(s) => s + 1,
                None => {
                    let next = if keep > 1 {
                        self.rotated(keep - 1)
                    } else {
                        self.path.clone()
                    };
                    scan::first_seq(&next)?.unwrap_or(self.head.cur)
                }
            };
            // At once: a crash before the next record must not make the
            // dropped file look removed.
            head::write(&self.head_file, &self.head, true)?;
            tracing::info!(file = %oldest.display(), first = before,
                last = self.head.first.saturating_sub(1),
                "audit: dropped the oldest file past [audit] keep");
        }
        for n in (1..keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                file::set_append_only(&from, false);
                std::fs::rename(&from, self.rotated(n + 1))?;
                self.protect_path(&self.rotated(n + 1));
            }
        }
        file::set_append_only(&self.path, false);
        std::fs::rename(&self.path, self.rotated(1))?;
        self.protect_path(&self.rotated(1));
        self.reopen()?;
        head::write(&self.head_file, &self.head, false)?;
        // The head, for a log shipped off the host: a later rewrite of
        // trail and head together cannot change what was logged here.
        tracing::info!(path = %self.path.display(), seq = self.head.seq,
            hash = %self.head.hash, first = self.head.first, "audit trail rotated");
        Ok(())
    }

    fn protect_path(&mut self, path: &Path) {
        if let Ok(f) = file::open_regular(path, Mode::Read) {
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
        if let Err(e) = file::set_flag(f, true)
            && !self.attr_warned
        {
            self.attr_warned = true;
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot set the append-only attribute on the audit log (filesystem or \
                 capabilities do not allow it); the hash chain still shows tampering");
        }
    }
}

/// The `audit_gap` record for `gap`.
pub(super) fn gap_record(gap: Gap) -> Record {
    let mut rec = Record {
        time: super::now(),
        kind: kind::AUDIT.to_string(),
        event: event::AUDIT_GAP.to_string(),
        ..Record::default()
    }
    .with_outcome("", &gap.detail);
    rec.missing = gap.missing;
    rec
}
