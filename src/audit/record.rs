//! The shape of one audit line.

use serde::{Deserialize, Serialize};

/// Longest text kept per field of a record. Guest-supplied names and
/// arguments and server-supplied ids are all cut here, so no caller can make
/// one record large.
pub(crate) const FIELD_MAX: usize = 1024;

/// What a record is about.
pub mod kind {
    /// A session's lifecycle: accepted, refused, ended.
    pub(crate) const SESSION: &str = "session";
    /// A read-only tool call.
    pub(crate) const TOOL: &str = "tool";
    /// A shell command.
    pub(crate) const SHELL: &str = "shell";
    /// A language-model call (provider, model, tokens; never the content).
    pub(crate) const LLM: &str = "llm";
    /// A tool call from an MCP client (`catpaw-agent mcp`): `user` names
    /// the client as its `initialize` said, `name` the tool.
    pub(crate) const MCP: &str = "mcp";
    /// The trail itself: a gap found in it.
    pub const AUDIT: &str = "audit";
}

/// Where in its life an act or a session is.
pub mod event {
    /// Written (and for a shell, synced) before the act happens.
    pub(crate) const STARTED: &str = "started";
    /// How an act ended; follows its `started` record, or stands alone
    /// for an act that never started (denied, refused).
    pub(crate) const OUTCOME: &str = "outcome";
    /// A session was accepted (ack ok).
    pub(crate) const ACCEPTED: &str = "accepted";
    /// A session was refused (ack error in `detail`).
    pub(crate) const REFUSED: &str = "refused";
    /// A session ended (`outcome`: ok, cancelled, or its error code).
    pub(crate) const ENDED: &str = "ended";
    /// Records are missing or the trail was damaged (`detail` says how,
    /// `missing` which `seq`s when known): written by the agent when it
    /// finds the trail shorter than its head, at start or while it runs.
    pub const AUDIT_GAP: &str = "audit_gap";
}

/// Outcomes of an act.
pub mod outcome {
    /// A tool answered.
    pub(crate) const OK: &str = "ok";
    /// A tool failed.
    pub const ERROR: &str = "error";
    /// A shell command exited (code in `detail`).
    pub(crate) const EXIT: &str = "exit";
    /// A shell command ran past its timeout and its tree was killed.
    pub(crate) const TIMEOUT: &str = "timeout";
    /// The session ended (cancel, turn timeout, disconnect, shutdown) while
    /// the act ran; a shell's whole tree was killed.
    pub(crate) const CANCELLED: &str = "cancelled";
    /// The agent stopped (SIGKILL, crash, power loss) while the act ran;
    /// written by the next agent start.
    pub(crate) const KILLED: &str = "killed";
    /// Shell access is not granted to the session.
    pub(crate) const DENIED: &str = "denied";
    /// The host refused the request (budget, bad command, audit unavailable).
    pub(crate) const REFUSED: &str = "refused";
    /// The command could not be started.
    pub(crate) const FAILED: &str = "failed";
}

/// Who an act is done for: the session and the operator behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// Session id (server-chosen; bounded at admission, cut here anyway).
    pub session_id: String,
    /// `inspect`, `diagnose`, `chat`, or what the server sent.
    pub session_type: String,
    /// Operator who started the session.
    pub user: String,
    /// The signing key that vouched for the session (PROTOCOL §9).
    pub key_id: Option<String>,
}

