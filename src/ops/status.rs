//! `catpaw-agent status`: a running agent answers on
//! `<state_dir>/status.sock` (mode 0600, so only the agent's user and root
//! may ask) with one JSON object, then closes. The client sends nothing.
//!
//! The object ([`Status`]) is built from the live session table, the alert
//! buffer and the one set of counters in [`crate::telemetry`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::reloads::{LastReload, ReloadRecord};
use crate::alerts::ringbuf::AlertBuffer;
use crate::recorder::store::Usage;
pub use crate::session::RunnerFile;
use crate::session::{ActiveSession, SessionTable};
use crate::telemetry::{Counts, Telemetry};

/// Longest a client may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer a client reads.
const MAX_ANSWER: u64 = 4 << 20;

/// The connection as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// connecting, connected, waiting or stopped.
    pub state: String,
    /// When that state began, unix seconds.
    pub since_unix: u64,
    /// The server's URL (without userinfo).
    pub server: String,
    /// Connection attempts retried so far.
    pub reconnects: u64,
}

/// One running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Session id.
    pub session_id: String,
    /// inspect, diagnose, chat.
    pub session_type: String,
    /// The operator who started it.
    pub user: String,
    /// Milliseconds since it was accepted.
    pub age_ms: u64,
    /// Its figures so far (see `session::SessionFigures`).
    pub figures: serde_json::Value,
}

impl From<ActiveSession> for SessionRow {
    fn from(s: ActiveSession) -> SessionRow {
        SessionRow {
            age_ms: s.figures.duration.as_millis() as u64,
            figures: serde_json::to_value(&s.figures).unwrap_or_default(),
            session_id: s.session_id,
            session_type: s.session_type,
            user: s.user,
        }
    }
}

/// Alert figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {
    /// Waiting in the buffer now.
    pub buffered: u64,
    /// Put into the buffer since start.
    pub pushed: u64,
    /// Lost since start.
    pub dropped: u64,
    /// Written to the server since start.
    pub sent: u64,
}

/// Shell requests by decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shell {
    /// Sessions that asked for a shell and got one.
    pub granted: u64,
    /// Sessions that asked and were refused.
    pub denied: u64,
    /// Shell commands runners asked for that ran.
    pub commands_run: u64,
    /// Shell commands runners asked for that were denied.
    pub commands_denied: u64,
}

/// Everything `status` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This agent's version.
    pub agent_version: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_sec: u64,
    /// The registered agent id.
    pub agent_id: String,
    /// The link to the server.
    pub connection: Connection,
    /// Sessions running now, oldest first.
    pub sessions: Vec<SessionRow>,
    /// `[sandbox] max_concurrent_sessions`.
    pub max_sessions: usize,
    /// Alert figures.
    pub alerts: Alerts,
    /// Budget breaches by kind.
    pub budget_breaches: std::collections::BTreeMap<String, u64>,
    /// Shell requests.
    pub shell: Shell,
    /// The runner components serving new sessions, one per role (the AI
    /// runner first when it is in front of the others).
    pub runners: Vec<RunnerFile>,
    /// The last runner reload since start (None: none yet). A refused one
    /// left `runners` as they were.
    #[serde(default)]
    pub last_reload: Option<ReloadRecord>,
    /// What the recordings take (None: `[recorder] enabled = false`).
    #[serde(default)]
    pub recorder: Option<Usage>,
}

/// What the status socket reads from.
#[derive(Clone)]
pub struct StatusSource {
    /// The counters.
    pub telemetry: Telemetry,
    /// The session table.
    pub table: SessionTable,
    /// The alert buffer.
    pub alerts: AlertBuffer,
    /// The agent id.
    pub agent_id: String,
    /// The server URL, redacted.
    pub server: String,
    /// `[sandbox] max_concurrent_sessions`.
    pub max_sessions: usize,
    /// The runner reloads' outcomes.
    pub reloads: LastReload,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StatusSource {
    /// The status now.
    pub fn snapshot(&self) -> Status {
        let link = self.telemetry.link();
        let Counts {
            alerts_pushed,
            alerts_dropped,
            alerts_sent,
            budget_breaches,
            shell_granted,
            shell_denied,
            shell_commands_run,
            shell_commands_denied,
            reconnects,
        } = self.telemetry.counts();
        Status {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_sec: self.telemetry.uptime().as_secs(),
            agent_id: self.agent_id.clone(),
            connection: Connection {
                state: link.state.as_str().to_string(),
                since_unix: unix(link.since),
                server: self.server.clone(),
                reconnects,
            },
            sessions: self
                .table
                .list()
                .into_iter()
                .map(SessionRow::from)
                .collect(),
            max_sessions: self.max_sessions,
            alerts: Alerts {
                buffered: self.alerts.len() as u64,
                pushed: alerts_pushed,
                dropped: alerts_dropped,
                sent: alerts_sent,
            },
            budget_breaches,
            shell: Shell {
                granted: shell_granted,
                denied: shell_denied,
                commands_run: shell_commands_run,
                commands_denied: shell_commands_denied,
            },
            // What serves new sessions now: follows every reload.
            runners: self.table.runners().files,
            last_reload: self.reloads.get(),
            recorder: self.table.recordings().map(|s| s.usage()),
        }
    }
}

/// Binds `socket` with mode 0600 from the start: it is bound under a
/// temporary name, chmodded, then renamed into place, so there is no moment
/// when others could connect. A socket file left by an agent that died is
/// replaced; one that answers means another agent uses this state dir.
async fn bind_private(socket: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if UnixStream::connect(socket).await.is_ok() {
        anyhow::bail!(
            "{} is in use: is another catpaw-agent running with this state_dir?",
            socket.display()
        );
    }
    let mut tmp = socket.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, socket)
                .with_context(|| format!("moving the socket to {}", socket.display()))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Serves `status` on `socket` until `shutdown`, then removes the socket.
pub async fn serve(
    socket: &Path,
    source: StatusSource,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = bind_private(socket).await?;
    tracing::debug!(path = %socket.display(), "status socket listening");
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "status socket accept failed");
                    // Out of descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut body = serde_json::to_vec(&source.snapshot()).unwrap_or_default();
        body.push(b'\n');
        // One answer at a time is plenty for an operator's command; a
        // client that does not read is cut off after WRITE_TIMEOUT.
        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&body)).await;
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Why `status` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nobody listens: no agent runs with this state dir.
    #[error(
        "no catpaw-agent is running with state_dir {state_dir} (nothing answers on {socket}); \
         start it, or pass the --config the running agent uses"
    )]
    NotRunning {
        /// The state dir asked about.
        state_dir: String,
        /// The socket tried.
        socket: String,
    },
    /// The socket is there but may not be used.
    #[error("{socket}: {source} (run as the agent's user, or as root)")]
    Denied {
        /// The socket tried.
        socket: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The answer was not a status.
    #[error("{socket}: the agent's answer could not be read: {message}")]
    BadAnswer {
        /// The socket tried.
        socket: String,
        /// What went wrong.
        message: String,
    },
}

