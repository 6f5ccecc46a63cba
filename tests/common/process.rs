//! The agent binary as an operator runs it: a home (a temp dir with its
//! config, state and log), one-shot commands run from it (`alert`, `audit
//! verify`, `session`), and the long-running agent as an [`AgentProcess`]
//! that ends by SIGTERM, SIGKILL or an exit awaited with a deadline.
//!
//! `conformance.rs` has its own on purpose: it is built from PROTOCOL.md
//! alone and shares nothing with these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::server::TestServer;
use super::write_config;

/// The agent binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_catpaw-agent");

/// `catpaw-agent` with nothing set: for what needs no home (`demo`).
pub fn command() -> Command {
    Command::new(BIN)
}

/// The `[server]` section for an agent served by `server`, with
/// `agent_token = token` when given, then `rest` (more `[server]` keys or
/// further sections).
pub fn server_toml(server: &TestServer, token: Option<&str>, rest: &str) -> String {
    let token = token.map_or(String::new(), |t| format!("agent_token = \"{t}\"\n"));
    format!(
        "[server]\nenabled = true\naddress = \"{}\"\n{token}{rest}",
        server.url()
    )
}

/// A temp dir the agent runs in: `conf.d/config.toml` (state in
/// `state.d`, see [`write_config`]), its log, and environment variables
/// every command run from it gets (a config that reads `${VAR}` needs its
/// variable in `alert` and `audit` too, not only in the agent).
pub struct AgentHome {
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl AgentHome {
    /// A home with no config file: commands run there find no default
    /// config and keep their state in a throwaway place.
    pub fn bare() -> AgentHome {
        AgentHome {
            dir: tempfile::tempdir().expect("tempdir"),
            config: None,
            env: Vec::new(),
        }
    }

    /// A home whose config is `body`.
    pub fn new(body: &str) -> AgentHome {
        let mut home = AgentHome::bare();
        home.configure(body);
        home
    }

    /// Writes (or rewrites) the config; for bodies that name files written
    /// into the home first.
    pub fn configure(&mut self, body: &str) {
        self.config = Some(write_config(self.dir.path(), body));
    }

    /// Sets `key=value` for every command run from this home.
    pub fn env(mut self, key: &str, value: &str) -> AgentHome {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The config file (panics in a bare home).
    pub fn config(&self) -> &Path {
        self.config.as_deref().expect("a configured home")
    }

    /// `state.d`, the agent's default state dir.
    pub fn state(&self) -> PathBuf {
        self.path().join("state.d")
    }

    /// Writes `body` to `name` (below the home, parents created) and
    /// returns its path.
    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write file");
        path
    }

    /// The audit trail's records, oldest first (none before the first).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// Waits (4 s at most) for the local alert socket the agent opens.
    pub async fn wait_for_socket(&self) -> PathBuf {
        let sock = self.state().join("agent.sock");
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sock
    }

    /// A one-shot command run in the home: `catpaw-agent [--config
    /// <config>]`, with the home's environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd
    }

    /// Runs `catpaw-agent status --json` in the home: (exit code, the
    /// JSON, or null when stdout is not JSON, stderr).
    pub fn status_json(&self) -> (i32, serde_json::Value, String) {
        let out = self
            .command()
            .args(["status", "--json"])
            .output()
            .expect("status");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), v, stderr)
    }

    /// [`command`](Self::command), owning the home: for a one-shot run
    /// whose home nothing else needs.
    pub fn into_command(self) -> HomeCommand {
        HomeCommand {
            cmd: self.command(),
            _home: self,
        }
    }

    /// The agent itself, to be set up and spawned; its log goes nowhere
    /// unless asked.
    pub fn agent(&self) -> Launch {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Launch {
            cmd,
            log: self.path().join("agent.log"),
            keep_log: false,
            close_log: false,
        }
    }

    /// The agent with its defaults, started.
    pub fn spawn(&self) -> AgentProcess {
        self.agent().spawn()
    }
}

/// A command and the home it runs in, removed when both are done.
pub struct HomeCommand {
    cmd: Command,
    _home: AgentHome,
}

impl std::ops::Deref for HomeCommand {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl std::ops::DerefMut for HomeCommand {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

/// The agent about to start: arguments, environment and where its log goes.
pub struct Launch {
    cmd: Command,
    log: PathBuf,
    keep_log: bool,
    close_log: bool,
}

impl Launch {
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.cmd.env(key, value);
        self
    }

