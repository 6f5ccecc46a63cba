//! What `[ai]` says, typed: the models, the gateway, the limits. The
//! config file's `[ai]` section is parsed into these by `crate::config`
//! (catpaw's key names and defaults live there).

use std::collections::BTreeMap;
use std::time::Duration;

/// A credential from the config file. It prints as `[redacted]`, so no
/// `Debug` of the config, log line or error can show it; [`Secret::expose`]
/// is the one way to read it, used where it is put on the wire.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The credential itself, for an HTTP header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// `[ai]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AiConfig {
    /// Whether the AI runner serves diagnose and chat sessions.
    pub enabled: bool,
    /// Failover order of `models` names.
    pub model_priority: Vec<String>,
    /// `[ai.models.<name>]`.
    pub models: BTreeMap<String, ModelConfig>,
    /// `[ai.gateway]`.
    pub gateway: GatewayConfig,
    /// Longest one request to a model may take (streaming included).
    pub request_timeout: Duration,
    /// Retries of one model on 429, 5xx, timeouts and broken connections.
    pub max_retries: u32,
    /// First wait before a retry; doubled each retry, capped at 30 s.
    pub retry_backoff: Duration,
    /// Tokens all sessions together may use per day (UTC); 0: no limit.
    pub daily_token_limit: u64,
    /// Most tool-calling rounds per diagnose run or chat turn.
    pub max_rounds: u32,
    /// Longest one tool call of an AI session may take.
    pub tool_timeout: Duration,
    /// Language of reports and answers.
    pub language: String,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            enabled: false,
            model_priority: Vec::new(),
            models: BTreeMap::new(),
            gateway: GatewayConfig::default(),
            request_timeout: Duration::from_secs(60),
            max_retries: 2,
            retry_backoff: Duration::from_secs(2),
            daily_token_limit: 0,
            max_rounds: 15,
            tool_timeout: Duration::from_secs(10),
            language: "zh".into(),
        }
    }
}

/// `[ai.models.<name>]`: one OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Always `openai` (the only provider this agent speaks).
    pub provider: String,
    /// e.g. `https://api.openai.com/v1`, without the trailing `/`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer` when not empty.
    pub api_key: Secret,
    /// The key came from `${ENV}`: the file itself holds no secret.
    pub api_key_from_env: bool,
    /// The provider's model id.
    pub model: String,
    /// `max_tokens` of each request (when `max_completion_tokens` is 0).
    pub max_tokens: u32,
    /// `max_completion_tokens` of each request, when set (wins).
    pub max_completion_tokens: u32,
    /// The model's context window in tokens.
    pub context_window: u32,
    /// Extra request fields, merged under the standard ones.
    pub extra_body: serde_json::Map<String, serde_json::Value>,
}

/// `[ai.gateway]`: catpaw-server's LLM gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Ask the gateway first.
    pub enabled: bool,
    /// e.g. `https://server:8443/api/v1/agent/llm`.
    pub base_url: String,
    /// Sent as `X-Agent-Token` (defaults to `[server] agent_token`).
    pub agent_token: Secret,
    /// Longest one gateway request may take.
    pub request_timeout: Duration,
    /// Retries of the gateway (0..=2).
    pub max_retries: u32,
    /// When the gateway fails, go on down `model_priority`.
    pub fallback_to_direct: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: false,
            base_url: String::new(),
            agent_token: Secret::default(),
            request_timeout: Duration::from_secs(30),
            max_retries: 1,
            fallback_to_direct: false,
        }
    }
}
