//! The trail's head, `audit.head`: where the trail must end and begin.
//!
//! Why a head at all: a hash chain shows a changed or removed line only
//! where a later line still chains past it. Cut the last lines, or the
//! first ones, or a whole file, and what is left still chains. The head
//! says what the trail holds — the `seq` and hash of the last record, the
//! first `seq` still meant to be present (rotation moves it past the files
//! `keep` drops, so "rotated away by policy" and "removed" differ), and
//! which file is current (device, inode, length) — so `verify` and the next
//! agent start can tell a trail that ends early from one that is whole.
//!
//! Why this format: one fixed-size line, overwritten in place at offset 0
//! (`pwrite`) after every record, so anchoring costs one small write and no
//! truncate, reopen or rename. It is synced only when the record itself is
//! (a shell's `started`). That is crash-safe enough because a torn or stale
//! head is detected, never trusted: the line carries a checksum of itself,
//! and a head one record behind the trail (a crash between the record and
//! its head) chains to it. Anything else — a torn head, a head past the
//! trail's end — makes the next start write an `audit_gap` record and log
//! an error, falling back to the trail itself, loudly.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::chain::line_hash;

/// Length of the head line, newline included.
pub(crate) const HEAD_LEN: usize = 288;

/// The text every head line starts with.
const MAGIC: &str = "catpaw-audit-head 1";

/// What `audit.head` says about its trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// `seq` of the last record (0: none yet).
    pub seq: u64,
    /// Hash of the last record's line (`GENESIS` when none).
    pub hash: String,
    /// First `seq` the trail still keeps (1 until rotation drops a file).
    pub first: u64,
    /// First `seq` of the current file.
    pub cur: u64,
    /// Length of the current file after the last record.
    pub len: u64,
    /// Device and inode of the current file.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
}

/// What reading `audit.head` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadState {
    /// Empty (a new trail, or the head was removed and recreated).
    Empty,
    /// `seq hash`, as agents before this format wrote it: no first `seq`,
    /// no current file.
    Legacy { seq: u64, hash: String },
    /// A whole head.
    Valid(Head),
    /// Not a head: torn, or changed by hand (why in the text).
    Torn(String),
}

impl Head {
    /// The fixed-size line, checksum last.
    pub(crate) fn encode(&self) -> [u8; HEAD_LEN] {
        let body = format!(
            "{MAGIC} seq={:020} first={:020} cur={:020} len={:020} dev={:020} ino={:020} hash={}",
            self.seq, self.first, self.cur, self.len, self.dev, self.ino, self.hash
        );
        let sum = &line_hash(body.as_bytes())[..16];
        let line = format!("{body} sum={sum}");
        let mut out = [b' '; HEAD_LEN];
        let n = line.len().min(HEAD_LEN - 1);
        out[..n].copy_from_slice(&line.as_bytes()[..n]);
        out[HEAD_LEN - 1] = b'\n';
        out
    }
}

/// Parses what `audit.head` holds.
pub(crate) fn parse(bytes: &[u8]) -> HeadState {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return HeadState::Torn("not text".into());
    };
    let text = text.trim_end_matches(['\n', ' ', '\0']);
    if text.is_empty() {
        return HeadState::Empty;
    }
    if !text.starts_with(MAGIC) {
        return match text.split_once(' ') {
            Some((seq, hash)) if hash.len() == 64 && seq.parse::<u64>().is_ok() => {
                HeadState::Legacy {
                    seq: seq.parse().unwrap_or_default(),
                    hash: hash.to_string(),
                }
            }
            _ => HeadState::Torn("not a head line".into()),
        };
    }
    let Some((body, sum)) = text.rsplit_once(" sum=") else {
        return HeadState::Torn("no checksum".into());
    };
    if line_hash(body.as_bytes())[..16] != *sum {
        return HeadState::Torn("its checksum does not match (torn write or edited)".into());
    }
    let field = |k: &str| {
        body.split(' ')
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            .ok_or_else(|| format!("no {k}"))
    };
    let num = |k: &str| -> Result<u64, String> {
        field(k)?
            .parse()
            .map_err(|_| format!("{k} is not a number"))
    };
    let head = (|| {
        Ok::<_, String>(Head {
            seq: num("seq")?,
            hash: field("hash")?.to_string(),
            first: num("first")?,
            cur: num("cur")?,
            len: num("len")?,
            dev: num("dev")?,
            ino: num("ino")?,
        })
    })();
    match head {
        Ok(h) => HeadState::Valid(h),
        Err(e) => HeadState::Torn(e),
    }
}

/// Reads the head from its open file.
pub(crate) fn read(f: &File) -> std::io::Result<HeadState> {
    let mut buf = [0u8; HEAD_LEN + 1];
    // One read: a read of a regular file (the head is one, checked at
    // open) comes back short only at its end.
    let n = f.read_at(&mut buf, 0)?;
    if n > HEAD_LEN {
        return Ok(HeadState::Torn("longer than a head line".into()));
    }
    Ok(parse(&buf[..n]))
}