/// Asks the agent behind `socket` for its status.
pub async fn query(state_dir: &Path, socket: &Path) -> Result<Status, QueryError> {
    let shown = socket.display().to_string();
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(QueryError::Denied {
                socket: shown,
                source: e,
            });
        }
        Err(_) => {
            return Err(QueryError::NotRunning {
                state_dir: state_dir.display().to_string(),
                socket: shown,
            });
        }
    };
    let mut body = Vec::new();
    let read = tokio::time::timeout(
        WRITE_TIMEOUT,
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut body),
    )
    .await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(QueryError::BadAnswer {
                socket: shown,
                message: e.to_string(),
            });
        }
        Err(_) => {
            return Err(QueryError::BadAnswer {
                socket: shown,
                message: "no answer within 5 s".into(),
            });
        }
    }
    serde_json::from_slice(&body).map_err(|e| QueryError::BadAnswer {
        socket: shown,
        message: e.to_string(),
    })
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// The recorder's use: `3 recordings, 48213 bytes, oldest started
/// 2026-12-06T21:00:00Z`, or `off`.
fn recorder_line(u: Option<&Usage>) -> String {
    let Some(u) = u else {
        return "off ([recorder] enabled = false)".into();
    };
    let oldest = u.oldest_unix_ms.map_or(String::new(), |ms| {
        format!(
            ", oldest started {}",
            crate::recorder::writer::rfc3339(ms / 1000)
        )
    });
    format!("{} recordings, {} bytes{oldest}", u.count, u.bytes)
}

/// The status as text for a terminal.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let now = unix(SystemTime::now());
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "catpaw-agent {} (pid {}), up {}",
        s.agent_version,
        s.pid,
        ago(s.uptime_sec)
    );
    let _ = writeln!(w, "agent id:    {}", s.agent_id);
    let _ = writeln!(
        w,
        "server:      {} — {} for {} ({} reconnects)",
        s.connection.server,
        s.connection.state,
        ago(now.saturating_sub(s.connection.since_unix)),
        s.connection.reconnects
    );
    let _ = writeln!(w, "sessions:    {} of {}", s.sessions.len(), s.max_sessions);
    for r in &s.sessions {
        let _ = writeln!(
            w,
            "  {}  {}  user={}  age={}  figures={}",
            r.session_id,
            r.session_type,
            r.user,
            ago(r.age_ms / 1000),
            r.figures
        );
    }
    let _ = writeln!(
        w,
        "alerts:      {} buffered, {} pushed, {} dropped, {} sent",
        s.alerts.buffered, s.alerts.pushed, s.alerts.dropped, s.alerts.sent
    );
    let breaches: Vec<String> = s
        .budget_breaches
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(w, "breaches:    {}", breaches.join(" "));
    let _ = writeln!(
        w,
        "shell:       sessions {} granted, {} denied; commands {} run, {} denied",
        s.shell.granted, s.shell.denied, s.shell.commands_run, s.shell.commands_denied
    );
    for r in &s.runners {
        let _ = writeln!(
            w,
            "runner:      {} {} sha256:{}",
            r.role, r.source, r.sha256
        );
        if !r.signer.is_empty() {
            let _ = writeln!(w, "  signer:    {}", r.signer);
        }
        if !r.capabilities.is_empty() {
            let _ = writeln!(w, "  granted:   {}", r.capabilities);
        }
    }
    let _ = writeln!(w, "recorder:    {}", recorder_line(s.recorder.as_ref()));
    match &s.last_reload {
        None => {
            let _ = writeln!(w, "reload:      none since start");
        }
        Some(r) => {
            let _ = writeln!(
                w,
                "reload:      {} ago ({}): {}{}",
                ago(now.saturating_sub(r.at_unix)),
                r.trigger,
                r.result,
                if r.ok {
                    ""
                } else {
                    "; the runners above stay in service"
                }
            );
        }
    }
    o
}

#[cfg(test)]
mod tests;
