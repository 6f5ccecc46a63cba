//! Processes beyond the top list: zombies, threads of one process, open
//! files of one process, processes matching a name, and file descriptor
//! use against each process's own limit.

mod count;
mod fdlimits;
mod openfiles;
mod threads;
mod zombies;

use super::tool::Tool;

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "zombies",
        "zombie processes with their parents (a parent not reaping its children), command lines masked",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":200,"default":50}},"additionalProperties":false}"#,
        zombies::run,
    ),
    Tool::new(
        "process_threads",
        "threads of one process (default: the one with the most) with state, CPU time and kernel wait channel",
        r#"{"type":"object","properties":{"pid":{"type":"integer","minimum":1},"limit":{"type":"integer","minimum":1,"maximum":200,"default":50}},"additionalProperties":false}"#,
        threads::run,
    ),
    Tool::new(
        "open_files",
        "open file descriptors of one process (default: the one with the most) by kind, and their targets; needs root for other users' processes",
        r#"{"type":"object","properties":{"pid":{"type":"integer","minimum":1},"limit":{"type":"integer","minimum":1,"maximum":500,"default":100}},"additionalProperties":false}"#,
        openfiles::run,
    ),
    Tool::new(
        "process_count",
        "processes whose name or command line matches a text, or counts by name and state when none is given",
        r#"{"type":"object","properties":{"name":{"type":"string","maxLength":128,"description":"exact process name (comm)"},"cmdline_contains":{"type":"string","maxLength":256},"limit":{"type":"integer","minimum":1,"maximum":100,"default":20}},"additionalProperties":false}"#,
        count::run,
    ),
    Tool::new(
        "fd_limits",
        "processes closest to their own open-file limit (RLIMIT_NOFILE): open fds, soft limit, percent used",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        fdlimits::run,
    ),
];

/// The pid with the most entries in `/proc/<pid>/<sub>` (`fd`, `task`),
/// among those this process may list.
fn busiest(sub: &str) -> Option<u64> {
    super::procfs::pids()
        .filter_map(|p| {
            Some((
                p,
                std::fs::read_dir(format!("/proc/{p}/{sub}")).ok()?.count(),
            ))
        })
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p)
}

/// `/proc/<pid>` exists, or a clear error.
fn check_pid(pid: u64) -> Result<(), String> {
    if std::path::Path::new(&format!("/proc/{pid}")).is_dir() {
        Ok(())
    } else {
        Err(format!("no process with pid {pid}"))
    }
}
