//! The one place where catpaw-agent runs a shell command for a session.
//!
//! Reached only through the sandbox's `request-shell` import, and only after
//! the caller checked the session's `allow_shell` and wrote the synced
//! `started` audit record. The command is contained:
//!
//! - `sh -c` with a cleared environment (fixed `PATH`, `LANG`, `HOME`: no
//!   agent token or other secret of the agent's environment), stdin from
//!   /dev/null, working directory `/`;
//! - as `[sandbox] shell_user` when one is configured (the agent must be
//!   root to switch);
//! - under a supervisor process ([`supervise`]) that is a child subreaper:
//!   every descendant, `setsid` and double-forked ones included, is killed
//!   when the command's shell exits, on timeout, when the session is
//!   cancelled or its turn ends (the future is dropped), and when the agent
//!   dies (parent-death signal).

mod supervise;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

pub use supervise::Identity;

/// The only `PATH` a command gets.
pub(crate) const SHELL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Caps and identity for a session's shell commands. The caps are the
/// session's `shell_timeout` and `shell_output` budgets
/// (`crate::sandbox::Budgets`).
#[derive(Debug, Clone)]
pub struct ShellLimits {
    /// Longest a command may run; a guest's own timeout is capped to this.
    pub max_timeout: Duration,
    /// Bytes kept from each of stdout and stderr.
    pub output_cap: usize,
    /// Who commands run as; `None` = the agent's own user.
    pub user: Option<Identity>,
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutput {
    /// Exit status; 128 + N when signal N ended the command.
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
    /// The command ran past its timeout and its tree was killed.
    #[error("command timed out after {0:?} and was killed")]
    Timeout(Duration),
    /// The command could not be started or waited for.
    #[error("command failed: {0}")]
    Failed(String),
}

/// Ends the supervisor (and so the whole command tree) when dropped:
/// SIGTERM, which it answers by killing every descendant. Not SIGKILL: a
/// killed supervisor would leave the tree to init.
pub(crate) struct TreeKiller {
    pid: Option<i32>,
}

impl TreeKiller {
    /// The killer of `child`'s tree (`child` was spawned by a command
    /// [`contain`] prepared).
    pub(crate) fn of(child: &tokio::process::Child) -> TreeKiller {
        TreeKiller {
            pid: child.id().and_then(|id| i32::try_from(id).ok()),
        }
    }

