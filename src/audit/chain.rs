//! The hash chain: each line's `prev` is the SHA-256 of the line before
//! it, across rotated files; [`verify`] walks the whole trail.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Record, rotated};

/// `prev` of the very first record of a trail.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 of one line (without its newline).
pub(crate) fn line_hash(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A whole trail that holds together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Files read, oldest first.
    pub files: Vec<PathBuf>,
    /// `seq` of the first record present (1 unless old files rotated away).
    pub first_seq: u64,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct ChainBreak {
    /// File holding the first bad line.
    pub file: PathBuf,
    /// Its 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks the trail at `trail`: rotated files oldest first, then the
/// current one. Every line must be a record whose `prev` is the hash of the
/// line before and whose `seq` is one more; the first line of the oldest
/// file anchors the chain (older files may have rotated away).
pub fn verify(trail: &Path) -> Result<Verified, ChainBreak> {
    let mut files: Vec<PathBuf> = Vec::new();
    for n in (1..=u32::MAX).take(10_000) {
        let p = rotated(trail, n);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    files.reverse();
    files.push(trail.to_path_buf());
    let mut prev: Option<(String, u64)> = None;
    let mut records = 0u64;
    let mut first_seq = 0;
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && records == 0 => continue,
            Err(e) => {
                return Err(ChainBreak {
                    file: file.clone(),
                    line: 0,
                    reason: format!("cannot read: {e}"),
                });
            }
        };
        let brk = |line: u64, reason: String| ChainBreak {
            file: file.clone(),
            line,
            reason,
        };
        let body = match text.strip_suffix(b"\n") {
            Some(body) => body,
            None if text.is_empty() => continue,
            None => {
                let n = text.split(|&b| b == b'\n').count() as u64;
                return Err(brk(n, "the last line is incomplete (a torn write)".into()));
            }
        };
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let n = i as u64 + 1;
            let rec: Record = serde_json::from_slice(line)
                .map_err(|e| brk(n, format!("not an audit record: {e}")))?;
            match &prev {
                None => first_seq = rec.seq,
                Some((hash, seq)) => {
                    if rec.prev != *hash {
                        return Err(brk(
                            n,
                            format!(
                                "prev does not match the line before (seq {}): a line was \
                                 changed, removed or inserted",
                                seq
                            ),
                        ));
                    }
                    if seq.checked_add(1) != Some(rec.seq) {
                        return Err(brk(
                            n,
                            format!("seq {} follows seq {seq}: records are missing", rec.seq),
                        ));
                    }
                }
            }
            records += 1;
            prev = Some((line_hash(line), rec.seq));
        }
    }
    Ok(Verified {
        records,
        files: files.into_iter().filter(|f| f.exists()).collect(),
        first_seq,
    })
}
