//! A fault proxy between the agent and the [`TestServer`](super::server::TestServer):
//! TCP on loopback with Toxiproxy's toxics, one per direction, switched on
//! and off while traffic flows. No well-kept crate does this in-process
//! (Toxiproxy itself is a Go daemon), and the kernel here has no netem.
//!
//! Each connection is two pumps, one per direction; a pump reads a chunk,
//! applies its direction's toxic as it is at that moment, and writes it on.
//! A toxic set while a connection is open reaches it at once (the pumps
//! wait on the toxic as well as on their socket), so a fault can hit a
//! session mid-stream. What each toxic does is Toxiproxy's:
//!
//! - [`Toxic::Latency`]: every chunk waits `latency ± jitter`;
//! - [`Toxic::Bandwidth`]: at most `bytes_per_sec`;
//! - [`Toxic::SlowClose`]: the close waits `delay` after the end of stream;
//! - [`Toxic::Timeout`]: a black hole (bytes read and dropped), the
//!   connection closed after `close_after` (never when `None`);
//! - [`Toxic::Reset`]: both sockets reset (RST) after `after`;
//! - [`Toxic::LimitData`]: the connection closed once `bytes` have passed
//!   (counted from when the toxic reached it);
//! - [`Toxic::Slicer`]: every chunk torn into writes of `avg ± variation`
//!   bytes, `delay` apart.
//!
//! [`FaultProxy::cut_all`] resets every open connection and
//! [`FaultProxy::set_upstream`] points new ones elsewhere (a server that
//! was killed and came back on another port); while no upstream is set,
//! connections are accepted and reset (a server that is down).
#![allow(dead_code)]

mod pump;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use pump::{connect, reset};

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client (the agent) to upstream (the server).
    Up,
    /// Upstream to client.
    Down,
}

/// One of Toxiproxy's toxics (module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Toxic {
    Latency {
        latency: Duration,
        jitter: Duration,
    },
    Bandwidth {
        bytes_per_sec: u64,
    },
    SlowClose {
        delay: Duration,
    },
    Timeout {
        close_after: Option<Duration>,
    },
    Reset {
        after: Duration,
    },
    LimitData {
        bytes: u64,
    },
    Slicer {
        avg: usize,
        variation: usize,
        delay: Duration,
    },
}

impl Toxic {
    /// Its name, as Toxiproxy spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::SlowClose { .. } => "slow_close",
            Toxic::Timeout { .. } => "timeout",
            Toxic::Reset { .. } => "reset_peer",
            Toxic::LimitData { .. } => "limit_data",
            Toxic::Slicer { .. } => "slicer",
        }
    }
}

/// What the proxy has seen, for a test to reason about.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted from clients.
    pub accepted: AtomicU64,
    /// Bytes forwarded, per direction.
    pub forwarded_up: AtomicU64,
    pub forwarded_down: AtomicU64,
    /// Bytes read and not forwarded (black hole, cut after a limit,
    /// dropped by a reset), per direction.
    pub discarded_up: AtomicU64,
    pub discarded_down: AtomicU64,
}

impl Counters {
    fn forwarded(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.forwarded_up,
            Dir::Down => &self.forwarded_down,
        }
    }
    fn discarded(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.discarded_up,
            Dir::Down => &self.discarded_down,
        }
    }
}

/// The proxy; dropping it stops accepting (open connections run on until
/// either end closes).
pub struct FaultProxy {
    /// The address clients dial.
    pub addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    up: watch::Sender<Option<Toxic>>,
    down: watch::Sender<Option<Toxic>>,
    /// Cancelled by [`cut_all`](Self::cut_all); a fresh one follows.
    cut: Arc<Mutex<CancellationToken>>,
    pub counters: Arc<Counters>,
    stop: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxy {
    /// A proxy to `upstream` with no toxic.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, _) = watch::channel(None);
        let (down, _) = watch::channel(None);
        let proxy = FaultProxy {
            addr,
            upstream: Arc::new(Mutex::new(Some(upstream))),
            up,
            down,
            cut: Arc::new(Mutex::new(CancellationToken::new())),
            counters: Arc::new(Counters::default()),
            stop: CancellationToken::new(),
        };
        let (upstream, cut, counters, stop) = (
            proxy.upstream.clone(),
            proxy.cut.clone(),
            proxy.counters.clone(),
            proxy.stop.clone(),
        );
        let (up_rx, down_rx) = (proxy.up.subscribe(), proxy.down.subscribe());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok((c, _)) => c,
                        Err(_) => continue,
                    },
                };
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                let target = *lock(&upstream);
                let conn_cut = lock(&cut).clone();
                let toxics = (up_rx.clone(), down_rx.clone());
                let counters = counters.clone();
                tokio::spawn(async move {
                    let Some(target) = target else {
                        return reset(&client);
                    };
                    let Ok(server) = TcpStream::connect(target).await else {
                        return reset(&client);
                    };
                    connect(client, server, toxics, conn_cut, counters).await;
                });
            }
        });
        proxy
    }

    /// Sets (or with `None` clears) the toxic of direction `dir`; open
    /// connections get it at once.
    pub fn set(&self, dir: Dir, toxic: Option<Toxic>) {
        match dir {
            Dir::Up => self.up.send_replace(toxic),
            Dir::Down => self.down.send_replace(toxic),
        };
    }

    /// Clears both directions.
    pub fn clear(&self) {
        self.set(Dir::Up, None);
        self.set(Dir::Down, None);
    }

    /// Where new connections go; `None`: they are reset at once.
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *lock(&self.upstream) = upstream;
    }

    /// Resets every open connection (new ones are not affected).
    pub fn cut_all(&self) {
        let old = std::mem::replace(&mut *lock(&self.cut), CancellationToken::new());
        old.cancel();
    }

    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Bytes read and not forwarded in direction `dir` so far.
    pub fn discarded(&self, dir: Dir) -> u64 {
        self.counters.discarded(dir).load(Ordering::SeqCst)
    }
}
