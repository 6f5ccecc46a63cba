//! Keeping one MCP server running: start it, shake hands and list its
//! tools (each bounded in time), publish the connection, wait for it to
//! end, kill what is left of its tree, and start it again after a
//! backoff, until the agent stops. A server that never comes up costs
//! log lines, never the agent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientInfo, Implementation};
use tokio_util::sync::CancellationToken;

use super::{Conn, McpTool, Slot, process};
use crate::shell::Identity;

/// Longest the `initialize` handshake may take.
pub(super) const INIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest `tools/list` may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a restart.
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest wait before a restart.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A server that stayed up this long starts again from the first delay.
const STEADY: Duration = Duration::from_secs(60);

/// The wait before the restart that follows `failures` short-lived runs
/// in a row (0: the first restart): doubling from [`FIRST_DELAY`] up to
/// [`MAX_DELAY`].
pub(super) fn delay(failures: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(MAX_DELAY)
}

/// Runs `slot`'s server until `stop`.
pub(super) async fn keep(slot: Arc<Slot>, user: Option<Identity>, stop: CancellationToken) {
    let mut failures = 0u32;
    let mut lives = 0u64;
    loop {
        lives += 1;
        let began = Instant::now();
        let why = run_once(&slot, user.as_ref(), &stop, lives).await;
        if stop.is_cancelled() {
            break;
        }
        if began.elapsed() >= STEADY {
            failures = 0;
        }
        let wait = delay(failures);
        failures = failures.saturating_add(1);
        tracing::warn!(target: "mcp", server = %slot.spec.name, reason = %why,
            restart_in = %crate::util::human_duration(wait), "MCP server is down");
        slot.conn.send_replace(Conn::Down(why));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    slot.conn
        .send_replace(Conn::Down("the agent is shutting down".into()));
}

/// One life of the server: returns why it ended. Its process tree is
/// gone when this returns (or is dropped, at shutdown).
async fn run_once(
    slot: &Slot,
    user: Option<&Identity>,
    stop: &CancellationToken,
    life: u64,
) -> String {
    let mut started = match process::start(&slot.spec, user) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let why = tokio::select! {
        why = serve(slot, started.stdout, started.stdin, life) => why,
        _ = stop.cancelled() => "the agent is shutting down".into(),
    };
    started.killer.kill_now();
    // The supervisor exits once the tree is gone.
    match tokio::time::timeout(Duration::from_secs(5), started.child.wait()).await {
        Ok(Ok(status)) => format!("{why} (process {status})"),
        _ => why,
    }
}

/// Speaks MCP over the pipes until the connection ends; returns why.
async fn serve(
    slot: &Slot,
    stdout: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    stdin: impl tokio::io::AsyncWrite + Send + Unpin + 'static,
    life: u64,
) -> String {
    let info = ClientInfo::new(
        ClientCapabilities::default(),
        Implementation::new("catpaw-agent", env!("CARGO_PKG_VERSION")),
    );
    let lines = super::transport::Lines::new(stdout, stdin, super::transport::MAX_LINE);
    let client = match tokio::time::timeout(INIT_TIMEOUT, info.serve(lines)).await {
        Err(_) => return format!("no answer to initialize within {INIT_TIMEOUT:?}"),
        Ok(Err(e)) => return format!("initialize failed: {e}"),
        Ok(Ok(c)) => c,
    };
    let listed = match tokio::time::timeout(LIST_TIMEOUT, client.peer().list_all_tools()).await {
        Err(_) => return format!("no answer to tools/list within {LIST_TIMEOUT:?}"),
        Ok(Err(e)) => return format!("tools/list failed: {e}"),
        Ok(Ok(t)) => t,
    };
    let spec = &slot.spec;
    let tools = offered(&spec.name, &slot.identity, &spec.tools_allow, &listed);
    tracing::info!(target: "mcp", server = %slot.spec.name, offered = tools.len(),
        listed = listed.len(), identity = %slot.identity, "MCP server is up");
    *slot.tools.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(tools);
    slot.conn
        .send_replace(Conn::Up(life, client.peer().clone()));
    match client.waiting().await {
        Ok(reason) => format!("the connection ended ({reason:?})"),
        Err(e) => format!("the connection task failed: {e}"),
    }
}

/// The tools of `listed` that `allow` lets through (all when it is
/// empty), as the runners are offered them.
pub(super) fn offered(
    server: &str,
    identity: &str,
    allow: &[String],
    listed: &[rmcp::model::Tool],
) -> Vec<McpTool> {
    let mut out = Vec::new();
    for t in listed {
        let tool = t.name.as_ref();
        if !allow.is_empty() && !allow.iter().any(|a| a == tool) {
            continue;
        }
        let name = super::tool_name(server, tool);
        if !super::valid_tool_name(&name) {
            tracing::warn!(target: "mcp", server, tool,
                "MCP tool not offered: its name must be letters, digits, `_` or `-` and \
                 the whole name at most 64 characters (what model APIs accept)");
            continue;
        }
        let what = t
            .description
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut description = crate::util::truncate_utf8(&what, 1024).to_string();
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(&format!("(MCP server {server:?}"));
        if !identity.is_empty() {
            description.push_str(&format!("; this host: {identity}"));
        }
        description.push(')');
        let params_schema = serde_json::to_string(&*t.input_schema)
            .unwrap_or_else(|_| r#"{"type":"object"}"#.to_string());
        out.push(McpTool {
            name,
            server: server.to_string(),
            tool: tool.to_string(),
            description,
            params_schema,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_200ms_to_30s() {
        let cases = [
            (0, 200),
            (1, 400),
            (2, 800),
            (5, 6400),
            (8, 30_000),
            (40, 30_000),
        ];
        for (failures, ms) in cases {
            assert_eq!(delay(failures), Duration::from_millis(ms), "{failures}");
        }
    }
}
