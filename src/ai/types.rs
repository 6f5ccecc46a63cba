//! What a call is made of: messages, tools, the reply, its usage, and the
//! errors a caller can act on.

use std::time::Duration;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The operator (or the alert).
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The model's id for the call.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments (a JSON object in text).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Calls made by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Name.
    pub name: String,
    /// What it returns.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// Tokens one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The assistant message.
    pub message: Message,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, …).
    pub finish_reason: String,
    /// Tokens used.
    pub usage: Usage,
}

/// Why a call produced no reply. Texts are fit for the operator and hold
/// no credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// No model is configured.
    #[error("no language model is configured: {0}")]
    NotConfigured(String),
    /// A token budget (`daily_token_limit`, or one the caller gave) cannot
    /// hold the most the call may cost; nothing was sent.
    #[error("{0}")]
    Budget(String),
    /// Every attempt ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// A provider refused the request (4xx other than 429).
    #[error("{0}")]
    Refused(String),
    /// Every model failed.
    #[error("{0}")]
    AllFailed(String),
}

/// The caller's side of a call: what the gateway is told and where
/// streamed text goes.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// `diagnose` or `chat` (the gateway's `X-Agent-Scene`).
    pub scene: &'static str,
    /// The session asking (gateway metadata).
    pub session_id: String,
}

/// Streamed while a call runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    /// Model text, as it arrives.
    Text(String),
    /// The host says what it does: a retry, a switch to the next model.
    Notice(String),
}

/// How one call went, for the audit: what answered, after how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// `openai` or `gateway`, of the backend that answered (or last failed).
    pub provider: &'static str,
    /// Its `[ai.models.<name>]` name or `server:<scene>`.
    pub name: String,
    /// The provider's model id (`-` for the gateway when it named none).
    pub model: String,
    /// Requests sent, retries and failovers included.
    pub attempts: u32,
    /// Whole time of the call, waits included.
    pub duration: Duration,
}
