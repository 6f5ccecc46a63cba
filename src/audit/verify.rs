//! `catpaw-agent audit verify`: does the trail hold every record it should?
//!
//! The chain shows a line changed, inserted or removed between two lines
//! that remain. The head (`audit.head`) shows what the chain cannot: lines
//! cut from the end (its last `seq` and hash), from the start (its first
//! `seq`, which only rotation moves), a whole rotated file gone (a hole in
//! the numbers `.1`, `.2`, …), and the current file gone. `audit_gap`
//! records, which the agent writes when it finds such damage itself, are
//! reported too. What none of this can show is a consistent rewrite of
//! trail and head together by someone who can write both (SECURITY.md).
//! A head in the format of agents before the anchor (`seq hash`) names no
//! first `seq`, so the start is checked only once an agent has opened the
//! trail and rewritten its head.
//!
//! The snapshot is taken under a shared lock on the head, which writers
//! hold exclusively per record: the files' lengths and the head are read
//! at one instant, so a running agent is never caught half-way.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chain::line_hash;
use super::file::{self, Lock, Mode};
use super::head::{self, End, HeadState, Mismatch};
use super::{Record, event, kind, rotated};

/// A whole trail that holds together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Files read, oldest first.
    pub files: Vec<PathBuf>,
    /// `seq` of the first record present (1 unless old files rotated away).
    pub first_seq: u64,
    /// `seq` of the last record (0: none).
    pub last_seq: u64,
    /// Hash of the last record's line: the head to compare with one logged
    /// off the host.
    pub last_hash: String,
}

/// What is wrong with a trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No trail at all where one was looked for.
    NoTrail,
    /// A file of the trail is not a regular file (a device, a FIFO, …).
    NotAFile,
    /// A file could not be read.
    Unreadable,
    /// A line is not a record (a torn write, or garbage).
    NotARecord,
    /// A line does not chain to the one before: changed, inserted or
    /// removed between lines that remain.
    Chain,
    /// A rotated file is missing while older ones remain.
    FileMissing,
    /// Records are missing from the start of the trail.
    StartMissing,
    /// Records are missing from the end of the trail.
    TailMissing,
    /// The last record is not the one the head names.
    LastChanged,
    /// Records follow the head's last one without it knowing them.
    Unanchored,
    /// `audit.head` is missing or torn: the end cannot be checked.
    HeadUnusable,
    /// The agent recorded a gap (`audit_gap`) it found in the trail.
    GapRecorded,
}

/// Where and why a trail does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ChainBreak {
    /// The file (or directory) at fault.
    pub file: PathBuf,
    /// The 1-based line at fault; 0 when it is the file as a whole.
    pub line: u64,
    /// What kind of fault.
    pub problem: Problem,
    /// What is wrong, in words.
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.reason),
            n => write!(f, "{}:{n}: {}", self.file.display(), self.reason),
        }
    }
}

fn brk(file: &Path, line: u64, problem: Problem, reason: impl Into<String>) -> ChainBreak {
    ChainBreak {
        file: file.to_path_buf(),
        line,
        problem,
        reason: reason.into(),
    }
}

/// A file opened for the snapshot, with its length at that instant.
struct Snap {
    path: PathBuf,
    file: File,
    len: u64,
}

fn open(path: &Path) -> Result<Snap, ChainBreak> {
    let f = file::open_regular(path, Mode::Read).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::InvalidInput {
            Problem::NotAFile
        } else {
            Problem::Unreadable
        };
        brk(path, 0, problem, format!("not an audit trail: {e}"))
    })?;
    let len = f
        .metadata()
        .map_err(|e| brk(path, 0, Problem::Unreadable, format!("cannot read: {e}")))?
        .len();
    Ok(Snap {
        path: path.to_path_buf(),
        file: f,
        len,
    })
}

