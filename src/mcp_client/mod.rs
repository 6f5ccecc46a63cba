//! The `[ai.mcp]` servers: MCP (Model Context Protocol) servers the agent
//! starts on this host and whose tools it offers to runners beside its
//! own, as catpaw offers them to its AI diagnosis (a Prometheus, a CMDB,
//! a log store that knows this host by some name).
//!
//! Why the host and never a guest: a server is a process with whatever
//! the operator gave it (a token in its `env`, the network). The host
//! starts and owns each one, contained like a shell command (see
//! `process.rs`), restarts it with backoff when it dies (`keeper.rs`) and
//! stops it with the agent. A runner reaches a server's tools only through
//! `list-tools` / `call-tool`, under the name `mcp__<server>__<tool>`,
//! when its declared capabilities include `mcp` (or `mcp:<server>`), and
//! only the tools the server's `tools_allow` lets through. The sandbox
//! host audits each call and charges it to the session's budgets; here
//! each call is bounded in time and its output is masked and cut like a
//! built-in tool's.
//!
//! A server that hangs, floods its stdout, speaks broken JSON-RPC or exits
//! mid-call costs that call an error: lines are bounded (`transport.rs`),
//! every call has a deadline, and a connection that ends is restarted.
//!
//! - `process.rs`: starting one server, contained; its stderr to the log
//! - `transport.rs`: JSON-RPC lines over its pipes, bounded, cancel-safe
//! - `keeper.rs`: keeping one server running: handshake, tools, restarts
//! - `identity.rs`: what this host is called in each server's world

mod identity;
mod keeper;
mod process;
mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult, RawContent};
use rmcp::service::Peer;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::shell::Identity;

/// `[ai.mcp]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// Start the servers at all.
    pub enabled: bool,
    /// The identity of servers that name none (`${…}` expanded at start).
    pub default_identity: String,
    /// `[[ai.mcp.servers]]`, in file order.
    pub servers: Vec<ServerSpec>,
}

/// One `[[ai.mcp.servers]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its name: letters, digits and `-` or `_` (no `__`), unique.
    pub name: String,
    /// The executable (a full path, or one found in the fixed `PATH`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment beside `PATH`, `LANG` and `HOME`.
    pub env: BTreeMap<String, String>,
    /// How the server knows this host (see `identity.rs`).
    pub identity: String,
    /// The only tools offered (empty: all of them).
    pub tools_allow: Vec<String>,
}

impl ServerSpec {
    /// Whether `tool` passes `tools_allow`.
    pub fn allows(&self, tool: &str) -> bool {
        self.tools_allow.is_empty() || self.tools_allow.iter().any(|t| t == tool)
    }
}

/// What every MCP tool's name starts with; no built-in tool's does.
pub const PREFIX: &str = "mcp__";

/// The name runners call `tool` of `server` by.
pub fn tool_name(server: &str, tool: &str) -> String {
    format!("{PREFIX}{server}__{tool}")
}

/// The server a tool name names, if it is an MCP tool's name. Server names
/// hold no `__` and do not end in `_`, so the first `__` ends the name.
pub fn server_of(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)?
        .split_once("__")
        .map(|(server, _)| server)
}

/// Whether `name` is a server name the config accepts (why not, if not).
pub fn check_server_name(name: &str) -> Result<(), String> {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name.is_empty() || name.len() > 32 || !chars_ok {
        return Err(format!(
            "{name:?} is not a server name (1 to 32 letters, digits, `-` or `_`)"
        ));
    }
    if name.contains("__") || name.starts_with('_') || name.ends_with('_') {
        return Err(format!(
            "{name:?}: a server name may not hold `__` or start or end with `_` (tools are \
             named mcp__<server>__<tool>)"
        ));
    }
    Ok(())
}

/// Whether a whole tool name is one model APIs accept.
fn valid_tool_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One tool a server offers, as runners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTool {
    /// `mcp__<server>__<tool>`.
    pub name: String,
    /// The server's name.
    pub server: String,
    /// The tool's own name.
    pub tool: String,
    /// Its description, the server and this host's identity after it.
    pub description: String,
    /// Its input schema (JSON).
    pub params_schema: String,
}

/// Where a server's connection is.
#[derive(Clone)]
enum Conn {
    /// Its first start is under way.
    Starting,
    /// Up: calls go here. The number tells one connection from the next.
    Up(u64, Peer<RoleClient>),
    /// Down, and why; a restart is coming unless the agent stops.
    Down(String),
}

