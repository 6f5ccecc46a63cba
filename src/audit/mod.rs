//! The audit trail: one JSON line per event in the trail file
//! (`<state_dir>/audit.jsonl`, see `config::StatePaths`), hash-chained,
//! fail-closed. Rotated files are the trail's name plus `.1`, `.2`, …; the
//! chain head lives beside it with the extension `.head`.
//!
//! The promise is an order of events:
//!
//! - Before a shell command is spawned its `started` record is written and
//!   synced to disk; if that cannot be done the command does not run
//!   (`failed("audit unavailable: …")`). Tool calls write `started` first
//!   too (not synced: they are read-only). See [`AuditLog::begin`].
//! - The outcome record follows on every path: success, failure, timeout,
//!   and — through [`Act`]'s drop guard — cancel, turn timeout, disconnect
//!   and shutdown. After a SIGKILL or crash the next agent start writes a
//!   `killed` outcome for every act left open ([`AuditLog::open`]). A
//!   record of something that already happened (an outcome, a session's
//!   end) that cannot be written — the disk is full — is held in memory
//!   (at most [`MAX_HELD`]) and written, in order, before the next record
//!   the trail takes (or as the trail closes): an act that ran while the
//!   disk was full gets its outcome once there is room, not only at the
//!   next start.
//! - Every record carries `prev`, the SHA-256 of the line before it, and a
//!   `seq` that continues across size-based rotation (`[audit] max_size`,
//!   `keep`). The agent keeps the last hash in memory, so a line that
//!   someone else removed, changed or appended is found by
//!   `catpaw-agent audit verify` ([`verify`]) at the agent's next record.
//! - The head (`audit.head`, see `head`) is anchored at every record: the
//!   last `seq` and hash, the first `seq` still meant to be present (moved
//!   only when rotation drops a file past `keep`), and the current file.
//!   So removals the chain alone cannot show — the last lines, the first
//!   lines, a whole rotated file, the current file — are found by
//!   [`verify`], and by the agent itself: at start, and at each record
//!   while it runs (the path must still name the file it writes, no
//!   shorter), it writes an `audit_gap` record saying what is missing and
//!   logs an error, rather than re-anchoring in silence.
//! - Every file of the trail must be a regular file (checked on the open
//!   descriptor): a device such as `/dev/null` would swallow records.
//! - When the agent runs as root the files carry the append-only attribute
//!   (`chattr +a`) where the filesystem supports it, and granted shells run
//!   as `[sandbox] shell_user`, so a shell cannot rewrite the trail.
//!
//! Several processes may share a state dir (the agent and a `session`
//! harness): appends take an `flock` on `audit.head`, which holds the chain
//! head the last writer left, so each record chains to the last record an
//! agent process wrote — not to whatever the file happens to end with.
//!
//! Layout: `record` (one line's shape), `chain` (hashing), `file`
//! (regular files by descriptor, locks, lines), `head` (the anchor),
//! `scan` (reading what is on disk), `trail` (the writer), `verify` (the checker).

mod chain;
mod file;
mod head;
mod record;
mod scan;
mod trail;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use record::{Record, Who, event, kind, now, outcome};
pub use verify::{ChainBreak, Problem, Verified, verify};

/// How the trail is kept (`[audit]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Rotate `audit.jsonl` before it grows past this many bytes.
    pub max_size: u64,
    /// Rotated files kept (`audit.jsonl.1` … `.keep`).
    pub keep: u32,
    /// Set the append-only attribute on the files when running as root.
    pub append_only: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_size: 64 << 20,
            keep: 5,
            append_only: false,
        }
    }
}

/// Records of what already happened, held while the trail cannot take
/// them, at most: past it the oldest is dropped, with an error line.
pub const MAX_HELD: usize = 1024;

/// Shared handle to one audit trail.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Writer>>,
    path: PathBuf,
}

/// The trail and the records waiting for it.
struct Writer {
    trail: trail::Trail,
    /// Records [`AuditLog::note`] could not write, oldest first.
    held: std::collections::VecDeque<Record>,
}

/// The last handle going (the agent stopping) tries the held records
/// once more; what still cannot be written is named in the log, and the
/// next start closes those acts as `killed`.
impl Drop for Writer {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if let Err(e) = self.flush_held() {
            tracing::error!(path = %self.trail.path().display(), error = %e,
                lost = self.held.len(), "audit records held for a full disk are lost as the trail closes");
        }
    }
}

impl Writer {
    /// Writes the held records, in order; the first failure stops it (the
    /// rest stay held).
    fn flush_held(&mut self) -> std::io::Result<()> {
        while let Some(rec) = self.held.front() {
            let mut rec = rec.clone();
            self.trail.append(&mut rec, false)?;
            self.held.pop_front();
        }
        Ok(())
    }

