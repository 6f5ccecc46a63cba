//! Each toxic of the [`FaultProxy`], through the proxy with plain TCP: an
//! echo server behind it that also tells what each of its reads got, so a
//! test sees both ends. Lower bounds on time are exact (a toxic that
//! delays must delay); upper bounds are generous (a toxic cleared must stop
//! delaying by far more than a loaded machine's scheduling noise).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::common::fault_proxy::{Dir, FaultProxy, Toxic};

/// An echo server: every read is echoed and its size reported; with
/// `close_after` bytes it closes once it has echoed that many.
async fn echo(
    close_after: Option<usize>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(n);
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    total += n;
                    if close_after.is_some_and(|c| total >= c) {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A proxy in front of a fresh echo server, and a client connected to it.
async fn setup(
    close_after: Option<usize>,
) -> (FaultProxy, TcpStream, mpsc::UnboundedReceiver<usize>) {
    let (addr, reads) = echo(close_after).await;
    let proxy = FaultProxy::start(addr).await;
    let client = TcpStream::connect(proxy.addr).await.expect("connect");
    client.set_nodelay(true).expect("nodelay");
    (proxy, client, reads)
}

/// Sends `data` and reads its echo back; the time it took.
async fn round_trip(c: &mut TcpStream, data: &[u8]) -> Duration {
    let t = Instant::now();
    c.write_all(data).await.expect("write");
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut back))
        .await
        .expect("the echo came back within 30 s")
        .expect("read echo");
    assert_eq!(back, data);
    t.elapsed()
}

/// What the next read of `c` gets within `limit`: Some(bytes) (0 for an
/// end of stream), Some(-1) for an error (a reset), None if nothing came.
async fn next_read(c: &mut TcpStream, limit: Duration) -> Option<i64> {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(limit, c.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(n as i64),
        Ok(Err(_)) => Some(-1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_each_chunk_while_set_and_stops_when_cleared() {
    let (proxy, mut c, _) = setup(None).await;
    round_trip(&mut c, b"warm").await;
    proxy.set(
        Dir::Down,
        Some(Toxic::Latency {
            latency: Duration::from_millis(1500),
            jitter: Duration::from_millis(100),
        }),
    );
    let slow = round_trip(&mut c, b"slow").await;
    assert!(slow >= Duration::from_millis(1400), "{slow:?}");
    proxy.clear();
    let fast = round_trip(&mut c, b"fast").await;
    assert!(fast < Duration::from_millis(1000), "{fast:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_caps_the_rate() {
    let (proxy, mut c, _) = setup(None).await;
    proxy.set(
        Dir::Up,
        Some(Toxic::Bandwidth {
            bytes_per_sec: 40_000,
        }),
    );
    // 60 KB at 40 KB/s: at least 1.5 s less the first chunk's 1/20 s.
    let took = round_trip(&mut c, &vec![7u8; 60_000]).await;
    assert!(took >= Duration::from_millis(1400), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_holds_the_end_of_stream_back() {
    let (proxy, mut c, _) = setup(Some(2)).await;
    proxy.set(
        Dir::Down,
        Some(Toxic::SlowClose {
            delay: Duration::from_millis(1200),
        }),
    );
    // The server closes right after its echo; the client hears of it
    // only after the delay.
    let start = Instant::now();
    round_trip(&mut c, b"hi").await;
    assert_eq!(next_read(&mut c, Duration::from_secs(30)).await, Some(0));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1200), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_a_black_hole_then_closes() {
    let (proxy, mut c, mut reads) = setup(None).await;
    round_trip(&mut c, b"warm").await;
    assert_eq!(reads.recv().await, Some(4));
    proxy.set(
        Dir::Up,
        Some(Toxic::Timeout {
            close_after: Some(Duration::from_millis(1500)),
        }),
    );
    let start = Instant::now();
    c.write_all(b"lost").await.expect("write");
    // Nothing reaches the server, nothing comes back, then the close.
    let end = next_read(&mut c, Duration::from_secs(30)).await;
    assert!(matches!(end, Some(0) | Some(-1)), "{end:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    assert!(
        reads.try_recv().is_err(),
        "bytes went through the black hole"
    );
    assert_eq!(proxy.discarded(Dir::Up), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_an_open_connection() {
    let (proxy, mut c, _) = setup(None).await;
    round_trip(&mut c, b"warm").await;
    proxy.set(
        Dir::Down,
        Some(Toxic::Reset {
            after: Duration::from_millis(200),
        }),
    );
    assert_eq!(next_read(&mut c, Duration::from_secs(30)).await, Some(-1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_passes_exactly_n_bytes_then_closes() {
    let (proxy, mut c, mut reads) = setup(None).await;
    proxy.set(Dir::Up, Some(Toxic::LimitData { bytes: 100 }));
    c.write_all(&[1u8; 1000]).await.expect("write");
    // The connection closes at the limit (the echo may not make it).
    let mut got = 0;
    loop {
        match next_read(&mut c, Duration::from_secs(30)).await {
            Some(n) if n > 0 => got += n,
            Some(_) => break,
            None => panic!("the connection was not closed after the limit"),
        }
    }
    assert!(got <= 100, "{got}");
    let mut at_server = 0;
    while at_server < 100 {
        match tokio::time::timeout(Duration::from_secs(30), reads.recv()).await {
            Ok(Some(n)) => at_server += n,
            _ => break,
        }
    }
    assert_eq!(at_server, 100);
    assert_eq!(proxy.discarded(Dir::Up), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_tears_one_write_into_small_ones() {
    let (proxy, mut c, mut reads) = setup(None).await;
    proxy.set(
        Dir::Up,
        Some(Toxic::Slicer {
            avg: 16,
            variation: 8,
            delay: Duration::from_millis(3),
        }),
    );
    let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    round_trip(&mut c, &data).await;
    let mut sizes = Vec::new();
    while let Ok(n) = reads.try_recv() {
        sizes.push(n);
    }
    assert_eq!(sizes.iter().sum::<usize>(), 2000);
    // 2000 bytes in pieces of at most 24, 3 ms apart: the server's reads
    // see many of them, none bigger than a piece unless two coalesced.
    assert!(sizes.len() >= 20, "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_resets_open_connections_and_a_missing_upstream_refuses_new_ones() {
    let (proxy, mut c, _) = setup(None).await;
    round_trip(&mut c, b"warm").await;
    proxy.cut_all();
    assert_eq!(next_read(&mut c, Duration::from_secs(30)).await, Some(-1));
    // A new connection still works...
    let mut d = TcpStream::connect(proxy.addr).await.expect("connect");
    round_trip(&mut d, b"again").await;
    // ...until the server is gone.
    proxy.set_upstream(None);
    // Reset at once: the connect itself may already see it.
    if let Ok(mut e) = TcpStream::connect(proxy.addr).await {
        let _ = e.write_all(b"x").await;
        let end = next_read(&mut e, Duration::from_secs(30)).await;
        assert!(matches!(end, Some(0) | Some(-1)), "{end:?}");
    }
    assert_eq!(proxy.accepted(), 3);
}
