//! `request-shell`: the only way a guest can run a command, and only when
//! the runner's grant holds `shell` (declared, and left by the operator's
//! policy) and its session's `allow_shell` is true. Fail closed: the default answer is
//! `denied`, and a command whose `started` audit record cannot be written
//! and synced does not run. Granted or not, every request is audited; a
//! granted one gets its outcome record on every path (exit, timeout,
//! failure, and `cancelled` when the session ends mid-command). Output
//! reaches the guest with secrets masked.

use std::time::Duration;

use super::HostContext;
use crate::audit::{kind, outcome};
use crate::sandbox::bindings::host::{ShellError, ShellOutput};
use crate::shell;
use crate::tools::{mask_secrets, masked_cut};

/// Longest command text accepted from a guest.
const MAX_COMMAND: usize = 8 * 1024;

pub(crate) async fn request(
    ctx: &HostContext,
    command: String,
    timeout_ms: u32,
) -> Result<ShellOutput, ShellError> {
    let args = format!("{{\"timeout_ms\":{timeout_ms}}}");
    let masked = mask_secrets(&command);
    let shown = crate::util::truncate_utf8(&masked, 1024);
    if let Err(reason) = ctx.grant.shell() {
        tracing::warn!(session_id = %ctx.info.session_id, command = %shown, %reason,
            "shell request refused");
        ctx.note(kind::SHELL, &command, &args, outcome::REFUSED, &reason);
        ctx.count_shell_command(false);
        return Err(ShellError::Denied(reason));
    }
    if !ctx.info.allow_shell {
        let reason = "shell access is disabled for this session (the operator must set \
                      [sandbox] allow_remote_shell = true and the session must ask for it)";
        tracing::warn!(session_id = %ctx.info.session_id, command = %shown,
            "shell request denied");
        ctx.note(kind::SHELL, &command, &args, outcome::DENIED, reason);
        ctx.count_shell_command(false);
        return Err(ShellError::Denied(reason.to_string()));
    }
    if command.len() > MAX_COMMAND || command.trim().is_empty() || command.contains('\0') {
        let reason = format!("command must be 1..{MAX_COMMAND} bytes of text without NUL bytes");
        ctx.note(kind::SHELL, &command, &args, outcome::REFUSED, &reason);
        return Err(ShellError::Failed(reason));
    }
    let act = ctx
        .begin(kind::SHELL, &command, &args, true)
        .map_err(ShellError::Failed)?;
    tracing::info!(session_id = %ctx.info.session_id, user = %ctx.info.user_name,
        command = %shown, "running shell command for session");
    ctx.count_shell_command(true);
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    // Read a little past the cap, mask, then cut: a secret that straddles
    // the cap is masked whole instead of leaving its first part behind.
    let cap = ctx.shell.output_cap;
    let reading = shell::ShellLimits {
        output_cap: cap.saturating_add(MASK_SLACK),
        ..ctx.shell.clone()
    };
    let result = shell::run(&command, timeout, &reading).await;
    let (what, detail) = match &result {
        Ok(out) => (outcome::EXIT, format!("exit {}", out.exit_code)),
        Err(shell::ShellError::Timeout(d)) => (outcome::TIMEOUT, format!("killed after {d:?}")),
        Err(shell::ShellError::Failed(e)) => (outcome::FAILED, e.clone()),
    };
    if let Some(act) = act {
        act.finish(what, &detail);
    }
    match result {
        Ok(out) => {
            let (stdout, cut_out) = masked_cut(&out.stdout, cap);
            let (stderr, cut_err) = masked_cut(&out.stderr, cap);
            Ok(ShellOutput {
                exit_code: out.exit_code,
                stdout,
                stderr,
                truncated: out.truncated || cut_out || cut_err,
            })
        }
        Err(shell::ShellError::Timeout(_)) => Err(ShellError::Timeout),
        Err(shell::ShellError::Failed(e)) => Err(ShellError::Failed(e)),
    }
}

/// Bytes read past the output cap so that masking sees a secret that
/// straddles it whole (longer than any token shape masking knows).
const MASK_SLACK: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_across_the_output_cap_is_masked_whole_before_the_cut() {
        let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let text = format!("{} {token} tail\n", "x".repeat(100));
        // The cap falls inside the token's body.
        let (kept, cut) = masked_cut(&text, 100 + 1 + 10);
        assert!(cut);
        assert!(!kept.contains("abcdef"), "{kept}");
        assert!(kept.len() <= 111, "{kept}");
        // Under the cap nothing is cut, and the secret is still masked.
        let (whole, cut) = masked_cut(&text, 4096);
        assert!(!cut);
        assert!(
            whole.contains("ghp_***") && whole.ends_with(" tail\n"),
            "{whole}"
        );
    }
}