/// One configured server and what is known of it.
struct Slot {
    spec: ServerSpec,
    /// The identity, expanded.
    identity: String,
    conn: watch::Sender<Conn>,
    /// The tools of its last good listing (kept while it restarts).
    tools: Mutex<Arc<Vec<McpTool>>>,
}

/// The running `[ai.mcp]` servers. Dropping the last handle stops them.
pub struct McpServers {
    slots: Vec<Arc<Slot>>,
    /// Longest a call is waited for (`[ai] tool_timeout`).
    call_timeout: Duration,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for McpServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.slots.iter().map(|s| s.spec.name.as_str()).collect();
        f.debug_struct("McpServers")
            .field("servers", &names)
            .finish()
    }
}

impl Drop for McpServers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl McpServers {
    /// Starts every server of `cfg` (when enabled) as `user` (None: the
    /// agent's user), on the current tokio runtime; each call will be
    /// waited for `call_timeout` at most. None when MCP is off or lists
    /// no server.
    pub fn start(
        cfg: &McpConfig,
        user: Option<&Identity>,
        call_timeout: Duration,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        if !cfg.enabled || cfg.servers.is_empty() {
            return Ok(None);
        }
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("[ai.mcp] servers need the agent's runtime"))?;
        let host = identity::HostFacts::detect();
        let stop = CancellationToken::new();
        let mut slots = Vec::new();
        let mut tasks = Vec::new();
        for spec in &cfg.servers {
            let slot = Arc::new(Slot {
                identity: identity::resolve(&spec.identity, &cfg.default_identity, &host),
                spec: spec.clone(),
                conn: watch::channel(Conn::Starting).0,
                tools: Mutex::new(Arc::new(Vec::new())),
            });
            tasks.push(rt.spawn(keeper::keep(slot.clone(), user.cloned(), stop.clone())));
            slots.push(slot);
        }
        Ok(Some(Arc::new(McpServers {
            slots,
            call_timeout,
            stop,
            tasks: Mutex::new(tasks),
        })))
    }

    /// Stops every server and waits until each one's tree is gone.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The tools offered, server by server in config order, of the
    /// servers `granted` lets through. Waits for each server's first
    /// start to end (at most the handshake's time), so a session that
    /// starts with the agent sees the same tools as the next.
    pub async fn tools(&self, granted: impl Fn(&str) -> bool) -> Vec<McpTool> {
        let mut out = Vec::new();
        for slot in self.slots.iter().filter(|s| granted(&s.spec.name)) {
            let mut rx = slot.conn.subscribe();
            let _ = tokio::time::timeout(
                keeper::INIT_TIMEOUT + Duration::from_secs(1),
                rx.wait_for(|c| !matches!(c, Conn::Starting)),
            )
            .await;
            let tools = slot.tools.lock().unwrap_or_else(|p| p.into_inner()).clone();
            out.extend(tools.iter().cloned());
        }
        out
    }

    /// Checks that `name` may be called: a configured server's tool that
    /// its `tools_allow` lets through. Err says why not.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let (slot, tool) = self.find(name)?;
        if slot.spec.allows(tool) {
            return Ok(());
        }
        Err(format!(
            "tool {name}: {tool:?} is not in the tools_allow of MCP server {:?} \
             ([[ai.mcp.servers]] in the agent's config)",
            slot.spec.name
        ))
    }

    fn find<'n>(&self, name: &'n str) -> Result<(&Arc<Slot>, &'n str), String> {
        let server = server_of(name).ok_or_else(|| format!("{name:?} is not an MCP tool name"))?;
        let slot = self
            .slots
            .iter()
            .find(|s| s.spec.name == server)
            .ok_or_else(|| {
                format!("tool {name}: no MCP server {server:?} is configured ([ai.mcp])")
            })?;
        let tool = &name[PREFIX.len() + server.len() + 2..];
        Ok((slot, tool))
    }

    /// Calls tool `name` (checked by [`McpServers::check`] first) with
    /// `args_json` (a JSON object; empty for none), waiting at most the
    /// call timeout (for the server too, if it is restarting). Ok is the text
    /// the tool gave, masked and cut like a built-in tool's output; Err
    /// says what failed, masked as well.
    pub async fn call(&self, name: &str, args_json: &str) -> Result<String, String> {
        let limit = self.call_timeout;
        self.check(name)?;
        let (slot, tool) = self.find(name)?;
        let arguments = match args_json.trim() {
            "" => None,
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => return Err(format!("tool {name}: arguments must be a JSON object")),
                Err(e) => return Err(format!("tool {name}: arguments are not JSON: {e}")),
            },
        };
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        let mut rx = slot.conn.subscribe();
        let waited = tokio::time::timeout(limit, async {
            let (life, peer) = match rx
                .wait_for(|c| matches!(c, Conn::Up(_, p) if !p.is_transport_closed()))
                .await
            {
                Ok(c) => match &*c {
                    Conn::Up(life, p) => (*life, p.clone()),
                    _ => return Err(Failure::Down),
                },
                Err(_) => return Err(Failure::Down),
            };
            peer.call_tool(params).await.map_err(|e| {
                if matches!(e, rmcp::ServiceError::TransportClosed) || peer.is_transport_closed() {
                    // The connection is gone: the next call waits for the
                    // restart instead of trying it again.
                    slot.conn.send_if_modified(|c| match c {
                        Conn::Up(l, _) if *l == life => {
                            *c = Conn::Down("the connection ended".into());
                            true
                        }
                        _ => false,
                    });
                }
                Failure::Call(e.to_string())
            })
        })
        .await;
        let server = &slot.spec.name;
        let result = match waited {
            Ok(Ok(r)) => r,
            Ok(Err(Failure::Call(e))) => {
                return Err(mask(&format!("tool {name}: MCP server {server:?}: {e}")));
            }
            Ok(Err(Failure::Down)) | Err(_) => {
                let down = match &*slot.conn.borrow() {
                    Conn::Down(why) => Some(why.clone()),
                    Conn::Starting => Some("it is still starting".into()),
                    Conn::Up(..) => None,
                };
                return Err(mask(&match down {
                    Some(why) => format!(
                        "tool {name}: MCP server {server:?} is not running ({why}); it is \
                         restarted with backoff"
                    ),
                    None => format!(
                        "tool {name}: MCP server {server:?} did not answer within {limit:?} \
                         ([ai] tool_timeout)"
                    ),
                }));
            }
        };
        let (text, failed) = result_text(&result);
        let (out, cut) = crate::tools::masked_cut(&text, crate::tools::output::MAX_OUTPUT_BYTES);
        let out = if cut {
            format!(
                "{out}\n[cut at {} bytes]",
                crate::tools::output::MAX_OUTPUT_BYTES
            )
        } else {
            out
        };
        if failed {
            return Err(format!("tool {name} failed: {out}"));
        }
        Ok(out)
    }
}

