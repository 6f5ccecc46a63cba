//! `list-tools` / `call-tool`: the read-only diagnostic tools of
//! [`crate::tools`], run on a blocking thread (they read /proc and may
//! sample for a moment) and audited one record per call.

use std::time::Instant;

use super::HostContext;
use crate::sandbox::bindings::host::ToolInfo;

pub(crate) fn list() -> Vec<ToolInfo> {
    crate::tools::catalog()
        .iter()
        .map(|t| ToolInfo {
            name: t.name.to_string(),
            description: t.description.to_string(),
            params_schema: t.params_schema.to_string(),
        })
        .collect()
}

/// Longest argument text accepted from a guest.
const MAX_ARGS: usize = 16 * 1024;

pub(crate) async fn call(ctx: &HostContext, name: String, args: String) -> Result<String, String> {
    let started = Instant::now();
    let result = if args.len() > MAX_ARGS {
        Err(format!(
            "tool {name}: arguments are {} bytes, more than the {MAX_ARGS} allowed",
            args.len()
        ))
    } else {
        let (n, a) = (name.clone(), args.clone());
        match tokio::task::spawn_blocking(move || crate::tools::call(&n, &a)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(session_id = %ctx.info.session_id, tool = %name, error = %e,
                    "tool panicked");
                Err(format!("tool {name} failed inside the host"))
            }
        }
    };
    match &result {
        Ok(out) => ctx.audit(
            "tool",
            &name,
            &args,
            started,
            "ok",
            &format!("{} bytes", out.len()),
        ),
        Err(e) => ctx.audit("tool", &name, &args, started, "error", e),
    }
    result
}