    /// Kills the tree now (dropping the killer does the same).
    pub(crate) fn kill_now(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

impl Drop for TreeKiller {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Puts `cmd` under the supervisor, as the module doc says of shell
/// commands: its own process group, the whole tree killed when the command
/// exits, when the agent dies, or when the [`TreeKiller`] of the spawned
/// child is dropped; run as `user` when one is given. The caller sets the
/// program, its environment and its stdio. Other long-running helpers
/// (the `[ai.mcp]` servers) are contained the same way.
pub(crate) fn contain(cmd: &mut Command, user: Option<&Identity>) {
    let ids = user.map(|u| (u.uid, u.gid));
    // SAFETY: getpid has no preconditions.
    let agent = unsafe { libc::getpid() };
    cmd.process_group(0);
    // SAFETY: `split` only makes async-signal-safe calls (see supervise.rs).
    unsafe {
        cmd.pre_exec(move || supervise::split(agent, ids));
    }
}

/// Runs `command` with `sh -c`, contained as the module doc says.
///
/// `timeout` is capped to `limits.max_timeout`; zero means the cap.
pub async fn run(
    command: &str,
    timeout: Duration,
    limits: &ShellLimits,
) -> Result<ShellOutput, ShellError> {
    let timeout = if timeout.is_zero() {
        limits.max_timeout
    } else {
        timeout.min(limits.max_timeout)
    };
    let home = limits.user.as_ref().map_or("/", |u| u.home.as_str());
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", SHELL_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", home)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    contain(&mut cmd, limits.user.as_ref());
    let mut child = cmd
        .spawn()
        .map_err(|e| ShellError::Failed(format!("cannot start /bin/sh: {e}")))?;
    let mut killer = TreeKiller::of(&child);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cap = limits.output_cap;
    let work = async {
        tokio::join!(
            read_capped(stdout, cap),
            read_capped(stderr, cap),
            child.wait()
        )
    };
    tokio::pin!(work);
    match tokio::time::timeout(timeout, &mut work).await {
        Err(_) => {
            killer.kill_now();
            // The supervisor exits once the tree is gone; the pipes close.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
            Err(ShellError::Timeout(timeout))
        }
        Ok((out, err, status)) => {
            // The supervisor already killed what the shell left behind.
            killer.pid = None;
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
            user: None,
        }
    }

    #[tokio::test]
    async fn captures_exit_code_and_streams() {
        let out = run("echo hi; echo oops >&2; exit 3", Duration::ZERO, &limits())
            .await
            .expect("runs");
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "oops\n");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn output_is_capped_and_marked() {
        let out = run("seq 1 1000", Duration::ZERO, &limits())
            .await
            .expect("runs");
        assert_eq!(out.stdout.len(), 16);
        assert!(out.truncated);
    }

    #[tokio::test]
    async fn no_stdin_is_given() {
        let out = run("cat; echo done", Duration::ZERO, &limits())
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
        let err = run(&cmd, Duration::from_millis(200), &limits())
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
            user: None,
        };
        let err = run("sleep 5", Duration::from_secs(60), &lim)
            .await
            .expect_err("capped");
        assert_eq!(err, ShellError::Timeout(Duration::from_millis(100)));
    }

    /// Pids written by `echo $$ > FILE` lines of a command.
    fn pids_in(dir: &std::path::Path) -> Vec<i32> {
        let mut pids = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path())
                && let Ok(p) = t.trim().parse()
            {
                pids.push(p);
            }
        }
        pids
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// A command that leaves a `setsid` daemon and a double-forked one
    /// behind, each writing its pid into `dir`.
    fn escaping(dir: &std::path::Path) -> String {
        let d = dir.display();
        format!(
            "setsid sh -c 'echo $$ > {d}/a; exec sleep 300' >/dev/null 2>&1 & \
             (sh -c 'echo $$ > {d}/b; exec sleep 300' >/dev/null 2>&1 &) ; \
             while [ ! -s {d}/a ] || [ ! -s {d}/b ]; do sleep 0.01; done"
        )
    }

    #[tokio::test]
    async fn setsid_and_double_forked_children_die_with_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run(&escaping(dir.path()), Duration::ZERO, &limits())
            .await
            .expect("runs");
        assert_eq!(out.exit_code, 0);
        let pids = pids_in(dir.path());
        assert_eq!(pids.len(), 2);
        for p in pids {
            assert!(!alive(p), "descendant {p} outlived the command");
        }
    }

    #[tokio::test]
    async fn a_cancelled_command_takes_its_whole_tree_along() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = format!("{}; sleep 300", escaping(dir.path()));
        let lim = limits();
        let run = run(&cmd, Duration::ZERO, &lim);
        // Cancel (drop the future) once both daemons are up.
        let _ = tokio::time::timeout(Duration::from_millis(1500), run).await;
        let pids = pids_in(dir.path());
        assert_eq!(pids.len(), 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while pids.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for p in pids {
            assert!(!alive(p), "descendant {p} outlived the cancel");
        }
    }

    #[tokio::test]
    async fn the_environment_is_cleared() {
        let lim = ShellLimits {
            output_cap: 64 * 1024,
            ..limits()
        };
        let out = run("env; pwd", Duration::ZERO, &lim).await.expect("runs");
        let keys: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for k in &keys {
            assert!(
                ["PATH", "LANG", "HOME", "PWD", "SHLVL", "_", "OLDPWD"].contains(k),
                "unexpected variable {k} in {}",
                out.stdout
            );
        }
        assert!(out.stdout.contains(&format!("PATH={SHELL_PATH}")));
        assert!(out.stdout.ends_with("/\n"), "{}", out.stdout);
    }
}
