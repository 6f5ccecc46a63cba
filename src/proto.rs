//! The wire protocol (version 1): envelope, payloads and every wire string.
//!
//! (Over 450 lines on purpose: the whole wire contract in one file, each
//! shape beside its spelling, so it can be read against PROTOCOL.md in one
//! go.)
//!
//! The bounds on what the agent sends (PROTOCOL §11) live beside the
//! shapes, in `proto/outbound.rs`.
//!
//! Field names, message types, error texts and codes here are the contract
//! with catpaw-server and must stay byte-for-byte as the reference agent
//! sends them. Message types, session types, parameter and metadata keys,
//! ack errors (the §9 `unauthorized: …` refusals included), error codes
//! and stages are spelled here; the rest of the crate uses these names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Protocol version sent in `X-Proto-Version`.
pub(crate) const PROTO_VERSION: &str = "1";

// Message types.
/// Agent → server: first message after the upgrade.
pub const MSG_REGISTER: &str = "register";
/// Agent → server: liveness and load, every 30 s.
pub(crate) const MSG_HEARTBEAT: &str = "heartbeat";
/// Agent → server: a batch of alert events.
pub(crate) const MSG_ALERT_EVENTS: &str = "alert_events";
/// Agent → server: streamed session output.
pub(crate) const MSG_SESSION_OUTPUT: &str = "session_output";
/// Agent → server: a session failed.
pub(crate) const MSG_SESSION_ERROR: &str = "session_error";
/// Both ways: acknowledgement.
pub const MSG_ACK: &str = "ack";
/// Server → agent: keep-alive.
pub(crate) const MSG_PING: &str = "ping";
/// Server → agent: go away and come back later.
pub const MSG_DISCONNECT: &str = "disconnect";
/// Server → agent: start a session.
pub const MSG_SESSION_START: &str = "session_start";
/// Server → agent: a chat turn.
pub const MSG_SESSION_INPUT: &str = "session_input";
/// Server → agent: cancel a session.
pub const MSG_SESSION_CANCEL: &str = "session_cancel";

// Session types.
/// One-shot look at one plugin area.
pub(crate) const SESSION_INSPECT: &str = "inspect";
/// Alert diagnosis.
pub(crate) const SESSION_DIAGNOSE: &str = "diagnose";
/// Multi-turn chat.
pub(crate) const SESSION_CHAT: &str = "chat";

/// `session_start.session_type`, parsed once at admission. Anything else
/// the server sends is kept as [`SessionType::Other`]: it is acked and then
/// answered with `invalid_type` (PROTOCOL §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionType {
    /// One-shot look at one plugin area.
    Inspect,
    /// Alert diagnosis.
    Diagnose,
    /// Multi-turn chat.
    Chat,
    /// A type nobody serves.
    Other(String),
}

impl SessionType {
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> SessionType {
        match s {
            SESSION_INSPECT => SessionType::Inspect,
            SESSION_DIAGNOSE => SessionType::Diagnose,
            SESSION_CHAT => SessionType::Chat,
            other => SessionType::Other(other.to_string()),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            SessionType::Inspect => SESSION_INSPECT,
            SessionType::Diagnose => SESSION_DIAGNOSE,
            SessionType::Chat => SESSION_CHAT,
            SessionType::Other(s) => s,
        }
    }

    /// The type as a metric label: the three served types by name, any
    /// other as `other`. A server's `session_type` is free text; as a label
    /// each new spelling would be a series kept for the process's life.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SessionType::Inspect => SESSION_INSPECT,
            SessionType::Diagnose => SESSION_DIAGNOSE,
            SessionType::Chat => SESSION_CHAT,
            SessionType::Other(_) => "other",
        }
    }
}

// Stages of `session_output.stage`.
/// The runner explains what it is about to do.
pub(crate) const STAGE_THINKING: &str = "thinking";
/// The runner calls a tool.
pub(crate) const STAGE_TOOL_CALL: &str = "tool_call";
/// What a tool returned.
pub(crate) const STAGE_TOOL_RESULT: &str = "tool_result";
/// Part of the answer.
pub(crate) const STAGE_ANSWER: &str = "answer";
/// A failed chat turn.
pub(crate) const STAGE_ERROR: &str = "error";

