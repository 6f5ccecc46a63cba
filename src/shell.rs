//! The one place where catpaw-agent runs a shell command for a session.
//!
//! Reached only through the sandbox's `request-shell` import, and only after
//! the caller checked the session's `allow_shell`. The command runs under
//! `sh -c` in its own process group with no stdin; on timeout, or when the
//! future is dropped because the session was cancelled, the whole group is
//! killed so no grandchild outlives the session.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Limits for one shell command.
#[derive(Debug, Clone, Copy)]
pub struct ShellLimits {
    /// Longest a command may run; a guest's own timeout is capped to this.
    pub max_timeout: Duration,
    /// Bytes kept from each of stdout and stderr.
    pub output_cap: usize,
}

impl Default for ShellLimits {
    fn default() -> Self {
        ShellLimits {
            max_timeout: Duration::from_secs(30),
            output_cap: 64 * 1024,
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutput {
    /// Exit status, or -1 when a signal ended the command.
    pub exit_code: i32,
    /// Standard output, lossy UTF-8, at most `output_cap` bytes.
    pub stdout: String,
    /// Standard error, lossy UTF-8, at most `output_cap` bytes.
    pub stderr: String,
    /// True when either stream was cut at the cap.
    pub truncated: bool,
}

/// Why a command produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// The command ran past its timeout and was killed.
    #[error("command timed out after {0:?} and was killed")]
    Timeout(Duration),
    /// The command could not be started or waited for.
    #[error("command failed: {0}")]
    Failed(String),
}

/// Kills the child's whole process group when dropped, unless disarmed.
struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    fn kill_now(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill(2) with a negative pid signals a process group we
            // created ourselves; it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Runs `command` with `sh -c`, no stdin, in a new process group.
///
/// `timeout` is capped to `limits.max_timeout`; zero means the cap.
pub async fn run(
    command: &str,
    timeout: Duration,
    limits: ShellLimits,
) -> Result<ShellOutput, ShellError> {
    let timeout = if timeout.is_zero() {
        limits.max_timeout
    } else {
        timeout.min(limits.max_timeout)
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ShellError::Failed(format!("cannot start /bin/sh: {e}")))?;
    let mut killer = GroupKiller {
        pgid: child.id().and_then(|id| i32::try_from(id).ok()),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cap = limits.output_cap;
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, cap),
            read_capped(stderr, cap),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            killer.kill_now();
            Err(ShellError::Timeout(timeout))
        }
        Ok((out, err, status)) => {
            // The shell is gone; make sure nothing it left behind in its
            // group keeps running after the session moves on.
            killer.kill_now();
            let status = status.map_err(|e| ShellError::Failed(format!("wait failed: {e}")))?;
            let (stdout, out_cut) = out;
            let (stderr, err_cut) = err;
            Ok(ShellOutput {
                exit_code: status.code().unwrap_or(-1),
                stdout,
                stderr,
                truncated: out_cut || err_cut,
            })
        }
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes; the rest is drained
/// and dropped so the child never blocks on a full pipe.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> (String, bool) {
    let Some(mut pipe) = pipe else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ShellLimits {
        ShellLimits {
            max_timeout: Duration::from_secs(5),
            output_cap: 16,
        }
    }

    #[tokio::test]
    async fn captures_exit_code_and_streams() {
        let out = run("echo hi; echo oops >&2; exit 3", Duration::ZERO, limits())
            .await
            .expect("runs");
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "oops\n");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn output_is_capped_and_marked() {
        let out = run("seq 1 1000", Duration::ZERO, limits())
            .await
            .expect("runs");
        assert_eq!(out.stdout.len(), 16);
        assert!(out.truncated);
    }

    #[tokio::test]
    async fn no_stdin_is_given() {
        let out = run("cat; echo done", Duration::ZERO, limits())
            .await
            .expect("runs");
        assert_eq!(out.stdout, "done\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survivor");
        // A grandchild that would write the marker after the timeout must
        // be killed together with the shell.
        let cmd = format!("(sleep 1; touch {}) & sleep 10", marker.display());
        let started = std::time::Instant::now();
        let err = run(&cmd, Duration::from_millis(200), limits())
            .await
            .expect_err("times out");
        assert_eq!(err, ShellError::Timeout(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "grandchild survived the timeout");
    }

    #[tokio::test]
    async fn timeout_is_capped_by_limits() {
        let lim = ShellLimits {
            max_timeout: Duration::from_millis(100),
            output_cap: 16,
        };
        let err = run("sleep 5", Duration::from_secs(60), lim)
            .await
            .expect_err("capped");
        assert_eq!(err, ShellError::Timeout(Duration::from_millis(100)));
    }
}
