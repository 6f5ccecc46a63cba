//! The streamable HTTP transport of `catpaw-agent mcp --http ADDR`.
//!
//! HTTP reaches further than stdio, so three gates stand before the MCP
//! service, each failing closed:
//!
//! - the address: loopback unless the operator says otherwise with
//!   `--allow-non-loopback` (then a warning: the token crosses the network
//!   in clear unless TLS is put in front);
//! - the bearer token, required, read from a file or the environment,
//!   never the command line (where `ps` shows it): a request without it or
//!   with another gets 401, compared in constant time;
//! - DNS rebinding (what the MCP spec asks a local server to stop): the
//!   `Host` must name the bound address (or `localhost` on its port, for a
//!   loopback address) and an `Origin`, when a browser sends one, must be
//!   that same origin; anything else gets 403 from rmcp's own checks,
//!   which are configured here.
//!
//! Only the path [`PATH`] is served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::server::{McpServer, Served};

/// The one path the MCP endpoint answers on.
pub const PATH: &str = "/mcp";

/// The environment variable a token may come from (after `--token-file`).
pub const TOKEN_ENV: &str = "CATPAW_MCP_TOKEN";

/// Shortest token accepted.
pub(crate) const MIN_TOKEN: usize = 16;

/// How `--http` serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every request must carry.
    pub token: String,
    /// Whether a non-loopback `addr` is allowed.
    pub allow_non_loopback: bool,
}

/// The bearer token: the first line of `file` when given, else
/// [`TOKEN_ENV`]. Err names where a token is looked for and how to make one.
pub fn token_from(file: Option<&Path>) -> anyhow::Result<String> {
    let (token, from) = match file {
        Some(f) => (
            std::fs::read_to_string(f)
                .with_context(|| format!("reading --token-file {}", f.display()))?,
            format!("--token-file {}", f.display()),
        ),
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) => (t, TOKEN_ENV.to_string()),
            Err(_) => anyhow::bail!(
                "--http needs a bearer token: give --token-file FILE or set {TOKEN_ENV} \
                 (e.g. `openssl rand -hex 32 > token; chmod 600 token`)"
            ),
        },
    };
    let token = token.lines().next().unwrap_or_default().trim().to_string();
    if token.len() < MIN_TOKEN {
        anyhow::bail!(
            "the token in {from} is {} characters; at least {MIN_TOKEN} are needed \
             (`openssl rand -hex 32` makes one)",
            token.len()
        );
    }
    Ok(token)
}

/// Serves MCP over HTTP until `shutdown`; on shutdown stops accepting,
/// ends the MCP sessions and waits for the open connections.
pub async fn serve_http(
    opts: HttpOptions,
    served: Arc<Served>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !opts.addr.ip().is_loopback() {
        if !opts.allow_non_loopback {
            anyhow::bail!(
                "--http {}: not a loopback address; give --allow-non-loopback to serve MCP on \
                 the network (and put TLS in front: the token is sent in clear)",
                opts.addr
            );
        }
        tracing::warn!(addr = %opts.addr,
            "serving MCP on a non-loopback address: anyone who can reach it and holds the \
             token can run the tools; the token crosses the network in clear unless TLS is \
             in front");
    }
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .with_context(|| format!("--http {}: cannot listen", opts.addr))?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(local))
        .with_allowed_origins(allowed_origins(local))
        .with_cancellation_token(shutdown.child_token());
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::new(served.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Gate {
        mcp,
        token: Sha256::digest(opts.token.as_bytes()).into(),
    };
    // One line a supervisor (or a test) can wait for, whatever the log level.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("catpaw-agent mcp: serving MCP on http://{local}{PATH}\n").as_bytes(),
    );
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: the next accept may work.
                    tracing::warn!(error = %e, "accepting an MCP connection failed");
                    continue;
                }
            },
        };
        let gate = gate.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(gate.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "MCP connection ended with an error");
                },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
    Ok(())
}

/// The checks before the MCP service, and the service.
#[derive(Clone)]
struct Gate {
    mcp: StreamableHttpService<McpServer, LocalSessionManager>,
    /// SHA-256 of the token: compared digest to digest, so neither the
    /// time taken nor the lengths say anything about it.
    token: [u8; 32],
}

type Body = BoxBody<Bytes, Infallible>;

impl Gate {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != PATH {
            return plain(StatusCode::NOT_FOUND, "Not Found: the MCP endpoint is /mcp");
        }
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !bearer_matches(auth, &self.token) {
            tracing::warn!(uri = %req.uri(), "MCP request without the right bearer token refused");
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: send `Authorization: Bearer <token>`",
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        let mut mcp = self.mcp.clone();
        match mcp.call(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    r
}

/// Whether `header` is `Bearer <token>` for the token whose SHA-256 is
/// `want` (the scheme is case-insensitive, as HTTP says).
fn bearer_matches(header: Option<&str>, want: &[u8; 32]) -> bool {
    let Some((scheme, token)) = header.and_then(|h| h.split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The `Host` values accepted: the bound address, and `localhost` on its
/// port when it is a loopback address.
fn allowed_hosts(local: SocketAddr) -> Vec<String> {
    let mut out = vec![local.to_string()];
    if local.ip().is_loopback() {
        out.push(format!("localhost:{}", local.port()));
    }
    out
}

/// The `Origin` values accepted: the server's own origins (a page served
/// from anywhere else is refused; clients that send no `Origin` pass).
fn allowed_origins(local: SocketAddr) -> Vec<String> {
    allowed_hosts(local)
        .into_iter()
        .map(|h| format!("http://{h}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let want: [u8; 32] = Sha256::digest(b"0123456789abcdef").into();
        assert!(bearer_matches(Some("Bearer 0123456789abcdef"), &want));
        assert!(bearer_matches(Some("bearer 0123456789abcdef"), &want));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer 0123456789abcdeF"),
            Some("Bearer 0123456789abcde"),
            Some("Basic 0123456789abcdef"),
            Some("0123456789abcdef"),
        ] {
            assert!(!bearer_matches(bad, &want), "{bad:?}");
        }
    }

    #[test]
    fn hosts_and_origins_are_the_bound_address_and_localhost_on_loopback() {
        let v4: SocketAddr = "127.0.0.1:8765".parse().expect("addr");
        assert_eq!(allowed_hosts(v4), ["127.0.0.1:8765", "localhost:8765"]);
        assert_eq!(
            allowed_origins(v4),
            ["http://127.0.0.1:8765", "http://localhost:8765"]
        );
        let v6: SocketAddr = "[::1]:9".parse().expect("addr");
        assert_eq!(allowed_hosts(v6), ["[::1]:9", "localhost:9"]);
        let lan: SocketAddr = "192.0.2.7:8765".parse().expect("addr");
        assert_eq!(allowed_hosts(lan), ["192.0.2.7:8765"]);
    }

    #[test]
    fn a_short_or_missing_token_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").expect("write");
        let e = token_from(Some(&short)).unwrap_err().to_string();
        assert!(e.contains("is 3 characters; at least 16"), "{e}");
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\nignored\n").expect("write");
        assert_eq!(
            token_from(Some(&good)).expect("token"),
            "0123456789abcdef0123"
        );
        let e = format!(
            "{:#}",
            token_from(Some(&dir.path().join("none"))).unwrap_err()
        );
        assert!(e.starts_with("reading --token-file"), "{e}");
    }
}