// Keys of `session_start.params` and of `session_output.metadata`.
/// The plugin area of inspect / diagnose.
pub(crate) const PARAM_PLUGIN: &str = "plugin";
/// The target host of inspect / diagnose.
pub(crate) const PARAM_TARGET: &str = "target";
/// The alert text of a diagnose.
pub(crate) const PARAM_DESCRIPTIONS: &str = "descriptions";
/// A chat's first turn.
pub(crate) const PARAM_MESSAGE: &str = "message";
/// The session asks for a shell (JSON `true` only).
pub(crate) const PARAM_ALLOW_SHELL: &str = "allow_shell";
/// `metadata` flag on the message that ends a chat turn.
pub(crate) const META_TURN_DONE: &str = "turn_done";
/// `session_output.metadata` key, `true` on a delta that is a piece of
/// language-model text streamed as it arrives (consecutive pieces join
/// without separators).
pub(crate) const META_LLM_STREAM: &str = "llm_stream";
/// `target` when the server gives none.
pub(crate) const DEFAULT_TARGET: &str = "localhost";
/// `plugin` of a diagnose when the server gives none.
pub(crate) const DEFAULT_DIAGNOSE_PLUGIN: &str = "system";

/// `session_error.error` of an inspect session without a plugin.
pub(crate) const PLUGIN_REQUIRED_FOR_INSPECT: &str = "plugin is required for inspect";

/// `session_error.error` for a session type nobody knows.
pub(crate) fn unknown_session_type(t: &str) -> String {
    format!("unknown session type: {t}")
}

/// Why a `session_start` was refused (`ack.error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Payload missing or not decodable.
    #[error("invalid payload")]
    InvalidPayload,
    /// `session_id` empty.
    #[error("missing session_id")]
    MissingSessionId,
    /// `session_id` too long or with control characters (PROTOCOL §10).
    #[error("invalid session_id")]
    InvalidSessionId,
    /// `user_name` too long (PROTOCOL §10).
    #[error("invalid user_name")]
    InvalidUserName,
    /// The signature check failed (PROTOCOL §9).
    #[error("{0}")]
    Unauthorized(#[from] Unauthorized),
    /// No chat runner.
    #[error("chat engine not available")]
    ChatEngineNotAvailable,
    /// No diagnose runner (or no runner at all).
    #[error("diagnose engine not available")]
    DiagnoseEngineNotAvailable,
    /// Limiter full.
    #[error("max concurrent sessions reached")]
    MaxConcurrentSessions,
    /// Same id already running.
    #[error("duplicate session_id")]
    DuplicateSessionId,
}

/// Why a signed-session check refused a message. `Display` is the wire text
/// of `ack.error` (PROTOCOL §9); the checks live in [`crate::session::signing`].
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// Unsigned, and `require` is on.
    #[error("unauthorized: signature required")]
    SignatureRequired,
    /// `key_id` is not in `[server.signing] keys`.
    #[error("unauthorized: unknown key")]
    UnknownKey,
    /// Malformed signature fields, a line break in a signed field, or a
    /// signature that does not verify.
    #[error("unauthorized: bad signature")]
    BadSignature,
    /// `timestamp` is more than `max_skew` away from now.
    #[error("unauthorized: stale timestamp")]
    StaleTimestamp,
    /// `(key_id, nonce)` was accepted within the last `2 × max_skew`, or the
    /// replay cache is full (fail closed).
    #[error("unauthorized: replayed nonce")]
    ReplayedNonce,
}

