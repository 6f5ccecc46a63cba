//! The agent binary against a real TLS WebSocket server on loopback:
//! `wss://` with a private CA (`ca_file`), a certificate the agent must
//! refuse, `tls_skip_verify` with its warning, and a client certificate
//! (mTLS) the server checks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::agent::payload;
use common::process::{AgentHome, AgentProcess, server_toml};
use common::server::{ServerConn, TestServer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use tokio_rustls::TlsAcceptor;

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

/// A `wss://` server presenting `leaf`; when `client_ca` is given it
/// requires a client certificate issued by that CA.
async fn tls_server(leaf: &Leaf, client_ca: Option<&Ca>) -> TestServer {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).expect("client ca");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
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
    TestServer::start_tls(TlsAcceptor::from(Arc::new(config))).await
}

/// The agent against `server` (token `t`) with more `[server]` lines; the
/// `files` are written into its home first and their paths put in place
/// of `{name}` in `server_extra`. It logs at info, and the log is kept.
fn agent_for(server: &TestServer, server_extra: &str, files: &[(&str, &str)]) -> AgentProcess {
    let mut home = AgentHome::bare();
    let mut extra = server_extra.to_string();
    for (name, body) in files {
        let path = home.write(name, body);
        extra = extra.replace(&format!("{{{name}}}"), &path.display().to_string());
    }
    home.configure(&server_toml(server, Some("t"), &format!("{extra}\n")));
    let agent = home.agent().env("RUST_LOG", "info").keep_log().spawn();
    agent.owning(home)
}

/// The next connection that gets through TLS and the upgrade (30 s at
/// most); panics if a handshake fails first.
async fn connected(server: &mut TestServer) -> ServerConn {
    server.accept_within(Duration::from_secs(30)).await
}

/// SIGTERM, then the exit status and everything the agent logged.
async fn stop(mut agent: AgentProcess) -> (std::process::ExitStatus, String) {
    let status = agent.stop().await;
    (status, agent.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca_registers_and_serves_a_session() {
    let ca = Ca::new("catpaw test CA");
    let leaf = ca.server_leaf(&["localhost", "127.0.0.1"]);
    let mut server = tls_server(&leaf, None).await;
    let agent = agent_for(&server, "ca_file = \"{ca.pem}\"", &[("ca.pem", &ca.pem())]);
    let mut c = connected(&mut server).await;
    assert!(
        c.client_cert.is_none(),
        "no client certificate was configured"
    );
    let reg = payload(&c.register().await);
    assert!(reg["hostname"].as_str().is_some_and(|s| !s.is_empty()));

    // A session runs over the encrypted socket.
    let ack = c
        .start_session("tls-1", "inspect", json!({"plugin": "mem"}))
        .await;
    assert!(ack.ok, "{ack:?}");
    let msgs = c.session_until_done("tls-1").await;
    assert!(
        msgs.iter().all(|m| m.msg_type != "session_error"),
        "session failed: {msgs:?}"
    );
    let done = payload(msgs.last().expect("done"));
    assert!(
        done["report"]
            .as_str()
            .is_some_and(|r| r.to_lowercase().contains("memory")),
        "{done}"
    );
    let (status, log) = stop(agent).await;
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
    let mut server = tls_server(&rogue.server_leaf(&["localhost"]), None).await;
    let agent = agent_for(
        &server,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &trusted.pem())],
    );
    // The agent refuses, backs off and tries again: it never registers.
    let errors = server.refused(2).await;
    assert!(!errors.is_empty());
    let (status, log) = stop(agent).await;
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        log.to_lowercase().contains("certificate"),
        "the log says why the connection failed:\n{log}"
    );

    // Signed by the trusted CA, but for a different host name.
    let mut server = tls_server(&trusted.server_leaf(&["server.other.example"]), None).await;
    let agent = agent_for(
        &server,
        "ca_file = \"{ca.pem}\"",
        &[("ca.pem", &trusted.pem())],
    );
    server.refused(1).await;
    let (status, log) = stop(agent).await;
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_skip_verify_connects_to_any_certificate_and_warns() {
    let rogue = Ca::new("unknown CA");
    let mut server = tls_server(&rogue.server_leaf(&["localhost"]), None).await;
    let agent = agent_for(&server, "tls_skip_verify = true", &[]);
    // The connection stays up until the agent stops.
    let mut c = connected(&mut server).await;
    c.register().await;
    let (status, log) = stop(agent).await;
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
    let mut server = tls_server(&server_leaf, Some(&ca)).await;
    let agent = agent_for(
        &server,
        "ca_file = \"{ca.pem}\"\ntls_cert = \"{client.pem}\"\ntls_key = \"{client.key}\"",
        &[
            ("ca.pem", &ca.pem()),
            ("client.pem", &client.cert_pem),
            ("client.key", &client.key_pem),
        ],
    );
    let mut c = connected(&mut server).await;
    assert_eq!(
        c.client_cert.as_ref(),
        Some(&client.der),
        "the server sees the configured client certificate"
    );
    c.register().await;
    let (status, log) = stop(agent).await;
    assert!(status.success(), "exit {status:?}\n{log}");

    // Without a client certificate the server refuses the agent.
    let mut server = tls_server(&server_leaf, Some(&ca)).await;
    let agent = agent_for(&server, "ca_file = \"{ca.pem}\"", &[("ca.pem", &ca.pem())]);
    let errors = server.refused(1).await;
    assert!(
        errors[0].to_lowercase().contains("certificate"),
        "{errors:?}"
    );
    let (status, _) = stop(agent).await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_that_does_not_fit_the_certificate_is_refused_at_start() {
    let ca = Ca::new("catpaw test CA");
    let a = ca.leaf(&["agent-a"], ExtendedKeyUsagePurpose::ClientAuth);
    let b = ca.leaf(&["agent-b"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut home = AgentHome::bare();
    let cert = home.write("a.pem", &a.cert_pem);
    let key = home.write("b.key", &b.key_pem);
    home.configure(&format!(
        "[server]\nenabled = true\naddress = \"wss://localhost:9\"\nagent_token = \"t\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let mut agent = home.agent().keep_log().spawn();
    let status = agent
        .wait_within(Duration::from_secs(20))
        .await
        .expect("the agent should refuse to start");
    assert!(!status.success());
    let err = agent.log();
    assert!(
        err.contains("tls_cert") && err.contains("tls_key") && err.contains("does not fit"),
        "the error names the fields:\n{err}"
    );
}