/// Overwrites the head in place; `sync` waits until it is on disk.
pub(crate) fn write(f: &File, head: &Head, sync: bool) -> std::io::Result<()> {
    f.write_all_at(&head.encode(), 0)?;
    if sync { f.sync_data() } else { Ok(()) }
}

/// How the end of a trail on disk compares with its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Records `from..=to` are gone from the end.
    TailMissing { from: u64, to: u64 },
    /// The last record (`seq`) is not the one the head names.
    LastChanged { seq: u64 },
    /// Records `from..=to` follow the head's last without it knowing them.
    Unanchored { from: u64, to: u64 },
}

impl Mismatch {
    /// The `seq` range known to be missing, if any.
    pub(crate) fn missing(&self) -> Option<[u64; 2]> {
        match self {
            Mismatch::TailMissing { from, to } => Some([*from, *to]),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::TailMissing { from, to } => write!(
                f,
                "records seq {from}..{to} are missing from the end of the trail \
                 (audit.head says the last record is seq {to})"
            ),
            Mismatch::LastChanged { seq } => write!(
                f,
                "the last record (seq {seq}) is not the one audit.head names (its hash differs): \
                 it was changed or replaced"
            ),
            Mismatch::Unanchored { from, to } => write!(
                f,
                "records seq {from}..{to} follow audit.head's last record (seq {}) without it \
                 knowing them: written by something other than an agent, or the head lost \
                 writes in a crash",
                from.saturating_sub(1)
            ),
        }
    }
}

/// The last whole record of a trail on disk: its `seq`, its line's hash,
/// and its `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct End {
    pub seq: u64,
    pub hash: String,
    pub prev: String,
}

/// Compares the trail's end (`None`: no record at all) with the head's
/// last record. One record past the head that chains to it is whole: a
/// crash came between writing the record and its head.
pub(crate) fn compare(seq: u64, hash: &str, first: u64, end: Option<&End>) -> Option<Mismatch> {
    let Some(end) = end else {
        return (seq > 0).then(|| Mismatch::TailMissing {
            from: first.max(1),
            to: seq,
        });
    };
    if end.seq == seq && end.hash == hash {
        return None;
    }
    if seq.checked_add(1) == Some(end.seq) && end.prev == hash {
        return None;
    }
    if end.seq < seq {
        return Some(Mismatch::TailMissing {
            from: end.seq + 1,
            to: seq,
        });
    }
    if end.seq == seq {
        return Some(Mismatch::LastChanged { seq });
    }
    Some(Mismatch::Unanchored {
        from: seq + 1,
        to: end.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            seq: 42,
            hash: "ab".repeat(32),
            first: 7,
            cur: 30,
            len: 12345,
            dev: 2049,
            ino: u64::MAX,
        }
    }

    #[test]
    fn a_head_round_trips_in_a_fixed_size_and_a_torn_one_is_seen() {
        let h = head();
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEAD_LEN);
        assert_eq!(parse(&bytes), HeadState::Valid(h.clone()));
        // One digit changed: the checksum no longer matches.
        let text = String::from_utf8(bytes.to_vec()).expect("text");
        let edited = text.replacen("seq=00000000000000000042", "seq=00000000000000000041", 1);
        assert!(matches!(parse(edited.as_bytes()), HeadState::Torn(_)));
        // Half a write.
        assert!(matches!(parse(&bytes[..HEAD_LEN / 2]), HeadState::Torn(_)));
        assert_eq!(parse(b""), HeadState::Empty);
        let legacy = format!("17 {}\n", "cd".repeat(32));
        assert_eq!(
            parse(legacy.as_bytes()),
            HeadState::Legacy {
                seq: 17,
                hash: "cd".repeat(32)
            }
        );
        assert!(matches!(parse(b"garbage"), HeadState::Torn(_)));
    }

    #[test]
    fn the_end_of_a_trail_is_compared_with_its_head() {
        let h = "h".repeat(64);
        let end = |seq: u64, hash: &str, prev: &str| End {
            seq,
            hash: hash.into(),
            prev: prev.into(),
        };
        let cases: Vec<(Option<End>, Option<Mismatch>)> = vec![
            (Some(end(10, &h, "p")), None),
            // A crash between the record and its head.
            (Some(end(11, "x", &h)), None),
            (
                Some(end(11, "x", "other")),
                Some(Mismatch::Unanchored { from: 11, to: 11 }),
            ),
            (
                Some(end(9, "x", "p")),
                Some(Mismatch::TailMissing { from: 10, to: 10 }),
            ),
            (
                Some(end(5, "x", "p")),
                Some(Mismatch::TailMissing { from: 6, to: 10 }),
            ),
            (
                Some(end(10, "x", "p")),
                Some(Mismatch::LastChanged { seq: 10 }),
            ),
            (
                Some(end(14, "x", "p")),
                Some(Mismatch::Unanchored { from: 11, to: 14 }),
            ),
            (None, Some(Mismatch::TailMissing { from: 3, to: 10 })),
        ];
        for (i, (e, want)) in cases.into_iter().enumerate() {
            assert_eq!(compare(10, &h, 3, e.as_ref()), want, "case {i}");
        }
        assert_eq!(compare(0, "g", 1, None), None, "a new trail");
    }
}
