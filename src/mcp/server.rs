//! The MCP handler: the tools a client is offered and how a call reaches
//! them. One [`McpServer`] serves one client connection (stdio, or one
//! streamable HTTP session); what the connections share is [`Served`].
//!
//! The list is the catalog of [`crate::tools`] narrowed by the policy
//! named `mcp`, each with its JSON Schema as input schema, then `inspect`
//! and `diagnose` when a runner serves them. A tool not on the list is
//! refused (and audited as refused) as if it did not exist: the list is
//! the allow-list, not a hint.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerInfo, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::audit::{AuditLog, Who};
use crate::sandbox::Capabilities;
use crate::session::Runners;
use crate::tools::ToolConfig;

/// What every connection of one `catpaw-agent mcp` shares.
pub struct Served {
    /// The runners `inspect` and `diagnose` run, with their budgets.
    pub runners: Runners,
    /// The operator's `[tools]` allow-lists (files, endpoints).
    pub tools: Arc<ToolConfig>,
    /// What the policy named `mcp` leaves of the catalog.
    pub allowed: Capabilities,
    /// Longest a client waits for one catalog tool (the `timeout` budget,
    /// as the `mcp` policy leaves it).
    pub tool_timeout: Duration,
    /// The trail every call is recorded in before it runs.
    pub audit: AuditLog,
    /// Sessions that may run at once (`[sandbox] max_concurrent_sessions`),
    /// the size the sandbox's instance pool was built for.
    pub sessions: Arc<tokio::sync::Semaphore>,
}

/// The session-running tools, beside the catalog.
pub(super) const INSPECT: &str = "inspect";
pub(super) const DIAGNOSE: &str = "diagnose";

/// One client connection.
#[derive(Clone)]
pub struct McpServer {
    pub(super) served: Arc<Served>,
    /// This connection's id: the `session_id` of its audit records.
    pub(super) connection: String,
}

impl McpServer {
    /// A handler for one new connection.
    pub fn new(served: Arc<Served>) -> McpServer {
        McpServer {
            served,
            connection: format!("mcp-{}", uuid::Uuid::new_v4()),
        }
    }

    /// The tools this server offers, in catalog order, sessions last.
    pub(super) fn tools(&self) -> Vec<Tool> {
        let read_only = ToolAnnotations::new().read_only(true).destructive(false);
        let mut out: Vec<Tool> = crate::tools::catalog()
            .iter()
            .filter(|t| self.served.allowed.allows_tool(t.name))
            .map(|t| {
                Tool::new(t.name, t.description, schema(t.params_schema))
                    .with_annotations(read_only.clone())
            })
            .collect();
        if self.served.runners.diagnose.is_some() {
            let plugins = &self.served.runners.plugins;
            out.push(
                Tool::new(
                    INSPECT,
                    "run one sandboxed inspect session of a plugin with the agent's runner and \
                     return its report",
                    session_schema(plugins, true),
                )
                .with_annotations(read_only.clone()),
            );
            out.push(
                Tool::new(
                    DIAGNOSE,
                    "run one sandboxed diagnose session (what is wrong, given an alert's \
                     description) with the agent's runner and return its report",
                    session_schema(plugins, false),
                )
                .with_annotations(read_only),
            );
        }
        out
    }

    /// Who the calls of this connection are done for: the client, as its
    /// `initialize` named itself.
    pub(super) fn who(&self, context: &RequestContext<RoleServer>) -> Who {
        let client = context.peer.peer_info().map_or_else(
            || "unnamed MCP client".to_string(),
            |i| {
                let c = &i.client_info;
                if c.version.is_empty() {
                    c.name.clone()
                } else {
                    format!("{} {}", c.name, c.version)
                }
            },
        );
        Who {
            session_id: self.connection.clone(),
            session_type: "mcp".into(),
            user: client,
            key_id: None,
        }
    }
}

/// A catalog schema as the JSON object MCP wants. The catalog's schemas
/// are constants checked by the tools' own tests; one that failed to parse
/// would be offered as "no arguments" rather than break the whole list.
fn schema(text: &str) -> Arc<JsonObject> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The input schema of `inspect` (`plugin` required) or `diagnose`.
fn session_schema(plugins: &[String], inspect: bool) -> Arc<JsonObject> {
    let mut plugin = serde_json::json!({
        "type": "string",
        "description": "what to look at (the runner's plugins)",
    });
    if !plugins.is_empty() {
        plugin["enum"] = plugins.iter().cloned().map(Value::from).collect();
    }
    let mut props = serde_json::json!({
        "plugin": plugin,
        "target": {"type": "string", "description": "the target the plugin looks at (default localhost)"},
    });
    let mut schema = serde_json::json!({"type": "object", "additionalProperties": false});
    if inspect {
        schema["required"] = serde_json::json!(["plugin"]);
    } else {
        props["plugin"]["default"] = "system".into();
        props["descriptions"] = serde_json::json!({
            "type": "string",
            "description": "the alert or symptom to diagnose, e.g. \"memory usage above 80%\"",
        });
    }
    schema["properties"] = props;
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "catpaw-agent",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Read-only diagnostic tools of this host (secrets masked, output bounded), \
                 and inspect/diagnose sessions run in the agent's WebAssembly sandbox. \
                 There is no shell; every call is audited with this client's name.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.call(request, context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_catalog_tool_takes_the_name_of_a_session_tool() {
        for t in crate::tools::catalog() {
            assert!(t.name != INSPECT && t.name != DIAGNOSE, "{}", t.name);
        }
    }

    #[test]
    fn session_schemas_require_a_plugin_for_inspect_only() {
        let plugins = vec!["cpu".to_string(), "mem".to_string()];
        let inspect = Value::Object((*session_schema(&plugins, true)).clone());
        assert_eq!(inspect["required"], serde_json::json!(["plugin"]));
        assert_eq!(
            inspect["properties"]["plugin"]["enum"],
            serde_json::json!(["cpu", "mem"])
        );
        assert!(inspect["properties"].get("descriptions").is_none());
        let diagnose = Value::Object((*session_schema(&[], false)).clone());
        assert!(diagnose.get("required").is_none());
        assert!(diagnose["properties"]["plugin"].get("enum").is_none());
        assert_eq!(diagnose["properties"]["plugin"]["default"], "system");
        assert_eq!(diagnose["additionalProperties"], false);
    }
}
