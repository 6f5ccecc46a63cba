//! `request-shell`: the only way a guest can run a command, and only when
//! its session's `allow_shell` is true. Fail closed: the default answer is
//! `denied`. Granted or not, every request is audited.

use std::time::{Duration, Instant};

use super::HostContext;
use crate::sandbox::bindings::host::{ShellError, ShellOutput};
use crate::shell;

/// Longest command text accepted from a guest.
const MAX_COMMAND: usize = 8 * 1024;

pub(crate) async fn request(
    ctx: &HostContext,
    command: String,
    timeout_ms: u32,
) -> Result<ShellOutput, ShellError> {
    let started = Instant::now();
    let shown = crate::util::truncate_utf8(&command, 1024);
    let args = format!("{{\"timeout_ms\":{timeout_ms}}}");
    if !ctx.info.allow_shell {
        let reason = "shell access is disabled for this session (the operator must set \
                      [sandbox] allow_remote_shell = true and the session must ask for it)";
        tracing::warn!(session_id = %ctx.info.session_id, command = %crate::tools::mask_secrets(shown),
            "shell request denied");
        ctx.audit("shell", shown, &args, started, "denied", reason);
        return Err(ShellError::Denied(reason.to_string()));
    }
    if command.len() > MAX_COMMAND || command.trim().is_empty() || command.contains('\0') {
        let reason = format!("command must be 1..{MAX_COMMAND} bytes of text without NUL bytes");
        ctx.audit("shell", shown, &args, started, "failed", &reason);
        return Err(ShellError::Failed(reason));
    }
    tracing::info!(session_id = %ctx.info.session_id, user = %ctx.info.user_name,
        command = %crate::tools::mask_secrets(shown), "running shell command for session");
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    match shell::run(&command, timeout, ctx.services.shell).await {
        Ok(out) => {
            ctx.audit(
                "shell",
                shown,
                &args,
                started,
                "ok",
                &format!("exit {}", out.exit_code),
            );
            Ok(ShellOutput {
                exit_code: out.exit_code,
                stdout: out.stdout,
                stderr: out.stderr,
                truncated: out.truncated,
            })
        }
        Err(shell::ShellError::Timeout(d)) => {
            ctx.audit(
                "shell",
                shown,
                &args,
                started,
                "timeout",
                &format!("killed after {d:?}"),
            );
            Err(ShellError::Timeout)
        }
        Err(shell::ShellError::Failed(e)) => {
            ctx.audit("shell", shown, &args, started, "failed", &e);
            Err(ShellError::Failed(e))
        }
    }
}