/// One line of `audit.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the trail, 1-based, continuing across rotation.
    #[serde(default)]
    pub seq: u64,
    /// Unix time in seconds with millisecond precision.
    #[serde(default)]
    pub time: f64,
    /// [`kind`]: session, tool, shell, llm, mcp or audit.
    #[serde(default)]
    pub kind: String,
    /// [`event`]: started, outcome, accepted, refused, ended, audit_gap.
    #[serde(default)]
    pub event: String,
    /// For an outcome: the `seq` of its `started` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<u64>,
    /// The agent process that wrote a `started` record (so a later start
    /// can tell a dead writer's unfinished acts from a live one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Session the record belongs to.
    #[serde(default)]
    pub session_id: String,
    /// Its type.
    #[serde(default)]
    pub session_type: String,
    /// Operator.
    #[serde(default)]
    pub user: String,
    /// Signing key id, when the session was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Tool name, the (masked) shell command, or the session's plugin.
    #[serde(default)]
    pub name: String,
    /// Arguments (masked).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub args: String,
    /// [`outcome`], or for a session end: ok, cancelled or the error code.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// Short detail: exit code, error text, denial reason, ack error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// How long the act took, in milliseconds (outcome records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What a session used against its budgets (its `ended` record), as
    /// the sandbox's receipt writes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
    /// For a `refused` record: how many refusals of this cause (same
    /// `name` and `detail`) within one second it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// With `count` > 1: the session id of the last of them
    /// (`session_id` is the first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session_id: Option<String>,
    /// For an `accepted` record: hex SHA-256 of the runner component that
    /// serves the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_sha256: Option<String>,
    /// For an `accepted` record: what that runner is granted (its declared
    /// capabilities ∩ the operator's policy), e.g. `tools:cpu llm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
    /// For an `audit_gap` record: the first and last `seq` known to be
    /// missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<[u64; 2]>,
    /// For an `accepted` record: who vouches for that runner (`built-in`,
    /// `unsigned`, or `NAME (key KEYID)` whose signature was checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_signer: Option<String>,
    /// For an `ended` record: the session's recording (its file name
    /// under the recordings directory), or `failed: WHY` when it could
    /// not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// For an `ended` record: hex SHA-256 of the whole recording file,
    /// its seal line included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_sha256: Option<String>,
    /// Lowercase hex SHA-256 of the previous line of the trail.
    #[serde(default)]
    pub prev: String,
}

impl Record {
    /// A record of `kind`/`event` for `who`, fields cut and masked.
    pub fn new(who: &Who, kind: &str, event: &str, name: &str, args: &str) -> Record {
        Record {
            kind: kind.to_string(),
            event: event.to_string(),
            session_id: escape_cut(&who.session_id),
            session_type: escape_cut(&who.session_type),
            user: escape_cut(&who.user),
            key_id: who.key_id.as_deref().map(escape_cut),
            name: masked_cut(name),
            args: masked_cut(args),
            ..Record::default()
        }
    }

    /// Marks a `refused` record as standing for `count` refusals, the last
    /// of them for `last_session_id`.
    pub(crate) fn with_count(mut self, count: u64, last_session_id: &str) -> Record {
        self.count = Some(count);
        self.last_session_id = (count > 1).then(|| escape_cut(last_session_id));
        self
    }

    /// Names the runner that serves an accepted session: its SHA-256, who
    /// vouches for it and what it is granted.
    pub(crate) fn with_runner(mut self, sha256: &str, signer: &str, capabilities: &str) -> Record {
        self.runner_sha256 = Some(escape_cut(sha256));
        self.runner_signer = Some(escape_cut(signer));
        self.capabilities = Some(escape_cut(capabilities));
        self
    }

    /// Sets the outcome and its detail (cut and masked).
    pub(crate) fn with_outcome(mut self, outcome: &str, detail: &str) -> Record {
        self.outcome = outcome.to_string();
        self.detail = masked_cut(detail);
        self
    }
}

/// Current wall-clock time as a record `time`.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

fn cut(s: &str) -> &str {
    crate::util::truncate_utf8(s, FIELD_MAX)
}

/// Masked first, then cut ([`crate::tools::masked_cut`]).
fn masked_cut(s: &str) -> String {
    crate::tools::masked_cut(s, FIELD_MAX).0
}

/// Server-supplied identifiers are cut and kept free of control characters
/// (they are shown to people reading the trail in a terminal).
fn escape_cut(s: &str) -> String {
    crate::util::escape_control(cut(s)).into_owned()
}
