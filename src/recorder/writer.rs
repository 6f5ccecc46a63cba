//! Writing one session's recording as it runs: JSON Lines appended to a
//! buffer, hashed as they are appended (SHA-256 over every byte), flushed
//! to the file often enough that a crash leaves a readable prefix, capped
//! at `[recorder] max_size` and sealed with the hash at the end.
//!
//! Why a buffer and a lock: the guest's imports (every `emit`), the WASI
//! clocks, and the session's frames all write lines, from one task at a
//! time; an uncontended lock and a line serialized straight into the
//! buffer keep the cost per delta to a few hundred nanoseconds. Lines are
//! flushed at every import call that reaches the world (tools, shell,
//! model), every chat input, run end, receipt and end, and whenever 64 KiB
//! or 100 ms have gathered since the last flush (looked at as each line is
//! written).
//!
//! A write that fails never fails the session: the first failure is
//! logged and counted (`catpaw_agent_recording_failures`), the recording
//! stops, and [`Recording::close`] says why for the audit's `ended`
//! record.
//!
//! Why one file of about 600 lines: [`Recording`] and the private
//! `Writer` it locks share every invariant of a line (its hash, the cap,
//! the flush, the call numbers a frame refers to); split, the writer's
//! fields would have to be visible across files to keep them. Its tests
//! are in `writer/tests.rs`.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::RecorderOptions;
use super::store::{OpenRecording, Store};
use crate::telemetry::Telemetry;

/// The format's name in the header line.
pub const FORMAT: &str = "catpaw-recording";
/// The format's version in the header line.
pub const VERSION: u64 = 2;
/// Buffered bytes that force a flush.
const FLUSH_BYTES: usize = 64 << 10;
/// Buffer capacity a recording keeps through an asked-for flush (see
/// `Writer::release_buffers`).
const RETAINED_BYTES: usize = 256;
/// Time since the last flush, in µs, that forces one at the next line.
const FLUSH_EVERY_US: u64 = 100_000;

/// How a recording ended, for the audit's `ended` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Sealed: its file name and the hex SHA-256 of the whole file (the
    /// seal line included).
    Sealed {
        /// The file name (without its directory).
        file: String,
        /// Hex SHA-256 of every byte of the file.
        sha256: String,
    },
    /// A write failed; the session went on unrecorded from there.
    Failed(String),
}

/// One session's recording; cheap to clone (the session layer, the
/// sandbox's imports and its WASI clocks each hold one).
#[derive(Clone)]
pub struct Recording(Arc<Shared>);

