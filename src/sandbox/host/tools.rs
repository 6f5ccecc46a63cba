//! `list-tools` / `call-tool`: the read-only diagnostic tools of
//! [`crate::tools`], run on a blocking thread (they read /proc and may
//! sample for a moment). Audited in order: the `started` record is written
//! before the tool runs (if it cannot be, the tool does not run), and the
//! outcome when the tool has ended, written by the thread that ran it. A
//! session that stops waiting (`[ai] tool_timeout`, cancel, its deadline)
//! does not stop a blocking read, so the record waits for the read, not
//! for the session; a tool that never started (the runtime shut down
//! first) is recorded `cancelled`.

use super::HostContext;
use crate::audit::{kind, outcome};
use crate::sandbox::bindings::host::ToolInfo;
use crate::sandbox::capabilities::Grant;

/// The tools the session's grant lets the runner call: the catalog's in
/// its order, then the `[ai.mcp]` servers' (see [`super::mcp`]).
pub(crate) async fn list(ctx: &HostContext) -> Vec<ToolInfo> {
    let grant: &Grant = &ctx.grant;
    let mut out: Vec<ToolInfo> = crate::tools::catalog()
        .iter()
        .filter(|t| grant.granted.allows_tool(t.name))
        .map(|t| ToolInfo {
            name: t.name.to_string(),
            description: t.description.to_string(),
            params_schema: t.params_schema.to_string(),
        })
        .collect();
    out.extend(super::mcp::list(ctx).await);
    out
}

/// Longest argument text accepted from a guest.
const MAX_ARGS: usize = 16 * 1024;

pub(crate) async fn call(ctx: &HostContext, name: String, args: String) -> Result<String, String> {
    if crate::mcp_client::server_of(&name).is_some() {
        return super::mcp::call(ctx, name, args, MAX_ARGS).await;
    }
    if let Err(e) = ctx.grant.tool(&name) {
        tracing::warn!(session_id = %ctx.info.session_id, tool = %name, reason = %e,
            "tool call refused");
        ctx.note(kind::TOOL, &name, "", outcome::REFUSED, &e);
        return Err(e);
    }
    if args.len() > MAX_ARGS {
        let e = format!(
            "tool {name}: arguments are {} bytes, more than the {MAX_ARGS} allowed",
            args.len()
        );
        ctx.note(kind::TOOL, &name, "", outcome::REFUSED, &e);
        return Err(e);
    }
    let act = ctx.begin(kind::TOOL, &name, &args, false)?;
    let (n, a, cfg) = (name.clone(), args, ctx.services.tools.clone());
    let task = tokio::task::spawn_blocking(move || {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::tools::call_with(&cfg, &n, &a)
        }));
        let result = ran.unwrap_or_else(|panic| {
            let what = crate::util::panic_text(panic.as_ref());
            tracing::error!(tool = %n, panic = %what, "tool panicked");
            Err(format!("tool {n} failed inside the host"))
        });
        if let Some(act) = act {
            match &result {
                Ok(out) => act.finish(outcome::OK, &format!("{} bytes", out.len())),
                Err(e) => act.finish(outcome::ERROR, e),
            }
        }
        result
    });
    let joined = match ctx.services.tool_timeout {
        None => Some(task.await),
        // The blocking read goes on to its end (tools only read), but the
        // session does not wait for it.
        Some(limit) => tokio::time::timeout(limit, task).await.ok(),
    };
    match joined {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            tracing::error!(session_id = %ctx.info.session_id, tool = %name, error = %e,
                "tool task failed");
            Err(format!("tool {name} failed inside the host"))
        }
        None => {
            let limit = ctx.services.tool_timeout.unwrap_or_default();
            tracing::warn!(session_id = %ctx.info.session_id, tool = %name,
                limit = %crate::util::human_duration(limit),
                "stopped waiting for a tool; its audit outcome follows when it ends");
            Err(format!(
                "tool {name} did not finish within {limit:?} ([ai] tool_timeout)"
            ))
        }
    }
}
