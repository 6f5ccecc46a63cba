//! Append-only JSONL audit of every tool call and shell request a guest makes.
//!
//! One line per call in `<state_dir>/audit.jsonl`, written with `O_APPEND`
//! so concurrent sessions never interleave inside a line. Secrets in
//! arguments and commands are masked before they reach the file. An audit
//! write failure is logged loudly but never fails the session: losing the
//! guest's answer because the disk is full would help nobody.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

/// One audited call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Unix time in seconds with millisecond precision.
    pub time: f64,
    /// Session the call belongs to.
    pub session_id: String,
    /// `inspect`, `diagnose` or `chat`.
    pub session_type: String,
    /// Operator who started the session.
    pub user: String,
    /// `tool` or `shell`.
    pub kind: String,
    /// Tool name, or the (masked) shell command.
    pub name: String,
    /// Arguments as given by the guest (masked).
    pub args: String,
    /// How long the call took, in milliseconds.
    pub duration_ms: u64,
    /// `ok`, `error`, `denied`, `timeout` or `failed`.
    pub outcome: String,
    /// Short detail: error text, denial reason or exit code.
    pub detail: String,
}

impl AuditRecord {
    /// Current wall-clock time as audit `time`.
    pub fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d.as_millis() as f64) / 1000.0)
            .unwrap_or(0.0)
    }

    /// Milliseconds of `d`, saturating.
    pub fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Shared handle to the audit file.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating if needed) `<state_dir>/audit.jsonl`.
    pub fn open(state_dir: &Path) -> anyhow::Result<AuditLog> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state dir {}", state_dir.display()))?;
        let path = state_dir.join("audit.jsonl");
        let file = open_append(&path)?;
        Ok(AuditLog {
            path,
            file: Arc::new(Mutex::new(Some(file))),
        })
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a single line.
    pub fn record(&self, rec: &AuditRecord) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be encoded");
                return;
            }
        };
        line.push(b'\n');
        let mut guard = match self.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.is_none() {
            // A previous write failed; try to reopen (the disk may be back).
            *guard = open_append(&self.path).ok();
        }
        let result = match guard.as_mut() {
            Some(f) => f.write_all(&line),
            None => Err(std::io::Error::other("audit file is not open")),
        };
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e,
                session_id = %rec.session_id, kind = %rec.kind, name = %rec.name,
                "audit write failed; the call itself went ahead");
            *guard = None;
        }
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening audit log {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> AuditRecord {
        AuditRecord {
            time: AuditRecord::now(),
            session_id: "s1".into(),
            session_type: "chat".into(),
            user: "alice".into(),
            kind: "tool".into(),
            name: name.into(),
            args: "{}".into(),
            duration_ms: 3,
            outcome: "ok".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn records_append_as_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path()).expect("open");
        log.record(&rec("cpu"));
        log.record(&rec("memory"));
        // A second handle (as after a restart) appends, never truncates.
        AuditLog::open(dir.path())
            .expect("reopen")
            .record(&rec("uptime"));
        let text = std::fs::read_to_string(log.path()).expect("read");
        let names: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["name"].as_str().expect("name").to_string()
            })
            .collect();
        assert_eq!(names, ["cpu", "memory", "uptime"]);
    }

    #[test]
    fn audit_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path()).expect("open");
        let mode = std::fs::metadata(log.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
