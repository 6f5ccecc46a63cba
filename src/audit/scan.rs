//! Reading what a trail holds on disk, without writing: its last whole
//! record, the first `seq` of a file, the acts left open.

use std::path::{Path, PathBuf};

use super::chain::line_hash;
use super::file::{self, Mode};
use super::head::End;
use super::{Record, event, rotated};

/// The last whole record on disk: of the current file, or of the
/// newest rotated file that has one.
pub(super) fn disk_end(path: &Path, keep: u32) -> std::io::Result<Option<End>> {
    let mut candidates = vec![path.to_path_buf()];
    candidates.extend((1..=keep.max(1)).map(|n| rotated(path, n)));
    for p in candidates {
        let f = match file::open_regular(&p, Mode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if let Some(line) = file::last_line(&f, len)? {
            let rec = serde_json::from_slice::<Record>(&line).unwrap_or_default();
            return Ok(Some(End {
                seq: rec.seq,
                hash: line_hash(&line),
                prev: rec.prev,
            }));
        }
    }
    Ok(None)
}

/// `seq` of the first record of the oldest file on disk.
pub(super) fn first_on_disk(path: &Path, keep: u32) -> std::io::Result<Option<u64>> {
    let mut candidates: Vec<PathBuf> = (1..=keep.max(1)).rev().map(|n| rotated(path, n)).collect();
    candidates.push(path.to_path_buf());
    for p in candidates {
        if let Some(seq) = first_seq(&p)? {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// `started` records of the current and the previous file that have no
/// outcome yet.
pub(super) fn open_acts(trail: &Path, max_size: u64) -> Vec<Record> {
    let mut open = std::collections::BTreeMap::new();
    for path in [rotated(trail, 1), trail.to_path_buf()] {
        // Only regular files, and no more than rotation allows: the
        // trail may be bloated by someone else.
        let Ok(f) = file::open_regular(&path, Mode::Read) else {
            continue;
        };
        if f.metadata()
            .map_or(true, |m| m.len() > max_size.saturating_mul(2))
        {
            continue;
        }
        let mut text = Vec::new();
        if std::io::Read::read_to_end(&mut &f, &mut text).is_err() {
            continue;
        }
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

/// `seq` of the first record of the regular file at `path`.
pub(super) fn first_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let f = match file::open_regular(path, Mode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(file::first_line(&f)?
        .and_then(|l| serde_json::from_slice::<Record>(&l).ok())
        .map(|r| r.seq))
}

/// `seq` of the last record of the regular file at `path`.
pub(super) fn last_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let f = file::open_regular(path, Mode::Read)?;
    let len = f.metadata()?.len();
    Ok(file::last_line(&f, len)?
        .and_then(|l| serde_json::from_slice::<Record>(&l).ok())
        .map(|r| r.seq))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