/// Checks the trail whose current file is `trail`: rotated files oldest
/// first, then the current one, then the head.
pub fn verify(trail: &Path) -> Result<Verified, ChainBreak> {
    let dir = trail.parent().unwrap_or(Path::new("."));
    let name = trail
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let head_path = trail.with_extension("head");
    let no_trail = || {
        brk(
            dir,
            0,
            Problem::NoTrail,
            format!(
                "no audit trail here (no {name}, {name}.N or {}): is this the agent's state_dir?",
                head_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        )
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_trail()),
        Err(e) => {
            return Err(brk(
                dir,
                0,
                Problem::Unreadable,
                format!("cannot list: {e}"),
            ));
        }
    };
    let prefix = format!("{name}.");
    let mut numbered: BTreeMap<u32, PathBuf> = BTreeMap::new();
    for e in entries.flatten() {
        let n = e
            .file_name()
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix)?.parse::<u32>().ok())
            .filter(|n| *n >= 1);
        if let Some(n) = n {
            numbered.insert(n, e.path());
        }
    }
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let has_current = exists(trail);
    if !has_current && numbered.is_empty() && !exists(&head_path) {
        return Err(no_trail());
    }
    // The snapshot: head and lengths at one instant.
    let head_snap = if exists(&head_path) {
        Some(open(&head_path)?)
    } else {
        None
    };
    let lock = match &head_snap {
        Some(h) => Some(Lock::take(&h.file, false).map_err(|e| {
            brk(
                &head_path,
                0,
                Problem::Unreadable,
                format!("cannot lock: {e}"),
            )
        })?),
        None => None,
    };
    let head_state = match &head_snap {
        Some(h) => Some(head::read(&h.file).map_err(|e| {
            brk(
                &head_path,
                0,
                Problem::Unreadable,
                format!("cannot read: {e}"),
            )
        })?),
        None => None,
    };
    let mut files = Vec::new();
    for p in numbered.values().rev() {
        files.push(open(p)?);
    }
    if has_current {
        files.push(open(trail)?);
    }
    drop(lock);
    if let Some(&max) = numbered.keys().next_back()
        && let Some(n) = (1..max).find(|n| !numbered.contains_key(n))
    {
        return Err(brk(
            &rotated(trail, n),
            0,
            Problem::FileMissing,
            format!(
                "missing while {} is present: a whole file of records was removed",
                rotated(trail, max).display()
            ),
        ));
    }
    let walk = walk(&files)?;
    let last = files.last().map_or(trail, |s| s.path.as_path());
    let gone = if has_current {
        String::new()
    } else {
        format!(" ({} itself is missing)", trail.display())
    };
    let unusable = |what: &str| {
        brk(
            &head_path,
            0,
            Problem::HeadUnusable,
            format!("{what}: whether records were cut from the end of the trail cannot be checked"),
        )
    };
    let (head_seq, head_hash, first) = match head_state {
        None if walk.records > 0 => return Err(unusable("missing")),
        None => (0, String::new(), None),
        Some(HeadState::Empty) if walk.records > 0 => return Err(unusable("empty")),
        Some(HeadState::Empty) => (0, String::new(), None),
        Some(HeadState::Torn(why)) => return Err(unusable(&format!("not a whole head ({why})"))),
        Some(HeadState::Legacy { seq, hash }) => (seq, hash, None),
        Some(HeadState::Valid(h)) => (h.seq, h.hash, Some(h.first)),
    };
    if let Some(m) = head::compare(head_seq, &head_hash, first.unwrap_or(1), walk.end.as_ref()) {
        let problem = match m {
            Mismatch::TailMissing { .. } => Problem::TailMissing,
            Mismatch::LastChanged { .. } => Problem::LastChanged,
            Mismatch::Unanchored { .. } => Problem::Unanchored,
        };
        return Err(brk(last, 0, problem, format!("{m}{gone}")));
    }
    if let (Some(first), Some(found)) = (first, walk.first_seq)
        && found > first
    {
        let oldest = files.first().map_or(trail, |s| s.path.as_path());
        return Err(brk(
            oldest,
            1,
            Problem::StartMissing,
            format!(
                "records seq {first}..{} are missing from the start of the trail: audit.head \
                 says it keeps seq {first} on (only rotation past [audit] keep moves that), \
                 but the oldest file begins at seq {found}",
                found - 1
            ),
        ));
    }
    Ok(Verified {
        records: walk.records,
        files: files.into_iter().map(|s| s.path).collect(),
        first_seq: walk.first_seq.unwrap_or(0),
        last_seq: walk.end.as_ref().map_or(0, |e| e.seq),
        last_hash: walk.end.map_or_else(String::new, |e| e.hash),
    })
}

/// What walking the records found.
struct Walk {
    records: u64,
    first_seq: Option<u64>,
    end: Option<End>,
}

/// Every line must be a record whose `prev` is the hash of the line before
/// and whose `seq` is one more; the first line of the oldest file anchors
/// the chain (the head says where it must begin).
fn walk(files: &[Snap]) -> Result<Walk, ChainBreak> {
    let mut w = Walk {
        records: 0,
        first_seq: None,
        end: None,
    };
    for s in files {
        let mut text = vec![0u8; s.len as usize];
        s.file
            .read_exact_at(&mut text, 0)
            .map_err(|e| brk(&s.path, 0, Problem::Unreadable, format!("cannot read: {e}")))?;
        let body = match text.strip_suffix(b"\n") {
            Some(body) => body,
            None if text.is_empty() => continue,
            None => {
                let n = text.split(|&b| b == b'\n').count() as u64;
                return Err(brk(
                    &s.path,
                    n,
                    Problem::NotARecord,
                    "the last line is incomplete (a torn write)",
                ));
            }
        };
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let n = i as u64 + 1;
            let at = |problem, reason: String| brk(&s.path, n, problem, reason);
            let rec: Record = serde_json::from_slice(line)
                .map_err(|e| at(Problem::NotARecord, format!("not an audit record: {e}")))?;
            // Before the chain: the gap record itself bridges the hole.
            if rec.kind == kind::AUDIT && rec.event == event::AUDIT_GAP {
                return Err(at(
                    Problem::GapRecorded,
                    format!("the agent recorded a gap (seq {}): {}", rec.seq, rec.detail),
                ));
            }
            if let Some(end) = &w.end {
                if rec.prev != end.hash {
                    return Err(at(
                        Problem::Chain,
                        format!(
                            "prev does not match the line before (seq {}): a line was \
                             changed, removed or inserted",
                            end.seq
                        ),
                    ));
                }
                if end.seq.checked_add(1) != Some(rec.seq) {
                    return Err(at(
                        Problem::Chain,
                        format!(
                            "seq {} follows seq {}: records are missing",
                            rec.seq, end.seq
                        ),
                    ));
                }
            }
            w.records += 1;
            w.first_seq.get_or_insert(rec.seq);
            w.end = Some(End {
                seq: rec.seq,
                hash: line_hash(line),
                prev: rec.prev,
            });
        }
    }
    Ok(w)
}