/// Why a call got no result.
enum Failure {
    /// The server is not up.
    Down,
    /// The request failed (the connection ended, an error answer).
    Call(String),
}

fn mask(text: &str) -> String {
    crate::tools::mask_secrets(text)
}

/// The text of a result and whether the tool said it failed: its text
/// parts, one per line, else its structured content as JSON; other kinds
/// of content are named, not passed on.
fn result_text(r: &CallToolResult) -> (String, bool) {
    let mut parts = Vec::new();
    for c in &r.content {
        match &c.raw {
            RawContent::Text(t) => parts.push(t.text.clone()),
            RawContent::Image(i) => parts.push(format!("[image {} not shown]", i.mime_type)),
            RawContent::Audio(a) => parts.push(format!("[audio {} not shown]", a.mime_type)),
            RawContent::Resource(_) => parts.push("[embedded resource not shown]".into()),
            RawContent::ResourceLink(l) => parts.push(format!("[resource {}]", l.uri)),
        }
    }
    let text = if parts.is_empty() {
        r.structured_content
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
    } else {
        parts.join("\n")
    };
    (text, r.is_error == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip_and_bad_server_names_are_refused() {
        assert_eq!(tool_name("prom", "query"), "mcp__prom__query");
        assert_eq!(server_of("mcp__prom__query_range"), Some("prom"));
        assert_eq!(server_of("mcp__a-b__x__y"), Some("a-b"));
        assert_eq!(server_of("cpu"), None);
        assert_eq!(server_of("mcp__nosep"), None);
        for ok in ["prom", "cmdb-2", "my_logs"] {
            assert!(check_server_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a__b", "_a", "a_", "a.b", "a b", &"x".repeat(33)] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
        for t in crate::tools::catalog() {
            assert!(!t.name.starts_with(PREFIX), "{}", t.name);
        }
        assert!(valid_tool_name("mcp__prom__query_range"));
        assert!(!valid_tool_name("mcp__prom__query.range"));
        assert!(!valid_tool_name(&tool_name("p", &"q".repeat(60))));
    }
}
