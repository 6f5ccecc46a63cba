//! Guest stdout and stderr: what a run or chat turn printed, kept up to a
//! cap for the log, the rest counted and dropped.
//!
//! Writes never fail, so a chatty guest is not killed by a full pipe (Rust's
//! `println!` panics on a write error). At the end of each run or turn the
//! capture is drained once into [`Printed`], which both goes to the log in
//! full and gives the error of a failed run its stderr tail, so neither
//! can starve the other.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The capture of the current run or chat turn, shared by the WASI stdout
/// and stderr streams of one store.
#[derive(Clone)]
pub(crate) struct CapturedStdio {
    inner: Arc<Mutex<StdioBuf>>,
}

struct StdioBuf {
    cap: usize,
    kept: Vec<(&'static str, Vec<u8>)>,
    kept_bytes: usize,
    dropped_bytes: u64,
}

impl CapturedStdio {
    /// A capture keeping up to `cap` bytes per run or turn.
    pub(crate) fn new(cap: usize) -> Self {
        CapturedStdio {
            inner: Arc::new(Mutex::new(StdioBuf {
                cap,
                kept: Vec::new(),
                kept_bytes: 0,
                dropped_bytes: 0,
            })),
        }
    }

    /// The WASI output stream named `name` (`stdout` or `stderr`).
    pub(crate) fn stream(&self, name: &'static str) -> impl StdoutStream + 'static {
        StdioStream {
            name,
            buf: self.clone(),
        }
    }

    fn push(&self, name: &'static str, bytes: &[u8]) {
        let mut b = match self.inner.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let room = b.cap.saturating_sub(b.kept_bytes);
        let take = bytes.len().min(room);
        b.dropped_bytes += (bytes.len() - take) as u64;
        if take > 0 {
            b.kept_bytes += take;
            match b.kept.last_mut() {
                Some((n, v)) if *n == name => v.extend_from_slice(&bytes[..take]),
                _ => b.kept.push((name, bytes[..take].to_vec())),
            }
        }
    }

    /// Takes what was captured, leaving the capture empty for the next run.
    pub(crate) fn take(&self) -> Printed {
        let mut b = match self.inner.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let runs = std::mem::take(&mut b.kept)
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let dropped_bytes = std::mem::take(&mut b.dropped_bytes);
        b.kept_bytes = 0;
        Printed {
            runs,
            dropped_bytes,
        }
    }
}

/// What a guest printed in one run or chat turn.
#[derive(Debug, Default)]
pub(crate) struct Printed {
    /// `(stream name, text)` runs in write order, up to the cap.
    runs: Vec<(&'static str, String)>,
    /// Bytes dropped past the cap.
    dropped_bytes: u64,
}

impl Printed {
    /// Writes all of it to the log, tagged with the session, and says how
    /// much was dropped past the cap.
    pub(crate) fn log(&self, session_id: &str) {
        for (stream, text) in &self.runs {
            for line in text.lines() {
                tracing::info!(target: "guest", session_id = %session_id, stream, "{line}");
            }
        }
        if self.dropped_bytes > 0 {
            tracing::warn!(target: "guest", session_id = %session_id,
                dropped_bytes = self.dropped_bytes,
                "guest stdout/stderr past the cap was dropped");
        }
    }

