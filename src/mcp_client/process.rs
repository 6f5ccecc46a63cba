//! Starting one MCP server process, contained as the shell's commands are
//! ([`crate::shell::contain`]): a cleared environment (the shell's fixed
//! `PATH`, `LANG` and `HOME`, then only the server's configured `env`),
//! working directory `/`, its own process group under the supervisor that
//! kills the whole tree when the server exits, when the agent dies or when
//! the [`TreeKiller`] is dropped, and the `[sandbox] shell_user` drop when
//! one is configured. Its stdin and stdout carry the protocol
//! (`transport.rs`); its stderr goes to the agent's log, a bounded number
//! of lines per start.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::ServerSpec;
use crate::shell::{Identity, SHELL_PATH, TreeKiller};

/// Lines of a server's stderr logged per start; the rest are counted.
const STDERR_LINES: usize = 200;
/// Longest stderr line logged (the rest of it is dropped).
const STDERR_LINE_MAX: usize = 1024;

/// A started server: its process (the supervisor), the killer of its
/// tree, and its protocol pipes.
pub(super) struct Started {
    pub(super) child: Child,
    pub(super) killer: TreeKiller,
    pub(super) stdout: tokio::process::ChildStdout,
    pub(super) stdin: ChildStdin,
}

/// Starts `spec` as `user` (None: the agent's own user).
pub(super) fn start(spec: &ServerSpec, user: Option<&Identity>) -> Result<Started, String> {
    let home = user.map_or("/", |u| u.home.as_str());
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .env("PATH", SHELL_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", home)
        .envs(&spec.env)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::shell::contain(&mut cmd, user);
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {:?}: {e} (give the full path of an executable in \
             [[ai.mcp.servers]] command)",
            spec.command
        )
    })?;
    let killer = TreeKiller::of(&child);
    let (Some(stdout), Some(stdin), stderr) =
        (child.stdout.take(), child.stdin.take(), child.stderr.take())
    else {
        return Err("the process has no stdio pipes".into());
    };
    if let Some(stderr) = stderr {
        tokio::spawn(log_stderr(spec.name.clone(), stderr));
    }
    Ok(Started {
        child,
        killer,
        stdout,
        stdin,
    })
}

/// Logs what the server writes to stderr, [`STDERR_LINES`] lines at most,
/// each cut at [`STDERR_LINE_MAX`]; reads (and drops) the rest so the
/// server never blocks on a full pipe.
async fn log_stderr(server: String, stderr: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stderr);
    let mut logged = 0usize;
    let mut dropped = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: read at most one buffer past the kept part of a line.
        match read_line_capped(&mut reader, &mut line, STDERR_LINE_MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) if logged < STDERR_LINES => {
                logged += 1;
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "mcp", server = %server,
                    line = %crate::tools::mask_secrets(text.trim_end()), "MCP server stderr");
            }
            Ok(_) => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::warn!(target: "mcp", server = %server, dropped,
            "MCP server stderr lines past the cap were not logged");
    }
}

/// Reads one line into `out`, keeping at most `cap` bytes of it; returns
/// the bytes consumed (0 at the end).
async fn read_line_capped(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buf.len(), false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}
