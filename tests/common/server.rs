//! A real WebSocket server on loopback that plays catpaw-server in tests,
//! over plain TCP or TLS (with or without a client certificate).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use catpaw_agent::proto::{self, AckPayload, Envelope};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The server's side of a socket: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The WebSocket of one agent connection.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// The test server: hands every accepted connection to the test.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// Accepted connections; with TLS, also the handshakes that failed.
    conns: mpsc::Receiver<Result<ServerConn, String>>,
    /// Answer upgrades with HTTP 401 while true.
    pub reject_401: Arc<AtomicBool>,
    /// Upgrade attempts seen (including rejected ones), with their time.
    attempts: mpsc::Receiver<std::time::Instant>,
    tls: bool,
}

/// One accepted agent connection.
pub struct ServerConn {
    pub headers: HeaderMap,
    /// The certificate the agent presented (TLS with client auth only).
    pub client_cert: Option<CertificateDer<'static>>,
    pub ws: Ws,
}

impl TestServer {
    /// A plain `ws://` server.
    pub async fn start() -> TestServer {
        Self::listen(None).await
    }

    /// A `wss://` server; `acceptor` holds its certificate and whether it
    /// asks for a client certificate. A handshake that fails reaches the
    /// test: [`accept`](Self::accept) panics on it, [`refused`](Self::refused)
    /// counts it.
    pub async fn start_tls(acceptor: TlsAcceptor) -> TestServer {
        Self::listen(Some(acceptor)).await
    }

    async fn listen(tls: Option<TlsAcceptor>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel(16);
        let (atx, arx) = mpsc::channel(64);
        let reject = Arc::new(AtomicBool::new(false));
        let reject2 = reject.clone();
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // As a Go server's sockets are.
                let _ = tcp.set_nodelay(true);
                let tx = tx.clone();
                let atx = atx.clone();
                let reject = reject2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let (io, client_cert): (Box<dyn Io>, _) = match tls {
                        None => (Box::new(tcp), None),
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(s) => {
                                let cert = s
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first().cloned());
                                (Box::new(s), cert)
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e.to_string())).await;
                                return;
                            }
                        },
                    };
                    let mut headers = HeaderMap::new();
                    // The callback type is tungstenite's; its error is big by design.
                    #[allow(clippy::result_large_err)]
                    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                        let _ = atx.try_send(std::time::Instant::now());
                        headers = req.headers().clone();
                        if reject.load(Ordering::SeqCst) {
                            let mut e = ErrorResponse::new(Some("bad token".into()));
                            *e.status_mut() = StatusCode::UNAUTHORIZED;
                            return Err(e);
                        }
                        Ok(resp)
                    };
                    match tokio_tungstenite::accept_hdr_async(io, cb).await {
                        Ok(ws) => {
                            let conn = ServerConn {
                                headers,
                                client_cert,
                                ws,
                            };
                            let _ = tx.send(Ok(conn)).await;
                        }
                        // A plain server's refused upgrades are counted by
                        // `attempts`; over TLS the test hears of each.
                        Err(e) if is_tls => {
                            let _ = tx.send(Err(format!("upgrade: {e}"))).await;
                        }
                        Err(_) => {}
                    }
                });
            }
        });
        TestServer {
            addr,
            conns: rx,
            reject_401: reject,
            attempts: arx,
            tls: is_tls,
        }
    }

    /// The address for the agent's `[server] address`: `http://` or, with
    /// TLS, `wss://localhost` (the name the test certificates carry).
    pub fn url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The next agent connection (fails after `limit`, or on a failed TLS
    /// handshake).
    pub async fn accept_within(&mut self, limit: Duration) -> ServerConn {
        tokio::time::timeout(limit, self.conns.recv())
            .await
            .expect("agent did not connect in time")
            .expect("server stopped")
            .unwrap_or_else(|e| panic!("TLS handshake failed: {e}"))
    }

    /// A new connection within `limit`, if any.
    pub async fn try_accept(&mut self, limit: Duration) -> Option<ServerConn> {
        tokio::time::timeout(limit, self.conns.recv())
            .await
            .ok()
            .flatten()
            .map(|c| c.unwrap_or_else(|e| panic!("TLS handshake failed: {e}")))
    }

    /// Waits (30 s each at most) for `n` failed TLS handshakes and returns
    /// their errors; panics if a connection gets through.
    pub async fn refused(&mut self, n: usize) -> Vec<String> {
        let mut errors = Vec::new();
        while errors.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(30), self.conns.recv())
                .await
                .expect("the agent did not dial in time")
                .expect("server stopped");
            match next {
                Err(e) => errors.push(e),
                Ok(_) => panic!("the connection should have been refused"),
            }
        }
        errors
    }

    /// The next agent connection. The limit only catches an agent that
    /// never connects: a fresh agent compiles its runners first, which on a
    /// busy 2-core machine (at trace level, in a debug build) can take
    /// tens of seconds.
    pub async fn accept(&mut self) -> ServerConn {
        self.accept_within(Duration::from_secs(90)).await
    }

    /// Accepts a connection, reads `register` and acks it.
    pub async fn accept_registered(&mut self) -> (ServerConn, Envelope) {
        let mut c = self.accept().await;
        let reg = c.register().await;
        (c, reg)
    }

    /// The time of the next upgrade attempt.
    pub async fn next_attempt(&mut self, limit: Duration) -> Option<std::time::Instant> {
        tokio::time::timeout(limit, self.attempts.recv())
            .await
            .ok()
            .flatten()
    }
}

