//! The supervisor between the agent and a granted shell command.
//!
//! Why a process of its own: a command can leave children behind that no
//! process group reaches (`setsid cmd &`, double forks). The supervisor is
//! the agent's direct child, marks itself a *child subreaper*, so every
//! orphan of the command's tree is re-parented to it instead of to init,
//! and forks the command. When the command's shell exits, when the agent
//! asks (SIGTERM: timeout, cancel, turn end), or when the agent dies
//! (parent-death signal), it kills every descendant it has and exits with
//! the shell's status.
//!
//! Everything here runs between `fork` and `exec` of a multi-threaded
//! process, so it may only make async-signal-safe system calls: no
//! allocation, no locks, no panics. /proc is read with raw `open`,
//! `getdents64` and `read` into stack buffers.

use std::io;

/// Who the command runs as (`[sandbox] shell_user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, for messages.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid (the only group the command gets).
    pub gid: u32,
    /// Its home directory (the command's `HOME`).
    pub home: String,
}

impl Identity {
    /// Looks `name` up in the user database.
    pub(crate) fn lookup(name: &str) -> Result<Identity, String> {
        let c = std::ffi::CString::new(name).map_err(|_| format!("{name:?} is not a user name"))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r writes into `pwd` and `buf`, both live and
        // sized as passed; `out` is set to `&pwd` or null.
        let rc = unsafe {
            libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if rc != 0 || out.is_null() {
            return Err(format!("no user named {name:?} on this host"));
        }
        // SAFETY: on success pw_dir points to a NUL-terminated string in `buf`.
        let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
            .to_string_lossy()
            .into_owned();
        if pwd.pw_uid == 0 {
            return Err(format!(
                "{name:?} is root; a shell user must be unprivileged"
            ));
        }
        Ok(Identity {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home,
        })
    }
}

/// Signals that end the supervisor's wait.
fn wait_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The `pre_exec` hook: runs in the forked child. The child becomes the
/// supervisor and never returns from here; its own child (the command)
/// returns `Ok` so that `exec` of the shell goes on in it.
///
/// # Safety
/// Must only be called between `fork` and `exec`.
pub(super) unsafe fn split(agent: libc::pid_t, user: Option<(u32, u32)>) -> io::Result<()> {
    // SAFETY (whole body): only async-signal-safe system calls on local
    // data; see the module doc.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 || libc::getppid() != agent {
            libc::_exit(125);
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) != 0 {
            return Err(io::Error::last_os_error());
        }
        let set = wait_set();
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let me = libc::getpid();
        let cmd = libc::fork();
        if cmd < 0 {
            return Err(io::Error::last_os_error());
        }
        if cmd == 0 {
            // The command: plain signal state, dies with its supervisor,
            // and drops to the shell user before exec.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != me {
                libc::_exit(125);
            }
            if let Some((uid, gid)) = user {
                let groups = [gid as libc::gid_t];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            return Ok(());
        }
        // The supervisor: hold no descriptor of the agent's (the pipes
        // must close when the command's tree is gone, and std's exec-error
        // pipe must close for the agent's spawn to return).
        close_all_fds();
        let status = supervise(agent, cmd, &set);
        libc::_exit(status);
    }
}

/// Waits for the command or a signal, then kills the whole tree; returns
/// the exit status to report.
unsafe fn supervise(agent: libc::pid_t, cmd: libc::pid_t, set: &libc::sigset_t) -> i32 {
    // SAFETY: async-signal-safe calls on local data only.
    unsafe {
        let timeout = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigtimedwait(set, &mut info, &timeout);
            if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
                kill_tree();
                return 128 + sig;
            }
            // SIGCHLD, or the periodic look (a missed signal, a dead agent).
            let mut status = 0;
            loop {
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid == cmd {
                    kill_tree();
                    return if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        125
                    };
                }
                if pid <= 0 {
                    break;
                }
            }
            if libc::getppid() != agent {
                kill_tree();
                return 125;
            }
        }
    }
}

/// Kills every descendant: all are (or become, as their parents die)
/// direct children of this subreaper. Repeats until none is left.
unsafe fn kill_tree() {
    // SAFETY: async-signal-safe calls on local data only.
    unsafe {
        let me = libc::getpid();
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000,
        };
        // Bounded: 5000 rounds of 2 ms.
        for _ in 0..5000 {
            for_each_child(me, |pid| {
                libc::kill(pid, libc::SIGKILL);
            });
            let mut status = 0;
            loop {
                match libc::waitpid(-1, &mut status, libc::WNOHANG) {
                    // No child at all: the tree is gone.
                    r if r < 0 => return,
                    // Children left, none dead yet: look again.
                    0 => break,
                    _ => {}
                }
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// Calls `f` with the pid of every process whose parent is `parent`.
unsafe fn for_each_child(parent: libc::pid_t, mut f: impl FnMut(libc::pid_t)) {
    // SAFETY: raw reads of /proc into stack buffers; every index is
    // bounds-checked by `get`.
    unsafe {
        let dir = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return;
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0;
            while off + 19 < n {
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = buf.get(off + 19..(off + reclen).min(n)).unwrap_or(&[]);
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if let Some(pid) = parse_pid(name)
                    && pid != parent
                    && parent_of(name) == Some(parent)
                {
                    f(pid);
                }
                off += reclen;
            }
        }
        libc::close(dir);
    }
}

fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: libc::pid_t = 0;
    for &b in name {
        v = v * 10 + libc::pid_t::from(b - b'0');
    }
    Some(v)
}

/// The parent pid from `/proc/<name>/stat` (the field after the state,
/// which follows the last `)` of the command name).
unsafe fn parent_of(name: &[u8]) -> Option<libc::pid_t> {
    let mut path = [0u8; 32];
    let parts: [&[u8]; 3] = [b"/proc/", name, b"/stat"];
    let mut at = 0;
    for p in parts {
        path.get_mut(at..at + p.len())?.copy_from_slice(p);
        at += p.len();
    }
    // `path` is zero-filled, so it stays NUL-terminated (name ≤ 9 bytes).
    // SAFETY: open/read/close of a NUL-terminated path into a stack buffer.
    let (buf, n) = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut buf = [0u8; 512];
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        (buf, n)
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let close = text.iter().rposition(|&b| b == b')')?;
    // ") S 1234 ..."
    let rest = text.get(close + 4..)?;
    let end = rest.iter().position(|&b| b == b' ')?;
    parse_pid(rest.get(..end)?)
}

/// Closes every descriptor of the supervisor.
unsafe fn close_all_fds() {
    // SAFETY: closing descriptors has no memory-safety preconditions.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) == 0 {
            return;
        }
        for fd in 0..65536 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pids_and_parents() {
        assert_eq!(parse_pid(b"1234"), Some(1234));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
        let me = std::process::id().to_string();
        // SAFETY: reads /proc of this live process.
        let ppid = unsafe { parent_of(me.as_bytes()) };
        // SAFETY: getppid has no preconditions.
        assert_eq!(ppid, Some(unsafe { libc::getppid() }));
    }

    #[test]
    fn an_unknown_user_or_root_is_refused() {
        assert!(Identity::lookup("no-such-user-catpaw").is_err());
        assert!(Identity::lookup("root").is_err());
    }
}
