//! The opt-in Prometheus endpoint (`[metrics] listen`): `GET /metrics`
//! answers with the text exposition of [`crate::telemetry`]'s counters.
//!
//! A deliberately small HTTP/1.1 server: one request per connection
//! (`Connection: close`), request head capped at 8 KiB and 5 s, at most
//! 16 clients at once. Anything but `GET /metrics` gets 404 (other paths)
//! or 405 (other methods).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once.
const MAX_CLIENTS: usize = 16;
/// The exposition's content type (OpenMetrics text, which prometheus-client
/// writes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `listen`; the address actually bound (port 0 picks one).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("config `[metrics] listen`: cannot listen on {listen}"))
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, telemetry: Telemetry, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics endpoint listening on /metrics");
    }
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Over the limit: close at once rather than queue.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let t = telemetry.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &t)).await;
            drop(slot);
        });
    }
}

/// Reads one request head and writes the answer.
async fn answer(mut stream: TcpStream, telemetry: &Telemetry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            respond(&mut stream, "200 OK", CONTENT_TYPE, &telemetry.encode()).await
        }
        (_, "/metrics") => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "only GET\n",
            )
            .await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await,
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
