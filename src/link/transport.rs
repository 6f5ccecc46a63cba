//! The byte pipe under the WebSocket: the TCP dial, and a write clock that
//! records when a write last moved bytes.
//!
//! PROTOCOL §4's "a write that does not finish in 10 s → connection lost"
//! is meant to catch a dead peer, not a slow one. Measured on a frame's
//! total time it kills every frame bigger than ten seconds of the link (a
//! 6 MB frame on a 100 KiB/s link fails on every reconnect, forever). So the
//! deadline here runs from the last moment a write made progress: a link
//! that keeps taking bytes keeps the connection, one that takes nothing for
//! the whole limit loses it. The clock sits on the TCP stream, under TLS, so
//! it sees what the kernel accepted, not what rustls buffered.
//!
//! The dial also sets `TCP_NOTSENT_LOWAT`, so the kernel holds at most
//! [`UNSENT_LOWAT`] bytes that have not left yet. Without it a slow link
//! lets megabytes of alerts queue in the socket buffer, and a session's
//! next message waits behind all of them no matter how the connection
//! orders its writes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Unsent bytes the kernel may hold for the connection (`TCP_NOTSENT_LOWAT`).
pub(crate) const UNSENT_LOWAT: u32 = 64 * 1024;

/// When a write through a [`Metered`] stream last moved bytes, and how
/// many it has moved in all. Clones share the clock.
#[derive(Debug, Clone)]
pub(crate) struct WriteClock {
    origin: Instant,
    /// Nanoseconds from `origin` to the last progress.
    last: Arc<AtomicU64>,
    /// Bytes the socket has taken since the dial.
    written: Arc<AtomicU64>,
}

impl Default for WriteClock {
    fn default() -> Self {
        WriteClock::new()
    }
}

