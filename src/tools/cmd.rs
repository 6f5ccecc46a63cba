//! The one way tools run a helper command (`dmesg`, `systemctl`): no
//! stdin, a deadline after which the child is killed, and a bounded read.
//!
//! Both pipes are drained on their own threads while the child runs: a
//! child that writes more than a pipe buffer would otherwise block on
//! write and never exit. Past the byte cap the readers keep draining but
//! stop storing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most stdout kept from a helper command.
pub(crate) const MAX_CMD_OUTPUT: usize = 256 * 1024;
/// Most stderr kept (only shown in error messages).
const MAX_CMD_STDERR: usize = 4 * 1024;

/// Which part of a long output to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The first bytes (a listing).
    Head,
    /// The last bytes (a log, whose newest lines are at the end).
    Tail,
}

/// Reads `src` to its end on a new thread, keeping at most `cap` bytes.
fn drain<R: Read + Send + 'static>(mut src: R, cap: usize, keep: Keep) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match keep {
                    Keep::Head => {
                        let room = cap.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Keep::Tail => {
                        kept.extend_from_slice(&buf[..n]);
                        // Trim in batches, not on every read.
                        if kept.len() > 2 * cap {
                            kept.drain(..kept.len() - cap);
                        }
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if kept.len() > cap {
            kept.drain(..kept.len() - cap);
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Runs `cmd args…` with a `timeout`; Ok is its stdout (lossy UTF-8, at
/// most [`MAX_CMD_OUTPUT`] bytes, `keep` saying which part), Err says why
/// not in one line: not found, timed out, or a failing exit with the
/// start of its stderr.
pub(crate) fn run(
    cmd: &str,
    args: &[&str],
    timeout: Duration,
    keep: Keep,
) -> Result<String, String> {
    let mut child = Command::new(cmd)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd}: {}", io_reason(&e)))?;
    let out_rx = child.stdout.take().map(|s| drain(s, MAX_CMD_OUTPUT, keep));
    let err_rx = child
        .stderr
        .take()
        .map(|s| drain(s, MAX_CMD_STDERR, Keep::Head));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{cmd} did not finish within {timeout:?} and was killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {cmd} failed: {e}"));
            }
        }
    };
    // A grandchild may still hold the pipes open: wait only briefly.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_millis(500)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let out = collect(out_rx);
    if status.success() {
        return Ok(out);
    }
    let err = collect(err_rx);
    let why = if err.trim().is_empty() {
        out.trim()
    } else {
        err.trim()
    };
    let why = why
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    // Masked before the cut (the dispatcher masks errors too, but after a
    // cut a secret may no longer be recognisable).
    Err(format!(
        "{cmd} failed ({status}): {}",
        crate::util::truncate_utf8(&super::mask::mask_secrets(why.trim()), 300)
    ))
}

/// Whether an executable named `cmd` is in a directory of `$PATH`.
pub(crate) fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A short lowercase reason for an I/O error (`permission denied`).
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::NotFound => "not found".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn output_is_returned_and_bounded() {
        assert_eq!(run("echo", &["hi"], T, Keep::Head).as_deref(), Ok("hi\n"));
        // 1 MiB of output: must neither deadlock on the pipe nor exceed the cap.
        let script = "head -c 1048576 /dev/zero | tr '\\0' a; echo; echo LAST";
        let tail = run("sh", &["-c", script], T, Keep::Tail).expect("tail");
        assert_eq!(tail.len(), MAX_CMD_OUTPUT);
        assert!(tail.ends_with("LAST\n"));
        let head = run("sh", &["-c", script], T, Keep::Head).expect("head");
        assert_eq!(head.len(), MAX_CMD_OUTPUT);
        assert!(head.starts_with("aaa"));
    }

    #[test]
    fn failures_say_why() {
        let e = run("catpaw-no-such-command", &[], T, Keep::Head).unwrap_err();
        assert_eq!(e, "cannot run catpaw-no-such-command: not found");
        let e = run("sh", &["-c", "echo boom >&2; exit 3"], T, Keep::Head).unwrap_err();
        assert!(e.starts_with("sh failed (exit status: 3): boom"), "{e}");
    }

    #[test]
    fn a_slow_command_is_killed_at_the_deadline() {
        let started = Instant::now();
        let e = run("sleep", &["30"], Duration::from_millis(300), Keep::Head).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn path_lookup() {
        assert!(on_path("sh"));
        assert!(!on_path("catpaw-no-such-command"));
    }
}
