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

    /// The last `n` lines written to stderr: a Rust guest's panic message
    /// lands there just before the trap.
    pub(crate) fn stderr_tail(&self, n: usize) -> String {
        let stderr: String = self
            .runs
            .iter()
            .filter(|(name, _)| *name == "stderr")
            .map(|(_, t)| t.as_str())
            .collect();
        last_lines(&stderr, n).to_string()
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
        assert_eq!(p.stderr_tail(1), "e");
        let next = c.take();
        assert!(next.runs.is_empty() && next.dropped_bytes == 0);
    }
}
