//! A slow link in front of the [`TestServer`](super::server::TestServer):
//! a TCP proxy on loopback that forwards the agent's bytes at a fixed rate
//! (the server's bytes pass at full speed), so write deadlines and frame
//! priorities meet a link that takes data slowly but steadily.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How often the proxy forwards a slice of the rate.
const TICK: Duration = Duration::from_millis(50);

/// Starts a proxy to `upstream` that forwards agent → server bytes at
/// `bytes_per_sec`; returns the address the agent should dial.
pub async fn start(upstream: SocketAddr, bytes_per_sec: usize) -> SocketAddr {
    start_counted(upstream, bytes_per_sec).await.0
}

/// [`start`], and a count of the agent → server bytes forwarded so far
/// (all connections), so a test can wait for bytes to be on their way.
pub async fn start_counted(
    upstream: SocketAddr,
    bytes_per_sec: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let forwarded = Arc::new(AtomicUsize::new(0));
    let counter = forwarded.clone();
    let socket = TcpSocket::new_v4().expect("socket");
    // A small receive buffer, inherited by accepted sockets: the kernel
    // must not soak up megabytes of the agent's writes at loopback speed,
    // or the "slow" link would only be slow at its far end.
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    // An Ethernet-sized MSS instead of loopback's 64 KiB: with a 64 KiB
    // segment a 64 KiB buffer could never advertise a usable window, and
    // the link would stutter in zero-window probes instead of flowing.
    set_mss(&socket, 1400);
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(64).expect("listen");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((agent, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = server.set_nodelay(true);
                let (mut agent_r, mut agent_w) = agent.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_r, &mut agent_w).await;
                });
                let per_tick = (bytes_per_sec as u128 * TICK.as_millis() / 1000).max(1) as usize;
                let mut buf = vec![0u8; per_tick];
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    match agent_r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if server_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            counter.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                let _ = server_w.shutdown().await;
                down.abort();
            });
        }
    });
    (addr, forwarded)
}

fn set_mss(socket: &TcpSocket, mss: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mss as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
}