struct Shared {
    /// When the session was accepted: every line's `t` counts from here.
    started: Instant,
    w: Mutex<Writer>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

struct Writer {
    /// The file, held open (and so out of the store's limits) until
    /// sealed or failed.
    file: Option<OpenRecording>,
    /// The file name, for messages and the audit.
    name: String,
    buf: Vec<u8>,
    /// SHA-256 of every line so far, flushed or not.
    hash: Sha256,
    /// Bytes of every line so far.
    size: u64,
    lines: u64,
    /// The last call's `n`.
    seq: u64,
    /// The `n` of the last call line written before the cap.
    last_written: u64,
    max_size: u64,
    truncated: bool,
    failed: Option<String>,
    /// The `t` of the last flush: a line's own `t` says whether 100 ms
    /// have passed since (no clock read per line).
    last_flush_t: u64,
    closed: Option<Closed>,
    model_content: bool,
    /// The chat turn going on (`None` before the first input).
    turn: Option<u64>,
    /// The `start` line, held until the sandbox adds the session's
    /// budgets (or until any other line comes first).
    pending_start: Option<serde_json::Value>,
    telemetry: Option<Telemetry>,
    /// The delta of the last `host.emit` line, masked: the frame that
    /// carries it next reuses it instead of masking it again.
    emitted: Option<Emitted>,
    /// A frame being serialized, before it is escaped into its line
    /// (kept to spare an allocation per frame).
    scratch: Vec<u8>,
}

/// A delta as the last `host.emit` line wrote it.
struct Emitted {
    /// The delta masked.
    masked: String,
    /// The delta as the guest gave it, when masking changed it (else it
    /// is `masked`).
    raw: Option<String>,
    /// The line's call number.
    n: u64,
    /// Its stage as the wire spells it, when it had no metadata (a frame
    /// of that stage and no more than the delta can then name the call).
    plain_stage: Option<&'static str>,
}

/// Writes `s` as a JSON string.
pub fn json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// Writes `n` as a JSON number.
pub fn json_u64(buf: &mut Vec<u8>, n: u64) {
    // Not `write!`: the formatting machinery costs more than the rest of a
    // recorded delta's line.
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

impl Recording {
    /// Starts the recording of session `session_id` in `dir`, with no
    /// bounds on the directory (the agent's sessions go through its store:
    /// [`Recording::create_in`]).
    pub fn create(
        dir: &Path,
        session_id: &str,
        opts: &RecorderOptions,
        telemetry: Option<Telemetry>,
    ) -> Recording {
        Recording::create_in(&Store::at(dir), session_id, opts, telemetry)
    }

    /// Starts the recording of session `session_id` in `store`, which
    /// names the file and keeps it out of its limits until it is sealed.
    /// A failure is logged, counted, and leaves a recording that writes
    /// nothing and closes as [`Closed::Failed`].
    pub fn create_in(
        store: &Store,
        session_id: &str,
        opts: &RecorderOptions,
        telemetry: Option<Telemetry>,
    ) -> Recording {
        let started = std::time::SystemTime::now();
        let now = started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let opened = store.create(started, session_id);
        let name = match &opened {
            Ok(f) => f
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            Err(_) => super::store::file_name(
                u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                session_id,
            ),
        };
        let mut w = Writer {
            file: None,
            name,
            buf: Vec::with_capacity(8 << 10),
            hash: Sha256::new(),
            size: 0,
            lines: 0,
            seq: 0,
            last_written: 0,
            max_size: opts.max_size,
            truncated: false,
            failed: None,
            last_flush_t: 0,
            closed: None,
            model_content: opts.record_model_content,
            turn: None,
            pending_start: None,
            telemetry,
            emitted: None,
            scratch: Vec::new(),
        };
        match opened {
            Ok(f) => w.file = Some(f),
            Err(e) => w.fail(&format!("{e:#}")),
        }
        let rec = Recording(Arc::new(Shared {
            started: Instant::now(),
            w: Mutex::new(w),
        }));
        rec.header(now);
        rec
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.0.w.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Microseconds since the session was accepted.
    fn t(&self) -> u64 {
        u64::try_from(self.0.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn header(&self, now: Duration) {
        let mut w = self.lock();
        let model = w.model_content;
        let at = w.buf.len();
        w.buf.extend_from_slice(b"{\"k\":\"header\",\"format\":\"");
        w.buf.extend_from_slice(FORMAT.as_bytes());
        w.buf.extend_from_slice(b"\",\"version\":");
        json_u64(&mut w.buf, VERSION);
        w.buf.extend_from_slice(b",\"agent\":");
        json_str(&mut w.buf, env!("CARGO_PKG_VERSION"));
        w.buf.extend_from_slice(b",\"started_at\":");
        json_str(&mut w.buf, &rfc3339(now.as_secs()));
        let _ = writeln!(w.buf, ",\"record_model_content\":{model}}}");
        w.commit(at, false, 0);
    }

    /// The `start` line (`t` 0): session, params, runner; written when the
    /// sandbox adds the budgets ([`Recording::budgets`]) or before the
    /// next line, whichever comes first.
    pub fn start(&self, start: serde_json::Value) {
        self.lock().pending_start = Some(start);
    }

    /// The session's effective budgets: completes and writes the `start`
    /// line (a later store of the same session adds nothing).
    pub fn budgets(&self, budgets: serde_json::Value) {
        let mut w = self.lock();
        if let Some(serde_json::Value::Object(m)) = &mut w.pending_start {
            m.insert("budgets".into(), budgets);
        }
        w.write_start();
    }

    /// Whether `llm.complete` lines hold the conversation.
    pub fn model_content(&self) -> bool {
        self.lock().model_content
    }

    /// Writes one line of kind `k`: `{"k":k,"t":..` then what `body`
    /// appends (each field led by a comma), then `}`. `flush`: write the
    /// buffer to the file now.
    pub fn line(&self, k: &str, flush: bool, body: impl FnOnce(&mut Vec<u8>)) {
        let t = self.t();
        let mut w = self.lock();
        w.write_start();
        if !w.open() {
            return;
        }
        let at = w.buf.len();
        start_line(&mut w.buf, k, t);
        body(&mut w.buf);
        w.buf.extend_from_slice(b"}\n");
        if w.over_cap(at, t) {
            return;
        }
        w.commit(at, flush, t);
    }

    /// Writes one import call: `{"k":"call","t":..,"n":SEQ,"fn":name`,
    /// then `body` (`,"args":..,"ret":..` or `,"trap":..`). Calls that
    /// reach the world are flushed at once (`flush`). Returns the call's
    /// number when the line was written.
    pub fn call(&self, name: &str, flush: bool, body: impl FnOnce(&mut Vec<u8>)) -> Option<u64> {
        let t = self.t();
        self.lock().call_line(t, name, flush, body)
    }

    /// The per-delta path, under one lock: masks `raw`, writes the
    /// `host.emit` call line (`body` gets the masked delta) and, when
    /// `note`, keeps the masked delta for the frame that carries it next
    /// (see [`Recording::frame`]). Nothing is masked once lines are no
    /// longer written.
    pub fn emit_call(
        &self,
        raw: &str,
        plain_stage: Option<&'static str>,
        note: bool,
        body: impl FnOnce(&mut Vec<u8>, &str),
    ) {
        let t = self.t();
        let mut w = self.lock();
        w.write_start();
        if !w.open() {
            return;
        }
        let masked = crate::tools::mask_secrets(raw);
        let n = w.call_line(t, "host.emit", false, |b| body(b, &masked));
        if let (Some(n), true) = (n, note) {
            w.emitted = Some(Emitted {
                raw: (masked != raw).then(|| raw.to_string()),
                masked,
                n,
                plain_stage,
            });
        }
    }

    /// Writes one `frame` line. A frame that is exactly what the last
    /// `host.emit` call makes (`delta` is its delta and `plain_stage` its
    /// stage, with nothing more in the frame) is written by reference,
    /// `"emit":N`, which readers rebuild with [`super::frame`]. Any other
    /// frame is written whole: `write` serializes it (the JSON text the
    /// line holds as a string) and is handed the delta already masked when
    /// `delta` is the one the last `host.emit` line masked.
    pub fn frame(
        &self,
        delta: Option<&str>,
        plain_stage: Option<&str>,
        write: impl FnOnce(&mut Vec<u8>, Option<&str>),
    ) {
        let t = self.t();
        let mut w = self.lock();
        let emitted = w.emitted.take();
        w.write_start();
        if !w.open() {
            return;
        }
        let same = |e: &&Emitted| delta.is_some_and(|d| e.raw.as_deref().unwrap_or(&e.masked) == d);
        let emitted = emitted.as_ref().filter(same);
        if let Some(e) = emitted
            && plain_stage.is_some()
            && e.plain_stage == plain_stage
        {
            let at = w.buf.len();
            start_line(&mut w.buf, "frame", t);
            w.buf.extend_from_slice(b",\"emit\":");
            json_u64(&mut w.buf, e.n);
            w.buf.extend_from_slice(b"}\n");
            if !w.over_cap(at, t) {
                w.commit(at, false, t);
            }
            return;
        }
        let masked = emitted.map(|e| e.masked.as_str());
        let mut frame = std::mem::take(&mut w.scratch);
        frame.clear();
        write(&mut frame, masked);
        let at = w.buf.len();
        start_line(&mut w.buf, "frame", t);
        w.buf.extend_from_slice(b",\"raw\":");
        // The frame is JSON serialized from strings: UTF-8.
        json_str(&mut w.buf, std::str::from_utf8(&frame).unwrap_or_default());
        w.buf.extend_from_slice(b"}\n");
        w.scratch = frame;
        if w.over_cap(at, t) {
            return;
        }
        w.commit(at, false, t);
    }

    /// A chat turn's input, before the turn runs; returns its number.
    pub fn input(&self, text: &str) -> u64 {
        let turn = {
            let mut w = self.lock();
            let turn = w.turn.map_or(1, |n| n + 1);
            w.turn = Some(turn);
            turn
        };
        let masked = crate::tools::mask_secrets(text);
        let changed = masked != text;
        self.line("input", true, |b| {
            b.extend_from_slice(b",\"turn\":");
            json_u64(b, turn);
            b.extend_from_slice(b",\"text\":");
            json_str(b, &masked);
            // The guest saw the secret; a replay sees `***` and may use
            // other fuel.
            if changed {
                b.extend_from_slice(b",\"masked\":true");
            }
        });
        turn
    }

    /// The chat turn going on, if any.
    pub fn turn(&self) -> Option<u64> {
        self.lock().turn
    }

    /// Ends the recording: the `end` line (written even past the cap),
    /// then the seal. Later calls return the same answer and write nothing.
    pub fn close(&self, end: impl FnOnce(&mut Vec<u8>)) -> Closed {
        let t = self.t();
        let mut w = self.lock();
        if let Some(c) = &w.closed {
            return c.clone();
        }
        w.write_start();
        if w.failed.is_none() {
            let at = w.buf.len();
            start_line(&mut w.buf, "end", t);
            end(&mut w.buf);
            w.buf.extend_from_slice(b"}\n");
            w.commit(at, false, t);
        }
        let closed = w.seal();
        w.closed = Some(closed.clone());
        closed
    }
}

/// `{"k":"<k>","t":<t>`
fn start_line(buf: &mut Vec<u8>, k: &str, t: u64) {
    buf.extend_from_slice(b"{\"k\":\"");
    buf.extend_from_slice(k.as_bytes());
    buf.extend_from_slice(b"\",\"t\":");
    json_u64(buf, t);
}

impl Writer {
    /// [`Recording::call`] with the lock held.
    fn call_line(
        &mut self,
        t: u64,
        name: &str,
        flush: bool,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Option<u64> {
        self.write_start();
        if !self.open() {
            return None;
        }
        self.seq += 1;
        let n = self.seq;
        let at = self.buf.len();
        start_line(&mut self.buf, "call", t);
        self.buf.extend_from_slice(b",\"n\":");
        json_u64(&mut self.buf, n);
        self.buf.extend_from_slice(b",\"fn\":\"");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'"');
        body(&mut self.buf);
        self.buf.extend_from_slice(b"}\n");
        if self.over_cap(at, t) {
            return None;
        }
        self.last_written = n;
        self.commit(at, flush, t);
        Some(n)
    }

    /// Writes the held `start` line, if any.
    fn write_start(&mut self) {
        let Some(start) = self.pending_start.take() else {
            return;
        };
        if !self.open() {
            return;
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(b"{\"k\":\"start\",\"t\":0");
        if let serde_json::Value::Object(m) = &start {
            for (k, v) in m {
                self.buf.push(b',');
                json_str(&mut self.buf, k);
                self.buf.push(b':');
                let _ = serde_json::to_writer(&mut self.buf, v);
            }
        }
        self.buf.extend_from_slice(b"}\n");
        self.commit(at, true, self.last_flush_t);
    }

    /// Whether lines are still written (not failed, capped or closed).
    fn open(&self) -> bool {
        self.failed.is_none() && !self.truncated && self.closed.is_none()
    }

    /// Past the cap, the line at `at` is dropped and the `truncated` line
    /// is written in its place; true when that happened.
    fn over_cap(&mut self, at: usize, t: u64) -> bool {
        let len = (self.buf.len() - at) as u64;
        if self.size.saturating_add(len) <= self.max_size {
            return false;
        }
        self.buf.truncate(at);
        start_line(&mut self.buf, "truncated", t);
        let _ = writeln!(
            self.buf,
            ",\"reason\":\"max_size ({}) reached\",\"after_call\":{}}}",
            human_size(self.max_size),
            self.last_written
        );
        self.commit(at, true, t);
        self.truncated = true;
        tracing::warn!(recording = %self.name, max_size = self.max_size,
            "recording reached [recorder] max_size; the session goes on unrecorded");
        true
    }

    /// The line at `at..`, written at `t`, is complete: hash and count
    /// it, and flush when asked or when enough has gathered.
    fn commit(&mut self, at: usize, flush: bool, t: u64) {
        self.hash.update(&self.buf[at..]);
        self.size += (self.buf.len() - at) as u64;
        self.lines += 1;
        if flush
            || self.buf.len() >= FLUSH_BYTES
            || t.saturating_sub(self.last_flush_t) >= FLUSH_EVERY_US
        {
            self.last_flush_t = self.last_flush_t.max(t);
            self.flush();
            if flush {
                self.release_buffers();
            }
        }
    }

    /// After a flush that was asked for (an input, a call that reaches the
    /// world, a run's end): the session may now wait a long while, as an
    /// idle chat does between turns, so its buffers go back to the
    /// allocator instead of being held at their largest. Streamed deltas
    /// flush by size or time and keep theirs.
    fn release_buffers(&mut self) {
        if self.buf.capacity() > RETAINED_BYTES {
            self.buf = Vec::new();
        }
        if self.scratch.capacity() > RETAINED_BYTES {
            self.scratch = Vec::new();
        }
    }

    fn flush(&mut self) {
        let Some(f) = &mut self.file else {
            self.buf.clear();
            return;
        };
        if let Err(e) = f.write_all(&self.buf) {
            let what = format!("writing {}: {e}", self.name);
            self.fail(&what);
        }
        self.buf.clear();
    }

    /// The first failure: logged once, counted, the file dropped.
    fn fail(&mut self, what: &str) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(recording = %self.name, error = %what,
            "recording failed; the session goes on unrecorded");
        if let Some(t) = &self.telemetry {
            t.recording_failed();
        }
        self.failed = Some(what.to_string());
        self.file = None;
    }

    /// Writes the seal line and the rest of the buffer.
    fn seal(&mut self) -> Closed {
        if let Some(e) = &self.failed {
            return Closed::Failed(e.clone());
        }
        let digest = crate::util::hex_digest(&self.hash.clone().finalize());
        let at = self.buf.len();
        let _ = writeln!(
            self.buf,
            "{{\"k\":\"seal\",\"sha256\":\"{digest}\",\"lines\":{}}}",
            self.lines
        );
        let mut whole = self.hash.clone();
        whole.update(&self.buf[at..]);
        // Not synced: an fsync per session would cost more than the
        // session's set-up; a power loss that tears the file leaves it
        // unsealed or unequal to the audit's hash, which readers detect.
        self.flush();
        // Closed: the store may count it against its limits now.
        self.file = None;
        match &self.failed {
            Some(e) => Closed::Failed(e.clone()),
            None => Closed::Sealed {
                file: self.name.clone(),
                sha256: crate::util::hex_digest(&whole.finalize()),
            },
        }
    }
}

/// `16 MiB`, `64 KiB`, `1500 B`: a bound as the truncated line says it.
fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// `secs` since 1970 as RFC 3339 UTC (`2026-12-06T21:42:01Z`).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
