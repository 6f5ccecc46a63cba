//! What the network tools share: name resolution and TCP connects with
//! deadlines, and TLS that records whether the peer's certificate is
//! trusted instead of failing on it (an expired certificate is exactly
//! what `tls_cert` must be able to report).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};

/// Default deadline of one network step (resolve, connect, exchange).
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// The deadline of a call from its `timeout_ms` argument.
pub(crate) fn timeout(args: &crate::tools::args::Args) -> Result<Duration, String> {
    Ok(Duration::from_millis(args.int(
        "timeout_ms",
        100,
        10_000,
        DEFAULT_TIMEOUT_MS,
    )?))
}

/// Resolves `host:port` on a helper thread with a deadline (getaddrinfo
/// cannot be cancelled; a stuck lookup is left to finish on its own).
pub(crate) fn resolve(
    host: &str,
    port: u16,
    deadline: Duration,
) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let target = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let query = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        target
    };
    std::thread::Builder::new()
        .name("catpaw-resolve".into())
        .spawn(move || {
            let _ = tx.send(query.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(deadline) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(format!("{host} has no address")),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!("resolving {host} took longer than {deadline:?}")),
    }
}

/// `host:port` → (host, port); IPv6 in brackets.
pub(crate) fn split_host_port(target: &str) -> Result<(String, u16), String> {
    let (h, p) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not host:port"))?;
    let port = p
        .parse()
        .map_err(|_| format!("{target:?} has no valid port"))?;
    Ok((
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
    ))
}

/// Connects to the first address that answers within `deadline`; the
/// socket gets `deadline` as read and write timeout.
pub(crate) fn connect(
    host: &str,
    port: u16,
    deadline: Duration,
) -> Result<(TcpStream, SocketAddr, Duration), String> {
    let addrs = resolve(host, port, deadline)?;
    let mut last = String::new();
    for a in addrs.iter().take(4) {
        let started = Instant::now();
        match TcpStream::connect_timeout(a, deadline) {
            Ok(s) => {
                let took = started.elapsed();
                let _ = s.set_read_timeout(Some(deadline));
                let _ = s.set_write_timeout(Some(deadline));
                return Ok((s, *a, took));
            }
            Err(e) => last = format!("connect to {a}: {}", reason(&e)),
        }
    }
    Err(last)
}

/// A short reason for a network error.
pub(crate) fn reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// A reader that fails with `TimedOut` once `until` has passed: socket
/// timeouts bound each read, this bounds them all together, so a peer
/// that sends a byte now and then cannot hold a call open.
pub(crate) struct Deadline<R> {
    pub(crate) inner: R,
    pub(crate) until: Instant,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.until {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.inner.read(buf)
    }
}

/// Reads until EOF or `cap` bytes (more is dropped and flagged).
pub(crate) fn read_capped(r: &mut impl Read, cap: usize) -> Result<(Vec<u8>, bool), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok((buf, false)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > cap {
                    buf.truncate(cap);
                    return Ok((buf, true));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A TLS peer closing without close_notify still ends the body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {
                return Ok((buf, false));
            }
            Err(e) => return Err(reason(&e)),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, loaded once.
fn roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(c);
            }
            Arc::new(store)
        })
        .clone()
}

/// Verifies like a browser would, but records the verdict instead of
/// failing the handshake on it.
#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    verdict: Mutex<Option<String>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            None => Some("no trusted root certificates on this host".to_string()),
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .err()
                .map(|e| e.to_string()),
        };
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = verdict;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A finished TLS handshake: the stream, the peer's chain, and why the
/// chain is not trusted (None: it is).
pub(crate) struct Tls {
    pub(crate) stream: StreamOwned<ClientConnection, TcpStream>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) untrusted: Option<String>,
    pub(crate) version: String,
}

/// TLS over `sock` to `host`, handshake completed.
pub(crate) fn tls(sock: TcpStream, host: &str) -> Result<Tls, String> {
    let provider = provider();
    let roots = roots();
    let inner = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok()
    };
    let recorder = Arc::new(Recorder {
        inner,
        provider: provider.clone(),
        verdict: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
    let conn =
        ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("TLS handshake with {host}: {}", reason(&e)))?;
    }
    let chain = stream
        .conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let version = stream
        .conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let untrusted = recorder
        .verdict
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let _ = stream.flush();
    Ok(Tls {
        stream,
        chain,
        untrusted,
        version,
    })
}

/// A TLS server on loopback with a fresh self-signed certificate for
/// `localhost`, for one connection: it completes the handshake, answers
/// one HTTP request with 200, and closes. (tests)
#[cfg(test)]
pub(crate) fn self_signed_server() -> (u16, std::thread::JoinHandle<()>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let conn = rustls::ServerConnection::new(Arc::new(config)).expect("conn");
        let mut tls = StreamOwned::new(conn, s);
        let mut buf = [0u8; 1024];
        if tls.read(&mut buf).is_ok_and(|n| n > 0) {
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_resolve() {
        assert_eq!(split_host_port("db:5432"), Ok(("db".into(), 5432)));
        assert_eq!(split_host_port("[::1]:6379"), Ok(("::1".into(), 6379)));
        assert!(split_host_port("db").is_err());
        let a = resolve("127.0.0.1", 80, Duration::from_secs(2)).expect("resolve");
        assert_eq!(a[0], "127.0.0.1:80".parse().expect("addr"));
        let a = resolve("::1", 80, Duration::from_secs(2)).expect("resolve v6");
        assert_eq!(a[0], "[::1]:80".parse().expect("addr"));
    }

    #[test]
    fn a_slow_reader_is_cut_at_its_deadline() {
        let mut r = Deadline {
            inner: &b"data"[..],
            until: Instant::now(),
        };
        let e = read_capped(&mut r, 10).unwrap_err();
        assert_eq!(e, "timed out");
        let mut r = Deadline {
            inner: &b"data"[..],
            until: Instant::now() + Duration::from_secs(5),
        };
        assert_eq!(read_capped(&mut r, 10), Ok((b"data".to_vec(), false)));
    }

    #[test]
    fn refused_connects_say_so() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let e = connect("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
    }
}