    /// Keeps the agent's log (its stderr) in `agent.log` in the home, for
    /// [`AgentProcess::log`].
    pub fn keep_log(mut self) -> Launch {
        self.keep_log = true;
        self
    }

    /// Gives the agent a log pipe whose reading end is closed before it
    /// writes anything (a log collector that went away).
    pub fn close_log(mut self) -> Launch {
        self.close_log = true;
        self
    }

    /// The command, for what no method here covers (`pre_exec`).
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn spawn(mut self) -> AgentProcess {
        if self.keep_log {
            let file = std::fs::File::create(&self.log).expect("log file");
            self.cmd.stderr(Stdio::from(file));
        } else if self.close_log {
            self.cmd.stderr(Stdio::piped());
        }
        let mut child = self.cmd.spawn().expect("spawn agent");
        drop(child.stderr.take());
        AgentProcess {
            child,
            log: self.keep_log.then_some(self.log),
            home: None,
        }
    }
}

/// A running agent; dropping it kills and reaps the process.
pub struct AgentProcess {
    child: Child,
    log: Option<PathBuf>,
    /// The home, when the process owns it (see [`owning`](Self::owning)).
    home: Option<AgentHome>,
}

impl AgentProcess {
    /// Keeps `home` as long as the process, for a helper that made both;
    /// the process is killed before its home is removed.
    pub fn owning(mut self, home: AgentHome) -> AgentProcess {
        self.home = Some(home);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the agent from /proc/PID/status, in bytes:
    /// `VmRSS` (resident now) or `VmHWM` (the peak so far).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        kib * 1024
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM: {}", std::io::Error::last_os_error());
    }

    /// SIGKILL, then reaps the process.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// The exit status, or None if the agent still runs after `limit`.
    pub async fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then the exit status (the agent must exit within 15 s).
    pub async fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_within(Duration::from_secs(15))
            .await
            .expect("the agent exits within 15 s of SIGTERM")
    }

    /// Where the log is kept (see [`Launch::keep_log`]).
    pub fn log_path(&self) -> &Path {
        self.log.as_deref().expect("the log was not kept")
    }

    /// The log so far, as bytes.
    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.log_path()).expect("log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log_bytes()).into_owned()
    }

    /// Waits (`limit` at most) until the log holds `needle`; false if it
    /// never did.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        self.wait_for_log_count(needle, 1, limit).await
    }

    /// Fails the test unless the log holds `needle` at least `n` times
    /// within `limit`.
    pub async fn expect_log_count(&self, needle: &str, n: usize, limit: Duration) {
        assert!(
            self.wait_for_log_count(needle, n, limit).await,
            "the log never held {needle:?} {n} times:\n{}",
            self.log()
        );
    }

    /// Whether the log holds `needle` at least `n` times within `limit`.
    pub async fn wait_for_log_count(&self, needle: &str, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.log().matches(needle).count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (role, source, sha256) of each runner a `status --json` lists.
pub fn status_runners(status: &serde_json::Value) -> Vec<(String, String, String)> {
    status["runners"]
        .as_array()
        .unwrap_or_else(|| panic!("no runners in {status}"))
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("role"), field("source"), field("sha256"))
        })
        .collect()
}

/// Lowercase hex SHA-256, as `status` shows a runner's.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether process `pid` exists (a zombie included).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits until `f` holds, at most `limit`; whether it did.
pub async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

/// The live processes that carry `mark` (`KEY=value`) in their
/// environment, with their command lines: a tree a test started with
/// the mark, wherever its processes were re-parented (a zombie has no
/// environment, and is no survivor).
pub fn marked(mark: &str) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == mark.as_bytes()))
        })
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (pid, cmdline)
        })
        .collect()
}

/// A process whose command line is `sh -c "read x" <mark> --db-password=<secret>`
/// (a secret a tool can read from /proc, which masking must hide); it
/// waits on its stdin until killed when dropped.
pub struct SecretHolder(Child);

impl SecretHolder {
    pub fn start(mark: &str, secret: &str) -> SecretHolder {
        let child = Command::new("sh")
            .args(["-c", "read x", mark, &format!("--db-password={secret}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sh");
        SecretHolder(child)
    }
}

impl Drop for SecretHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
