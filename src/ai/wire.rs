//! The JSON of OpenAI-compatible chat completions, which the gateway
//! speaks too (its request carries the same `messages` and `tools`; its
//! envelope's `data.message` is such a message).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Message, Reply, Role, ToolCall, ToolSpec, Usage};

/// `messages` of a request.
pub(super) fn messages(messages: &[Message]) -> Value {
    Value::Array(messages.iter().map(message).collect())
}

fn message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut v = json!({ "role": role, "content": m.content });
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = Value::Array(
            m.tool_calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": { "name": c.name, "arguments": c.arguments },
                    })
                })
                .collect(),
        );
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// `tools` of a request.
pub(super) fn tools(tools: &[ToolSpec]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                })
            })
            .collect(),
    )
}

/// An assistant message as providers send it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WireMessage {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireToolCall {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) function: WireFunction,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireFunction {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) arguments: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) prompt_tokens: u64,
    #[serde(default)]
    pub(super) completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// A non-streamed `/chat/completions` answer.
#[derive(Debug, Deserialize)]
pub(super) struct Completion {
    #[serde(default)]
    pub(super) choices: Vec<Choice>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Choice {
    #[serde(default)]
    pub(super) message: WireMessage,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

/// The reply a provider's message, finish reason and usage make.
pub(super) fn reply(m: WireMessage, finish_reason: Option<String>, usage: Usage) -> Reply {
    Reply {
        message: Message {
            role: Role::Assistant,
            content: m.content.unwrap_or_default(),
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect(),
            tool_call_id: None,
        },
        finish_reason: finish_reason.unwrap_or_default(),
        usage,
    }
}

/// Tokens of a call whose provider reported none (some OpenAI-compatible
/// servers do not send usage when streaming): about four characters per
/// token, so the budgets still count it; held to the call's bounds like
/// any reported usage (`cost.rs`).
pub(super) fn estimate(messages: &[Message], reply: &Reply) -> Usage {
    let chars = |m: &Message| {
        m.content.len()
            + m.tool_calls
                .iter()
                .map(|c| c.arguments.len() + c.name.len())
                .sum::<usize>()
    };
    let prompt: usize = messages.iter().map(chars).sum();
    Usage {
        prompt_tokens: (prompt / 4 + 1) as u64,
        completion_tokens: (chars(&reply.message) / 4 + 1) as u64,
    }
}
