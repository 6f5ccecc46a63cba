//! The stdio transport to one MCP server: JSON-RPC 2.0, one message per
//! line, each line bounded.
//!
//! Why not the SDK's own (`AsyncRwTransport`): it reads a message with
//! `read_until` into a buffer it clears at each call, and the SDK's
//! service loop drops that read whenever another event wins its
//! `select!`; a message that arrives in more than one read (a tool result
//! past a pipe's worth) can then lose its first part, and its call never
//! gets an answer. It also has no bound: a server that writes without a
//! newline grows the agent's memory until it dies. Here the partial line
//! survives a dropped read (bytes are only ever appended to a buffer this
//! struct keeps), and a line past [`MAX_LINE`] ends the connection: the
//! calls in flight get an error and the server is restarted.

use std::sync::Arc;

use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// Longest message line accepted from an MCP server. Ample for a tool
/// result (the agent keeps 32 KiB of it) while bounding what one server
/// can make the agent hold.
pub(super) const MAX_LINE: usize = 4 << 20;

/// Lines in, lines out.
pub(super) struct Lines<R, W> {
    read: R,
    /// What was read and not yet taken as a message: at most one partial
    /// line after [`Lines::next_line`] returns.
    pending: Vec<u8>,
    /// Where the search for a newline resumes in `pending`.
    searched: usize,
    cap: usize,
    /// `None` once closed.
    write: Arc<Mutex<Option<W>>>,
}

impl<R, W> Lines<R, W> {
    pub(super) fn new(read: R, write: W, cap: usize) -> Self {
        Lines {
            read,
            pending: Vec::new(),
            searched: 0,
            cap,
            write: Arc::new(Mutex::new(Some(write))),
        }
    }
}

impl<R: AsyncRead + Unpin, W> Lines<R, W> {
    /// The next line, without its newline; None at the end of the stream,
    /// on a read error, or when a line passes the cap. Cancel-safe: a
    /// dropped call loses nothing that was read.
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.pending[self.searched..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = self.searched + at;
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                self.searched = 0;
                return Some(line);
            }
            self.searched = self.pending.len();
            if self.pending.len() > self.cap {
                tracing::warn!(target: "mcp", cap = self.cap,
                    "MCP server wrote a line past the cap; closing the connection");
                return None;
            }
            // `read_buf` appends what one read gives, or nothing: dropped
            // here, no byte is lost.
            self.pending.reserve(64 * 1024);
            match self.read.read_buf(&mut self.pending).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "mcp", error = %e, "reading from an MCP server failed");
                    return None;
                }
            }
        }
    }
}

impl<R, W> Transport<RoleClient> for Lines<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            let mut line = serde_json::to_vec(&item)?;
            line.push(b'\n');
            let mut w = write.lock().await;
            let Some(w) = w.as_mut() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection is closed",
                ));
            };
            w.write_all(&line).await?;
            w.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let line = self.next_line().await?;
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(text) {
                Ok(msg) => return Some(msg),
                // Not a message this client knows: skipped; a call it
                // should have answered runs into its timeout.
                Err(e) => tracing::warn!(target: "mcp", error = %e,
                    "MCP server wrote a line that is not a JSON-RPC message; skipped"),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        if let Some(mut w) = self.write.lock().await.take() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8], cap: usize) -> Lines<&[u8], tokio::io::Sink> {
        Lines::new(data, tokio::io::sink(), cap)
    }

    #[tokio::test]
    async fn lines_come_whole_and_a_line_past_the_cap_ends_the_stream() {
        let mut l = lines(b"{}\n\r\nabc", 16);
        assert_eq!(l.next_line().await.as_deref(), Some(&b"{}"[..]));
        assert_eq!(l.next_line().await.as_deref(), Some(&b"\r"[..]));
        // The last line has no newline: the end of the stream ends it.
        assert_eq!(l.next_line().await, None);
        let long = [b"{}\n".as_slice(), &[b'x'; 100]].concat();
        let mut l = lines(&long, 16);
        assert_eq!(l.next_line().await.as_deref(), Some(&b"{}"[..]));
        assert_eq!(l.next_line().await, None);
    }

    #[tokio::test]
    async fn a_dropped_read_loses_nothing() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut l = Lines::new(rx, tokio::io::sink(), 1 << 20);
        tx.write_all(b"{\"part\":").await.unwrap();
        // The read takes the first part, then is dropped mid-line.
        let cut = tokio::time::timeout(std::time::Duration::from_millis(50), l.next_line()).await;
        assert!(cut.is_err());
        tx.write_all(b"1}\n").await.unwrap();
        assert_eq!(l.next_line().await.as_deref(), Some(&b"{\"part\":1}"[..]));
    }
}
