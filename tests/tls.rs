//! The agent binary against a real TLS WebSocket server on loopback:
//! `wss://` with a private CA (`ca_file`), a certificate the agent must
//! refuse, `tls_skip_verify` with its warning, and a client certificate
//! (mTLS) the server checks.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use common::write_config;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A private certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate with its key, PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    fn server_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }
}

/// What the server saw on one TCP connection.
enum Seen {
    /// The TLS handshake failed (the agent refused us, or we refused it).
    HandshakeFailed(String),
    /// TLS and the WebSocket upgrade succeeded.
    Connected {
        client_cert: Option<CertificateDer<'static>>,
        ws: Box<Ws>,
    },
}

struct TlsServer {
    port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TlsServer {
    /// A `wss://` server presenting `leaf`; when `client_ca` is given it
    /// requires a client certificate issued by that CA.
    async fn start(leaf: &Leaf, client_ca: Option<&Ca>) -> TlsServer {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.issuer.der().clone()).expect("client ca");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
        let config = builder
            .with_single_cert(vec![leaf.der.clone()], key)
            .expect("server cert");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = tx.send(Seen::HandshakeFailed(e.to_string()));
                            return;
                        }
                    };
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned());
                    match tokio_tungstenite::accept_async(tls).await {
                        Ok(ws) => {
                            let _ = tx.send(Seen::Connected {
                                client_cert,
                                ws: Box::new(ws),
                            });
                        }
                        Err(e) => {
                            let _ = tx.send(Seen::HandshakeFailed(format!("upgrade: {e}")));
                        }
                    }
                });
            }
        });
        TlsServer { port, seen }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(30), self.seen.recv())
            .await
            .expect("the agent did not dial in time")
            .expect("server stopped")
    }

    /// The first connection that gets through TLS and the upgrade.
    async fn connected(&mut self) -> (Option<CertificateDer<'static>>, Box<Ws>) {
        match self.next().await {
            Seen::Connected { client_cert, ws } => (client_cert, ws),
            Seen::HandshakeFailed(e) => panic!("TLS handshake failed: {e}"),
        }
    }

    /// Waits for `n` refused handshakes; panics if one gets through.
    async fn refused(&mut self, n: usize) -> Vec<String> {
        let mut errors = Vec::new();
        while errors.len() < n {
            match self.next().await {
                Seen::HandshakeFailed(e) => errors.push(e),
                Seen::Connected { .. } => panic!("the connection should have been refused"),
            }
        }
        errors
    }
}

async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no message from the agent in time")
            .expect("connection closed")
            .expect("websocket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("agent sent JSON");
        }
    }
}

async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Reads `register`, acks it, and returns its payload.
async fn register(ws: &mut Ws) -> Value {
    let reg = recv_json(ws).await;
    assert_eq!(reg["type"], "register");
    send_json(
        ws,
        json!({"type": "ack", "id": uuid::Uuid::new_v4().to_string(), "ref_id": reg["id"],
               "payload": {"ok": true}}),
    )
    .await;
    reg["payload"].clone()
}

