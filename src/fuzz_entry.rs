//! Entry points for the fuzz targets in `fuzz/` (RELIABILITY.md,
//! "Fuzzing"); nothing in the agent calls them.
//!
//! Why: every parser of bytes someone else chose is fuzzed as the agent
//! runs it, never through a copy that could drift. Most of them are
//! private to their module, so this is the one door the fuzz crate goes
//! through: each function here calls the agent's own code on the path the
//! bytes take (the server's frames through admission and §9, a chat turn,
//! a local alert line, what a guest hands the host, a model's answer),
//! adding only what a target needs to see the outcome (the frames the
//! connection would write, the events the buffer would send). Listed at
//! the top of `lib.rs` because it reaches into every layer below.

use futures_util::FutureExt as _;
use serde_json::{Map, Value};

use crate::ai::{self, GatewayConfig, ModelConfig, Secret};
use crate::alerts::ingest;
use crate::alerts::ringbuf::AlertBuffer;
use crate::link::conn::frames;
use crate::proto::{
    self, AckError, AlertEventsPayload, Envelope, SessionErrorPayload, SessionInputPayload,
    SessionOutputPayload, SessionStartPayload, SessionType, Unauthorized,
};
use crate::session::SessionEvent;
use crate::session::admission;
use crate::session::signing::{SigningConfig, Verifier};

pub use crate::ai::{Message, Reply, Role, ToolCall, ToolSpec};

// ---- what the server sends (PROTOCOL §4, §5, §9, §10) ----

/// The §9 checks of one connection: one replay cache, agent `agent_id`.
pub struct Signing {
    verifier: Verifier,
    agent_id: String,
}

impl Signing {
    /// Checks under `cfg` for the agent `agent_id`.
    pub fn new(cfg: SigningConfig, agent_id: &str) -> Signing {
        Signing {
            verifier: Verifier::new(cfg),
            agent_id: agent_id.to_string(),
        }
    }

    /// The §9 verdict on a `session_start` frame at `now_unix`.
    pub fn check_start(&self, frame: &str, now_unix: i64) -> Result<Option<String>, Unauthorized> {
        self.verifier.check_start(frame, &self.agent_id, now_unix)
    }

    /// The §9 verdict on a `session_input` frame at `now_unix`.
    pub fn check_input(&self, frame: &str, now_unix: i64) -> Result<Option<String>, Unauthorized> {
        self.verifier.check_input(frame, &self.agent_id, now_unix)
    }
}

/// The ack decision on the `session_start` frame `text` (whose envelope is
/// `env`) as the session table makes it when every runner serves, the
/// limiter has room and no session runs: the admitted payload and its
/// type, or the refusal.
pub fn admit(
    env: &Envelope,
    text: &str,
    signing: &Signing,
    now_unix: i64,
) -> Result<(SessionStartPayload, SessionType), AckError> {
    let admitted = admission::decide(
        env.payload.as_ref(),
        |_| signing.check_start(text, now_unix),
        |_| true,
        true,
        false,
        |_| false,
    )?;
    Ok((admitted.start, admitted.kind))
}

/// A `session_input` as the connection reads it: `(session_id, message)`,
/// `None` when its payload does not decode (the frame is dropped).
pub fn session_input(env: &Envelope) -> Option<(String, String)> {
    env.decode::<SessionInputPayload>()
        .map(|p| (p.session_id, p.message))
}

/// The longest `session_id` and `user_name` admission accepts (§10).
pub const MAX_SESSION_ID: usize = admission::MAX_SESSION_ID;
/// See [`MAX_SESSION_ID`].
pub const MAX_USER_NAME: usize = admission::MAX_USER_NAME;

// ---- local alert ingest (PROTOCOL §7, §10) ----

/// What the ingest socket made of a client's bytes.
#[derive(Debug, Default)]
pub struct Ingested {
    /// One reply per line that was not blank: accepted, or why not.
    pub replies: Vec<Result<(), String>>,
    /// The `alert_events` frames the buffer then sends, in order, with the
    /// number of events in each.
    pub frames: Vec<(usize, String)>,
    /// Events the buffer refused or overwrote.
    pub dropped: u64,
}

