//! The conversation as bytes, for the host's `snapshot` export: a JSON
//! object with the shell flag and every message so far (the system prompt
//! first), each with its role, text, tool calls and the call it answers.

use std::cell::RefCell;

use super::{Conversation, Runner};
use crate::catpaw::runner::llm::{Message, Role, ToolCall};
use crate::exports::catpaw::runner::chat::{Conversation as Handle, ConversationBorrow};
use crate::exports::catpaw::runner::snapshot::Guest;
use serde_json::{Value, json};

impl Guest for Runner {
    fn save(conversation: ConversationBorrow<'_>) -> Result<Vec<u8>, String> {
        let c: &Conversation = conversation.get();
        Ok(encode(c.allow_shell, &c.messages.borrow()))
    }

    fn restore(state: Vec<u8>) -> Result<Handle, String> {
        let (allow_shell, messages) = decode(&state)?;
        Ok(Handle::new(Conversation {
            allow_shell,
            messages: RefCell::new(messages),
        }))
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn role_named(name: &str) -> Result<Role, String> {
    Ok(match name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => return Err(format!("the saved role `{other}` is unknown")),
    })
}

fn encode(allow_shell: bool, messages: &[Message]) -> Vec<u8> {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({ "id": c.id, "name": c.name, "arguments": c.arguments_json }))
                .collect();
            json!({
                "role": role_name(m.role),
                "content": m.content,
                "tool_calls": calls,
                "tool_call_id": m.tool_call_id,
            })
        })
        .collect();
    json!({ "allow_shell": allow_shell, "messages": messages })
        .to_string()
        .into_bytes()
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("a saved message has no text `{key}`"))
}

fn decode(bytes: &[u8]) -> Result<(bool, Vec<Message>), String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the saved conversation is not JSON: {e}"))?;
    let allow_shell = v
        .get("allow_shell")
        .and_then(Value::as_bool)
        .ok_or("the saved conversation has no boolean `allow_shell`")?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("the saved conversation has no list of `messages`")?
        .iter()
        .map(|m| {
            let tool_calls = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .ok_or("a saved message has no list of `tool_calls`")?
                .iter()
                .map(|c| {
                    Ok(ToolCall {
                        id: text(c, "id")?,
                        name: text(c, "name")?,
                        arguments_json: text(c, "arguments")?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Message {
                role: role_named(&text(m, "role")?)?,
                content: text(m, "content")?,
                tool_calls,
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if messages.is_empty() {
        return Err("the saved conversation has no messages".into());
    }
    Ok((allow_shell, messages))
}
