//! The session table: which sessions run, their cancel handles and chat
//! input queues. Entries leave the table, and limiter permits come back,
//! through a drop guard, so every path a session can end by cleans up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Runners, SessionEvent, run_session};
use crate::limiter::{ConcurrencyLimiter, Permit};
use crate::proto::{self, AckError};

/// Chat turns queued per session before new ones are dropped.
pub const CHAT_QUEUE: usize = 8;

struct Entry {
    session_type: String,
    cancel: CancellationToken,
    input: Option<mpsc::Sender<String>>,
}

/// What `session_input` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOutcome {
    /// Queued for the chat.
    Queued,
    /// The chat's queue was full: dropped.
    QueueFull,
    /// Empty message: ignored.
    Empty,
    /// No such session.
    Unknown,
    /// The session is not a chat.
    NotChat,
}

/// Running sessions, shared by every connection of the agent.
#[derive(Clone)]
pub struct SessionTable {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    limiter: ConcurrencyLimiter,
    runners: Runners,
    allow_remote_shell: bool,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("active", &self.active())
            .field("max", &self.limiter.max())
            .finish()
    }
}

/// Removes the entry and releases the permit when the session task ends.
struct Cleanup {
    table: Arc<Mutex<HashMap<String, Entry>>>,
    id: String,
    _permit: Permit,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(&self.id);
    }
}

impl SessionTable {
    /// A table serving `runners`, with at most `max_sessions` at once.
    /// `allow_remote_shell` is the operator's `[sandbox] allow_remote_shell`.
    pub fn new(runners: Runners, max_sessions: usize, allow_remote_shell: bool) -> Self {
        SessionTable {
            inner: Arc::new(Mutex::new(HashMap::new())),
            limiter: ConcurrencyLimiter::new(max_sessions),
            runners,
            allow_remote_shell,
            tasks: TaskTracker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    /// The runners sessions are served by.
    pub fn runners(&self) -> &Runners {
        &self.runners
    }

    /// Checks a `session_start` payload (PROTOCOL §5, in order) and, when it
    /// is acceptable, starts the session, sending its output to `out`.
    pub fn start(
        &self,
        payload: Option<&Value>,
        out: mpsc::Sender<SessionEvent>,
    ) -> Result<String, AckError> {
        let mut table = self.lock();
        let start = proto::decide_session_start(
            payload,
            |t| self.runners.serves(t),
            self.runners.any(),
            self.limiter.is_full(),
            |id| table.contains_key(id),
        )?;
        let permit = self
            .limiter
            .try_acquire()
            .ok_or(AckError::MaxConcurrentSessions)?;
        let asked = start.params.get("allow_shell") == Some(&Value::Bool(true));
        // Fail closed: both the operator and the session must want it.
        let allow_shell = self.allow_remote_shell && asked;
        if asked && !allow_shell {
            tracing::warn!(session_id = %start.session_id,
                "session asked for a shell; denied because [sandbox] allow_remote_shell is false");
        }
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(CHAT_QUEUE);
        let is_chat = start.session_type == proto::SESSION_CHAT;
        table.insert(
            start.session_id.clone(),
            Entry {
                session_type: start.session_type.clone(),
                cancel: cancel.clone(),
                input: is_chat.then_some(tx),
            },
        );
        drop(table);
        let cleanup = Cleanup {
            table: self.inner.clone(),
            id: start.session_id.clone(),
            _permit: permit,
        };
        let id = start.session_id.clone();
        let runners = self.runners.clone();
        self.tasks.spawn(async move {
            let _cleanup = cleanup;
            run_session(start, allow_shell, runners, out, rx, cancel).await;
        });
        Ok(id)
    }

    /// Queues a chat turn (`session_input`).
    pub fn input(&self, session_id: &str, message: String) -> InputOutcome {
        if message.is_empty() {
            return InputOutcome::Empty;
        }
        let table = self.lock();
        let Some(entry) = table.get(session_id) else {
            return InputOutcome::Unknown;
        };
        let Some(tx) = &entry.input else {
            return InputOutcome::NotChat;
        };
        match tx.try_send(message) {
            Ok(()) => InputOutcome::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => InputOutcome::QueueFull,
            Err(mpsc::error::TrySendError::Closed(_)) => InputOutcome::Unknown,
        }
    }

    /// Cancels one session; false when it was not running.
    pub fn cancel(&self, session_id: &str) -> bool {
        match self.lock().get(session_id) {
            Some(e) => {
                tracing::info!(session_id, session_type = %e.session_type, "cancelling session");
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels every session (connection lost, shutdown).
    pub fn cancel_all(&self) {
        for e in self.lock().values() {
            e.cancel.cancel();
        }
    }

    /// Waits until no session runs, at most `limit`; true when they all
    /// ended.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.active() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}