    /// Appends `rec` after the held records: it must not overtake them.
    fn append(&mut self, rec: &mut Record, sync: bool) -> std::io::Result<u64> {
        self.flush_held()?;
        self.trail.append(rec, sync)
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

/// The `n`th rotated file of the trail at `trail` (`audit.jsonl.n`).
fn rotated(trail: &Path, n: u32) -> PathBuf {
    let mut name = trail.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the trail file at
    /// `trail` with default options (no append-only attribute).
    pub fn open(trail: &Path) -> anyhow::Result<AuditLog> {
        AuditLog::open_with(trail, AuditOptions::default())
    }

    /// Opens the trail, checks it against its head (a gap is written down
    /// as an `audit_gap` record and logged as an error; the agent goes on),
    /// and closes every act a killed agent left open with a `killed`
    /// outcome. A trail file that is not a regular file is an error: the
    /// agent does not start on it.
    pub(crate) fn open_with(trail: &Path, opts: AuditOptions) -> anyhow::Result<AuditLog> {
        let (trail, gap) = trail::Trail::open(trail, opts)?;
        if let Some(gap) = gap {
            tracing::error!(path = %trail.path().display(), detail = %gap.detail,
                missing = ?gap.missing,
                "audit trail damaged: recorded an audit_gap record; `catpaw-agent audit verify` \
                 reports it from now on");
        }
        let log = AuditLog {
            path: trail.path().to_path_buf(),
            inner: Arc::new(Mutex::new(Writer {
                trail,
                held: Default::default(),
            })),
        };
        log.close_orphans();
        Ok(log)
    }

    /// Where the current records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `rec` (its `seq`, `time` and `prev` are filled in); `sync`
    /// waits until the line is on disk. Returns the record's `seq`.
    pub fn append(&self, mut rec: Record, sync: bool) -> std::io::Result<u64> {
        rec.time = now();
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.append(&mut rec, sync)
    }

    /// Appends `rec`, logging (never returning) a failure: for records
    /// that describe something that already happened. One that cannot be
    /// written now is held and written before the next record (module
    /// doc), with the time of the event.
    pub fn note(&self, mut rec: Record) {
        rec.time = now();
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Err(e) = w.append(&mut rec.clone(), false) else {
            return;
        };
        tracing::error!(path = %self.path.display(), error = %e, kind = %rec.kind,
            name = %rec.name, held = w.held.len() + 1,
            "audit write failed; the record is held and written once the trail takes writes again");
        if w.held.len() >= MAX_HELD
            && let Some(lost) = w.held.pop_front()
        {
            tracing::error!(path = %self.path.display(), kind = %lost.kind, name = %lost.name,
                session_id = %lost.session_id, "audit records held past the limit; the oldest is lost");
        }
        w.held.push_back(rec);
    }

    /// Records held because the trail could not take them (module doc).
    pub fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .held
            .len()
    }

    /// Writes the `started` record of an act and returns its guard. Err
    /// means the record could not be written and the act must not happen.
    pub(crate) fn begin(
        &self,
        who: &Who,
        kind: &str,
        name: &str,
        args: &str,
        sync: bool,
    ) -> std::io::Result<Act> {
        let mut rec = Record::new(who, kind, event::STARTED, name, args);
        rec.pid = Some(std::process::id());
        let base = rec.clone();
        let id = self.append(rec, sync)?;
        Ok(Act {
            log: self.clone(),
            base,
            id,
            started: Instant::now(),
            done: false,
        })
    }

    /// Closes acts that a dead agent left open (no outcome after their
    /// `started` record, and the writer's pid no longer alive).
    fn close_orphans(&self) {
        let open = {
            let w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            w.trail.open_acts()
        };
        let me = std::process::id();
        for started in open {
            if started
                .pid
                .is_some_and(|pid| pid != me && writer_alive(pid, started.time))
            {
                continue;
            }
            let mut rec = started.clone();
            rec.event = event::OUTCOME.to_string();
            rec.act = Some(started.seq);
            rec.pid = None;
            rec.outcome = outcome::KILLED.to_string();
            rec.detail = "the agent stopped (killed or crashed) while this ran; \
                          its outcome is unknown"
                .to_string();
            tracing::warn!(act = started.seq, session_id = %started.session_id,
                kind = %started.kind, "closing an act a stopped agent left open");
            self.note(rec);
        }
    }
}

/// Whether the process that wrote a `started` record at `time` (unix
/// seconds) may still be running it: `pid` is alive and did not start
/// after the record was written (a pid reused since, after a reboot say,
/// is another process). When the start time cannot be read, it counts as
/// alive: the act stays open rather than be closed falsely.
fn writer_alive(pid: u32, time: f64) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match process_start(pid) {
        // A second of slack for the clock's granularity.
        Some(started) => started <= time + 1.0,
        None => true,
    }
}

/// When process `pid` started, in unix seconds (from `/proc`).
fn process_start(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parens.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| boot + ticks / hz as f64)
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists, under another user (an agent of another user
    // sharing the trail is still running its act).
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An act in progress: its `started` record is on disk. Exactly one
/// outcome record follows: [`Act::finish`], or, when the act is dropped
/// unfinished (its future was cancelled), a `cancelled` one.
#[derive(Debug)]
pub(crate) struct Act {
    log: AuditLog,
    base: Record,
    id: u64,
    started: Instant,
    done: bool,
}

impl Act {
    /// Writes the outcome.
    pub fn finish(mut self, outcome: &str, detail: &str) {
        self.write(outcome, detail);
    }

    fn write(&mut self, outcome: &str, detail: &str) {
        self.done = true;
        let mut rec = self.base.clone().with_outcome(outcome, detail);
        rec.event = event::OUTCOME.to_string();
        rec.act = Some(self.id);
        rec.pid = None;
        rec.args = String::new();
        rec.duration_ms =
            Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        self.log.note(rec);
    }
}

impl Drop for Act {
    fn drop(&mut self) {
        if !self.done {
            self.write(
                outcome::CANCELLED,
                "the session ended while this ran (cancel, turn timeout, disconnect or shutdown)",
            );
        }
    }
}

#[cfg(test)]
mod tests;
