//! A model request as a guest builds it (`llm.complete`: messages with
//! roles, tool calls and ids; tools with JSON Schema text), through the
//! host's checks into the bodies sent to an OpenAI-compatible endpoint
//! and to the gateway.
//!
//! Promises checked: a request is refused exactly when it is over 1024
//! messages or 4 MiB; otherwise every message goes out in order with its
//! role and its text, a tool message's text masked (and no secret the
//! masking table hides survives in it); every tool goes out with an object
//! as its parameters; the model, the answer cap and `stream` cannot be
//! replaced; both bodies are JSON that parses back to themselves.
#![no_main]

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry::{self, Message, Role, ToolCall};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Msg {
    role: u8,
    content: String,
    calls: Vec<(String, String, String)>,
    call_id: Option<String>,
    /// A password line put into the content.
    secret: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    messages: Vec<Msg>,
    tools: Vec<(String, String, String)>,
    answer: u32,
    /// Repeats the messages (requests over the limits from small inputs).
    times: u16,
}

const ROLES: [(Role, &str); 4] = [
    (Role::System, "system"),
    (Role::User, "user"),
    (Role::Assistant, "assistant"),
    (Role::Tool, "tool"),
];

fuzz_target!(|input: Input| {
    let mut messages = Vec::new();
    let mut secrets = Vec::new();
    for m in &input.messages {
        let (role, _) = ROLES[usize::from(m.role) % 4];
        let mut content = m.content.clone();
        if let Some(s) = &m.secret {
            // A secret the masking table hides: a password after `--password=`.
            let s: String = s
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect();
            if s.len() >= 8 {
                content = format!("{content}\nmysqladmin --password={s} status\n");
                if role == Role::Tool {
                    secrets.push(s);
                }
            }
        }
        messages.push(Message {
            role,
            content,
            tool_calls: m
                .calls
                .iter()
                .map(|(id, name, arguments)| ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                })
                .collect(),
            tool_call_id: m.call_id.clone(),
        });
    }
    let times = usize::from(input.times % 2048) + 1;
    let messages: Vec<Message> = std::iter::repeat_n(messages, times).flatten().collect();
    let size: usize = messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                    .sum::<usize>()
        })
        .sum::<usize>()
        + input
            .tools
            .iter()
            .map(|(_, d, s)| d.len() + s.len())
            .sum::<usize>();
    let over = messages.len() > 1024 || size > 4 << 20;
    let answer = u64::from(input.answer);
    let request = match fuzz_entry::model_request(messages.clone(), input.tools.clone(), answer) {
        Ok(r) => {
            assert!(
                !over,
                "{} messages of {size} bytes were not refused",
                messages.len()
            );
            r
        }
        Err(e) => {
            assert!(over, "refused: {e}");
            return;
        }
    };
    for body in [&request.openai, &request.gateway] {
        let text = serde_json::to_string(body).expect("a body serializes");
        let back: Value = serde_json::from_str(&text).expect("and parses");
        assert_eq!(&back, body);
        let sent = body["messages"].as_array().expect("messages");
        assert_eq!(sent.len(), messages.len());
        for (m, s) in messages.iter().zip(sent) {
            let (_, role) = ROLES.iter().find(|(r, _)| *r == m.role).expect("role");
            assert_eq!(s["role"].as_str(), Some(*role));
            let content = s["content"].as_str().expect("content");
            if m.role == Role::Tool {
                assert_eq!(content, fuzz_entry::mask(&m.content));
                for secret in &secrets {
                    assert!(
                        !content.contains(&format!("={secret}")),
                        "secret {secret} sent"
                    );
                }
            } else {
                assert_eq!(content, m.content);
            }
            let calls = s
                .get("tool_calls")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            assert_eq!(calls, m.tool_calls.len());
        }
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(tools, input.tools.len());
        for t in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(t["function"]["parameters"].is_object());
        }
    }
    assert_eq!(request.openai["model"], "fuzz-model");
    assert_eq!(request.openai["max_tokens"], answer);
    assert_eq!(request.openai["stream"], true);
    assert_eq!(request.gateway["max_tokens"], answer);
});