/// Feeds `bytes` to the ingest socket's line reader and parser, pushes
/// what it accepts into a buffer of `capacity` events, then drains that
/// buffer into frames as the connection does.
pub fn ingest(bytes: &[u8], capacity: i64) -> Ingested {
    let alerts = AlertBuffer::new(capacity);
    let mut out = Ingested::default();
    let mut reader = bytes;
    // A byte slice is always ready: every poll completes at once.
    while let Some(Ok(Some(line))) = ingest::read_line(&mut reader).now_or_never() {
        let result = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => ingest::parse_event(&l).map(|ev| alerts.push(ev)),
            Err(e) => Err(e),
        };
        out.replies.push(result);
    }
    loop {
        let events = alerts.drain_frame();
        if events.is_empty() {
            break;
        }
        let n = events.len();
        let env = Envelope::new(proto::MSG_ALERT_EVENTS, AlertEventsPayload { events });
        out.frames.push((n, env.to_json()));
    }
    out.dropped = alerts.dropped_total();
    out
}

/// The longest ingest line; most events and bytes in one alert frame.
pub const MAX_INGEST_LINE: usize = ingest::MAX_LINE;
/// See [`MAX_INGEST_LINE`].
pub const MAX_ALERT_EVENTS: usize = crate::alerts::frame::MAX_EVENTS;
/// See [`MAX_INGEST_LINE`].
pub const MAX_ALERT_FRAME_BYTES: usize = crate::alerts::frame::MAX_FRAME_BYTES;

// ---- what a guest hands the host ----

/// The frames the connection writes for one `emit` (or the final output)
/// of a guest: its delta and stage, the metadata JSON it gave, and a
/// report on the `done` message.
pub fn guest_output(
    session_id: &str,
    delta: String,
    stage: &str,
    metadata_json: Option<&str>,
    report: Option<String>,
    done: bool,
) -> Vec<String> {
    let payload = SessionOutputPayload {
        session_id: session_id.to_string(),
        delta,
        stage: stage.to_string(),
        done,
        report,
        metadata: metadata_json.and_then(crate::sandbox::parse_metadata),
    };
    frames::session_frames(SessionEvent::Output(payload))
        .into_iter()
        .map(|f| f.text)
        .collect()
}

/// The metadata a guest's `emit` carries, as the host reads it.
pub fn guest_metadata(metadata_json: &str) -> Option<Map<String, Value>> {
    crate::sandbox::parse_metadata(metadata_json)
}

/// The frame of a failed session whose error text a runner chose.
pub fn guest_error(session_id: &str, error: String, code: &str) -> Vec<String> {
    let payload = SessionErrorPayload {
        session_id: session_id.to_string(),
        error,
        code: code.to_string(),
    };
    frames::session_frames(SessionEvent::Error(payload))
        .into_iter()
        .map(|f| f.text)
        .collect()
}

/// §11's bounds on what the agent sends.
pub const MAX_FRAME_BYTES: usize = proto::MAX_FRAME_BYTES;
/// See [`MAX_FRAME_BYTES`].
pub const MAX_METADATA_BYTES: usize = proto::MAX_METADATA_BYTES;
/// See [`MAX_FRAME_BYTES`].
pub const MAX_REPORT_BYTES: usize = proto::MAX_REPORT_BYTES;
/// See [`MAX_FRAME_BYTES`].
pub const MAX_ERROR_BYTES: usize = proto::MAX_ERROR_BYTES;

/// Every built-in tool's name and the argument names its schema declares.
pub fn tools() -> Vec<(&'static str, Vec<String>)> {
    crate::tools::catalog()
        .iter()
        .map(|t| (t.name, crate::tools::schema_keys(t.params_schema)))
        .collect()
}

/// A tool call's arguments as the dispatcher checks them.
pub struct ToolArgs(crate::tools::Args);

/// Parses a guest's `args_json` for the tool `name` (one of [`tools`]).
pub fn tool_args(name: &str, args_json: &str) -> Result<ToolArgs, String> {
    let schema = crate::tools::catalog()
        .iter()
        .find(|t| t.name == name)
        .map(|t| crate::tools::schema_keys(t.params_schema))
        .unwrap_or_default();
    crate::tools::Args::parse(name, args_json, &schema).map(ToolArgs)
}

