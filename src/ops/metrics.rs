//! The opt-in Prometheus endpoint (`[metrics] listen`): `GET /metrics`
//! answers with the text exposition of [`crate::telemetry`]'s counters.
//!
//! A deliberately small HTTP/1.1 server: one request per connection
//! (`Connection: close`), request head capped at 8 KiB. Anything but
//! `GET /metrics` gets 404 (other paths) or 405 (other methods).
//!
//! # Slow clients do not keep scrapes out
//!
//! A client that sends its head a byte at a time (slowloris) must not hold
//! what an honest scrape needs. A per-read deadline does not stop it (each
//! byte comes in time), nor does a per-address cap (the clients may share
//! one address). So:
//!
//! - the whole head has [`HEAD_DEADLINE`] (2 s), not each read;
//! - heads are read without a serving slot: the accept loop accepts
//!   continuously and hands each connection to a head reader; at most
//!   [`MAX_HEAD_READERS`] read at once, and a new connection past that
//!   ends the **oldest** reader still waiting for its head;
//! - only a complete head takes one of [`MAX_RESPONDERS`] slots, held for
//!   the answer alone (written within [`ANSWER_DEADLINE`]).
//!
//! Why that keeps honest scrapes served: an honest scrape sends its head at
//! once, so it reads for about a round trip. It loses its reader only if
//! [`MAX_HEAD_READERS`] connections arrive after it within that round trip,
//! and never has to wait for a reader to free up: slow clients are the
//! oldest readers, so they are the ones dropped, and each is dropped by its
//! deadline anyway. A slot is held only by a client that sent a whole
//! head, for an answer of a few KiB that the socket buffer takes at once.
//! Connections held open are bounded: readers plus slots.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head (and, when every slot
/// is busy, to get one).
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Time the answer has to be written.
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// Connections whose head is read at once; past it the oldest is dropped.
const MAX_HEAD_READERS: usize = 128;
/// Answers written at once.
const MAX_RESPONDERS: usize = 16;
/// The exposition's content type (OpenMetrics text, which prometheus-client
/// writes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `listen`; the address actually bound (port 0 picks one).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("config `[metrics] listen`: cannot listen on {listen}"))
}

/// The connections still reading their head, oldest first (ids grow).
#[derive(Default)]
struct Readers {
    next: u64,
    waiting: BTreeMap<u64, CancellationToken>,
}

/// A connection's place among the head readers; leaving it (drop) frees
/// the place.
struct ReaderPlace {
    readers: Arc<Mutex<Readers>>,
    id: u64,
    /// Cancelled when a newer connection needs the place.
    evicted: CancellationToken,
}

impl ReaderPlace {
    /// A place for a new connection, ending the oldest reader when all
    /// [`MAX_HEAD_READERS`] are taken.
    fn enter(readers: &Arc<Mutex<Readers>>) -> ReaderPlace {
        let mut r = readers.lock().unwrap_or_else(|p| p.into_inner());
        while r.waiting.len() >= MAX_HEAD_READERS {
            if let Some((_, oldest)) = r.waiting.pop_first() {
                oldest.cancel();
            }
        }
        let id = r.next;
        r.next += 1;
        let evicted = CancellationToken::new();
        r.waiting.insert(id, evicted.clone());
        ReaderPlace {
            readers: readers.clone(),
            id,
            evicted,
        }
    }
}

impl Drop for ReaderPlace {
    fn drop(&mut self) {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        r.waiting.remove(&self.id);
    }
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, telemetry: Telemetry, shutdown: CancellationToken) {
    let readers = Arc::new(Mutex::new(Readers::default()));
    let slots = Arc::new(Semaphore::new(MAX_RESPONDERS));
    let mut clients = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics endpoint listening on /metrics");
    }
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = clients.join_next() => continue,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let place = ReaderPlace::enter(&readers);
        clients.spawn(client(stream, place, slots.clone(), telemetry.clone()));
    }
    clients.shutdown().await;
}

/// One connection: its head within [`HEAD_DEADLINE`] (unless a newer
/// connection takes its place first), then a slot, then the answer.
async fn client(
    mut stream: TcpStream,
    place: ReaderPlace,
    slots: Arc<Semaphore>,
    telemetry: Telemetry,
) {
    let evicted = place.evicted.clone();
    let ready = async {
        let head = read_head(&mut stream).await?;
        let slot = slots.clone().acquire_owned().await.ok()?;
        Some((head, slot))
    };
    let (head, _slot) = tokio::select! {
        _ = evicted.cancelled() => return,
        r = tokio::time::timeout(HEAD_DEADLINE, ready) => match r {
            Ok(Some(ready)) => ready,
            _ => return,
        },
    };
    drop(place);
    let _ = tokio::time::timeout(ANSWER_DEADLINE, answer(&mut stream, head, &telemetry)).await;
}

/// A request head as far as it was read.
enum Head {
    /// The whole head (up to the blank line).
    Complete(Vec<u8>),
    /// Over [`MAX_HEAD`].
    TooLarge,
}

/// Reads up to the end of the head; `None` when the client goes away.
async fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return Some(Head::TooLarge);
        }
    }
    Some(Head::Complete(head))
}

/// Writes the answer to `head`.
async fn answer(stream: &mut TcpStream, head: Head, telemetry: &Telemetry) -> std::io::Result<()> {
    let head = match head {
        Head::Complete(head) => head,
        Head::TooLarge => {
            return respond(
                stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
        }
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(stream, "200 OK", CONTENT_TYPE, &telemetry.encode()).await,
        (_, "/metrics") => {
            respond(stream, "405 Method Not Allowed", "text/plain", "only GET\n").await
        }
        _ => respond(stream, "404 Not Found", "text/plain", "try /metrics\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let t = Telemetry::new();
        t.session_started("chat");
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, t, stop.clone()));
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("catpaw_agent_sessions_started_total{type=\"chat\"} 1"),
            "{ok}"
        );
        let nf = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let na = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(na.starts_with("HTTP/1.1 405"), "{na}");
        stop.cancel();
        task.await.expect("stops");
    }
}
