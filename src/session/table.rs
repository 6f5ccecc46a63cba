//! The session table: which sessions run, their cancel handles and chat
//! input queues. Entries leave the table, and limiter permits come back,
//! through a drop guard, so every path a session can end by cleans up.
//!
//! Why one file of about 500 lines: the table's entries, the limiter's
//! permits and the guard that removes an entry and writes its `ended`
//! audit record share one invariant (an entry exists exactly while its
//! permit is held and its `accepted` record has no `ended` yet); the
//! checks before a session is admitted already live in `admission.rs`,
//! and the figures in `figures.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::{self, Admitted};
use super::refusals::Refusals;
use super::{ChannelSink, LiveFigures, Runners, SessionEnd, SessionEvent, SessionFigures, drive};
use crate::audit::{AuditLog, Record, Who, event, kind};
use crate::proto::{self, AckError, SessionStartPayload, SessionType};
use crate::recorder::store::Store;
use crate::recorder::{Closed, RecorderOptions, Recording};
use crate::session::limiter::{ConcurrencyLimiter, Permit};
use crate::session::signing::{self, Verifier};
use crate::telemetry::Telemetry;

/// Chat turns queued per session before new ones are dropped.
pub(crate) const CHAT_QUEUE: usize = 8;

struct Entry {
    session_type: String,
    user: String,
    figures: Arc<LiveFigures>,
    cancel: CancellationToken,
    input: Option<mpsc::Sender<String>>,
}

/// A running session, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveSession {
    /// Session id.
    pub session_id: String,
    /// inspect, diagnose, chat.
    pub session_type: String,
    /// The operator who started it.
    pub user: String,
    /// Its figures so far (`duration_ms` is its age).
    pub figures: SessionFigures,
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
    /// The runners new sessions get; replaced whole by a reload, while
    /// running sessions keep the ones they started with.
    runners: Arc<RwLock<Runners>>,
    allow_remote_shell: bool,
    tasks: TaskTracker,
    /// Session lifecycle records (accepted, ended).
    audit: Option<AuditLog>,
    /// Refusals, counted into the audit per second and cause.
    refusals: Option<Refusals>,
    /// Signature checks of PROTOCOL §9, with this agent's id.
    signing: Arc<(Verifier, String)>,
    /// The agent's counters.
    telemetry: Option<Telemetry>,
    /// `[recorder]` and the store recordings go to (`None`: off).
    recorder: Option<(RecorderOptions, Store)>,
    /// Sessions accepted so far (the idle shedder's "anything new?").
    started: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("active", &self.active())
            .field("max", &self.limiter.max())
            .finish()
    }
}

/// Removes the entry, releases the permit and writes the session's `ended`
/// audit record when it is dropped: just before the session's `done` is
/// sent, or on any other path, a task torn down at shutdown included (then
/// the outcome reads `cancelled`).
struct Cleanup {
    table: Arc<Mutex<HashMap<String, Entry>>>,
    id: String,
    _permit: Permit,
    audit: Option<(AuditLog, Who)>,
    end: Option<SessionEnd>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(&self.id);
        drop(t);
        if let Some((log, who)) = &self.audit {
            let end = self.end.as_ref();
            let outcome = end.map_or("cancelled", |e| e.outcome.as_str());
            let mut record =
                Record::new(who, kind::SESSION, event::ENDED, "", "").with_outcome(outcome, "");
            record.receipt = end
                .and_then(|e| e.receipt.as_ref())
                .and_then(|r| serde_json::to_value(r).ok());
            match end.and_then(|e| e.recording.as_ref()) {
                Some(Closed::Sealed { file, sha256 }) => {
                    record.recording = Some(file.clone());
                    record.recording_sha256 = Some(sha256.clone());
                }
                Some(Closed::Failed(why)) => {
                    record.recording = Some(
                        crate::util::truncate_utf8(
                            &crate::tools::mask_secrets(&format!("failed: {why}")),
                            1024,
                        )
                        .to_string(),
                    );
                }
                None => {}
            }
            log.note(record);
        }
    }
}

