//! One agent per state dir: the agent holds an exclusive `flock` on
//! `<state_dir>/agent.lock` for as long as it runs, with its pid written
//! in the file.
//!
//! Two agents on one state dir would serve under one agent id, take turns
//! at the ingest and status sockets, and each keep its own replay cache
//! and token ledger in memory: a message one accepted, the other would
//! accept again. The second one therefore does not start: it exits 2
//! naming the pid that holds the lock. The kernel drops the lock when the
//! holder exits, however it exits (SIGKILL included), so a stale file
//! never blocks a restart. The `session` harness and `audit verify` do not
//! take it: they share the state dir with a running agent on purpose.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;

use crate::config::StatePaths;

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Takes the state dir's lock, creating the dir and the file when needed.
/// Err when another process holds it (naming its pid) or it cannot be
/// taken at all (fail closed: an agent that cannot tell whether it is
/// alone does not start).
pub fn acquire(paths: &StatePaths) -> anyhow::Result<StateLock> {
    let root = paths.root();
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create the state dir {}", root.display()))?;
    let path = paths.agent_lock();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("cannot open the state dir lock {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = (&mut file).take(64).read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "another process".to_string(),
            };
            anyhow::bail!(
                "the state dir {} is in use by another catpaw-agent ({holder} holds {}); \
                 stop that agent first, or give this one its own `state_dir`",
                root.display(),
                path.display()
            );
        }
        return Err(err).with_context(|| format!("cannot lock {}", path.display()));
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write the pid to {}", path.display()))?;
    Ok(StateLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path().join("state.d"));
        let first = acquire(&paths).expect("first");
        // flock locks belong to the open file description: a second open in
        // the same process conflicts like another process would.
        let e = acquire(&paths).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"),
            "{e}"
        );
        drop(first);
        acquire(&paths).expect("free again once the first is dropped");
    }
}
