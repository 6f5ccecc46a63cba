//! The campaign's world: the real agent binary with its state dir on a
//! small tmpfs (when this host lets root mount one), the loopback
//! [`TestServer`] behind the [`FaultProxy`], and the server's side of the
//! current link, whose reader fills the [`Ledger`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use catpaw_agent::proto::{self, Envelope};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::common::fault_proxy::FaultProxy;
use crate::common::process::{AgentHome, AgentProcess};
use crate::common::server::{TestServer, Ws};
use crate::ledger::{self, Sess, Shared, lock};

/// The size of the state dir's tmpfs: the trail, the compile cache and
/// room to spare, small enough to fill in a moment.
pub const TMPFS_MIB: u64 = 96;

/// A tmpfs mounted on a dir, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one of `mib` MiB on `dir`; `Err` says why it cannot be.
    pub fn mount(dir: &Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The server's side of one registered link.
pub struct Link {
    pub no: u64,
    sink: SplitSink<Ws, Message>,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The diagnose runner file's two versions: the built-in bytes, and the
/// same with a custom section appended (a different file, hash and
/// compile, the same behaviour).
pub fn runner_versions() -> [Vec<u8>; 2] {
    let a = catpaw_agent::embedded::DIAGNOSE.to_vec();
    let mut b = a.clone();
    let name = b"fault-campaign";
    let payload = b"second version";
    b.push(0);
    b.push((1 + name.len() + payload.len()) as u8);
    b.push(name.len() as u8);
    b.extend_from_slice(name);
    b.extend_from_slice(payload);
    [a, b]
}

pub struct World {
    // Field order is drop order: the agent dies before its state dir is
    // unmounted, and that before the home goes.
    pub agent: AgentProcess,
    pub link: Option<Link>,
    pub tmpfs: Result<Tmpfs, String>,
    pub home: AgentHome,
    pub proxy: FaultProxy,
    pub server: TestServer,
    /// Servers killed (their listeners stay bound, unreachable).
    pub dead_servers: Vec<TestServer>,
    pub ledger: Shared,
    pub links: u64,
    /// Agent processes started so far (1 = the first).
    pub incarnation: u64,
    /// A world-writable dir for what shells leave (pid files, markers).
    pub scratch: tempfile::TempDir,
    /// The mark every shell command exports, to find its processes.
    pub mark: String,
    pub log: PathBuf,
    pub sessions_started: u64,
    alert_seq: u64,
    /// Alerts the agent took, by incarnation.
    pub pushed: std::collections::BTreeMap<u64, Vec<String>>,
    /// The proxy's accepted count when the current link registered.
    pub accepted_at_link: u64,
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn config(proxy: &FaultProxy) -> String {
    let user = if is_root() {
        "shell_user = \"nobody\"\n"
    } else {
        ""
    };
    format!(
        "[server]\nenabled = true\naddress = \"http://{}\"\nagent_token = \"t\"\n\
         alert_buffer_size = 40\n\
         [sandbox]\nmax_concurrent_sessions = 4\nallow_remote_shell = true\n{user}\
         diagnose_runner = \"d.wasm\"\nchat_runner = \"c.wasm\"\nshell_timeout = \"20s\"\n\
         [log]\nlevel = \"info\"\n\
         [audit]\nappend_only = false\nmax_size = \"256KiB\"\nkeep = 3\n",
        proxy.addr
    )
}

impl World {
    pub async fn start(seed: u64) -> World {
        let server = TestServer::start().await;
        let proxy = FaultProxy::start(server.addr).await;
        let home = AgentHome::new(&config(&proxy));
        home.write("d.wasm", &runner_versions()[0]);
        home.write("c.wasm", catpaw_agent::embedded::CHAT);
        let tmpfs = if is_root() {
            Tmpfs::mount(&home.state(), TMPFS_MIB)
        } else {
            Err("not root: no tmpfs for the state dir".into())
        };
        let scratch = tempfile::tempdir().expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
        }
        let log = home.path().join("agent.log");
        let agent = spawn(&home, &log);
        World {
            agent,
            link: None,
            tmpfs,
            home,
            proxy,
            server,
            dead_servers: Vec::new(),
            ledger: Shared::default(),
            links: 0,
            incarnation: 1,
            scratch,
            mark: format!("CATPAW_FAULT_CAMPAIGN={seed}-{}", std::process::id()),
            log,
            sessions_started: 0,
            alert_seq: 0,
            pushed: Default::default(),
            accepted_at_link: 0,
        }
    }

    /// Starts the agent again after it was killed.
    pub fn restart_agent(&mut self) {
        self.link = None;
        self.agent = spawn(&self.home, &self.log);
        self.incarnation += 1;
    }

    /// Whether the current link is up (as far as the server knows).
    pub fn link_up(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| !lock(&self.ledger).is_closed(l.no))
    }

    /// Waits until `deadline` for the agent's newest link to register;
    /// true once one did. A link whose upgrade or register fails (the
    /// proxy cut it) is passed over.
    pub async fn await_link(&mut self, deadline: Instant) -> bool {
        loop {
            // Newer connections replace the current one: the agent only
            // dials again when its link died.
            while let Some(c) = self.server.try_accept(Duration::ZERO).await {
                self.adopt(c).await;
            }
            if self.link_up() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Some(c) = self
                .server
                .try_accept(left.min(Duration::from_millis(500)))
                .await
            {
                self.adopt(c).await;
            }
        }
    }

    async fn adopt(&mut self, mut c: crate::common::server::ServerConn) {
        let Some(reg) = c.recv_within(Duration::from_secs(20)).await else {
            return;
        };
        if reg.msg_type != "register" {
            return;
        }
        let ack = Envelope::reply(
            proto::MSG_ACK,
            &reg.id,
            proto::AckPayload {
                ok: true,
                error: None,
                warning: None,
            },
        );
        if c.ws.send(Message::text(ack.to_json())).await.is_err() {
            return;
        }
        self.links += 1;
        self.accepted_at_link = self.proxy.accepted();
        let no = self.links;
        let (sink, stream) = c.ws.split();
        let reader = tokio::spawn(ledger::read(no, stream, self.ledger.clone()));
        self.link = Some(Link { no, sink, reader });
    }

    /// Sends `env` on the current link; false when there is none or the
    /// write failed.
    pub async fn send(&mut self, env: &Envelope) -> bool {
        let Some(l) = self.link.as_mut() else {
            return false;
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            l.sink.send(Message::text(env.to_json())),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Closes the server's side of the current link.
    pub async fn close_link(&mut self) {
        if let Some(mut l) = self.link.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), l.sink.close()).await;
        }
    }

    /// Starts a session of `kind` with `params`; its id.
    pub async fn start_session(
        &mut self,
        kind: &'static str,
        params: Value,
        shell: bool,
    ) -> Option<String> {
        let link = self.link.as_ref()?.no;
        self.sessions_started += 1;
        let sid = format!("s{}", self.sessions_started);
        let start = Envelope::new(
            proto::MSG_SESSION_START,
            json!({"session_id": sid, "session_type": kind, "user_name": "campaign", "params": params}),
        );
        {
            let mut l = lock(&self.ledger);
            l.starts.insert(start.id.clone(), sid.clone());
            l.sessions.insert(
                sid.clone(),
                Sess {
                    kind,
                    link,
                    ack: None,
                    outputs: 0,
                    dones: 0,
                    error: None,
                    cancelled: false,
                    shell,
                },
            );
        }
        self.send(&start).await;
        Some(sid)
    }

    pub async fn input(&mut self, sid: &str, message: &str) {
        let env = Envelope::new(
            proto::MSG_SESSION_INPUT,
            json!({"session_id": sid, "message": message}),
        );
        self.send(&env).await;
    }

    pub async fn cancel(&mut self, sid: &str) {
        if let Some(s) = lock(&self.ledger).sessions.get_mut(sid) {
            s.cancelled = true;
        }
        let env = Envelope::new(
            proto::MSG_SESSION_CANCEL,
            json!({"session_id": sid, "reason": "campaign"}),
        );
        self.send(&env).await;
    }

    /// Sessions of the current link accepted and not yet done.
    pub fn open_sessions(&self) -> Vec<(String, &'static str)> {
        let Some(link) = self.link.as_ref().map(|l| l.no) else {
            return Vec::new();
        };
        lock(&self.ledger)
            .sessions
            .iter()
            .filter(|(_, s)| s.link == link && s.dones == 0 && !matches!(s.ack, Some(Err(_))))
            .map(|(id, s)| (id.clone(), s.kind))
            .collect()
    }

    /// `catpaw-agent status --json`, or None when the agent does not answer.
    pub fn status(&self) -> Option<Value> {
        let (code, v, _) = self.home.status_json();
        (code == 0).then_some(v)
    }

    /// Pushes one alert through `catpaw-agent alert`; whether the agent
    /// took it.
    pub fn push_alert(&self, key: &str) -> bool {
        let event = json!({"event_time": 1_700_000_000, "event_status": "Warning",
            "alert_key": key, "labels": {"campaign": "fault"}, "description": "injected"});
        self.home
            .command()
            .args(["alert", "--json", &event.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A fresh number for an alert key.
    pub fn pushed_next(&mut self) -> u64 {
        self.alert_seq += 1;
        self.alert_seq
    }

    /// Counts `key` as taken by the current agent.
    pub fn alert_pushed(&mut self, key: String) {
        self.pushed.entry(self.incarnation).or_default().push(key);
    }

    /// Live processes that carry the shells' mark.
    pub fn shell_processes(&self) -> Vec<(i32, String)> {
        crate::common::process::marked(&self.mark)
    }

    /// The shell command a chat runs: it exports the mark, leaves a
    /// `setsid` daemon and a double-forked one behind, then sleeps.
    pub fn shell_command(&self, secs: u32) -> String {
        let m = &self.mark;
        format!(
            "export {m}; setsid sh -c 'exec sleep 300' >/dev/null 2>&1 & \
             (sh -c 'exec sleep 300' >/dev/null 2>&1 &) ; sleep {secs}"
        )
    }

    /// Every record of the trail, rotated files included, oldest first
    /// (a torn line is left out: `audit verify` judges those).
    pub fn audit_all(&self) -> Vec<Value> {
        let state = self.home.state();
        let mut files: Vec<PathBuf> = (1..=9)
            .rev()
            .map(|n| state.join(format!("audit.jsonl.{n}")))
            .collect();
        files.push(state.join("audit.jsonl"));
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    /// Bytes of the audit trail, rotated files included.
    pub fn audit_bytes(&self) -> u64 {
        std::fs::read_dir(self.home.state())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("audit.jsonl"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn log_bytes(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }
}

/// The agent, its log appended to `log` (kept across restarts).
fn spawn(home: &AgentHome, log: &Path) -> AgentProcess {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut launch = home.agent();
    launch.command_mut().stderr(Stdio::from(file));
    launch.spawn()
}