/// Who a `session_start` payload names, as far as it can be read (for the
/// audit record of a refusal).
fn who_of(payload: Option<&Value>) -> Who {
    let field = |k: &str| {
        payload
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let key_id = Some(field("key_id")).filter(|k| !k.is_empty());
    Who {
        session_id: field("session_id"),
        session_type: field("session_type"),
        user: field("user_name"),
        key_id,
    }
}

impl SessionTable {
    /// A table serving `runners`, with at most `max_sessions` at once.
    /// `allow_remote_shell` is the operator's `[sandbox] allow_remote_shell`.
    pub fn new(runners: Runners, max_sessions: usize, allow_remote_shell: bool) -> Self {
        SessionTable {
            inner: Arc::new(Mutex::new(HashMap::new())),
            limiter: ConcurrencyLimiter::new(max_sessions),
            runners: Arc::new(RwLock::new(runners)),
            allow_remote_shell,
            tasks: TaskTracker::new(),
            audit: None,
            refusals: None,
            signing: Arc::new((Verifier::new(Default::default()), String::new())),
            telemetry: None,
            recorder: None,
            started: Arc::default(),
        }
    }

    /// Records every session it accepts as `opts` say, into `store`
    /// (`[recorder]`; off unless called).
    pub fn with_recorder(mut self, opts: RecorderOptions, store: Store) -> Self {
        self.recorder = opts.enabled.then_some((opts, store));
        self
    }

    /// The store recordings go to, when recording is on.
    pub fn recordings(&self) -> Option<Store> {
        self.recorder.as_ref().map(|(_, s)| s.clone())
    }

    /// Counts sessions, budget breaches and shell requests into
    /// `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The running sessions, oldest first.
    pub fn list(&self) -> Vec<ActiveSession> {
        let mut v: Vec<ActiveSession> = self
            .lock()
            .iter()
            .map(|(id, e)| ActiveSession {
                session_id: id.clone(),
                session_type: e.session_type.clone(),
                user: e.user.clone(),
                figures: e.figures.snapshot(),
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.figures.duration));
        v
    }

    /// Writes session lifecycle records to `audit`.
    pub(crate) fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.refusals = audit.clone().map(Refusals::new);
        self.audit = audit;
        self
    }

    /// Writes the refusals counted so far, the current second's included
    /// (at shutdown).
    pub(crate) fn flush_refusals(&self) {
        if let Some(r) = &self.refusals {
            r.flush();
        }
    }

    /// Checks signatures with `verifier` for the agent `agent_id`.
    pub(crate) fn with_signing(mut self, verifier: Verifier, agent_id: String) -> Self {
        self.signing = Arc::new((verifier, agent_id));
        self
    }

    /// Checks a `session_input` frame's signature (PROTOCOL §9): Ok with
    /// the key id when signed, Ok(None) when unsigned and allowed. A
    /// refusal is audited, as every refusal of §9 is; `payload` names the
    /// session in that record.
    pub(crate) fn check_input(
        &self,
        frame: &str,
        payload: Option<&Value>,
    ) -> Result<Option<String>, signing::Unauthorized> {
        let (v, agent_id) = &*self.signing;
        let checked = v.check_input(frame, agent_id, signing::now_unix());
        if let Err(e) = &checked {
            self.note_refusal(payload, proto::MSG_SESSION_INPUT, &e.to_string());
        }
        checked
    }

    /// Audits a refused `session_start` (`what` empty) or `session_input`:
    /// who `payload` names, and why; counted into one record per second
    /// and cause (`refusals.rs`).
    fn note_refusal(&self, payload: Option<&Value>, what: &str, why: &str) {
        if let Some(r) = &self.refusals {
            r.note(what, why, who_of(payload));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    /// Sessions started since the table was made (accepted ones).
    pub fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The runners new sessions are served by.
    pub fn runners(&self) -> Runners {
        self.runners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves new sessions with `runners` from now on (a reload). Sessions
    /// already running finish on the runners they started with.
    pub fn replace_runners(&self, runners: Runners) {
        *self.runners.write().unwrap_or_else(|p| p.into_inner()) = runners;
    }

    /// Checks a `session_start` payload (PROTOCOL §5 in order, with the
    /// bounds of §10 and the signature of §9 after step 2) and, when it is
    /// acceptable, starts the session, sending its output to `out`.
    /// `frame` is the whole text frame the payload came in (the signature
    /// covers the exact bytes of its `params`). Accepted and refused
    /// sessions are audited.
    pub fn start(
        &self,
        payload: Option<&Value>,
        frame: &str,
        out: mpsc::Sender<SessionEvent>,
    ) -> Result<String, AckError> {
        let result = self.admit(payload, frame, out);
        if let Err(e) = &result {
            self.note_refusal(payload, "", &e.to_string());
        }
        result
    }

    fn admit(
        &self,
        payload: Option<&Value>,
        frame: &str,
        out: mpsc::Sender<SessionEvent>,
    ) -> Result<String, AckError> {
        let runners = self.runners();
        let mut table = self.lock();
        let (verifier, agent_id) = &*self.signing;
        let Admitted { start, kind } = admission::decide(
            payload,
            |_| verifier.check_start(frame, agent_id, signing::now_unix()),
            |t| runners.serves(t),
            runners.any(),
            self.limiter.is_full(),
            |id| table.contains_key(id),
        )?;
        let type_label = kind.metric_label();
        let permit = self
            .limiter
            .try_acquire()
            .ok_or(AckError::MaxConcurrentSessions)?;
        let asked = start.params.get(proto::PARAM_ALLOW_SHELL) == Some(&Value::Bool(true));
        // Fail closed: both the operator and the session must want it.
        let allow_shell = self.allow_remote_shell && asked;
        if asked && !allow_shell {
            tracing::warn!(session_id = %start.session_id,
                "session asked for a shell; denied because [sandbox] allow_remote_shell is false");
        }
        if let Some(t) = &self.telemetry {
            if asked {
                t.shell_request(allow_shell);
            }
            t.session_started(type_label);
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let figures = Arc::new(LiveFigures::default());
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(CHAT_QUEUE);
        let is_chat = kind == SessionType::Chat;
        table.insert(
            start.session_id.clone(),
            Entry {
                session_type: start.session_type.clone(),
                user: start.user_name.clone(),
                figures: figures.clone(),
                cancel: cancel.clone(),
                input: is_chat.then_some(tx),
            },
        );
        drop(table);
        let who = Who {
            session_id: start.session_id.clone(),
            session_type: start.session_type.clone(),
            user: start.user_name.clone(),
            key_id: start.key_id.clone(),
        };
        if let Some(log) = &self.audit {
            let mut record = accepted_record(&who, &start, allow_shell);
            if let Some(f) = runners.file_for(&kind) {
                record = record.with_runner(&f.sha256, &f.signer, &f.capabilities);
            }
            log.note(record);
        }
        let cleanup = Cleanup {
            table: self.inner.clone(),
            id: start.session_id.clone(),
            _permit: permit,
            audit: self.audit.clone().map(|l| (l, who)),
            end: None,
        };
        let id = start.session_id.clone();
        let telemetry = self.telemetry.clone();
        // Recorded from the accepted record on: the recording's seal goes
        // into the session's `ended` record.
        let recording = self
            .recorder
            .as_ref()
            .map(|(o, store)| Recording::create_in(store, &id, o, self.telemetry.clone()));
        let sink = ChannelSink::new(id.clone(), out)
            .counting(figures.clone())
            .recording(recording);
        self.tasks.spawn(async move {
            let mut cleanup = cleanup;
            let (sid, stype, user) = (
                start.session_id.clone(),
                start.session_type.clone(),
                start.user_name.clone(),
            );
            let release = move |end: &SessionEnd| {
                cleanup.end = Some(end.clone());
                drop(cleanup);
            };
            let end = drive(start, allow_shell, runners, sink, rx, cancel, release).await;
            let fig = figures.snapshot();
            fig.log_end(
                (&sid, &stype, &user),
                &end.outcome,
                end.error.as_deref(),
                end.receipt.as_ref(),
            );
            if let Some(t) = &telemetry {
                if let Some(b) = end.breach {
                    t.budget_breach(super::budget_kind(b));
                }
                t.session_ended(type_label, &end.outcome, fig.duration);
            }
        });
        Ok(id)
    }

    /// Queues a chat turn (`session_input`); the caller checked its
    /// signature with [`SessionTable::check_input`].
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
                tracing::debug!(session_id, session_type = %e.session_type, "cancelling session");
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels every session (connection lost, shutdown).
    pub(crate) fn cancel_all(&self) {
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

/// The `accepted` record: the session's plugin and its parameters (masked).
/// (The runner that serves it is added by [`Record::with_runner`].)
fn accepted_record(who: &Who, start: &SessionStartPayload, allow_shell: bool) -> Record {
    let plugin = start
        .params
        .get(proto::PARAM_PLUGIN)
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Each string masked on its own: in the JSON text the first word of a
    // value is glued to its key (`{"message":"mysql`), and the rules that
    // look at a command's program name would not see it.
    let mut params = Value::Object(start.params.clone());
    crate::tools::mask_json(&mut params);
    Record::new(
        who,
        kind::SESSION,
        event::ACCEPTED,
        plugin,
        &params.to_string(),
    )
    .with_outcome("", &format!("allow_shell={allow_shell}"))
}
