//! The agent's sandboxed tools offered to any MCP client: `catpaw-agent
//! mcp` is a Model Context Protocol server, so an AI client on the host
//! (or, over HTTP with a token, near it) can read what a session reads
//! without a catpaw server and without a shell.
//!
//! What a client gets is what a session gets, through the same funnels:
//! the read-only tools of [`crate::tools`] (masked, bounded, under the
//! operator's `[tools]` allow-lists and the policy named `mcp`), and
//! `inspect` / `diagnose`, which run one sandboxed session with the
//! configured runners and their budgets and return its report. Every call
//! is audited in order: a `kind=mcp` `started` record naming the client
//! (its `initialize` clientInfo) before the call runs, the outcome after;
//! a call whose record cannot be written does not run. There is no shell:
//! sessions run with `allow_shell = false` and no tool can change the host.
//!
//! - `server.rs`: the MCP handler: what it lists, how a call is dispatched
//! - `server_calls.rs`: one call, audited: a catalog tool on a blocking
//!   thread, or a session run to its report
//! - `serve_http.rs`: the streamable HTTP transport: bearer token, `Host`
//!   and `Origin` checks, the listener
//!
//! stdout is the protocol under stdio; logs go to stderr.

mod serve_http;
mod server;
mod server_calls;

#[cfg(test)]
pub(crate) use serve_http::MIN_TOKEN;
pub use serve_http::{HttpOptions, serve_http, token_from};
pub use server::{McpServer, Served};

/// Serves one MCP client over stdin/stdout until it closes stdin (or
/// `shutdown` fires).
pub async fn serve_stdio(
    served: std::sync::Arc<Served>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let server = McpServer::new(served)
        .serve_with_ct(rmcp::transport::stdio(), shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("MCP handshake on stdin/stdout failed: {e}"))?;
    let reason = server
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP server task failed: {e}"))?;
    tracing::info!(?reason, "MCP client gone; stopping");
    Ok(())
}
