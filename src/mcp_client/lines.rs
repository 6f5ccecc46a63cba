//! A bound on the lines an MCP server writes. The SDK's stdio transport
//! reads a message up to its newline with no limit, so a server that
//! writes without a newline would grow the agent's memory until it dies.
//! [`BoundedLines`] sits between the pipe and the transport and fails the
//! read once a line passes [`MAX_LINE`]: the transport then ends, the
//! calls in flight get an error, and the server is restarted.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Longest message line accepted from an MCP server. Ample for a tool
/// result (the agent keeps 32 KiB of it) while bounding what one server
/// can make the agent hold.
pub(crate) const MAX_LINE: usize = 4 << 20;

/// A reader that fails once a line is longer than its cap.
pub(crate) struct BoundedLines<R> {
    inner: R,
    cap: usize,
    /// Bytes since the last newline.
    run: usize,
}

impl<R> BoundedLines<R> {
    pub(crate) fn new(inner: R, cap: usize) -> Self {
        BoundedLines { inner, cap, run: 0 }
    }
}

/// How long the current line is after `data`, starting from `run`; None
/// once it is longer than `cap`.
fn after(mut run: usize, data: &[u8], cap: usize) -> Option<usize> {
    for &b in data {
        if b == b'\n' {
            run = 0;
        } else {
            run += 1;
            if run > cap {
                return None;
            }
        }
    }
    Some(run)
}

impl<R: AsyncRead + Unpin> AsyncRead for BoundedLines<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let cap = self.cap;
            match after(self.run, &buf.filled()[before..], cap) {
                Some(run) => self.run = run,
                None => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a message line longer than {cap} bytes"),
                    )));
                }
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn line_lengths_are_counted_across_reads() {
        let cases: &[(usize, &[u8], Option<usize>)] = &[
            (0, b"abc", Some(3)),
            (3, b"de\nf", Some(1)),
            (4, b"x", None),
            (0, b"abcde\n", None),
            (0, b"ab\ncd\n", Some(0)),
            (2, b"abc\n", None),
            (0, b"\n\n\nabcd", Some(4)),
        ];
        for (run, data, want) in cases {
            assert_eq!(after(*run, data, 4), *want, "{run} {data:?}");
        }
    }

    #[tokio::test]
    async fn a_line_past_the_cap_fails_the_read() {
        let data = [b"{}\n".as_slice(), &[b'x'; 100]].concat();
        let mut r = BoundedLines::new(data.as_slice(), 16);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).await.expect_err("past the cap");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let mut ok = BoundedLines::new(b"{}\n{}\n".as_slice(), 16);
        let mut out = Vec::new();
        ok.read_to_end(&mut out).await.expect("short lines pass");
        assert_eq!(out, b"{}\n{}\n");
    }
}