/// `session_error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Inspect without `params.plugin`.
    MissingPlugin,
    /// The runner failed.
    DiagnoseFailed,
    /// The chat could not be created.
    ChatInitFailed,
    /// Unknown session type.
    InvalidType,
    /// A fuel, memory, time or output budget was exceeded (ours).
    ResourceExhausted,
    /// The runner trapped (ours).
    RunnerTrapped,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingPlugin => "missing_plugin",
            ErrorCode::DiagnoseFailed => "diagnose_failed",
            ErrorCode::ChatInitFailed => "chat_init_failed",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::RunnerTrapped => "runner_trapped",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Not JSON, or not an envelope.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// An envelope without a type.
    #[error("frame has an empty type")]
    EmptyType,
}

// Go's `omitempty`, which the reference agent's payloads use: a field
// tagged so is left out when it is "" / an empty map / 0, not only when
// absent. Every optional field below follows it (PROTOCOL §3).
fn is_empty_str(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

fn is_empty_map(m: &Option<Map<String, Value>>) -> bool {
    m.as_ref().is_none_or(Map::is_empty)
}

/// Every frame: one JSON text message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Message type.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Fresh UUIDv4 per message.
    #[serde(default)]
    pub id: String,
    /// The id this message answers; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub ref_id: Option<String>,
    /// Payload; omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// A fresh random (version 4) message id, drawn from the thread's
/// cryptographically seeded generator instead of a `getrandom` call per
/// message.
fn fresh_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

impl Envelope {
    /// A new message with a fresh id.
    pub fn new(msg_type: &str, payload: impl Serialize) -> Envelope {
        Envelope {
            msg_type: msg_type.to_string(),
            id: fresh_id().to_string(),
            ref_id: None,
            payload: serde_json::to_value(payload).ok().filter(|v| !v.is_null()),
        }
    }

    /// A reply to message `ref_id`.
    pub fn reply(msg_type: &str, ref_id: &str, payload: impl Serialize) -> Envelope {
        let mut e = Envelope::new(msg_type, payload);
        e.ref_id = Some(ref_id.to_string());
        e
    }

    /// The JSON text of a new message of `msg_type` carrying `payload`,
    /// written straight from the payload: the same bytes as
    /// `Envelope::new(msg_type, payload).to_json()` for a payload that is
    /// not `null`, without the detour through a `serde_json::Value` (the
    /// per-delta path).
    pub fn encode(msg_type: &str, payload: &impl Serialize) -> String {
        #[derive(Serialize)]
        struct Frame<'a, P> {
            #[serde(rename = "type")]
            msg_type: &'a str,
            id: uuid::fmt::Hyphenated,
            payload: &'a P,
        }
        let frame = Frame {
            msg_type,
            id: fresh_id().hyphenated(),
            payload,
        };
        // Serializing plain structs cannot fail.
        serde_json::to_string(&frame).unwrap_or_default()
    }

    /// JSON text of the frame.
    pub fn to_json(&self) -> String {
        // Serializing plain structs and serde_json::Values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a text frame.
    pub fn parse(text: &str) -> Result<Envelope, ProtoError> {
        let e: Envelope = serde_json::from_str(text)?;
        if e.msg_type.is_empty() {
            return Err(ProtoError::EmptyType);
        }
        Ok(e)
    }

    /// Decodes the payload as `T`; `None` when missing or not decodable.
    pub fn decode<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        let v = self.payload.as_ref()?;
        if !v.is_object() {
            return None;
        }
        serde_json::from_value(v.clone()).ok()
    }
}

/// `register` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegisterPayload {
    /// Host name.
    pub hostname: String,
    /// Primary non-loopback IPv4, may be "".
    pub ip: String,
    /// Go's GOOS spelling.
    pub os: String,
    /// Go's GOARCH spelling.
    pub arch: String,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// Plugin names.
    pub plugins: Vec<String>,
    /// This agent's version.
    pub agent_version: String,
    /// Seconds since process start.
    pub uptime_sec: u64,
}

fn is_zero_or_none(v: &Option<f64>) -> bool {
    v.is_none_or(|x| x == 0.0)
}