/// An agent process with its config in a temp dir.
struct AgentProc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl AgentProc {
    /// Starts the agent against `wss://<host>:<port>` with extra `[server]`
    /// lines; files named in `files` are written into the temp dir first
    /// and their paths substituted for `{name}` in `server_extra`.
    fn start(host: &str, port: u16, server_extra: &str, files: &[(&str, &str)]) -> AgentProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut extra = server_extra.to_string();
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, body).expect("write file");
            extra = extra.replace(&format!("{{{name}}}"), &path.display().to_string());
        }
        let conf = write_config(
            dir.path(),
            &format!(
                "[server]\nenabled = true\naddress = \"wss://{host}:{port}\"\n\
                 agent_token = \"t\"\n{extra}\n"
            ),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_catpaw-agent"))
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        AgentProc { child, _dir: dir }
    }

    /// SIGTERM, then the exit status and everything the agent logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_with_deadline(&mut self.child, Duration::from_secs(15))
            .expect("the agent exits within 15 s of SIGTERM");
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        (status, log)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exit status, or None if the child is still running after `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca_registers_and_serves_a_session() {
    let ca = Ca::new("catpaw test CA");
    let leaf = ca.server_leaf(&["localhost", "127.0.0.1"]);
    let mut server = TlsServer::start(&leaf, None).await;
    let agent = AgentProc::start(
        "localhost",
        server.port,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &ca.pem())],
    );
    let (client_cert, mut ws) = server.connected().await;
    assert!(
        client_cert.is_none(),
        "no client certificate was configured"
    );
    let reg = register(&mut ws).await;
    assert!(reg["hostname"].as_str().is_some_and(|s| !s.is_empty()));

    // A session runs over the encrypted socket.
    let start = json!({"type": "session_start", "id": uuid::Uuid::new_v4().to_string(),
        "payload": {"session_id": "tls-1", "session_type": "inspect", "user_name": "op",
                    "params": {"plugin": "mem"}}});
    send_json(&mut ws, start.clone()).await;
    let mut acked = false;
    loop {
        let m = recv_json(&mut ws).await;
        match m["type"].as_str() {
            Some("ack") => {
                assert_eq!(m["ref_id"], start["id"]);
                assert_eq!(m["payload"]["ok"], true, "{m}");
                acked = true;
            }
            Some("session_output") if m["payload"]["done"] == true => {
                assert!(acked, "the ack comes before the output");
                assert_eq!(m["payload"]["session_id"], "tls-1");
                assert!(
                    m["payload"]["report"]
                        .as_str()
                        .is_some_and(|r| r.to_lowercase().contains("memory")),
                    "{m}"
                );
                break;
            }
            Some("session_error") => panic!("session failed: {m}"),
            _ => {}
        }
    }
    let (status, log) = agent.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        !log.contains("NOT verified"),
        "no verification warning when verifying:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_or_for_another_name_is_refused() {
    // Signed by a CA the agent does not trust.
    let trusted = Ca::new("trusted CA");
    let rogue = Ca::new("rogue CA");
    let mut server = TlsServer::start(&rogue.server_leaf(&["localhost"]), None).await;
    let agent = AgentProc::start(
        "localhost",
        server.port,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &trusted.pem())],
    );
    // The agent refuses, backs off and tries again: it never registers.
    let errors = server.refused(2).await;
    assert!(!errors.is_empty());
    let (status, log) = agent.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        log.to_lowercase().contains("certificate"),
        "the log says why the connection failed:\n{log}"
    );

    // Signed by the trusted CA, but for a different host name.
    let mut server = TlsServer::start(&trusted.server_leaf(&["server.other.example"]), None).await;
    let agent = AgentProc::start(
        "localhost",
        server.port,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &trusted.pem())],
    );
    server.refused(1).await;
    let (status, log) = agent.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_skip_verify_connects_to_any_certificate_and_warns() {
    let rogue = Ca::new("unknown CA");
    let mut server = TlsServer::start(&rogue.server_leaf(&["localhost"]), None).await;
    let agent = AgentProc::start("localhost", server.port, "tls_skip_verify = true", &[]);
    let (_, mut ws) = server.connected().await;
    register(&mut ws).await;
    let (status, log) = agent.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        log.contains("tls_skip_verify") && log.contains("NOT verified"),
        "the opt-out is logged loudly:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_presents_the_configured_client_certificate() {
    let ca = Ca::new("catpaw test CA");
    let server_leaf = ca.server_leaf(&["localhost"]);
    let client = ca.leaf(&["agent-1"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut server = TlsServer::start(&server_leaf, Some(&ca)).await;
    let agent = AgentProc::start(
        "localhost",
        server.port,
        "ca_file = \"{ca.pem}\"\ntls_cert = \"{client.pem}\"\ntls_key = \"{client.key}\"",
        &[
            ("ca.pem", &ca.pem()),
            ("client.pem", &client.cert_pem),
            ("client.key", &client.key_pem),
        ],
    );
    let (client_cert, mut ws) = server.connected().await;
    assert_eq!(
        client_cert.as_ref(),
        Some(&client.der),
        "the server sees the configured client certificate"
    );
    register(&mut ws).await;
    let (status, log) = agent.stop();
    assert!(status.success(), "exit {status:?}\n{log}");

    // Without a client certificate the server refuses the agent.
    let mut server = TlsServer::start(&server_leaf, Some(&ca)).await;
    let agent = AgentProc::start(
        "localhost",
        server.port,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &ca.pem())],
    );
    let errors = server.refused(1).await;
    assert!(
        errors[0].to_lowercase().contains("certificate"),
        "{errors:?}"
    );
    let (status, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn a_client_key_that_does_not_fit_the_certificate_is_refused_at_start() {
    let ca = Ca::new("catpaw test CA");
    let a = ca.leaf(&["agent-a"], ExtendedKeyUsagePurpose::ClientAuth);
    let b = ca.leaf(&["agent-b"], ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.pem"), &a.cert_pem).expect("write");
    std::fs::write(dir.path().join("b.key"), &b.key_pem).expect("write");
    let conf = write_config(
        dir.path(),
        &format!(
            "[server]\nenabled = true\naddress = \"wss://localhost:9\"\nagent_token = \"t\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            dir.path().join("a.pem").display(),
            dir.path().join("b.key").display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_catpaw-agent"))
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agent");
    let status = wait_with_deadline(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the agent should refuse to start")
    });
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(
        err.contains("tls_cert") && err.contains("tls_key") && err.contains("does not fit"),
        "the error names the fields:\n{err}"
    );
}