impl WriteClock {
    /// A clock whose last progress is now.
    pub fn new() -> Self {
        WriteClock {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records that the socket took `n` more bytes.
    fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Bytes the socket has taken since the dial.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records progress now.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // fetch_max: two writers racing must not move the clock backwards.
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The last progress.
    pub fn last(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A stream whose writes tick a [`WriteClock`]; reads pass through.
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    clock: WriteClock,
}

impl<S> Metered<S> {
    /// Wraps `inner`, ticking `clock` on every write that moves bytes.
    pub fn new(inner: S, clock: WriteClock) -> Self {
        Metered { inner, clock }
    }

    fn moved(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r
            && *n > 0
        {
            self.clock.wrote(*n);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.moved(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.moved(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// No byte moved for the whole limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no write progress for {0:?}")]
pub(crate) struct Stalled(pub Duration);

/// Runs `write` (which writes through a stream metered by `clock`) to its
/// end, unless no byte moves for `idle`. The wait starts now: time the
/// connection spent idle before this write does not count against it.
pub(crate) async fn unless_stalled<F: Future>(
    clock: &WriteClock,
    idle: Duration,
    write: F,
) -> Result<F::Output, Stalled> {
    clock.touch();
    tokio::pin!(write);
    loop {
        let deadline = clock.last() + idle;
        tokio::select! {
            out = &mut write => return Ok(out),
            _ = tokio::time::sleep_until(deadline) => {
                if clock.last() + idle <= Instant::now() {
                    return Err(Stalled(idle));
                }
            }
        }
    }
}

/// The kernel's send queue of the connection's TCP socket: what the peer
/// has not acknowledged yet. With the [`WriteClock`]'s byte count it tells
/// how far into the byte stream the peer has acknowledged, which is what
/// lets the connection keep at most one alert batch in flight (see
/// `conn`'s module doc).
///
/// It holds the socket's descriptor number, not the socket: it lives
/// beside the stream that owns the socket (in the connection's write half)
/// and is dropped with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendQueue {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl SendQueue {
    /// The send queue of `tcp`.
    pub fn of(tcp: &TcpStream) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            SendQueue {
                fd: tcp.as_raw_fd(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = tcp;
            SendQueue {}
        }
    }

    /// Bytes written to the socket that the peer has not acknowledged
    /// (sent or not yet sent); `None` when the kernel cannot say.
    pub fn unacked(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let mut n: libc::c_int = 0;
            // SAFETY: TIOCOUTQ (SIOCOUTQ for a TCP socket) writes one c_int
            // through the pointer, which points at a live c_int; on a
            // descriptor that is not a socket it fails and writes nothing.
            let rc = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
            (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// How often [`acked_through`] looks at the send queue. The kernel
/// signals no event when the peer acknowledges data, so it is polled, and
/// only while an alert batch waits for the one before it.
const ACK_POLL: Duration = Duration::from_millis(10);

/// Returns once the peer has acknowledged the first `mark` bytes written
/// through the stream `clock` meters (`queue` is that stream's socket), or
/// at once when the kernel cannot say how much is unacknowledged.
pub(crate) async fn acked_through(clock: &WriteClock, queue: SendQueue, mark: u64) {
    loop {
        let Some(unacked) = queue.unacked() else {
            return;
        };
        if clock.written().saturating_sub(unacked) >= mark {
            return;
        }
        tokio::time::sleep(ACK_POLL).await;
    }
}

/// Connects to `host:port` of a `ws://`/`wss://` URI, with Nagle off (small
/// frames such as acks must not wait for a delayed ACK) and the unsent
/// queue bounded (see the module doc).
pub async fn connect(uri: &http::Uri) -> io::Result<TcpStream> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the URL has no host"))?;
    // IPv6 literals come bracketed in URIs and unbracketed to the resolver.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    limit_unsent(&tcp);
    Ok(tcp)
}

/// Sets `TCP_NOTSENT_LOWAT`; a kernel without it only loses the bound.
fn limit_unsent(tcp: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = UNSENT_LOWAT as libc::c_int;
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `total` bytes through a 4 KiB pipe whose reader takes `chunk`
    /// bytes every `every` (or nothing at all when `chunk` is 0).
    async fn write_through_slow_reader(
        total: usize,
        chunk: usize,
        every: Duration,
        idle: Duration,
    ) -> Result<(), Stalled> {
        let (a, mut b) = tokio::io::duplex(4096);
        let clock = WriteClock::new();
        let mut w = Metered::new(a, clock.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk.max(1)];
            loop {
                tokio::time::sleep(every).await;
                if chunk == 0 {
                    continue;
                }
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        let data = vec![7u8; total];
        let r = unless_stalled(&clock, idle, w.write_all(&data)).await;
        reader.abort();
        r.map(|w| w.expect("pipe write"))
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_never_stalls_the_write() {
        // 64 KiB at 4 KiB per 50 ms takes ~800 ms, four times the limit.
        let t0 = Instant::now();
        let r = write_through_slow_reader(
            64 * 1024,
            4096,
            Duration::from_millis(50),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r, Ok(()));
        assert!(
            t0.elapsed() > Duration::from_millis(600),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn a_reader_that_takes_nothing_stalls_the_write_after_the_limit() {
        let t0 = Instant::now();
        let r = write_through_slow_reader(
            64 * 1024,
            0,
            Duration::from_millis(50),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r, Err(Stalled(Duration::from_millis(200))));
        // The pipe took its first 4 KiB at once; the limit ran from there.
        // Without the limit the write would never end: the upper bound is
        // only that it did, well inside a loaded machine's delays.
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(200) * 50,
            "{waited:?}"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn acked_through_waits_until_the_peer_has_the_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut peer, _) = listener.accept().await.expect("accept");
        let queue = SendQueue::of(&tcp);
        assert_eq!(queue.unacked(), Some(0));
        let clock = WriteClock::new();
        let mut w = Metered::new(tcp, clock.clone());
        // More than the kernel buffers of both ends take while the peer
        // reads nothing: the writer blocks with bytes unacknowledged.
        let writer = tokio::spawn(async move {
            let data = vec![1u8; 32 << 20];
            let _ = w.write_all(&data).await;
            w
        });
        // Wait until the writer is blocked: the peer's buffer is full and
        // bytes sit unacknowledged (what it wrote stays the same over five
        // polls in a row).
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut last, mut still) = (0, 0);
        while still < 5 {
            assert!(Instant::now() < deadline, "the writer never blocked");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = clock.written();
            let blocked = now > 0 && now == last && queue.unacked().expect("SIOCOUTQ") > 0;
            still = if blocked { still + 1 } else { 0 };
            last = now;
        }
        let mark = clock.written();
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            acked_through(&clock, queue, mark),
        )
        .await;
        assert!(waiting.is_err(), "returned while the peer read nothing");
        let mut sink = vec![0u8; 1 << 20];
        let read_all =
            tokio::spawn(async move { while peer.read(&mut sink).await.is_ok_and(|n| n > 0) {} });
        tokio::time::timeout(Duration::from_secs(20), acked_through(&clock, queue, mark))
            .await
            .expect("returns once the peer reads");
        let w = writer.await.expect("writer");
        drop(w);
        read_all.await.expect("reader");
    }

    #[tokio::test]
    async fn idle_time_before_a_write_does_not_count_against_it() {
        let clock = WriteClock::new();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = unless_stalled(
            &clock,
            Duration::from_millis(200),
            tokio::time::sleep(Duration::from_millis(100)),
        )
        .await;
        assert_eq!(r, Ok(()));
    }
}