impl ServerConn {
    /// Reads `register`, acks it, and returns it.
    pub async fn register(&mut self) -> Envelope {
        let reg = self.recv().await;
        assert_eq!(reg.msg_type, "register");
        self.ack(&reg.id).await;
        reg
    }

    /// Next text frame as an envelope (skips pings); panics after 30 s.
    pub async fn recv(&mut self) -> Envelope {
        self.recv_within(Duration::from_secs(30))
            .await
            .expect("no message from the agent in time")
    }

    /// Next envelope, or None if the agent closed / nothing came in time.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Envelope> {
        let text = self.recv_text_within(limit).await?;
        Some(Envelope::parse(&text).expect("agent sent a valid envelope"))
    }

    /// Next text frame as sent (skips pings), or None if the agent closed /
    /// nothing came in time.
    pub async fn recv_text_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => return Some(t.as_str().to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next envelope of type `t`, skipping heartbeats and alerts.
    pub async fn recv_type(&mut self, t: &str) -> Envelope {
        loop {
            let e = self.recv().await;
            if e.msg_type == t {
                return e;
            }
            assert!(
                [
                    "heartbeat",
                    "alert_events",
                    "session_output",
                    "session_error",
                    "ack"
                ]
                .contains(&e.msg_type.as_str()),
                "unexpected message {e:?}"
            );
        }
    }

    /// Waits (10 s at most) for the agent's close frame and returns its
    /// close code, skipping whatever the agent still sends before it.
    pub async fn expect_close(&mut self) -> CloseCode {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f.expect("close frame with a code").code,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, env: &Envelope) {
        self.ws
            .send(Message::text(env.to_json()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send raw");
    }

    pub async fn ack(&mut self, ref_id: &str) {
        let a = AckPayload {
            ok: true,
            error: None,
            warning: None,
        };
        self.send(&Envelope::reply(proto::MSG_ACK, ref_id, a)).await;
    }

    /// Sends `session_start` and returns the agent's ack payload.
    pub async fn start_session(&mut self, id: &str, kind: &str, params: Value) -> AckPayload {
        let start = Envelope::new(
            proto::MSG_SESSION_START,
            serde_json::json!({"session_id": id, "session_type": kind, "user_name": "op", "params": params}),
        );
        self.send(&start).await;
        self.ack_for(&start.id).await
    }

    /// Waits for the ack answering message `id`.
    pub async fn ack_for(&mut self, id: &str) -> AckPayload {
        loop {
            let e = self.recv().await;
            if e.msg_type == "ack" && e.ref_id.as_deref() == Some(id) {
                return e.decode().expect("ack payload");
            }
        }
    }

    /// Collects one session's messages until its `done`.
    pub async fn session_until_done(&mut self, id: &str) -> Vec<Envelope> {
        let mut got = Vec::new();
        loop {
            let e = self.recv().await;
            let p = e.payload.clone().unwrap_or_default();
            if p["session_id"] != id {
                continue;
            }
            let done = e.msg_type == "session_output" && p["done"] == true;
            got.push(e);
            if done {
                return got;
            }
        }
    }
}
