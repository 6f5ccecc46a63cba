//! One proxied connection: two pumps, one per direction, each applying
//! its direction's toxic to every chunk it forwards (the parent module's
//! doc says what each toxic does).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Counters, Dir, Toxic, lock};

/// Makes the close of `s` a RST instead of a FIN: SO_LINGER on with a
/// zero timeout (which never blocks, unlike a non-zero one, the reason
/// tokio deprecates its setter).
pub(super) fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// How a connection ended, as far as one pump is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its source closed: pass the close on and let the other pump run.
    Eof,
    /// Close both ends normally now.
    Close,
    /// Reset both ends now.
    Reset,
}

pub(super) async fn connect(
    client: TcpStream,
    server: TcpStream,
    (up, down): (
        watch::Receiver<Option<Toxic>>,
        watch::Receiver<Option<Toxic>>,
    ),
    cut: CancellationToken,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    // Ends the other pump when one decides for the whole connection
    // (`verdict`: how; a cut from outside leaves it empty, a reset).
    let both = cut.child_token();
    let verdict = Arc::new(Mutex::new(None));
    let up_pump = Pump {
        dir: Dir::Up,
        toxic: up,
        both: both.clone(),
        verdict: verdict.clone(),
        counters: counters.clone(),
    };
    let down_pump = Pump {
        dir: Dir::Down,
        toxic: down,
        both: both.clone(),
        verdict,
        counters,
    };
    let a = tokio::spawn(up_pump.run(client_r, server_w));
    let b = tokio::spawn(down_pump.run(server_r, client_w));
    let (a, b) = (a.await, b.await);
    let ends = [a.ok(), b.ok()];
    // The halves came back so that a reset is decided once both pumps
    // stopped (a half dropped early would send a FIN instead).
    let mut halves = Vec::new();
    let mut rst = false;
    for (end, r, w) in ends.into_iter().flatten() {
        rst |= end == End::Reset;
        halves.push((r, w));
    }
    for (r, w) in halves {
        if rst {
            reset(r.as_ref());
            // Dropped, a write half would send a FIN first.
            w.forget();
        }
        drop(r);
    }
}

struct Pump {
    dir: Dir,
    toxic: watch::Receiver<Option<Toxic>>,
    both: CancellationToken,
    verdict: Arc<Mutex<Option<End>>>,
    counters: Arc<Counters>,
}

impl Pump {
    async fn run(
        mut self,
        mut src: OwnedReadHalf,
        mut dst: OwnedWriteHalf,
    ) -> (End, OwnedReadHalf, OwnedWriteHalf) {
        let end = self.pump(&mut src, &mut dst).await;
        match end {
            End::Eof => {
                let _ = dst.shutdown().await;
            }
            End::Close | End::Reset => {
                lock(&self.verdict).get_or_insert(end);
                self.both.cancel();
            }
        }
        if end == End::Close {
            let _ = dst.shutdown().await;
        }
        (end, src, dst)
    }

