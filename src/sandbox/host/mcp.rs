//! `list-tools` / `call-tool` for the tools of the `[ai.mcp]` servers
//! ([`crate::mcp_client`]), named `mcp__<server>__<tool>`. Fail closed, in
//! this order: the runner must hold `mcp` (or `mcp:<server>`; `tools` is
//! not enough), the tool must pass its server's `tools_allow`, and the
//! `started` record must be written before the request goes out (if it
//! cannot be, nothing is sent). Every refusal is audited. The call is
//! charged to the session's host-call budget and receipt as a tool call
//! (by the caller), waits at most `[ai] tool_timeout`, and its outcome is
//! recorded when it ends; a session that goes away mid-call leaves the
//! record `cancelled`.

use super::HostContext;
use crate::audit::{kind, outcome};
use crate::sandbox::bindings::host::ToolInfo;

/// The MCP tools the session's grant lets the runner call.
pub(super) async fn list(ctx: &HostContext) -> Vec<ToolInfo> {
    let Some(servers) = &ctx.services.mcp else {
        return Vec::new();
    };
    servers
        .tools(|server| ctx.grant.granted.allows_mcp(server))
        .await
        .into_iter()
        .map(|t| ToolInfo {
            name: t.name,
            description: t.description,
            params_schema: t.params_schema,
        })
        .collect()
}

/// Calls MCP tool `name` (its name starts with the MCP prefix).
pub(super) async fn call(
    ctx: &HostContext,
    name: String,
    args: String,
    max_args: usize,
) -> Result<String, String> {
    let server = crate::mcp_client::server_of(&name).unwrap_or_default();
    let refused = |e: String| {
        tracing::warn!(session_id = %ctx.info.session_id, tool = %name, reason = %e,
            "MCP tool call refused");
        ctx.note(kind::TOOL, &name, "", outcome::REFUSED, &e);
        Err(e)
    };
    if let Err(e) = ctx.grant.mcp(&name, server) {
        return refused(e);
    }
    let Some(servers) = ctx.services.mcp.clone() else {
        return refused(format!(
            "tool {name}: no MCP servers run on this agent ([ai.mcp] is off)"
        ));
    };
    if let Err(e) = servers.check(&name) {
        return refused(e);
    }
    if args.len() > max_args {
        return refused(format!(
            "tool {name}: arguments are {} bytes, more than the {max_args} allowed",
            args.len()
        ));
    }
    let act = ctx.begin(kind::TOOL, &name, &args, false)?;
    let result = servers.call(&name, &args).await;
    if let Some(act) = act {
        match &result {
            Ok(out) => act.finish(outcome::OK, &format!("{} bytes", out.len())),
            Err(e) => act.finish(outcome::ERROR, e),
        }
    }
    result
}
