//! TLS for the server connection, through rustls: system roots or a CA
//! bundle, optional client certificate, and an explicit, loudly logged
//! opt-out of verification.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ServerConfig;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing PEM certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing the private key in {}", path.display()))?
        .with_context(|| format!("{} holds no PEM private key", path.display()))
}

/// The rustls client configuration for `[server]`.
pub(crate) fn client_config(server: &ServerConfig) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if server.tls_skip_verify {
        tracing::warn!(
            "[server] tls_skip_verify = true: the server's certificate is NOT verified; \
             anyone on the path can impersonate the server. Use ca_file instead."
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &server.ca_file {
            Some(ca) => {
                for cert in load_certs(ca).context("config `[server] ca_file`")? {
                    roots
                        .add(cert)
                        .context("config `[server] ca_file`: bad certificate")?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for e in &native.errors {
                    tracing::warn!(error = %e, "could not load some system root certificates");
                }
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    tracing::warn!(
                        "no system root certificates found; set [server] ca_file for TLS"
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                load_certs(cert).context("config `[server] tls_cert`")?,
                load_key(key).context("config `[server] tls_key`")?,
            )
            .context(
                "config `[server] tls_cert`/`tls_key`: the key does not fit the certificate",
            )?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (still checks handshake signatures).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let server = ServerConfig {
            ca_file: Some(ca),
            ..ServerConfig::default()
        };
        let e = format!("{:#}", client_config(&server).unwrap_err());
        assert!(
            e.contains("ca_file") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_skip_verify_build() {
        assert!(client_config(&ServerConfig::default()).is_ok());
        let skip = ServerConfig {
            tls_skip_verify: true,
            ..ServerConfig::default()
        };
        assert!(client_config(&skip).is_ok());
    }
}