    async fn pump(&mut self, src: &mut OwnedReadHalf, dst: &mut OwnedWriteHalf) -> End {
        let mut buf = vec![0u8; 16 * 1024];
        // When the current toxic reached this connection, and the bytes
        // passed since (for limit_data).
        let mut since = Instant::now();
        let mut passed: u64 = 0;
        self.toxic.mark_changed();
        let mut toxic = None;
        let mut proxy_gone = false;
        loop {
            let deadline = match &toxic {
                Some(Toxic::Timeout {
                    close_after: Some(d),
                }) => Some((since + *d, End::Close)),
                Some(Toxic::Reset { after }) => Some((since + *after, End::Reset)),
                _ => None,
            };
            // Biased: a toxic set before the bytes came applies to them.
            let n = tokio::select! {
                biased;
                _ = self.both.cancelled() => return self.ended(),
                r = self.toxic.changed(), if !proxy_gone => {
                    if r.is_err() {
                        // The proxy is gone; keep forwarding untouched.
                        proxy_gone = true;
                        toxic = None;
                    } else {
                        toxic = self.toxic.borrow_and_update().clone();
                    }
                    since = Instant::now();
                    passed = 0;
                    continue;
                }
                _ = sleep_until(deadline.map(|d| d.0)), if deadline.is_some() => {
                    return deadline.map_or(End::Close, |d| d.1);
                }
                r = src.read(&mut buf[..chunk(&toxic)]) => match r {
                    Ok(0) => {
                        if let Some(Toxic::SlowClose { delay }) = &toxic {
                            tokio::time::sleep(*delay).await;
                        }
                        return End::Eof;
                    }
                    Ok(n) => n,
                    Err(_) => return End::Reset,
                },
            };
            let read_at = Instant::now();
            let data = &buf[..n];
            match &toxic {
                None | Some(Toxic::SlowClose { .. }) | Some(Toxic::Reset { .. }) => {
                    if !self.write(dst, data).await {
                        return self.ended();
                    }
                }
                Some(Toxic::Latency { latency, jitter }) => {
                    let j = jitter.as_millis() as i64;
                    let off = if j > 0 {
                        rand::rng().random_range(-j..=j)
                    } else {
                        0
                    };
                    let ms = (latency.as_millis() as i64 + off).max(0) as u64;
                    tokio::time::sleep_until(read_at + Duration::from_millis(ms)).await;
                    if !self.write(dst, data).await {
                        return self.ended();
                    }
                }
                Some(Toxic::Bandwidth { bytes_per_sec }) => {
                    if !self.write(dst, data).await {
                        return self.ended();
                    }
                    let secs = n as f64 / (*bytes_per_sec).max(1) as f64;
                    tokio::time::sleep_until(read_at + Duration::from_secs_f64(secs)).await;
                }
                Some(Toxic::Timeout { .. }) => self.drop_bytes(n),
                Some(Toxic::LimitData { bytes }) => {
                    let room = bytes.saturating_sub(passed) as usize;
                    let take = room.min(n);
                    if take > 0 && !self.write(dst, &data[..take]).await {
                        return self.ended();
                    }
                    passed += take as u64;
                    if passed >= *bytes {
                        self.drop_bytes(n - take);
                        return End::Close;
                    }
                }
                Some(Toxic::Slicer {
                    avg,
                    variation,
                    delay,
                }) => {
                    let mut rest = data;
                    while !rest.is_empty() {
                        let v = *variation as i64;
                        let off = if v > 0 {
                            rand::rng().random_range(-v..=v)
                        } else {
                            0
                        };
                        let size = ((*avg as i64 + off).max(1) as usize).min(rest.len());
                        if !self.write(dst, &rest[..size]).await {
                            return self.ended();
                        }
                        rest = &rest[size..];
                        if !rest.is_empty() {
                            tokio::time::sleep(*delay).await;
                        }
                    }
                }
            }
        }
    }

    /// How the connection ends when this pump cannot go on: as the other
    /// pump decided, else (a cut from outside, a write that failed) reset.
    fn ended(&self) -> End {
        lock(&self.verdict).unwrap_or(End::Reset)
    }

    /// Writes `data` on; false when the other end is gone.
    async fn write(&self, dst: &mut OwnedWriteHalf, data: &[u8]) -> bool {
        let ok = tokio::select! {
            _ = self.both.cancelled() => false,
            r = dst.write_all(data) => r.is_ok(),
        };
        if ok {
            self.counters
                .forwarded(self.dir)
                .fetch_add(data.len() as u64, Ordering::SeqCst);
        } else {
            self.drop_bytes(data.len());
        }
        ok
    }

    fn drop_bytes(&self, n: usize) {
        self.counters
            .discarded(self.dir)
            .fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// How much one read takes: small under a bandwidth cap, so the rate is
/// smooth, else 16 KiB.
fn chunk(toxic: &Option<Toxic>) -> usize {
    match toxic {
        Some(Toxic::Bandwidth { bytes_per_sec }) => {
            (*bytes_per_sec / 20).clamp(1, 16 * 1024) as usize
        }
        _ => 16 * 1024,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