/// `heartbeat` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HeartbeatPayload {
    /// Sessions running now.
    pub active_sessions: u64,
    /// Alert events waiting in the buffer.
    pub active_alerts: u64,
    /// Host CPU busy percent; omitted when unknown or 0.
    #[serde(default, skip_serializing_if = "is_zero_or_none")]
    pub cpu_pct: Option<f64>,
    /// Host memory used percent; omitted when unknown or 0.
    #[serde(default, skip_serializing_if = "is_zero_or_none")]
    pub mem_pct: Option<f64>,
}

/// Alert severity, spelled as the server expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventStatus {
    /// Critical.
    Critical,
    /// Warning.
    Warning,
    /// Info.
    Info,
    /// Recovered.
    Ok,
}

/// One alert event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Unix seconds.
    pub event_time: i64,
    /// Severity.
    pub event_status: EventStatus,
    /// Identity of the alert.
    pub alert_key: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra attributes; omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// Text.
    #[serde(default)]
    pub description: String,
    /// `markdown` or omitted (also when empty).
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub description_format: Option<String>,
}

/// `alert_events` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlertEventsPayload {
    /// The batch, oldest first.
    pub events: Vec<AlertEvent>,
}

/// `session_output` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionOutputPayload {
    /// Session id.
    pub session_id: String,
    /// Text (may be empty).
    pub delta: String,
    /// Stage ("" on the final message).
    pub stage: String,
    /// True on the last message.
    pub done: bool,
    /// Final report (inspect/diagnose); omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub report: Option<String>,
    /// Extra data, e.g. `{"turn_done": true}`; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub metadata: Option<Map<String, Value>>,
}

/// `session_error` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionErrorPayload {
    /// Session id.
    pub session_id: String,
    /// Human-readable error.
    pub error: String,
    /// One of [`ErrorCode`].
    pub code: String,
}

/// `ack` payload (both directions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckPayload {
    /// Accepted?
    pub ok: bool,
    /// Why not; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub error: Option<String>,
    /// Server-side warning on the register ack; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub warning: Option<String>,
}

/// `disconnect` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct DisconnectPayload {
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Seconds to wait before reconnecting.
    #[serde(default)]
    pub retry_after_sec: i64,
}

/// `session_start` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionStartPayload {
    /// Session id.
    #[serde(default)]
    pub session_id: String,
    /// inspect, diagnose, chat, …
    #[serde(default)]
    pub session_type: String,
    /// Operator.
    #[serde(default)]
    pub user_name: String,
    /// Parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The signing key id (PROTOCOL §9). Only ever set on an accepted
    /// session when its signature was checked against that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// `session_input` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct SessionInputPayload {
    /// Session id.
    #[serde(default)]
    pub session_id: String,
    /// The chat turn.
    #[serde(default)]
    pub message: String,
}

/// `session_cancel` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct SessionCancelPayload {
    /// Session id.
    #[serde(default)]
    pub session_id: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// Go's GOOS for this build.
pub(crate) fn go_os() -> &'static str {
    go_os_of(std::env::consts::OS)
}

/// Go's GOARCH for this build.
pub fn go_arch() -> &'static str {
    go_arch_of(std::env::consts::ARCH, cfg!(target_endian = "little"))
}

fn go_os_of(os: &'static str) -> &'static str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

fn go_arch_of(arch: &'static str, little: bool) -> &'static str {
    match (arch, little) {
        ("x86_64", _) => "amd64",
        ("aarch64", _) => "arm64",
        ("x86", _) => "386",
        ("arm", _) => "arm",
        ("powerpc64", true) => "ppc64le",
        ("powerpc64", false) => "ppc64",
        ("mips64", true) => "mips64le",
        ("mips", true) => "mipsle",
        ("loongarch64", _) => "loong64",
        (other, _) => other,
    }
}

mod outbound;
pub use outbound::{
    MAX_DELTA_JSON_BYTES, MAX_ERROR_BYTES, MAX_FRAME_BYTES, MAX_METADATA_BYTES, MAX_REPORT_BYTES,
    cut_error, cut_report, report_marker,
};
pub(crate) use outbound::{json_char_len, json_str_len, prefix_within};

#[cfg(test)]
mod tests;