impl ToolArgs {
    /// As the tools read a string argument.
    pub fn string(&self, key: &str, max: usize) -> Result<Option<String>, String> {
        self.0.string(key, max)
    }

    /// As the tools read a list of strings.
    pub fn strings(&self, key: &str, items: usize, max: usize) -> Result<Vec<String>, String> {
        self.0.strings(key, items, max)
    }

    /// As the tools read a flag.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        self.0.flag(key, default)
    }

    /// As the tools read an integer.
    pub fn int(&self, key: &str, min: u64, max: u64, default: u64) -> Result<u64, String> {
        self.0.int(key, min, max, default)
    }

    /// As the tools read one of a few words.
    pub fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, String> {
        self.0.choice(key, choices, default)
    }
}

/// A guest's model request once the host built it.
#[derive(Debug)]
pub struct Request {
    /// The messages after the host's checks (tool messages masked).
    pub messages: Vec<Message>,
    /// The tools offered.
    pub tools: Vec<ToolSpec>,
    /// The body sent to an OpenAI-compatible endpoint.
    pub openai: Value,
    /// The body sent to the gateway.
    pub gateway: Value,
}

/// Builds a guest's model request: `tools` are `(name, description,
/// schema JSON)` as the guest gives them; `Err` is the refusal the guest
/// gets.
pub fn model_request(
    messages: Vec<Message>,
    tools: Vec<(String, String, String)>,
    answer_tokens: u64,
) -> Result<Request, String> {
    let tools = tools
        .into_iter()
        .map(
            |(name, description, params_schema)| crate::sandbox::GuestTool {
                name,
                description,
                params_schema,
            },
        )
        .collect();
    let (messages, tools) = crate::sandbox::guest_request(messages, tools)?;
    let model = ModelConfig {
        provider: "openai".into(),
        base_url: "http://127.0.0.1:1/v1".into(),
        api_key: Secret::new("sk-fuzz"),
        api_key_from_env: false,
        model: "fuzz-model".into(),
        max_tokens: 1024,
        max_completion_tokens: 0,
        context_window: 8192,
        extra_body: Map::new(),
    };
    let cx = ai::CallContext {
        scene: "chat",
        session_id: "fuzz".into(),
    };
    let openai = ai::openai_body(&model, &messages, &tools, answer_tokens);
    let gateway = ai::gateway_body(
        &GatewayConfig::default(),
        &cx,
        &messages,
        &tools,
        answer_tokens,
    );
    Ok(Request {
        messages,
        tools,
        openai,
        gateway,
    })
}

/// The host's masking of secrets in free text.
pub fn mask(text: &str) -> String {
    crate::tools::mask_secrets(text)
}

/// The host's masking of every string in a JSON value.
pub fn mask_json(value: &mut Value) {
    crate::tools::mask_json(value)
}

/// Masked, then cut to `cap` bytes; and whether it was cut.
pub fn masked_cut(text: &str, cap: usize) -> (String, bool) {
    crate::tools::masked_cut(text, cap)
}

// ---- what a model answers ----

/// A streamed answer whose body arrives as `chunks`: the text each event
/// added, in order, and the reply; `Err` is why the answer was refused.
pub fn model_stream(chunks: &[&[u8]]) -> Result<(Vec<String>, Reply), String> {
    let mut reader = ai::StreamReader::default();
    let mut texts = Vec::new();
    for chunk in chunks {
        if reader.ended() {
            break;
        }
        texts.extend(reader.push(chunk).map_err(|e| e.to_string())?);
    }
    let (last, reply) = reader.finish().map_err(|e| e.to_string())?;
    texts.extend(last);
    Ok((texts, reply))
}

/// A non-streamed answer read as a chat completion.
pub fn model_completion(text: &str) -> Result<Reply, String> {
    ai::completion(text).map_err(|e| e.to_string())
}

/// The gateway's answer of HTTP `status`: the reply and the model it
/// names.
pub fn gateway_answer(status: u16, body: &[u8]) -> Result<(Reply, Option<String>), String> {
    let status = reqwest::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
    ai::gateway_answer(status, body).map_err(|e| e.to_string())
}