    /// The end of what was written to stderr, for a trap's error: a Rust
    /// guest's panic message and a Python guest's traceback (componentize-py
    /// prints an export's uncaught exception there before it traps) land
    /// there just before the trap. At most [`TRAP_TAIL_LINES`] lines and
    /// [`TRAP_TAIL_BYTES`] bytes, without the panic hook's advice to set
    /// `RUST_BACKTRACE` (a guest has no environment to set it in).
    pub(crate) fn stderr_tail(&self) -> String {
        let stderr: String = self
            .runs
            .iter()
            .filter(|(name, _)| *name == "stderr")
            .map(|(_, t)| t.as_str())
            .collect();
        let useful: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .collect();
        tail_within(&useful.join("\n"), TRAP_TAIL_LINES, TRAP_TAIL_BYTES)
    }
}

/// Most lines of stderr a trap's error carries: a traceback some twenty
/// frames deep.
pub(crate) const TRAP_TAIL_LINES: usize = 40;

/// Most bytes of stderr a trap's error carries (it goes to the server in
/// `session_error.error`).
pub(crate) const TRAP_TAIL_BYTES: usize = 2048;

/// The last `n` lines of `text`, cut further to its last `max_bytes`
/// bytes (at a line start when there is one, else at a character), with a
/// leading "…" when anything was cut.
fn tail_within(text: &str, n: usize, max_bytes: usize) -> String {
    let lines = last_lines(text, n);
    let mut cut = lines.len() < text.trim_end().trim_start_matches('\n').len();
    let mut kept = lines;
    if kept.len() > max_bytes {
        cut = true;
        let mut start = kept.len() - max_bytes;
        while !kept.is_char_boundary(start) {
            start += 1;
        }
        kept = &kept[start..];
        if let Some(i) = kept.find('\n') {
            kept = &kept[i + 1..];
        }
    }
    if cut && !kept.is_empty() {
        format!("…\n{kept}")
    } else {
        kept.to_string()
    }
}

fn last_lines(text: &str, n: usize) -> &str {
    let trimmed = text.trim_end();
    let mut start = trimmed.len();
    for _ in 0..n {
        match trimmed[..start].rfind('\n') {
            Some(i) => start = i,
            None => return trimmed,
        }
    }
    trimmed[start..].trim_start_matches('\n')
}

struct StdioStream {
    name: &'static str,
    buf: CapturedStdio,
}

impl IsTerminal for StdioStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(StdioStream {
            name: self.name,
            buf: self.buf.clone(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(StdioStream {
            name: self.name,
            buf: self.buf.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Pollable for StdioStream {
    async fn ready(&mut self) {}
}

impl OutputStream for StdioStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.buf.push(self.name, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StdioStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.buf.push(self.name, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\nd\n", 2), "c\nd");
        assert_eq!(last_lines("only", 3), "only");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn a_trap_tail_is_bounded_in_lines_and_bytes_and_says_it_was_cut() {
        assert_eq!(tail_within("a\nb\n", 5, 100), "a\nb");
        assert_eq!(tail_within("a\nb\nc", 2, 100), "…\nb\nc");
        let long = format!("{}\nlast line", "x".repeat(5000));
        assert_eq!(tail_within(&long, 5, 100), "…\nlast line");
        // One long line is cut at a character, never inside one.
        let wide = "é".repeat(100);
        let t = tail_within(&wide, 5, 11);
        assert!(
            t.starts_with("…\n") && t.ends_with('é') && t.len() <= 11 + 4,
            "{t}"
        );
    }

    #[test]
    fn the_stderr_tail_drops_the_backtrace_advice() {
        let c = CapturedStdio::new(1 << 16);
        c.push(
            "stderr",
            b"Traceback (most recent call last):\nKeyError: 'x'\n",
        );
        c.push(
            "stderr",
            b"thread '<unnamed>' panicked at lib.rs:1:1:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        let tail = c.take().stderr_tail();
        assert!(
            tail.starts_with("Traceback") && tail.ends_with("boom"),
            "{tail}"
        );
    }

    #[test]
    fn the_capture_keeps_runs_in_order_up_to_the_cap_and_starts_afresh() {
        let c = CapturedStdio::new(10);
        c.push("stdout", b"out\n");
        c.push("stderr", b"err1\n");
        c.push("stderr", b"err2\n");
        let p = c.take();
        assert_eq!(
            p.runs,
            [
                ("stdout", "out\n".to_string()),
                ("stderr", "err1\ne".to_string())
            ]
        );
        assert_eq!(p.dropped_bytes, 4);
        assert_eq!(p.stderr_tail(), "err1\ne");
        let next = c.take();
        assert!(next.runs.is_empty() && next.dropped_bytes == 0);
    }
}
